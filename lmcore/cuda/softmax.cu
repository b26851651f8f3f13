// Softmax over the last axis of a (rows, cols) float32 array, forward and backward,
// and the attention variant that fuses the 1/sqrt(d) scale and the causal mask.
//
//   y_j = exp(x_j - m) / sum_k exp(x_k - m),  m = max_k x_k   (m keeps exp from overflowing)
//   dx_j = y_j (dy_j - sum_k dy_k y_k)
//
// Reference: lmcore.cuda.reference.softmax / softmax_backward (NumPy, float64).
// Versions:
//   v1  one thread per row, three passes (max, sum, write): neighbouring threads read
//       addresses `cols` apart, so no load is coalesced
//   v2  one block per row, tree reductions in shared memory: coalesced, but each
//       reduction step waits at a __syncthreads
//   v3  one warp per row and an online softmax: max and sum found in ONE pass (the sum
//       is rescaled whenever the max grows), then combined across the warp with
//       register shuffles; no shared memory, no block-wide barrier
//   v4  one warp per row held in registers (rows of up to 1024 floats, a multiple of 4):
//       the row is read from memory once, as float4, and each exp is computed once;
//       v3 reads the row twice and pays two exps per element in its merge
// The attention variants have the same two forms (v1 online, v2 row in registers).
#include "common.cuh"

extern "C" __global__ void softmax_forward_v1(const float* __restrict__ x, float* __restrict__ y,
                                              int rows, int cols) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rows) return;
    const float* xr = x + (long long)row * cols;
    float* yr = y + (long long)row * cols;
    float m = -INFINITY;
    for (int j = 0; j < cols; j++) m = fmaxf(m, xr[j]);
    float s = 0.0f;
    for (int j = 0; j < cols; j++) s += expf(xr[j] - m);
    for (int j = 0; j < cols; j++) yr[j] = expf(xr[j] - m) / s;
}

// v2: blockDim.x a power of two; dynamic shared memory of blockDim.x floats.
extern "C" __global__ void softmax_forward_v2(const float* __restrict__ x, float* __restrict__ y,
                                              int rows, int cols) {
    extern __shared__ float shared[];
    int tid = threadIdx.x;
    const float* xr = x + (long long)blockIdx.x * cols;
    float* yr = y + (long long)blockIdx.x * cols;
    float m = -INFINITY;
    for (int j = tid; j < cols; j += blockDim.x) m = fmaxf(m, xr[j]);
    shared[tid] = m;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (tid < half) shared[tid] = fmaxf(shared[tid], shared[tid + half]);
        __syncthreads();
    }
    m = shared[0];
    __syncthreads();
    float s = 0.0f;
    for (int j = tid; j < cols; j += blockDim.x) s += expf(xr[j] - m);
    shared[tid] = s;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (tid < half) shared[tid] += shared[tid + half];
        __syncthreads();
    }
    s = shared[0];
    for (int j = tid; j < cols; j += blockDim.x) yr[j] = expf(xr[j] - m) / s;
}

// v3: one warp per row; blockDim.x a multiple of 32.
extern "C" __global__ void softmax_forward_v3(const float* __restrict__ x, float* __restrict__ y,
                                              int rows, int cols) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* xr = x + (long long)row * cols;
    float* yr = y + (long long)row * cols;
    float m = -INFINITY, s = 0.0f;
    for (int j = lane; j < cols; j += 32) softmax_merge(m, s, xr[j], 1.0f);
    warp_softmax_merge(m, s);
    float inv = 1.0f / s;
    for (int j = lane; j < cols; j += 32) yr[j] = expf(xr[j] - m) * inv;
}

// One warp per row.
extern "C" __global__ void softmax_backward(const float* __restrict__ y,
                                            const float* __restrict__ dy,
                                            float* __restrict__ dx, int rows, int cols) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    long long base = (long long)row * cols;
    float dot = 0.0f;
    for (int j = lane; j < cols; j += 32) dot += dy[base + j] * y[base + j];
    dot = warp_sum(dot);
    for (int j = lane; j < cols; j += 32) dx[base + j] = y[base + j] * (dy[base + j] - dot);
}

// Attention weights from raw scores q.k, one warp per row of (rows, tk) with
// rows = B * H * tq: p = softmax(scale * s) over the keys a query may see. With `causal`,
// query i of tq sees keys j <= i + (tk - tq) and gets p_j = 0 beyond. May run in place.
extern "C" __global__ void attention_softmax_forward(const float* scores, float* probs, int rows,
                                                     int tq, int tk, float scale, int causal) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    int visible = causal ? min(tk, row % tq + (tk - tq) + 1) : tk;
    const float* sr = scores + (long long)row * tk;
    float* pr = probs + (long long)row * tk;
    float m = -INFINITY, s = 0.0f;
    for (int j = lane; j < visible; j += 32) softmax_merge(m, s, scale * sr[j], 1.0f);
    warp_softmax_merge(m, s);
    float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int j = lane; j < tk; j += 32) pr[j] = j < visible ? expf(scale * sr[j] - m) * inv : 0.0f;
}

