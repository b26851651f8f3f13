// Helpers shared by the kernels of lmcore/cuda: warp and block reductions.

#define FULL_MASK 0xffffffffu

// NVRTC compiles without the C library headers that define these.
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif
#ifndef NAN
#define NAN __int_as_float(0x7fffffff)
#endif

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(FULL_MASK, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1)
        v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, offset));
    return v;
}

// Merge two online-softmax states (running max m, sum s of exp(x - m)); an empty state
// has m = -inf and s = 0, and merging it changes nothing.
__device__ __forceinline__ void softmax_merge(float& m, float& s, float m2, float s2) {
    float top = fmaxf(m, m2);
    if (top == -INFINITY) return;
    s = (m == -INFINITY ? 0.0f : s * expf(m - top)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - top));
    m = top;
}

__device__ __forceinline__ void warp_softmax_merge(float& m, float& s) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        float m2 = __shfl_xor_sync(FULL_MASK, m, offset);
        float s2 = __shfl_xor_sync(FULL_MASK, s, offset);
        softmax_merge(m, s, m2, s2);
    }
}

// Sum over a whole block (blockDim.x a multiple of 32, at most 1024); every thread gets
// the total. `scratch` is shared memory of at least 32 floats.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}
