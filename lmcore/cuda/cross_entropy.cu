// Softmax cross-entropy from logits over a vocabulary of V classes, fused: the (N, V)
// probabilities are never written in the forward pass.
//
//   lse = log sum_c exp(x_c),  loss = lse - x_t              (t the target)
//   with label smoothing s:    loss = (1 - s)(lse - x_t) + s (lse - mean_c x_c)
//   dloss/dx_c = w (exp(x_c - lse) - (1 - s)[c = t] - s / V)  (w: the row's weight)
//
// Rows whose target equals ignore_index get loss 0 and gradient 0.
// Reference: lmcore.cuda.reference.cross_entropy (NumPy, float64).
// One block per row. The forward is one pass over the row with an online softmax (a
// running max and a rescaled running sum), merged across the block; it saves lse (one
// float a row), and the backward recomputes exp(x - lse) as it writes the gradient.
// Forward versions: v1 merges each element as a one-element state (two exps an element);
// v2 adds it with one exp (softmax_add), the arithmetic being what limited v1; v3 reads
// the row's 16-byte-aligned middle as float4, UNROLL loads in flight per thread before
// any arithmetic, and rescales its running sum once per batch of loads (a row of V = 50257
// floats starts anywhere mod 16 bytes: its head and tail, at most 3 elements each, are
// read one by one). Backward v2 writes the gradient the same way, float4 in and out.
#include "common.cuh"

// Merge the block's online-softmax states; every thread gets the row's (max, sum).
__device__ __forceinline__ void block_softmax_merge(float& m, float& s, float* scratch_m,
                                                    float* scratch_s) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    warp_softmax_merge(m, s);
    if (lane == 0) {
        scratch_m[warp] = m;
        scratch_s[warp] = s;
    }
    __syncthreads();
    m = lane < warps ? scratch_m[lane] : -INFINITY;
    s = lane < warps ? scratch_s[lane] : 0.0f;
    warp_softmax_merge(m, s);
}

// Merge the block's states, then thread 0 writes the row's loss and lse.
__device__ __forceinline__ void finish_row(const float* xr, float m, float s, float total,
                                           const long long* __restrict__ targets,
                                           float* __restrict__ losses, float* __restrict__ lse_out,
                                           int row, int classes, long long ignore_index,
                                           float smoothing, float* scratch_m, float* scratch_s,
                                           float* scratch) {
    block_softmax_merge(m, s, scratch_m, scratch_s);
    if (smoothing != 0.0f) total = block_sum(total, scratch);
    if (threadIdx.x == 0) {
        float lse = m + logf(s);
        long long t = targets[row];
        float loss = 0.0f;
        if (t != ignore_index && (t < 0 || t >= classes)) {
            loss = NAN;  // the wrapper checks targets; never read outside the row
        } else if (t != ignore_index) {
            loss = (1.0f - smoothing) * (lse - xr[t]);
            if (smoothing != 0.0f) loss += smoothing * (lse - total / classes);
        }
        losses[row] = loss;
        lse_out[row] = lse;
    }
}

// Elements of the row before its first 16-byte boundary (0 to 3), at most `classes`.
__device__ __forceinline__ int unaligned_head(const float* xr, int classes) {
    int head = (int)(((16u - (unsigned)((unsigned long long)xr & 15u)) & 15u) / 4u);
    return head < classes ? head : classes;
}

template <bool ONE_EXP>
__device__ void cross_entropy_row(const float* __restrict__ logits,
                                                 const long long* __restrict__ targets,
                                                 float* __restrict__ losses,
                                                 float* __restrict__ lse_out, int rows,
                                                 int classes, long long ignore_index,
                                                 float smoothing) {
    __shared__ float scratch_m[32], scratch_s[32], scratch[32];
    int row = blockIdx.x;
    const float* xr = logits + (long long)row * classes;
    float m = -INFINITY, s = 0.0f, total = 0.0f;
    for (int j = threadIdx.x; j < classes; j += blockDim.x) {
        float v = xr[j];
        if (ONE_EXP)
            softmax_add(m, s, v);
        else
            softmax_merge(m, s, v, 1.0f);
        total += v;
    }
    finish_row(xr, m, s, total, targets, losses, lse_out, row, classes, ignore_index, smoothing,
               scratch_m, scratch_s, scratch);
}

extern "C" __global__ void cross_entropy_forward(const float* logits, const long long* targets,
                                                 float* losses, float* lse, int rows,
                                                 int classes, long long ignore_index,
                                                 float smoothing) {
    cross_entropy_row<false>(logits, targets, losses, lse, rows, classes, ignore_index, smoothing);
}

extern "C" __global__ void cross_entropy_forward_v2(const float* logits, const long long* targets,
                                                    float* losses, float* lse, int rows,
                                                    int classes, long long ignore_index,
                                                    float smoothing) {
    cross_entropy_row<true>(logits, targets, losses, lse, rows, classes, ignore_index, smoothing);
}

