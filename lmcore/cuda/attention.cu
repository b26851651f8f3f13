// Causal (or full) attention without the T x T matrix: FlashAttention's idea in float32.
//
//   S = scale Q K^T,  P = softmax(S) over the keys a query may see,  O = P V
//
// Q is (BH, Tq, D), K and V (BH, Tk, D), contiguous; BH = batch x heads. With `causal`,
// query i sees keys j <= i + (Tk - Tq), as lmcore's scaled_dot_product_attention.
// Reference: lmcore.cuda.reference.attention (NumPy, float64), and the unfused path
// (cuBLAS products around a softmax kernel) that keeps P in memory.
//
// Forward: a block takes a tile of queries, one query per thread, its q and its output
// accumulator in registers. Tiles of K and V pass through shared memory; for each tile
// the thread updates an online softmax (running max m, running sum l, the accumulator
// rescaled by exp(m_old - m_new) when the max grows). Only O and the row statistic
// lse = m + log l (one float per query) are written: memory grows as T, not T^2.
// Backward recomputes P from Q, K and lse, tile by tile, in two kernels:
//   dK, dV: one KEY per thread, looping over the query tiles that see it
//           dV_j = sum_i P_ij dO_i,  dK_j = scale sum_i dS_ij Q_i
//   dQ:     one query per thread, looping over key tiles
//           dQ_i = scale sum_j dS_ij K_j
// with dS_ij = P_ij (dO_i . V_j - delta_i) and delta_i = dO_i . O_i computed first.
// Head widths D of 16, 32 and 64 are compiled (the kernels' registers hold D floats twice).
#include "common.cuh"

#define KEY_TILE 32    // keys per shared-memory tile in the forward and dQ kernels
#define QUERY_TILE 16  // queries per shared-memory tile in the dK/dV kernel
#define DQ_KEY_TILE 16 // keys per shared-memory tile in the dQ kernel (shared memory < 48 KB)

__device__ __forceinline__ int visible_keys(int i, int tq, int tk, int causal) {
    return causal ? min(tk, i + (tk - tq) + 1) : tk;
}

template <int D>
__device__ void flash_forward(const float* __restrict__ q, const float* __restrict__ k,
                              const float* __restrict__ v, float* __restrict__ o,
                              float* __restrict__ lse, int tq, int tk, float scale, int causal) {
    __shared__ float ks[KEY_TILE][D], vs[KEY_TILE][D];
    long long bh = blockIdx.y;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    bool active = i < tq;
    const float* kb = k + bh * tk * D;
    const float* vb = v + bh * tk * D;
    float qr[D], acc[D];
#pragma unroll
    for (int d = 0; d < D; d++) {
        qr[d] = active ? q[(bh * tq + i) * D + d] * scale : 0.0f;
        acc[d] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    int last = min(tq, (int)((blockIdx.x + 1) * blockDim.x)) - 1;
    int block_end = visible_keys(last, tq, tk, causal);
    int my_end = visible_keys(i, tq, tk, causal);
    for (int j0 = 0; j0 < block_end; j0 += KEY_TILE) {
        __syncthreads();  // the previous tile is no longer read
        for (int idx = threadIdx.x; idx < KEY_TILE * D; idx += blockDim.x) {
            int r = idx / D, c = idx % D, j = j0 + r;
            ks[r][c] = j < tk ? kb[(long long)j * D + c] : 0.0f;
            vs[r][c] = j < tk ? vb[(long long)j * D + c] : 0.0f;
        }
        __syncthreads();
        if (!active || j0 >= my_end) continue;
        float s[KEY_TILE];
        float tile_max = -INFINITY;
#pragma unroll
        for (int r = 0; r < KEY_TILE; r++) {
            float dot = 0.0f;
#pragma unroll
            for (int d = 0; d < D; d++) dot += qr[d] * ks[r][d];
            s[r] = j0 + r < my_end ? dot : -INFINITY;
            tile_max = fmaxf(tile_max, s[r]);
        }
        float m_new = fmaxf(m, tile_max);  // finite: key j0 < my_end is visible
        float correction = __expf(m - m_new);  // 0 on the first tile (m = -inf)
        l *= correction;
#pragma unroll
        for (int d = 0; d < D; d++) acc[d] *= correction;
#pragma unroll
        for (int r = 0; r < KEY_TILE; r++) {
            float p = __expf(s[r] - m_new);  // 0 for the hidden keys
            l += p;
#pragma unroll
            for (int d = 0; d < D; d++) acc[d] += p * vs[r][d];
        }
        m = m_new;
    }
    if (active) {
        float inv = 1.0f / l;
#pragma unroll
        for (int d = 0; d < D; d++) o[(bh * tq + i) * D + d] = acc[d] * inv;
        lse[bh * tq + i] = m + logf(l);
    }
}

// delta_i = dO_i . O_i, one warp per row of (rows, D).
extern "C" __global__ void attention_backward_delta(const float* __restrict__ o,
                                                    const float* __restrict__ grad_o,
                                                    float* __restrict__ delta, int rows, int d) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    float dot = 0.0f;
    for (int c = lane; c < d; c += 32) dot += o[(long long)row * d + c] * grad_o[(long long)row * d + c];
    dot = warp_sum(dot);
    if (lane == 0) delta[row] = dot;
}

