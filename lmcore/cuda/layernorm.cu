// LayerNorm over the last axis of a (rows, cols) float32 array, forward and backward,
// and the residual-add + LayerNorm fusion of a pre-norm Transformer block.
//
//   mean = sum_j x_j / C,  rstd = 1 / sqrt(sum_j (x_j - mean)^2 / C + eps)
//   x_hat = (x - mean) rstd,  y = x_hat w + b
//   backward, g = dy w:  dx = rstd (g - mean(g) - x_hat mean(g x_hat))
//                        dw = sum over rows of dy x_hat,  db = sum over rows of dy
//
// The forward saves mean and rstd (two floats a row), not x_hat: the backward recomputes
// x_hat from x, which costs arithmetic but no extra (rows, cols) array.
// Reference: lmcore.cuda.reference.layer_norm / layer_norm_backward (NumPy, float64).
// Versions:
//   v1  one thread per row: uncoalesced, as softmax v1
//   v2  one warp per row, sums by warp shuffles, the row re-read from cache
//   v3  one warp per row held in registers (rows of up to 1024 floats, a multiple of 4):
//       read once as float4, mean and variance from the registers
//   v4  v3 with persistent warps: the grid is what the GPU holds at once, each warp loops
//       over rows with w and b kept in registers, and loads its next row before it
//       normalizes the current one, so a load is always in flight (v3 waits for each row)
//   residual_layernorm_forward  v2 that first adds the residual branch and writes the
//       sum: one pass over memory instead of two (the add, then the norm)
//   residual_layernorm_forward_v2  the same on rows in registers, with v4's persistent
//       warps: a and r read once as float4, the sum written once, normalized from registers
// Backward: v1 takes two kernels (dx a warp per row; dw, db by column partial sums) that
// read dy and x three times in all; v2 holds each row in registers, writes dx and adds
// the row into per-warp dw, db sums in registers: dy and x are read once. v3 is v2 with
// a grid of exactly the blocks the GPU holds at once and the next row loaded in advance.
// w and b may be null (no affine weight or no bias).
#include "common.cuh"

extern "C" __global__ void layernorm_forward_v1(const float* __restrict__ x,
                                                const float* __restrict__ w,
                                                const float* __restrict__ b,
                                                float* __restrict__ y, float* __restrict__ mean,
                                                float* __restrict__ rstd, int rows, int cols,
                                                float eps) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rows) return;
    const float* xr = x + (long long)row * cols;
    float* yr = y + (long long)row * cols;
    float m = 0.0f;
    for (int j = 0; j < cols; j++) m += xr[j];
    m /= cols;
    float v = 0.0f;
    for (int j = 0; j < cols; j++) v += (xr[j] - m) * (xr[j] - m);
    float r = rsqrtf(v / cols + eps);
    for (int j = 0; j < cols; j++) {
        float h = (xr[j] - m) * r;
        yr[j] = (w ? h * w[j] : h) + (b ? b[j] : 0.0f);
    }
    mean[row] = m;
    rstd[row] = r;
}

__device__ __forceinline__ void layernorm_row_warp(const float* xr, const float* w, const float* b,
                                                   float* yr, float* mean, float* rstd, int row,
                                                   int cols, float eps, int lane) {
    float m = 0.0f;
    for (int j = lane; j < cols; j += 32) m += xr[j];
    m = warp_sum(m) / cols;
    float v = 0.0f;
    for (int j = lane; j < cols; j += 32) v += (xr[j] - m) * (xr[j] - m);
    float r = rsqrtf(warp_sum(v) / cols + eps);
    for (int j = lane; j < cols; j += 32) {
        float h = (xr[j] - m) * r;
        yr[j] = (w ? h * w[j] : h) + (b ? b[j] : 0.0f);
    }
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

extern "C" __global__ void layernorm_forward_v2(const float* __restrict__ x,
                                                const float* __restrict__ w,
                                                const float* __restrict__ b,
                                                float* __restrict__ y, float* __restrict__ mean,
                                                float* __restrict__ rstd, int rows, int cols,
                                                float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    long long base = (long long)row * cols;
    layernorm_row_warp(x + base, w, b, y + base, mean, rstd, row, cols, eps, threadIdx.x % 32);
}

// sum = a + r (the residual stream after a branch), y = LayerNorm(sum); one warp per row.
extern "C" __global__ void residual_layernorm_forward(const float* __restrict__ a,
                                                      const float* __restrict__ r,
                                                      float* sum, const float* __restrict__ w,
                                                      const float* __restrict__ b,
                                                      float* __restrict__ y,
                                                      float* __restrict__ mean,
                                                      float* __restrict__ rstd, int rows,
                                                      int cols, float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    long long base = (long long)row * cols;
    for (int j = lane; j < cols; j += 32) sum[base + j] = a[base + j] + r[base + j];
    __syncwarp();  // each lane re-reads only what it wrote, but keep the warp together
    layernorm_row_warp(sum + base, w, b, y + base, mean, rstd, row, cols, eps, lane);
}

// dx for each row, one warp per row.
extern "C" __global__ void layernorm_backward_input(const float* __restrict__ dy,
                                                    const float* __restrict__ x,
                                                    const float* __restrict__ w,
                                                    const float* __restrict__ mean,
                                                    const float* __restrict__ rstd,
                                                    float* __restrict__ dx, int rows, int cols) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    long long base = (long long)row * cols;
    float m = mean[row], r = rstd[row];
    float sum_g = 0.0f, sum_gh = 0.0f;
    for (int j = lane; j < cols; j += 32) {
        float g = w ? dy[base + j] * w[j] : dy[base + j];
        sum_g += g;
        sum_gh += g * (x[base + j] - m) * r;
    }
    float mean_g = warp_sum(sum_g) / cols, mean_gh = warp_sum(sum_gh) / cols;
    for (int j = lane; j < cols; j += 32) {
        float g = w ? dy[base + j] * w[j] : dy[base + j];
        float h = (x[base + j] - m) * r;
        dx[base + j] = r * (g - mean_g - h * mean_gh);
    }
}