// Gradient of the scores from that of the weights: ds_j = scale p_j (dp_j - sum_k dp_k p_k).
// May run in place (dscores == dprobs).
extern "C" __global__ void attention_softmax_backward(const float* probs, const float* dprobs,
                                                      float* dscores, int rows, int tq, int tk,
                                                      float scale, int causal) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    int visible = causal ? min(tk, row % tq + (tk - tq) + 1) : tk;
    long long base = (long long)row * tk;
    float dot = 0.0f;
    for (int j = lane; j < visible; j += 32) dot += dprobs[base + j] * probs[base + j];
    dot = warp_sum(dot);
    for (int j = lane; j < tk; j += 32)
        dscores[base + j] = j < visible ? scale * probs[base + j] * (dprobs[base + j] - dot) : 0.0f;
}

template <int ITEMS>
__device__ void softmax_row_v4(const float* __restrict__ x, float* __restrict__ y, int rows,
                               int cols) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    float v[ITEMS];
    load_row<ITEMS>(x + (long long)row * cols, cols, lane, v, -INFINITY);
    float m = -INFINITY;
#pragma unroll
    for (int k = 0; k < ITEMS; k++) m = fmaxf(m, v[k]);
    m = warp_max(m);
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < ITEMS; k++) {
        v[k] = expf(v[k] - m);
        s += v[k];
    }
    float inv = 1.0f / warp_sum(s);
#pragma unroll
    for (int k = 0; k < ITEMS; k++) v[k] *= inv;
    store_row<ITEMS>(y + (long long)row * cols, cols, lane, v);
}

// May run in place.
template <int ITEMS>
__device__ void attention_softmax_row_v2(const float* scores, float* probs, int rows, int tq,
                                         int tk, float scale, int causal) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    int visible = causal ? min(tk, row % tq + (tk - tq) + 1) : tk;
    float v[ITEMS];
    load_row<ITEMS>(scores + (long long)row * tk, tk, lane, v, 0.0f);
    float m = -INFINITY;
#pragma unroll
    for (int k = 0; k < ITEMS; k++) {
        v[k] = row_column(k, lane) < visible ? scale * v[k] : -INFINITY;
        m = fmaxf(m, v[k]);
    }
    m = warp_max(m);
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < ITEMS; k++) {
        v[k] = expf(v[k] - m);  // 0 for the hidden keys
        s += v[k];
    }
    float inv = 1.0f / warp_sum(s);
#pragma unroll
    for (int k = 0; k < ITEMS; k++) v[k] *= inv;
    store_row<ITEMS>(probs + (long long)row * tk, tk, lane, v);
}

// May run in place (dscores == dprobs).
template <int ITEMS>
__device__ void attention_softmax_backward_row_v2(const float* probs, const float* dprobs,
                                                  float* dscores, int rows, int tq, int tk,
                                                  float scale, int causal) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    int visible = causal ? min(tk, row % tq + (tk - tq) + 1) : tk;
    long long base = (long long)row * tk;
    float p[ITEMS], dp[ITEMS];
    load_row<ITEMS>(probs + base, tk, lane, p, 0.0f);
    load_row<ITEMS>(dprobs + base, tk, lane, dp, 0.0f);
    float dot = 0.0f;
#pragma unroll
    for (int k = 0; k < ITEMS; k++) dot += p[k] * dp[k];
    dot = warp_sum(dot);
#pragma unroll
    for (int k = 0; k < ITEMS; k++)
        p[k] = row_column(k, lane) < visible ? scale * p[k] * (dp[k] - dot) : 0.0f;
    store_row<ITEMS>(dscores + base, tk, lane, p);
}

#define SOFTMAX_ROW_KERNELS(ITEMS, COLS)                                                       \
    extern "C" __global__ void softmax_forward_v4_c##COLS(const float* x, float* y, int rows,  \
                                                          int cols) {                          \
        softmax_row_v4<ITEMS>(x, y, rows, cols);                                               \
    }                                                                                          \
    extern "C" __global__ void attention_softmax_forward_v2_c##COLS(                           \
        const float* scores, float* probs, int rows, int tq, int tk, float scale, int causal) { \
        attention_softmax_row_v2<ITEMS>(scores, probs, rows, tq, tk, scale, causal);           \
    }                                                                                          \
    extern "C" __global__ void attention_softmax_backward_v2_c##COLS(                          \
        const float* probs, const float* dprobs, float* dscores, int rows, int tq, int tk,     \
        float scale, int causal) {                                                             \
        attention_softmax_backward_row_v2<ITEMS>(probs, dprobs, dscores, rows, tq, tk, scale,  \
                                                 causal);                                      \
    }

FOR_ROW_SIZES(SOFTMAX_ROW_KERNELS)