// One key per thread; blockDim.x == KEYS.
template <int D, int KEYS>
__device__ void flash_backward_kv(const float* __restrict__ q, const float* __restrict__ k,
                                  const float* __restrict__ v, const float* __restrict__ grad_o,
                                  const float* __restrict__ lse, const float* __restrict__ delta,
                                  float* __restrict__ grad_k, float* __restrict__ grad_v, int tq,
                                  int tk, float scale, int causal) {
    __shared__ float k_own[KEYS][D + 1], v_own[KEYS][D + 1];  // +1: no bank conflicts
    __shared__ float qs[QUERY_TILE][D], dos[QUERY_TILE][D], lse_s[QUERY_TILE], delta_s[QUERY_TILE];
    long long bh = blockIdx.y;
    int t = threadIdx.x, j0 = blockIdx.x * KEYS, j = j0 + t;
    bool active = j < tk;
    for (int idx = t; idx < KEYS * D; idx += KEYS) {
        int r = idx / D, c = idx % D;
        bool inside = j0 + r < tk;
        k_own[r][c] = inside ? k[(bh * tk + j0 + r) * D + c] : 0.0f;
        v_own[r][c] = inside ? v[(bh * tk + j0 + r) * D + c] : 0.0f;
    }
    float dk[D], dv[D];
#pragma unroll
    for (int d = 0; d < D; d++) dk[d] = dv[d] = 0.0f;
    int offset = tk - tq;
    // The first query that sees key j0 is j0 - offset (causal); earlier tiles see none.
    int first = causal ? max(0, j0 - offset) : 0;
    first -= first % QUERY_TILE;
    for (int i0 = first; i0 < tq; i0 += QUERY_TILE) {
        __syncthreads();
        for (int idx = t; idx < QUERY_TILE * D; idx += KEYS) {
            int r = idx / D, c = idx % D, i = i0 + r;
            qs[r][c] = i < tq ? q[(bh * tq + i) * D + c] : 0.0f;
            dos[r][c] = i < tq ? grad_o[(bh * tq + i) * D + c] : 0.0f;
        }
        if (t < QUERY_TILE) {
            int i = i0 + t;
            lse_s[t] = i < tq ? lse[bh * tq + i] : INFINITY;  // exp(s - inf) = 0
            delta_s[t] = i < tq ? delta[bh * tq + i] : 0.0f;
        }
        __syncthreads();
        if (!active) continue;
#pragma unroll 1
        for (int r = 0; r < QUERY_TILE; r++) {
            int i = i0 + r;
            float s = 0.0f, dp = 0.0f;
#pragma unroll 16
            for (int d = 0; d < D; d++) {
                s += qs[r][d] * k_own[t][d];
                dp += dos[r][d] * v_own[t][d];
            }
            bool visible = i < tq && (!causal || j <= i + offset);
            float p = visible ? __expf(s * scale - lse_s[r]) : 0.0f;
            float ds = p * (dp - delta_s[r]);
#pragma unroll
            for (int d = 0; d < D; d++) {
                dv[d] += p * dos[r][d];
                dk[d] += ds * qs[r][d];
            }
        }
    }
    if (active) {
#pragma unroll
        for (int d = 0; d < D; d++) {
            grad_k[(bh * tk + j) * D + d] = dk[d] * scale;
            grad_v[(bh * tk + j) * D + d] = dv[d];
        }
    }
}

