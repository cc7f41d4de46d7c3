// CUDA kernels of the fused TD-Adapter (docs/model.md §4 op 2): the narrow elementwise work (max-difference over
// T, mix, BN1 backward), the d-wide gate and the column statistics. The matrix products run in cuBLAS
// through ATen (csrc/cuda/td_adapter.cpp); the per-element arithmetic is csrc/common/td_adapter_math.h,
// the same functions the CPU kernel runs. CUDA headers only (no torch headers: nvcc stays fast).
//
// Layouts: narrow tensors (M, h) and d-wide ones (M, d) are contiguous with rows ordered (B, T, N), so
// frame t of token (b, n) is row (b*T + t)*N + n and a frame step is N*h (or N*d) elements.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "common/td_adapter_math.h"
#include "cuda/td_adapter_kernels.h"

namespace tds {
namespace td_adapter {
namespace cuda {
namespace {

// The launchers of this namespace share names with the per-element functions (gate_forward, ...), so
// the kernels call those through this alias.
namespace math = ::tds::td_adapter;

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t work) {
  const int64_t b = (work + kThreads - 1) / kThreads;
  return unsigned(b < 1 ? 1 : (b > (int64_t(1) << 30) ? (int64_t(1) << 30) : b));
}

// ---- conversions between the storage types and the accumulation type ----------------------------
__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_acc(float x);
template <>
__device__ __forceinline__ float from_acc<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

template <typename T>
struct Acc { using type = float; };
template <>
struct Acc<double> { using type = double; };

template <typename T>
__device__ __forceinline__ T store_cast(typename Acc<T>::type x) { return from_acc<T>(x); }
template <>
__device__ __forceinline__ double store_cast<double>(double x) { return x; }

// VEC consecutive elements moved with one 16-byte (or wider) access.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

// ---- column statistics: partial[chunk, c] = sum over the chunk's rows of col_term(...) ----------------
template <typename acc_t, int mode>
__global__ void col_sum_kernel(const acc_t* __restrict__ x, const acc_t* __restrict__ y,
                               const acc_t* __restrict__ center, double* __restrict__ partial, int64_t M,
                               int64_t C) {
  __shared__ double sh[8][33];
  const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * kColRows;
  const int64_t r1 = r0 + kColRows < M ? r0 + kColRows : M;
  double acc = 0.0;
  if (c < C) {
    const double cen = mode == kSum ? 0.0 : double(center[c]);
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
      const double xv = double(x[r * C + c]);
      const double yv = mode == kCross ? double(y[r * C + c]) : 0.0;
      acc += math::col_term(mode, xv, yv, cen);
    }
  }
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    double s = 0.0;
    for (int i = 0; i < 8; ++i) s += sh[i][threadIdx.x];
    partial[int64_t(blockIdx.y) * C + c] = s;
  }
}

// ---- max-difference over frames: one thread per (clip, token, channel) column of T values ----------
template <typename acc_t>
__global__ void maxdiff_forward_kernel(const acc_t* __restrict__ b, const acc_t* __restrict__ center,
                                       const acc_t* __restrict__ scale, acc_t* __restrict__ m, int64_t B,
                                       int T, int64_t N, int64_t h, int half) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * N * h) return;
  const int64_t c = idx % h, n = (idx / h) % N, bb = idx / (h * N);
  const int64_t stride = N * h, off = (bb * T * N + n) * h + c;
  const acc_t cen = center[c], sc = scale[c];
  for (int t = 0; t < T; ++t)
    m[off + t * stride] =
        math::maxdiff_value(b + off, stride, t, math::window_lo(t, half), math::window_hi(t, half, T), cen, sc);
}

template <typename acc_t>
__global__ void maxdiff_backward_kernel(const acc_t* __restrict__ b, const acc_t* __restrict__ center,
                                        const acc_t* __restrict__ scale, const acc_t* __restrict__ dm,
                                        acc_t* __restrict__ dv, int64_t B, int T, int64_t N, int64_t h, int half) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * N * h) return;
  const int64_t c = idx % h, n = (idx / h) % N, bb = idx / (h * N);
  const int64_t stride = N * h, off = (bb * T * N + n) * h + c;
  const acc_t cen = center[c], sc = scale[c];
  for (int t = 0; t < T; ++t) dv[off + t * stride] = dm[off + t * stride];
  // the window of frame t gives its gradient back through its first argmax (this thread owns the column)
  for (int t = 0; t < T; ++t) {
    const int a =
        math::window_argmax(b + off, stride, math::window_lo(t, half), math::window_hi(t, half, T), cen, sc);
    dv[off + a * stride] -= dm[off + t * stride];
  }
}