// Partial sums of dw and db: block (bx, by) sums columns [bx * blockDim.x, ...) over the
// rows of chunk by; neighbouring threads take neighbouring columns (coalesced). The
// (chunks, cols) partials are then summed over chunks. dw_partial or db_partial may be
// null when that gradient is not needed.
extern "C" __global__ void layernorm_backward_params(const float* __restrict__ dy,
                                                     const float* __restrict__ x,
                                                     const float* __restrict__ mean,
                                                     const float* __restrict__ rstd,
                                                     float* __restrict__ dw_partial,
                                                     float* __restrict__ db_partial, int rows,
                                                     int cols, int rows_per_chunk) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= cols) return;
    int start = blockIdx.y * rows_per_chunk, stop = min(rows, start + rows_per_chunk);
    float dw = 0.0f, db = 0.0f;
    for (int row = start; row < stop; row++) {
        long long i = (long long)row * cols + col;
        float g = dy[i];
        dw += g * (x[i] - mean[row]) * rstd[row];
        db += g;
    }
    if (dw_partial) dw_partial[(long long)blockIdx.y * cols + col] = dw;
    if (db_partial) db_partial[(long long)blockIdx.y * cols + col] = db;
}

template <int ITEMS>
__device__ void layernorm_row_v3(const float* __restrict__ x, const float* __restrict__ w,
                                 const float* __restrict__ b, float* __restrict__ y,
                                 float* __restrict__ mean, float* __restrict__ rstd, int rows,
                                 int cols, float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    float v[ITEMS], wv[ITEMS], bv[ITEMS];
    load_row<ITEMS>(x + (long long)row * cols, cols, lane, v, 0.0f);
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < ITEMS; k++) sum += v[k];
    float m = warp_sum(sum) / cols;
    float var = 0.0f;
#pragma unroll
    for (int k = 0; k < ITEMS; k++) {
        float c = row_column(k, lane) < cols ? v[k] - m : 0.0f;
        var += c * c;
    }
    float r = rsqrtf(warp_sum(var) / cols + eps);
    if (w) load_row<ITEMS>(w, cols, lane, wv, 1.0f);
    if (b) load_row<ITEMS>(b, cols, lane, bv, 0.0f);
#pragma unroll
    for (int k = 0; k < ITEMS; k++) {
        float h = (v[k] - m) * r;
        v[k] = (w ? h * wv[k] : h) + (b ? bv[k] : 0.0f);
    }
    store_row<ITEMS>(y + (long long)row * cols, cols, lane, v);
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

// w and b (or 1 and 0 when absent) in registers, in load_row's layout.
template <int ITEMS>
__device__ __forceinline__ void load_affine(const float* __restrict__ w,
                                            const float* __restrict__ b, int cols, int lane,
                                            float (&wv)[ITEMS], float (&bv)[ITEMS]) {
    if (w) {
        load_row<ITEMS>(w, cols, lane, wv, 1.0f);
    } else {
#pragma unroll
        for (int k = 0; k < ITEMS; k++) wv[k] = 1.0f;
    }
    if (b) {
        load_row<ITEMS>(b, cols, lane, bv, 0.0f);
    } else {
#pragma unroll
        for (int k = 0; k < ITEMS; k++) bv[k] = 0.0f;
    }
}

