// Weight-only quantized products for decoding: y = x @ W^T, with W (out, in) stored as
// int8 or 4-bit codes and a float32 scale per output row and group of inputs, exactly as
// lmcore.nn.quantized stores it:
//
//   W[o, k] = code[o, k] * scale[o, k / group],   group = in / groups
//   int8:  codes (out, in) signed char
//   4-bit: codes (out, in / 2) unsigned char, input 2j in the low nibble of byte j and
//          input 2j + 1 in the high one, each stored as code + 8 (0..15)
//
// Reference: lmcore.cuda.reference.quantized_matmul (NumPy, float64).
// At decode time x has a few rows (tokens, N <= MAX_TOKENS) and every weight is read
// once for all of them, so the product is bound by the bytes of W: 1 byte a weight in
// int8 and half a byte in 4-bit instead of float32's 4. The weight is dequantized in
// registers and never written back, which the NumPy path (dequantize a block to memory,
// then multiply) cannot do.
// Versions:
//   v1  one warp per output row; lane l takes codes l, l + 32, ... one at a time,
//       dequantizes each and multiplies it by the N inputs; a warp shuffle sums the lanes
//   v2  the same with 16 bytes of codes per load (16 int8 or 32 4-bit codes) and x read
//       as float4; needs in % 16 == 0 (int8) or in % 32 == 0 (4-bit), groups of the same
//       multiple, and 16-byte aligned rows (the launcher checks and falls back to v1)
// Output: y (N, out) float32; bias, if any, is added by the caller.

#include "common.cuh"

#define MAX_TOKENS 8

__device__ __forceinline__ void store_row_sums(float (&acc)[MAX_TOKENS], float* __restrict__ y,
                                               int n_tokens, int out, int row, int lane) {
#pragma unroll
    for (int n = 0; n < MAX_TOKENS; ++n) {
        float s = warp_sum(acc[n]);
        if (lane == 0 && n < n_tokens) y[(long long)n * out + row] = s;
    }
}

__device__ __forceinline__ void add_weight(float (&acc)[MAX_TOKENS], float w,
                                           const float* __restrict__ x, long long k, int in,
                                           int n_tokens) {
#pragma unroll
    for (int n = 0; n < MAX_TOKENS; ++n) {
        if (n < n_tokens) acc[n] += w * x[n * (long long)in + k];
    }
}

extern "C" __global__ void quantized_matvec_int8_v1(const float* __restrict__ x,
                                                    const signed char* __restrict__ codes,
                                                    const float* __restrict__ scales,
                                                    float* __restrict__ y, int n_tokens,
                                                    int out, int in, int groups) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= out) return;
    const signed char* code_row = codes + (long long)row * in;
    const float* scale_row = scales + (long long)row * groups;
    int group = in / groups;
    float acc[MAX_TOKENS] = {0.0f};
    for (int k = lane; k < in; k += 32) {
        add_weight(acc, (float)code_row[k] * scale_row[k / group], x, k, in, n_tokens);
    }
    store_row_sums(acc, y, n_tokens, out, row, lane);
}

extern "C" __global__ void quantized_matvec_int4_v1(const float* __restrict__ x,
                                                    const unsigned char* __restrict__ codes,
                                                    const float* __restrict__ scales,
                                                    float* __restrict__ y, int n_tokens,
                                                    int out, int in, int groups) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= out) return;
    int bytes = in / 2;
    const unsigned char* code_row = codes + (long long)row * bytes;
    const float* scale_row = scales + (long long)row * groups;
    int group = in / groups;  // even, so inputs 2j and 2j + 1 share a scale
    float acc[MAX_TOKENS] = {0.0f};
    for (int j = lane; j < bytes; j += 32) {
        unsigned char b = code_row[j];
        float s = scale_row[2 * j / group];
        add_weight(acc, (float)((int)(b & 15) - 8) * s, x, 2 * j, in, n_tokens);
        add_weight(acc, (float)((int)(b >> 4) - 8) * s, x, 2 * j + 1, in, n_tokens);
    }
    store_row_sums(acc, y, n_tokens, out, row, lane);
}

// Four dequantized weights w[0..3] at inputs k..k+3 times each token's x[n, k..k+3].
__device__ __forceinline__ void add_four(float (&acc)[MAX_TOKENS], const float (&w)[4],
                                         const float* __restrict__ x, long long k, int in,
                                         int n_tokens) {
#pragma unroll
    for (int n = 0; n < MAX_TOKENS; ++n) {
        if (n < n_tokens) {
            float4 v = *reinterpret_cast<const float4*>(x + n * (long long)in + k);
            acc[n] += w[0] * v.x + w[1] * v.y + w[2] * v.z + w[3] * v.w;
        }
    }
}

extern "C" __global__ void quantized_matvec_int8_v2(const float* __restrict__ x,
                                                    const signed char* __restrict__ codes,
                                                    const float* __restrict__ scales,
                                                    float* __restrict__ y, int n_tokens,
                                                    int out, int in, int groups) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= out) return;
    const int4* code_row = reinterpret_cast<const int4*>(codes + (long long)row * in);
    const float* scale_row = scales + (long long)row * groups;
    int group = in / groups;  // a multiple of 16: one scale for each 16 codes
    float acc[MAX_TOKENS] = {0.0f};
    for (int c = lane; c < in / 16; c += 32) {
        int4 packed = code_row[c];  // 16 codes
        float s = scale_row[16 * c / group];
        const int words[4] = {packed.x, packed.y, packed.z, packed.w};
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            float w[4];
#pragma unroll
            for (int b = 0; b < 4; ++b) {
                w[b] = (float)(signed char)((words[q] >> (8 * b)) & 0xFF) * s;
            }
            add_four(acc, w, x, 16LL * c + 4 * q, in, n_tokens);
        }
    }
    store_row_sums(acc, y, n_tokens, out, row, lane);
}

extern "C" __global__ void quantized_matvec_int4_v2(const float* __restrict__ x,
                                                    const unsigned char* __restrict__ codes,
                                                    const float* __restrict__ scales,
                                                    float* __restrict__ y, int n_tokens,
                                                    int out, int in, int groups) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= out) return;
    const int4* code_row = reinterpret_cast<const int4*>(codes + (long long)row * (in / 2));
    const float* scale_row = scales + (long long)row * groups;
    int group = in / groups;  // a multiple of 32: one scale for each 16 bytes
    float acc[MAX_TOKENS] = {0.0f};
    for (int c = lane; c < in / 32; c += 32) {
        int4 packed = code_row[c];  // 32 codes, inputs 32c .. 32c + 31
        float s = scale_row[32 * c / group];
        const int words[4] = {packed.x, packed.y, packed.z, packed.w};
#pragma unroll
        for (int q = 0; q < 4; ++q) {  // a word: 4 bytes, 8 inputs
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                float w[4];
#pragma unroll
                for (int b = 0; b < 2; ++b) {
                    unsigned int byte = (words[q] >> (8 * (2 * half + b))) & 0xFF;
                    w[2 * b] = (float)((int)(byte & 15) - 8) * s;
                    w[2 * b + 1] = (float)((int)(byte >> 4) - 8) * s;
                }
                add_four(acc, w, x, 32LL * c + 8 * q + 4 * half, in, n_tokens);
            }
        }
    }
    store_row_sums(acc, y, n_tokens, out, row, lane);
}