template <int UNROLL>
__device__ void cross_entropy_row_v3(const float* __restrict__ logits,
                                     const long long* __restrict__ targets,
                                     float* __restrict__ losses, float* __restrict__ lse_out,
                                     int rows, int classes, long long ignore_index,
                                     float smoothing) {
    __shared__ float scratch_m[32], scratch_s[32], scratch[32];
    int row = blockIdx.x;
    const float* xr = logits + (long long)row * classes;
    int head = unaligned_head(xr, classes), n4 = (classes - head) / 4, tail = head + 4 * n4;
    float m = -INFINITY, s = 0.0f, total = 0.0f;
    if (threadIdx.x < head) {
        float v = xr[threadIdx.x];
        softmax_add(m, s, v);
        total += v;
    }
    if (threadIdx.x < classes - tail) {
        float v = xr[tail + threadIdx.x];
        softmax_add(m, s, v);
        total += v;
    }
    const float4* body = reinterpret_cast<const float4*>(xr + head);
    for (int i = threadIdx.x; i < n4; i += blockDim.x * UNROLL) {
        float4 buf[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {  // all loads first: UNROLL x 16 bytes in flight
            int j = i + u * blockDim.x;
            buf[u] = j < n4 ? body[j] : make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
        }
        float top = m;
#pragma unroll
        for (int u = 0; u < UNROLL; u++)
            top = fmaxf(top, fmaxf(fmaxf(buf[u].x, buf[u].y), fmaxf(buf[u].z, buf[u].w)));
        if (top == -INFINITY) continue;
        if (m != -INFINITY) s *= expf(m - top);  // one rescale for the whole batch
        m = top;
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            if (i + u * blockDim.x < n4) {
                s += expf(buf[u].x - m) + expf(buf[u].y - m) + expf(buf[u].z - m) +
                     expf(buf[u].w - m);
                total += (buf[u].x + buf[u].y) + (buf[u].z + buf[u].w);
            }
        }
    }
    finish_row(xr, m, s, total, targets, losses, lse_out, row, classes, ignore_index, smoothing,
               scratch_m, scratch_s, scratch);
}

extern "C" __global__ void cross_entropy_forward_v3(const float* logits, const long long* targets,
                                                    float* losses, float* lse, int rows,
                                                    int classes, long long ignore_index,
                                                    float smoothing) {
    cross_entropy_row_v3<4>(logits, targets, losses, lse, rows, classes, ignore_index, smoothing);
}

// weight: the gradient of the total with respect to each row's loss, read at
// weight[row * weight_stride] (stride 0: one weight for every row, e.g. 1 / count).
extern "C" __global__ void cross_entropy_backward(const float* __restrict__ logits,
                                                  const long long* __restrict__ targets,
                                                  const float* __restrict__ lse,
                                                  const float* __restrict__ weight,
                                                  int weight_stride, float* __restrict__ dlogits,
                                                  int rows, int classes, long long ignore_index,
                                                  float smoothing) {
    int row = blockIdx.x;
    long long base = (long long)row * classes;
    long long t = targets[row];
    float w = t == ignore_index ? 0.0f : weight[(long long)row * weight_stride];
    float l = lse[row], uniform = smoothing / classes;
    for (int j = threadIdx.x; j < classes; j += blockDim.x) {
        float p = expf(logits[base + j] - l);
        dlogits[base + j] = w * (p - (j == t ? 1.0f - smoothing : 0.0f) - uniform);
    }
}

__device__ __forceinline__ float cross_entropy_grad(float x, int j, float lse, float w,
                                                   long long t, float smoothing,
                                                   float uniform) {
    return w * (expf(x - lse) - (j == t ? 1.0f - smoothing : 0.0f) - uniform);
}

// v2: as v1, the aligned middle of the row as float4 with UNROLL loads in flight. logits
// and dlogits must have the same alignment (both 16-byte aligned arrays).
template <int UNROLL>
__device__ void cross_entropy_backward_row_v2(const float* __restrict__ logits,
                                              const long long* __restrict__ targets,
                                              const float* __restrict__ lse,
                                              const float* __restrict__ weight,
                                              int weight_stride, float* __restrict__ dlogits,
                                              int classes, long long ignore_index,
                                              float smoothing) {
    int row = blockIdx.x;
    long long base = (long long)row * classes, t = targets[row];
    float w = t == ignore_index ? 0.0f : weight[(long long)row * weight_stride];
    float l = lse[row], uniform = smoothing / classes;
    const float* xr = logits + base;
    float* dr = dlogits + base;
    int head = unaligned_head(xr, classes), n4 = (classes - head) / 4, tail = head + 4 * n4;
    int j = threadIdx.x;
    if (j < head) dr[j] = cross_entropy_grad(xr[j], j, l, w, t, smoothing, uniform);
    if (tail + j < classes)
        dr[tail + j] = cross_entropy_grad(xr[tail + j], tail + j, l, w, t, smoothing, uniform);
    const float4* body = reinterpret_cast<const float4*>(xr + head);
    float4* out = reinterpret_cast<float4*>(dr + head);
    for (int i = threadIdx.x; i < n4; i += blockDim.x * UNROLL) {
        float4 buf[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++)
            if (i + u * blockDim.x < n4) buf[u] = body[i + u * blockDim.x];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int k = i + u * blockDim.x, col = head + 4 * k;
            if (k < n4) {
                float4 g;
                g.x = cross_entropy_grad(buf[u].x, col, l, w, t, smoothing, uniform);
                g.y = cross_entropy_grad(buf[u].y, col + 1, l, w, t, smoothing, uniform);
                g.z = cross_entropy_grad(buf[u].z, col + 2, l, w, t, smoothing, uniform);
                g.w = cross_entropy_grad(buf[u].w, col + 3, l, w, t, smoothing, uniform);
                out[k] = g;
            }
        }
    }
}

extern "C" __global__ void cross_entropy_backward_v2(const float* logits,
                                                     const long long* targets, const float* lse,
                                                     const float* weight, int weight_stride,
                                                     float* dlogits, int rows, int classes,
                                                     long long ignore_index, float smoothing) {
    cross_entropy_backward_row_v2<4>(logits, targets, lse, weight, weight_stride, dlogits,
                                     classes, ignore_index, smoothing);
}