// Normalize the row held in v (in place) and record its mean and rstd.
template <int ITEMS>
__device__ __forceinline__ void normalize_registers(float (&v)[ITEMS], const float (&wv)[ITEMS],
                                                    const float (&bv)[ITEMS], float* mean,
                                                    float* rstd, int row, int cols, float eps,
                                                    int lane) {
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < ITEMS; k++) sum += v[k];
    float m = warp_sum(sum) / cols;
    float var = 0.0f;
#pragma unroll
    for (int k = 0; k < ITEMS; k++) {
        float c = row_column(k, lane) < cols ? v[k] - m : 0.0f;
        var += c * c;
    }
    float r = rsqrtf(warp_sum(var) / cols + eps);
#pragma unroll
    for (int k = 0; k < ITEMS; k++) v[k] = (v[k] - m) * r * wv[k] + bv[k];
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

// Persistent warps: warp i of the grid takes rows i, i + warps, ...; the next row's load
// is issued before the current row is reduced, so the memory system always has work.
template <int ITEMS>
__device__ void layernorm_rows_v4(const float* __restrict__ x, const float* __restrict__ w,
                                  const float* __restrict__ b, float* __restrict__ y,
                                  float* __restrict__ mean, float* __restrict__ rstd, int rows,
                                  int cols, float eps) {
    int lane = threadIdx.x % 32, warps = gridDim.x * (blockDim.x / 32);
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    float wv[ITEMS], bv[ITEMS], v[ITEMS], next[ITEMS];
    load_affine<ITEMS>(w, b, cols, lane, wv, bv);
    load_row<ITEMS>(x + (long long)row * cols, cols, lane, v, 0.0f);
    for (; row < rows; row += warps) {
        bool more = row + warps < rows;
        if (more) load_row<ITEMS>(x + (long long)(row + warps) * cols, cols, lane, next, 0.0f);
        normalize_registers<ITEMS>(v, wv, bv, mean, rstd, row, cols, eps, lane);
        store_row<ITEMS>(y + (long long)row * cols, cols, lane, v);
        if (more) {
#pragma unroll
            for (int k = 0; k < ITEMS; k++) v[k] = next[k];
        }
    }
}

// sum = a + r, y = LayerNorm(sum): a and r read once, sum and y written once.
template <int ITEMS>
__device__ void residual_layernorm_rows_v2(const float* __restrict__ a,
                                           const float* __restrict__ r, float* __restrict__ sum,
                                           const float* __restrict__ w,
                                           const float* __restrict__ b, float* __restrict__ y,
                                           float* __restrict__ mean, float* __restrict__ rstd,
                                           int rows, int cols, float eps) {
    int lane = threadIdx.x % 32, warps = gridDim.x * (blockDim.x / 32);
    float wv[ITEMS], bv[ITEMS];
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    load_affine<ITEMS>(w, b, cols, lane, wv, bv);
    for (; row < rows; row += warps) {
        long long base = (long long)row * cols;
        float v[ITEMS], rv[ITEMS];
        load_row<ITEMS>(a + base, cols, lane, v, 0.0f);
        load_row<ITEMS>(r + base, cols, lane, rv, 0.0f);
#pragma unroll
        for (int k = 0; k < ITEMS; k++) v[k] += rv[k];
        store_row<ITEMS>(sum + base, cols, lane, v);
        normalize_registers<ITEMS>(v, wv, bv, mean, rstd, row, cols, eps, lane);
        store_row<ITEMS>(y + base, cols, lane, v);
    }
}