// ---- channel-mean mix: one warp per row of h values (may run in place) ---------------------------
template <typename acc_t>
__global__ void mix_rows_kernel(const acc_t* x, const acc_t* __restrict__ center, acc_t* out, int64_t M,
                                int64_t h, bool mix) {
  const int64_t row = int64_t(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= M) return;  // whole warps leave together: row is uniform within a warp
  const acc_t* xr = x + row * h;
  acc_t s = 0;
  if (mix)
    for (int64_t c = lane; c < h; c += 32) s += xr[c];
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  const acc_t mean = s / acc_t(h);
  for (int64_t c = lane; c < h; c += 32) out[row * h + c] = math::mix_value(xr[c], mean, center[c], mix);
}

// ---- BN1 backward, elementwise on (M, h) -----------------------------------------------------------
template <typename acc_t>
__global__ void bn1_backward_kernel(const acc_t* dv, const acc_t* __restrict__ b, const acc_t* __restrict__ center,
                                    const acc_t* __restrict__ invstd, const acc_t* __restrict__ scale,
                                    const acc_t* __restrict__ k_mean, const acc_t* __restrict__ k_xhat, acc_t* db,
                                    int64_t n, int64_t h) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int64_t c = i % h;
  db[i] = math::bn1_backward(dv[i], b[i], center[c], invstd[c], scale[c], k_mean[c], k_xhat[c]);
}

// ---- the gate, d-wide: VEC elements per thread step with 16-byte loads of u / g / out -------------
template <typename scalar_t, int VEC>
__global__ void gate_forward_kernel(const scalar_t* __restrict__ u, const typename Acc<scalar_t>::type* __restrict__ y,
                                    scalar_t* __restrict__ out, int64_t n, bool gated) {
  using acc_t = typename Acc<scalar_t>::type;
  const int64_t step = int64_t(gridDim.x) * blockDim.x * VEC;
  for (int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC; i < n; i += step) {
    if (i + VEC <= n) {
      const Pack<scalar_t, VEC> up = *reinterpret_cast<const Pack<scalar_t, VEC>*>(u + i);
      const Pack<acc_t, VEC> yp = *reinterpret_cast<const Pack<acc_t, VEC>*>(y + i);
      Pack<scalar_t, VEC> op;
#pragma unroll
      for (int j = 0; j < VEC; ++j)
        op.v[j] = store_cast<scalar_t>(math::gate_forward(to_acc(up.v[j]), yp.v[j], gated));
      *reinterpret_cast<Pack<scalar_t, VEC>*>(out + i) = op;
    } else {
      for (int64_t j = i; j < n; ++j) out[j] = store_cast<scalar_t>(math::gate_forward(to_acc(u[j]), y[j], gated));
    }
  }
}

template <typename scalar_t, int VEC>
__global__ void gate_backward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ u,
                                     typename Acc<scalar_t>::type* __restrict__ y_dy,
                                     typename Acc<scalar_t>::type* __restrict__ du, int64_t n, bool gated) {
  using acc_t = typename Acc<scalar_t>::type;
  const int64_t step = int64_t(gridDim.x) * blockDim.x * VEC;
  for (int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC; i < n; i += step) {
    if (i + VEC <= n) {
      const Pack<scalar_t, VEC> gp = *reinterpret_cast<const Pack<scalar_t, VEC>*>(g + i);
      const Pack<scalar_t, VEC> up = *reinterpret_cast<const Pack<scalar_t, VEC>*>(u + i);
      Pack<acc_t, VEC> yp = *reinterpret_cast<const Pack<acc_t, VEC>*>(y_dy + i);
      Pack<acc_t, VEC> dp;
#pragma unroll
      for (int j = 0; j < VEC; ++j)
        math::gate_backward(to_acc(gp.v[j]), to_acc(up.v[j]), yp.v[j], gated, &dp.v[j], &yp.v[j]);
      *reinterpret_cast<Pack<acc_t, VEC>*>(y_dy + i) = yp;
      *reinterpret_cast<Pack<acc_t, VEC>*>(du + i) = dp;
    } else {
      for (int64_t j = i; j < n; ++j) {
        acc_t a, d;
        math::gate_backward(to_acc(g[j]), to_acc(u[j]), y_dy[j], gated, &a, &d);
        du[j] = a;
        y_dy[j] = d;
      }
    }
  }
}

