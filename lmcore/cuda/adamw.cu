// AdamW (decoupled weight decay), the update of torch.optim.AdamW, float32:
//
//   p = p (1 - lr wd)
//   m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2
//   p = p - lr / c1 * m / (sqrt(v) / sqrt(c2) + eps),   c1 = 1 - b1^t, c2 = 1 - b2^t
//
// Reference: lmcore.cuda.reference.adamw (NumPy, float64).
// Versions:
//   v1  one launch per parameter tensor, every step of the update in one kernel (the
//       generic path takes about ten array operations, each a launch and a pass over memory)
//   v2  ONE launch for all the tensors of a model ("multi-tensor apply"): a table of
//       pointers, and a list of chunks that says which tensor and which elements each
//       block updates. A GPT has a hundred-odd small tensors: launches, not bytes, were
//       the cost.
//   v3  v2 with float4 loads and stores (tensors 16-byte aligned; a tensor's last
//       partial float4 done element by element)
//   v4  v3 with two float4 of each of p, g, m, v loaded before any arithmetic: eight
//       16-byte loads in flight per thread instead of four
// Each element moves 28 bytes (p, g, m, v read; p, m, v written).

__device__ __forceinline__ void adamw_element(float& p, float g, float& m, float& v, float lr,
                                              float decay, float beta1, float beta2, float eps,
                                              float step_size, float inv_sqrt_c2) {
    p *= 1.0f - lr * decay;
    m = beta1 * m + (1.0f - beta1) * g;
    v = beta2 * v + (1.0f - beta2) * g * g;
    p -= step_size * m / (sqrtf(v) * inv_sqrt_c2 + eps);
}

// step_size = lr / c1.
extern "C" __global__ void adamw_v1(float* __restrict__ p, const float* __restrict__ g,
                                    float* __restrict__ m, float* __restrict__ v, long long n,
                                    float lr, float decay, float beta1, float beta2, float eps,
                                    float step_size, float inv_sqrt_c2) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float pi = p[i], mi = m[i], vi = v[i];
        adamw_element(pi, g[i], mi, vi, lr, decay, beta1, beta2, eps, step_size, inv_sqrt_c2);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

