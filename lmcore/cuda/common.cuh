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

// Add one value to an online-softmax state with a single exp: when x is a new maximum the
// sum so far is rescaled, otherwise x's term joins it. (-inf values add nothing.)
__device__ __forceinline__ void softmax_add(float& m, float& s, float x) {
    if (x == -INFINITY) return;
    if (x > m) {
        s = s * expf(m - x) + 1.0f;  // 0 * exp(-inf) = 0 on the first value
        m = x;
    } else {
        s += expf(x - m);
    }
}

// A row of up to 32 * ITEMS floats held in one warp's registers, moved as float4: lane L
// holds columns (i * 32 + L) * 4 + c for i < ITEMS / 4, c < 4. The row's length must be a
// multiple of 4 and the row 16-byte aligned; slots past the end get `fill`.
template <int ITEMS>
__device__ __forceinline__ void load_row(const float* row, int cols, int lane, float (&x)[ITEMS],
                                         float fill) {
#pragma unroll
    for (int i = 0; i < ITEMS / 4; i++) {
        int col = (i * 32 + lane) * 4;
        float4 v = col < cols ? *reinterpret_cast<const float4*>(row + col)
                              : make_float4(fill, fill, fill, fill);
        x[4 * i] = v.x;
        x[4 * i + 1] = v.y;
        x[4 * i + 2] = v.z;
        x[4 * i + 3] = v.w;
    }
}

template <int ITEMS>
__device__ __forceinline__ void store_row(float* row, int cols, int lane, const float (&x)[ITEMS]) {
#pragma unroll
    for (int i = 0; i < ITEMS / 4; i++) {
        int col = (i * 32 + lane) * 4;
        if (col < cols)
            *reinterpret_cast<float4*>(row + col) =
                make_float4(x[4 * i], x[4 * i + 1], x[4 * i + 2], x[4 * i + 3]);
    }
}

// The column of register slot k of a lane (see load_row).
__device__ __forceinline__ int row_column(int k, int lane) {
    return ((k / 4) * 32 + lane) * 4 + k % 4;
}

// Instantiate a row kernel template for rows of up to 128, ..., 1024 floats.
#define FOR_ROW_SIZES(MACRO) \
    MACRO(4, 128) MACRO(8, 256) MACRO(12, 384) MACRO(16, 512) MACRO(24, 768) MACRO(32, 1024)