// True when every pointer allows the VEC-wide accesses of scalar_t and of its accumulation type.
template <typename scalar_t, int VEC>
bool aligned(std::initializer_list<const void*> storage, std::initializer_list<const void*> accs) {
  using acc_t = typename Acc<scalar_t>::type;
  for (const void* p : storage)
    if (reinterpret_cast<uintptr_t>(p) % (sizeof(scalar_t) * VEC) != 0) return false;
  for (const void* p : accs)
    if (reinterpret_cast<uintptr_t>(p) % (sizeof(acc_t) * VEC) != 0) return false;
  return true;
}

template <typename scalar_t>
void launch_gate_forward(const void* u, const void* y, void* out, int64_t n, bool gated, cudaStream_t stream) {
  using acc_t = typename Acc<scalar_t>::type;
  constexpr int V = 16 / sizeof(scalar_t);
  const auto* up = static_cast<const scalar_t*>(u);
  const auto* yp = static_cast<const acc_t*>(y);
  auto* op = static_cast<scalar_t*>(out);
  if (aligned<scalar_t, V>({u, out}, {y}))
    gate_forward_kernel<scalar_t, V><<<blocks_for((n + V - 1) / V), kThreads, 0, stream>>>(up, yp, op, n, gated);
  else
    gate_forward_kernel<scalar_t, 1><<<blocks_for(n), kThreads, 0, stream>>>(up, yp, op, n, gated);
}

template <typename scalar_t>
void launch_gate_backward(const void* g, const void* u, void* y_dy, void* du, int64_t n, bool gated,
                          cudaStream_t stream) {
  using acc_t = typename Acc<scalar_t>::type;
  constexpr int V = 16 / sizeof(scalar_t);
  const auto* gp = static_cast<const scalar_t*>(g);
  const auto* up = static_cast<const scalar_t*>(u);
  auto* yp = static_cast<acc_t*>(y_dy);
  auto* dp = static_cast<acc_t*>(du);
  if (aligned<scalar_t, V>({g, u}, {y_dy, du}))
    gate_backward_kernel<scalar_t, V><<<blocks_for((n + V - 1) / V), kThreads, 0, stream>>>(gp, up, yp, dp, n, gated);
  else
    gate_backward_kernel<scalar_t, 1><<<blocks_for(n), kThreads, 0, stream>>>(gp, up, yp, dp, n, gated);
}

template <typename acc_t>
void launch_col_sum(const void* x, const void* y, const void* center, double* partial, int64_t M, int64_t C,
                    int mode, cudaStream_t stream) {
  const dim3 grid(unsigned((C + 31) / 32), unsigned(col_chunks(M)));
  const dim3 block(32, 8);
  const auto* xp = static_cast<const acc_t*>(x);
  const auto* yp = static_cast<const acc_t*>(y);
  const auto* cp = static_cast<const acc_t*>(center);
  if (mode == kSum) col_sum_kernel<acc_t, kSum><<<grid, block, 0, stream>>>(xp, yp, cp, partial, M, C);
  else if (mode == kCentredSquares)
    col_sum_kernel<acc_t, kCentredSquares><<<grid, block, 0, stream>>>(xp, yp, cp, partial, M, C);
  else col_sum_kernel<acc_t, kCross><<<grid, block, 0, stream>>>(xp, yp, cp, partial, M, C);
}

}  // namespace

int col_sum(DType acc, const void* x, const void* y, const void* center, double* partial, int64_t M, int64_t C,
             int mode, cudaStream_t stream) {
  if (acc == DType::kFloat64) launch_col_sum<double>(x, y, center, partial, M, C, mode, stream);
  else launch_col_sum<float>(x, y, center, partial, M, C, mode, stream);
  return int(cudaGetLastError());
}

int maxdiff_forward(DType acc, const void* b, const void* center, const void* scale, void* m, int64_t B,
                     int64_t T, int64_t N, int64_t h, int half, cudaStream_t stream) {
  const unsigned grid = blocks_for(B * N * h);
  if (acc == DType::kFloat64)
    maxdiff_forward_kernel<double><<<grid, kThreads, 0, stream>>>(
        static_cast<const double*>(b), static_cast<const double*>(center), static_cast<const double*>(scale),
        static_cast<double*>(m), B, int(T), N, h, half);
  else
    maxdiff_forward_kernel<float><<<grid, kThreads, 0, stream>>>(
        static_cast<const float*>(b), static_cast<const float*>(center), static_cast<const float*>(scale),
        static_cast<float*>(m), B, int(T), N, h, half);
  return int(cudaGetLastError());
}