// blockDim.x == 128 (4 warps); each warp takes rows warp, warp + 4 gridDim.x, ... and the
// block writes its partial dw, db (one row of `cols` each) at row blockIdx.x of the partials.
template <int ITEMS, bool PREFETCH>
__device__ void layernorm_backward_rows(const float* __restrict__ dy,
                                        const float* __restrict__ x,
                                        const float* __restrict__ w,
                                        const float* __restrict__ mean,
                                        const float* __restrict__ rstd, float* __restrict__ dx,
                                        float* __restrict__ dw_partial,
                                        float* __restrict__ db_partial, int rows, int cols) {
    __shared__ float shared_dw[4][32 * ITEMS], shared_db[4][32 * ITEMS];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, step = gridDim.x * 4;
    float wv[ITEMS], acc_w[ITEMS], acc_b[ITEMS], xv[ITEMS], g[ITEMS], next_x[ITEMS],
        next_g[ITEMS];
    if (w) load_row<ITEMS>(w, cols, lane, wv, 0.0f);
#pragma unroll
    for (int k = 0; k < ITEMS; k++) acc_w[k] = acc_b[k] = 0.0f;
    int row = blockIdx.x * 4 + warp;
    if (PREFETCH && row < rows) {
        load_row<ITEMS>(x + (long long)row * cols, cols, lane, next_x, 0.0f);
        load_row<ITEMS>(dy + (long long)row * cols, cols, lane, next_g, 0.0f);
    }
    for (; row < rows; row += step) {
        long long base = (long long)row * cols;
        if (PREFETCH) {
#pragma unroll
            for (int k = 0; k < ITEMS; k++) {
                xv[k] = next_x[k];
                g[k] = next_g[k];
            }
            if (row + step < rows) {
                load_row<ITEMS>(x + base + (long long)step * cols, cols, lane, next_x, 0.0f);
                load_row<ITEMS>(dy + base + (long long)step * cols, cols, lane, next_g, 0.0f);
            }
        } else {
            load_row<ITEMS>(x + base, cols, lane, xv, 0.0f);
            load_row<ITEMS>(dy + base, cols, lane, g, 0.0f);  // 0 past the row: adds nothing
        }
        float m = mean[row], r = rstd[row], sum_g = 0.0f, sum_gh = 0.0f;
#pragma unroll
        for (int k = 0; k < ITEMS; k++) {
            float h = (xv[k] - m) * r;
            acc_w[k] += g[k] * h;
            acc_b[k] += g[k];
            xv[k] = h;
            g[k] = w ? g[k] * wv[k] : g[k];
            sum_g += g[k];
            sum_gh += g[k] * h;
        }
        float mean_g = warp_sum(sum_g) / cols, mean_gh = warp_sum(sum_gh) / cols;
#pragma unroll
        for (int k = 0; k < ITEMS; k++) g[k] = r * (g[k] - mean_g - xv[k] * mean_gh);
        if (dx) store_row<ITEMS>(dx + base, cols, lane, g);
    }
#pragma unroll
    for (int k = 0; k < ITEMS; k++) {
        shared_dw[warp][row_column(k, lane)] = acc_w[k];
        shared_db[warp][row_column(k, lane)] = acc_b[k];
    }
    __syncthreads();
    for (int col = threadIdx.x; col < cols; col += blockDim.x) {
        long long out = (long long)blockIdx.x * cols + col;
        if (dw_partial)
            dw_partial[out] = shared_dw[0][col] + shared_dw[1][col] + shared_dw[2][col] + shared_dw[3][col];
        if (db_partial)
            db_partial[out] = shared_db[0][col] + shared_db[1][col] + shared_db[2][col] + shared_db[3][col];
    }
}

#define LAYERNORM_ROW_KERNELS(ITEMS, COLS)                                                      \
    extern "C" __global__ void layernorm_forward_v3_c##COLS(                                    \
        const float* x, const float* w, const float* b, float* y, float* mean, float* rstd,     \
        int rows, int cols, float eps) {                                                        \
        layernorm_row_v3<ITEMS>(x, w, b, y, mean, rstd, rows, cols, eps);                       \
    }                                                                                           \
    extern "C" __global__ void layernorm_forward_v4_c##COLS(                                    \
        const float* x, const float* w, const float* b, float* y, float* mean, float* rstd,     \
        int rows, int cols, float eps) {                                                        \
        layernorm_rows_v4<ITEMS>(x, w, b, y, mean, rstd, rows, cols, eps);                      \
    }                                                                                           \
    extern "C" __global__ void residual_layernorm_forward_v2_c##COLS(                           \
        const float* a, const float* r, float* sum, const float* w, const float* b, float* y,   \
        float* mean, float* rstd, int rows, int cols, float eps) {                              \
        residual_layernorm_rows_v2<ITEMS>(a, r, sum, w, b, y, mean, rstd, rows, cols, eps);     \
    }                                                                                           \
    extern "C" __global__ void __launch_bounds__(128) layernorm_backward_v2_c##COLS(            \
        const float* dy, const float* x, const float* w, const float* mean, const float* rstd,  \
        float* dx, float* dw_partial, float* db_partial, int rows, int cols) {                  \
        layernorm_backward_rows<ITEMS, false>(dy, x, w, mean, rstd, dx, dw_partial, db_partial, \
                                              rows, cols);                                      \
    }                                                                                           \
    extern "C" __global__ void __launch_bounds__(128) layernorm_backward_v3_c##COLS(            \
        const float* dy, const float* x, const float* w, const float* mean, const float* rstd,  \
        float* dx, float* dw_partial, float* db_partial, int rows, int cols) {                  \
        layernorm_backward_rows<ITEMS, true>(dy, x, w, mean, rstd, dx, dw_partial, db_partial,  \
                                             rows, cols);                                       \
    }

FOR_ROW_SIZES(LAYERNORM_ROW_KERNELS)
