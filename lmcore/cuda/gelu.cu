// GELU in the tanh form of GPT-2, forward and backward, float32.
//
//   y = x s,  s = 0.5 (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   dy/dx = s + 0.5 x (1 - tanh(u)^2) du/dx,  du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
//
// Reference: lmcore.cuda.reference.gelu / gelu_backward (NumPy, float64).
// Versions:
//   v1  one thread per element, grid-stride loop: the obvious kernel
//   v2  each thread moves 16 bytes (float4) per load and store: fewer, wider
//       memory transactions; the element count's tail (n % 4) is done by v1's loop
// Both read each input once and write each output once, so the floor is
// bytes / bandwidth: 8 bytes per element forward, 12 backward.

#define GELU_C 0.7978845608028654f  // sqrt(2 / pi)
#define GELU_K 0.044715f

__device__ __forceinline__ float gelu_value(float x) {
    float u = GELU_C * (x + GELU_K * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

__device__ __forceinline__ float gelu_slope(float x) {
    float x2 = x * x;
    float t = tanhf(GELU_C * x * (1.0f + GELU_K * x2));
    float du = GELU_C * (1.0f + 3.0f * GELU_K * x2);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

extern "C" __global__ void gelu_forward_v1(const float* __restrict__ x, float* __restrict__ y,
                                           long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        y[i] = gelu_value(x[i]);
    }
}

extern "C" __global__ void gelu_backward_v1(const float* __restrict__ x,
                                            const float* __restrict__ grad,
                                            float* __restrict__ dx, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        dx[i] = grad[i] * gelu_slope(x[i]);
    }
}

// v2: x, y, grad and dx must be 16-byte aligned (the wrapper checks).
extern "C" __global__ void gelu_forward_v2(const float* __restrict__ x, float* __restrict__ y,
                                           long long n) {
    long long n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    long long stride = (long long)gridDim.x * blockDim.x;
    long long start = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    for (long long i = start; i < n4; i += stride) {
        float4 v = x4[i];
        v.x = gelu_value(v.x);
        v.y = gelu_value(v.y);
        v.z = gelu_value(v.z);
        v.w = gelu_value(v.w);
        y4[i] = v;
    }
    for (long long i = 4 * n4 + start; i < n; i += stride) {
        y[i] = gelu_value(x[i]);
    }
}

extern "C" __global__ void gelu_backward_v2(const float* __restrict__ x,
                                            const float* __restrict__ grad,
                                            float* __restrict__ dx, long long n) {
    long long n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const float4* g4 = reinterpret_cast<const float4*>(grad);
    float4* d4 = reinterpret_cast<float4*>(dx);
    long long stride = (long long)gridDim.x * blockDim.x;
    long long start = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    for (long long i = start; i < n4; i += stride) {
        float4 v = x4[i];
        float4 g = g4[i];
        g.x *= gelu_slope(v.x);
        g.y *= gelu_slope(v.y);
        g.z *= gelu_slope(v.z);
        g.w *= gelu_slope(v.w);
        d4[i] = g;
    }
    for (long long i = 4 * n4 + start; i < n; i += stride) {
        dx[i] = grad[i] * gelu_slope(x[i]);
    }
}