int maxdiff_backward(DType acc, const void* b, const void* center, const void* scale, const void* dm, void* dv,
                      int64_t B, int64_t T, int64_t N, int64_t h, int half, cudaStream_t stream) {
  const unsigned grid = blocks_for(B * N * h);
  if (acc == DType::kFloat64)
    maxdiff_backward_kernel<double><<<grid, kThreads, 0, stream>>>(
        static_cast<const double*>(b), static_cast<const double*>(center), static_cast<const double*>(scale),
        static_cast<const double*>(dm), static_cast<double*>(dv), B, int(T), N, h, half);
  else
    maxdiff_backward_kernel<float><<<grid, kThreads, 0, stream>>>(
        static_cast<const float*>(b), static_cast<const float*>(center), static_cast<const float*>(scale),
        static_cast<const float*>(dm), static_cast<float*>(dv), B, int(T), N, h, half);
  return int(cudaGetLastError());
}

int mix_rows(DType acc, const void* x, const void* center, void* out, int64_t M, int64_t h, bool mix,
              cudaStream_t stream) {
  const unsigned grid = blocks_for(M * 32);
  if (acc == DType::kFloat64)
    mix_rows_kernel<double><<<grid, kThreads, 0, stream>>>(static_cast<const double*>(x),
                                                           static_cast<const double*>(center),
                                                           static_cast<double*>(out), M, h, mix);
  else
    mix_rows_kernel<float><<<grid, kThreads, 0, stream>>>(static_cast<const float*>(x),
                                                          static_cast<const float*>(center),
                                                          static_cast<float*>(out), M, h, mix);
  return int(cudaGetLastError());
}

int gate_forward(DType dtype, const void* u, const void* y, void* out, int64_t n, bool gated,
                  cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat64: launch_gate_forward<double>(u, y, out, n, gated, stream); break;
    case DType::kFloat16: launch_gate_forward<__half>(u, y, out, n, gated, stream); break;
    case DType::kBFloat16: launch_gate_forward<__nv_bfloat16>(u, y, out, n, gated, stream); break;
    default: launch_gate_forward<float>(u, y, out, n, gated, stream); break;
  }
  return int(cudaGetLastError());
}

int gate_backward(DType dtype, const void* g, const void* u, void* y_dy, void* du, int64_t n, bool gated,
                   cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat64: launch_gate_backward<double>(g, u, y_dy, du, n, gated, stream); break;
    case DType::kFloat16: launch_gate_backward<__half>(g, u, y_dy, du, n, gated, stream); break;
    case DType::kBFloat16: launch_gate_backward<__nv_bfloat16>(g, u, y_dy, du, n, gated, stream); break;
    default: launch_gate_backward<float>(g, u, y_dy, du, n, gated, stream); break;
  }
  return int(cudaGetLastError());
}

int bn1_backward(DType acc, const void* dv, const void* b, const void* center, const void* invstd,
                  const void* scale, const void* k_mean, const void* k_xhat, void* db, int64_t M, int64_t h,
                  cudaStream_t stream) {
  const unsigned grid = blocks_for(M * h);
  if (acc == DType::kFloat64)
    bn1_backward_kernel<double><<<grid, kThreads, 0, stream>>>(
        static_cast<const double*>(dv), static_cast<const double*>(b), static_cast<const double*>(center),
        static_cast<const double*>(invstd), static_cast<const double*>(scale), static_cast<const double*>(k_mean),
        static_cast<const double*>(k_xhat), static_cast<double*>(db), M * h, h);
  else
    bn1_backward_kernel<float><<<grid, kThreads, 0, stream>>>(
        static_cast<const float*>(dv), static_cast<const float*>(b), static_cast<const float*>(center),
        static_cast<const float*>(invstd), static_cast<const float*>(scale), static_cast<const float*>(k_mean),
        static_cast<const float*>(k_xhat), static_cast<float*>(db), M * h, h);
  return int(cudaGetLastError());
}

}  // namespace cuda
}  // namespace td_adapter
}  // namespace tds