// tables: pointers[4 * k + 0..3] = p, g, m, v of tensor k; sizes[k] its element count;
// hyper[2 * k + 0..1] = lr, weight decay of tensor k (groups may differ). Block b updates
// elements [chunk_start[b], chunk_start[b] + chunk_size) of tensor chunk_tensor[b].
extern "C" __global__ void adamw_v2(const unsigned long long* __restrict__ pointers,
                                    const long long* __restrict__ sizes,
                                    const float* __restrict__ hyper,
                                    const int* __restrict__ chunk_tensor,
                                    const long long* __restrict__ chunk_start, int chunk_size,
                                    float beta1, float beta2, float eps, float inv_c1,
                                    float inv_sqrt_c2) {
    int k = chunk_tensor[blockIdx.x];
    float* p = reinterpret_cast<float*>(pointers[4 * k + 0]);
    const float* g = reinterpret_cast<const float*>(pointers[4 * k + 1]);
    float* m = reinterpret_cast<float*>(pointers[4 * k + 2]);
    float* v = reinterpret_cast<float*>(pointers[4 * k + 3]);
    float lr = hyper[2 * k], decay = hyper[2 * k + 1];
    long long start = chunk_start[blockIdx.x];
    long long stop = min(sizes[k], start + chunk_size);
    for (long long i = start + threadIdx.x; i < stop; i += blockDim.x) {
        float pi = p[i], mi = m[i], vi = v[i];
        adamw_element(pi, g[i], mi, vi, lr, decay, beta1, beta2, eps, lr * inv_c1, inv_sqrt_c2);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" __global__ void adamw_v3(const unsigned long long* __restrict__ pointers,
                                    const long long* __restrict__ sizes,
                                    const float* __restrict__ hyper,
                                    const int* __restrict__ chunk_tensor,
                                    const long long* __restrict__ chunk_start, int chunk_size,
                                    float beta1, float beta2, float eps, float inv_c1,
                                    float inv_sqrt_c2) {
    int k = chunk_tensor[blockIdx.x];
    float* p = reinterpret_cast<float*>(pointers[4 * k + 0]);
    const float* g = reinterpret_cast<const float*>(pointers[4 * k + 1]);
    float* m = reinterpret_cast<float*>(pointers[4 * k + 2]);
    float* v = reinterpret_cast<float*>(pointers[4 * k + 3]);
    float lr = hyper[2 * k], decay = hyper[2 * k + 1], step_size = lr * inv_c1;
    long long start = chunk_start[blockIdx.x];  // a multiple of 4 (chunk_size is)
    long long stop = min(sizes[k], start + chunk_size);
    long long stop4 = start + (stop - start) / 4 * 4;
    for (long long i = start + 4 * threadIdx.x; i < stop4; i += 4 * blockDim.x) {
        float4 pv = *reinterpret_cast<float4*>(p + i);
        float4 gv = *reinterpret_cast<const float4*>(g + i);
        float4 mv = *reinterpret_cast<float4*>(m + i);
        float4 vv = *reinterpret_cast<float4*>(v + i);
        adamw_element(pv.x, gv.x, mv.x, vv.x, lr, decay, beta1, beta2, eps, step_size, inv_sqrt_c2);
        adamw_element(pv.y, gv.y, mv.y, vv.y, lr, decay, beta1, beta2, eps, step_size, inv_sqrt_c2);
        adamw_element(pv.z, gv.z, mv.z, vv.z, lr, decay, beta1, beta2, eps, step_size, inv_sqrt_c2);
        adamw_element(pv.w, gv.w, mv.w, vv.w, lr, decay, beta1, beta2, eps, step_size, inv_sqrt_c2);
        *reinterpret_cast<float4*>(p + i) = pv;
        *reinterpret_cast<float4*>(m + i) = mv;
        *reinterpret_cast<float4*>(v + i) = vv;
    }
    for (long long i = stop4 + threadIdx.x; i < stop; i += blockDim.x) {
        float pi = p[i], mi = m[i], vi = v[i];
        adamw_element(pi, g[i], mi, vi, lr, decay, beta1, beta2, eps, step_size, inv_sqrt_c2);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

__device__ __forceinline__ void adamw_float4(float4& p, float4 g, float4& m, float4& v, float lr,
                                             float decay, float beta1, float beta2, float eps,
                                             float step_size, float inv_sqrt_c2) {
    adamw_element(p.x, g.x, m.x, v.x, lr, decay, beta1, beta2, eps, step_size, inv_sqrt_c2);
    adamw_element(p.y, g.y, m.y, v.y, lr, decay, beta1, beta2, eps, step_size, inv_sqrt_c2);
    adamw_element(p.z, g.z, m.z, v.z, lr, decay, beta1, beta2, eps, step_size, inv_sqrt_c2);
    adamw_element(p.w, g.w, m.w, v.w, lr, decay, beta1, beta2, eps, step_size, inv_sqrt_c2);
}

extern "C" __global__ void adamw_v4(const unsigned long long* __restrict__ pointers,
                                    const long long* __restrict__ sizes,
                                    const float* __restrict__ hyper,
                                    const int* __restrict__ chunk_tensor,
                                    const long long* __restrict__ chunk_start, int chunk_size,
                                    float beta1, float beta2, float eps, float inv_c1,
                                    float inv_sqrt_c2) {
    const int UNROLL = 2;
    int k = chunk_tensor[blockIdx.x];
    float* p = reinterpret_cast<float*>(pointers[4 * k + 0]);
    const float* g = reinterpret_cast<const float*>(pointers[4 * k + 1]);
    float* m = reinterpret_cast<float*>(pointers[4 * k + 2]);
    float* v = reinterpret_cast<float*>(pointers[4 * k + 3]);
    float lr = hyper[2 * k], decay = hyper[2 * k + 1], step_size = lr * inv_c1;
    long long start = chunk_start[blockIdx.x];  // a multiple of 4 (chunk_size is)
    long long stop = min(sizes[k], start + chunk_size);
    long long n4 = (stop - start) / 4, stop4 = start + 4 * n4;
    float4* p4 = reinterpret_cast<float4*>(p + start);
    const float4* g4 = reinterpret_cast<const float4*>(g + start);
    float4* m4 = reinterpret_cast<float4*>(m + start);
    float4* v4 = reinterpret_cast<float4*>(v + start);
    for (long long i = threadIdx.x; i < n4; i += (long long)UNROLL * blockDim.x) {
        float4 pv[UNROLL], gv[UNROLL], mv[UNROLL], vv[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            long long j = i + (long long)u * blockDim.x;
            if (j < n4) {
                pv[u] = p4[j];
                gv[u] = g4[j];
                mv[u] = m4[j];
                vv[u] = v4[j];
            }
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            long long j = i + (long long)u * blockDim.x;
            if (j < n4) {
                adamw_float4(pv[u], gv[u], mv[u], vv[u], lr, decay, beta1, beta2, eps, step_size,
                             inv_sqrt_c2);
                p4[j] = pv[u];
                m4[j] = mv[u];
                v4[j] = vv[u];
            }
        }
    }
    for (long long i = stop4 + threadIdx.x; i < stop; i += blockDim.x) {
        float pi = p[i], mi = m[i], vi = v[i];
        adamw_element(pi, g[i], mi, vi, lr, decay, beta1, beta2, eps, step_size, inv_sqrt_c2);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}
