// Matrix product C = A B for row-major float32 A (M, K), B (K, N), C (M, N): the
// kernel every GPU course writes, kept here for teaching. lmcore's layers call cuBLAS,
// which these versions are measured against.
//
// Reference: lmcore.cuda.reference.matmul (NumPy, float64).
// Versions:
//   v1  one thread per element of C, reading its row of A and column of B from global
//       memory: 2K loads for 2K flops, so memory, not arithmetic, sets the pace
//   v2  32 x 32 tiles of A and B staged in shared memory: each loaded value is used by
//       32 threads, 32 times fewer global loads
//   v3  a 128 x 128 tile of C per block of 256 threads, 8 x 8 outputs per thread held in
//       registers (register blocking): each value read from shared memory feeds 8 FMAs
// All handle any M, N, K (loads past the edge read zeros, stores past it are skipped).

extern "C" __global__ void matmul_v1(const float* __restrict__ a, const float* __restrict__ b,
                                     float* __restrict__ c, int m, int n, int k) {
    int row = blockIdx.y * blockDim.y + threadIdx.y, col = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= m || col >= n) return;
    float acc = 0.0f;
    for (int i = 0; i < k; i++) acc += a[(long long)row * k + i] * b[(long long)i * n + col];
    c[(long long)row * n + col] = acc;
}

#define TILE 32

// blockDim (32, 32).
extern "C" __global__ void matmul_v2(const float* __restrict__ a, const float* __restrict__ b,
                                     float* __restrict__ c, int m, int n, int k) {
    __shared__ float as[TILE][TILE], bs[TILE][TILE];
    int tx = threadIdx.x, ty = threadIdx.y;
    int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < k; k0 += TILE) {
        as[ty][tx] = row < m && k0 + tx < k ? a[(long long)row * k + k0 + tx] : 0.0f;
        bs[ty][tx] = k0 + ty < k && col < n ? b[(long long)(k0 + ty) * n + col] : 0.0f;
        __syncthreads();
#pragma unroll
        for (int i = 0; i < TILE; i++) acc += as[ty][i] * bs[i][tx];
        __syncthreads();
    }
    if (row < m && col < n) c[(long long)row * n + col] = acc;
}

#define BM 128
#define BN 128
#define BK 8
#define TM 8
#define TN 8

// blockDim 256 = (BM / TM) * (BN / TN).
extern "C" __global__ void __launch_bounds__(256) matmul_v3(const float* __restrict__ a,
                                                            const float* __restrict__ b,
                                                            float* __restrict__ c, int m, int n,
                                                            int k) {
    __shared__ float as[BK][BM];  // A's tile transposed: a thread reads TM rows at one k
    __shared__ float bs[BK][BN];
    int tid = threadIdx.x;
    int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    int tr = tid / (BN / TN), tc = tid % (BN / TN);
    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TN; j++) acc[i][j] = 0.0f;
    float a_reg[TM], b_reg[TN];
    for (int k0 = 0; k0 < k; k0 += BK) {
        for (int idx = tid; idx < BM * BK; idx += 256) {
            int r = idx / BK, q = idx % BK;
            as[q][r] = row0 + r < m && k0 + q < k ? a[(long long)(row0 + r) * k + k0 + q] : 0.0f;
        }
        for (int idx = tid; idx < BK * BN; idx += 256) {
            int q = idx / BN, s = idx % BN;
            bs[q][s] = k0 + q < k && col0 + s < n ? b[(long long)(k0 + q) * n + col0 + s] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int q = 0; q < BK; q++) {
#pragma unroll
            for (int i = 0; i < TM; i++) a_reg[i] = as[q][tr * TM + i];
#pragma unroll
            for (int j = 0; j < TN; j++) b_reg[j] = bs[q][tc * TN + j];
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++) acc[i][j] += a_reg[i] * b_reg[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TM; i++) {
        int row = row0 + tr * TM + i;
#pragma unroll
        for (int j = 0; j < TN; j++) {
            int col = col0 + tc * TN + j;
            if (row < m && col < n) c[(long long)row * n + col] = acc[i][j];
        }
    }
}