// One query per thread; blockDim.x == QUERIES.
template <int D, int QUERIES>
__device__ void flash_backward_q(const float* __restrict__ q, const float* __restrict__ k,
                                 const float* __restrict__ v, const float* __restrict__ grad_o,
                                 const float* __restrict__ lse, const float* __restrict__ delta,
                                 float* __restrict__ grad_q, int tq, int tk, float scale,
                                 int causal) {
    __shared__ float q_own[QUERIES][D + 1], do_own[QUERIES][D + 1];
    __shared__ float ks[DQ_KEY_TILE][D], vs[DQ_KEY_TILE][D];
    long long bh = blockIdx.y;
    int t = threadIdx.x, i0 = blockIdx.x * QUERIES, i = i0 + t;
    bool active = i < tq;
    for (int idx = t; idx < QUERIES * D; idx += QUERIES) {
        int r = idx / D, c = idx % D;
        bool inside = i0 + r < tq;
        q_own[r][c] = inside ? q[(bh * tq + i0 + r) * D + c] : 0.0f;
        do_own[r][c] = inside ? grad_o[(bh * tq + i0 + r) * D + c] : 0.0f;
    }
    float my_lse = active ? lse[bh * tq + i] : 0.0f, my_delta = active ? delta[bh * tq + i] : 0.0f;
    float dq[D];
#pragma unroll
    for (int d = 0; d < D; d++) dq[d] = 0.0f;
    int last = min(tq, i0 + QUERIES) - 1;
    int block_end = visible_keys(last, tq, tk, causal);
    int my_end = visible_keys(i, tq, tk, causal);
    for (int j0 = 0; j0 < block_end; j0 += DQ_KEY_TILE) {
        __syncthreads();
        for (int idx = t; idx < DQ_KEY_TILE * D; idx += QUERIES) {
            int r = idx / D, c = idx % D, j = j0 + r;
            ks[r][c] = j < tk ? k[(bh * tk + j) * D + c] : 0.0f;
            vs[r][c] = j < tk ? v[(bh * tk + j) * D + c] : 0.0f;
        }
        __syncthreads();
        if (!active || j0 >= my_end) continue;
#pragma unroll 1
        for (int r = 0; r < DQ_KEY_TILE; r++) {
            float s = 0.0f, dp = 0.0f;
#pragma unroll 16
            for (int d = 0; d < D; d++) {
                s += q_own[t][d] * ks[r][d];
                dp += do_own[t][d] * vs[r][d];
            }
            float p = j0 + r < my_end ? __expf(s * scale - my_lse) : 0.0f;
            float ds = p * (dp - my_delta);
#pragma unroll
            for (int d = 0; d < D; d++) dq[d] += ds * ks[r][d];
        }
    }
    if (active) {
#pragma unroll
        for (int d = 0; d < D; d++) grad_q[(bh * tq + i) * D + d] = dq[d] * scale;
    }
}

#define FLASH_KERNELS(D)                                                                        \
    extern "C" __global__ void __launch_bounds__(64) flash_attention_forward_d##D(             \
        const float* q, const float* k, const float* v, float* o, float* lse, int tq, int tk,  \
        float scale, int causal) {                                                             \
        flash_forward<D>(q, k, v, o, lse, tq, tk, scale, causal);                              \
    }                                                                                          \
    extern "C" __global__ void __launch_bounds__(64) flash_attention_backward_kv_d##D(         \
        const float* q, const float* k, const float* v, const float* grad_o, const float* lse, \
        const float* delta, float* grad_k, float* grad_v, int tq, int tk, float scale,         \
        int causal) {                                                                          \
        flash_backward_kv<D, 64>(q, k, v, grad_o, lse, delta, grad_k, grad_v, tq, tk, scale,  \
                                 causal);                                                      \
    }                                                                                          \
    extern "C" __global__ void __launch_bounds__(64) flash_attention_backward_q_d##D(          \
        const float* q, const float* k, const float* v, const float* grad_o, const float* lse, \
        const float* delta, float* grad_q, int tq, int tk, float scale, int causal) {          \
        flash_backward_q<D, 64>(q, k, v, grad_o, lse, delta, grad_q, tq, tk, scale, causal);  \
    }

FLASH_KERNELS(16)
FLASH_KERNELS(32)
FLASH_KERNELS(64)
