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
// v2 adds it with one exp (softmax_add), the arithmetic being what limited v1.
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
