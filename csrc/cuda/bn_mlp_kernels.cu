// CUDA kernels of the fused side-block MLP (tds::bn_mlp_forward / _backward): the per-element work and
// the column statistics; the GEMMs are cuBLAS calls made by the host code (common/bn_mlp_host.h via
// csrc/cuda/bn_mlp.cpp). Only CUDA headers and the shared per-element math (common/bn_mlp_math.h)
// here: no torch headers, so nvcc stays fast.
//
//  * col_partials: block (32, 8) over 32 columns x a block of rows; each thread sums a strided subset
//    of the rows of its column, the 8 row lanes are reduced in shared memory and one partial per
//    (row block, column) is written; the host adds the partials in float64 in block order.
//  * elementwise kernels: grid-stride loops; the column of element i is i % cols (rows contiguous).
// Arithmetic in fp32 (fp64 when acc_double).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/bn_mlp_math.h"

namespace tds {
namespace {

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(double v) { return static_cast<float>(v); }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename acc_t, typename T>
__device__ __forceinline__ acc_t load_acc(const T* p, int64_t i) {
  return static_cast<acc_t>(to_f(p[i]));
}
template <>
__device__ __forceinline__ double load_acc<double, double>(const double* p, int64_t i) {
  return p[i];
}

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ double from_f<double>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename T>
__device__ __forceinline__ void store(T* p, int64_t i, float v) {
  p[i] = from_f<T>(v);
}
template <typename T>
__device__ __forceinline__ void store(T* p, int64_t i, double v) {
  if constexpr (sizeof(T) == 8)
    p[i] = v;
  else
    p[i] = from_f<T>(static_cast<float>(v));
}

constexpr int kLanesX = 32, kLanesY = 8;

template <typename x_t, typename acc_t, int MODE>
__global__ void col_partials_kernel(const x_t* __restrict__ x, const acc_t* __restrict__ g,
                                    const acc_t* __restrict__ center, const acc_t* __restrict__ rstd,
                                    acc_t* __restrict__ part, acc_t* __restrict__ part2, int64_t rows, int64_t cols,
                                    int64_t rows_per_part) {
  __shared__ acc_t s1[kLanesY][kLanesX];
  __shared__ acc_t s2[kLanesY][kLanesX];
  const int64_t c = int64_t(blockIdx.x) * kLanesX + threadIdx.x;
  const int64_t r_begin = int64_t(blockIdx.y) * rows_per_part;
  const int64_t r_end = r_begin + rows_per_part < rows ? r_begin + rows_per_part : rows;
  acc_t a1 = 0, a2 = 0;
  if (c < cols) {
    const acc_t ctr = MODE != 0 ? center[c] : acc_t(0);
    const acc_t rs = MODE == 2 ? rstd[c] : acc_t(0);
    for (int64_t r = r_begin + threadIdx.y; r < r_end; r += kLanesY) {
      const acc_t v = load_acc<acc_t>(x, r * cols + c);
      if constexpr (MODE == 0) {
        a1 += v;
      } else if constexpr (MODE == 1) {
        const acc_t e = v - ctr;
        a1 += e * e;
      } else {
        const acc_t gv = g[r * cols + c];
        a1 += gv * ((v - ctr) * rs);
        a2 += gv;
      }
    }
  }
  s1[threadIdx.y][threadIdx.x] = a1;
  s2[threadIdx.y][threadIdx.x] = a2;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    acc_t t1 = 0, t2 = 0;
#pragma unroll
    for (int y = 0; y < kLanesY; ++y) {
      t1 += s1[y][threadIdx.x];
      t2 += s2[y][threadIdx.x];
    }
    part[int64_t(blockIdx.y) * cols + c] = t1;
    if (MODE == 2) part2[int64_t(blockIdx.y) * cols + c] = t2;
  }
}

template <typename x_t, typename y_t, typename acc_t>
__global__ void bn_apply_kernel(const x_t* __restrict__ x, const acc_t* __restrict__ scale,
                                const acc_t* __restrict__ shift, y_t* __restrict__ y, int64_t n, int64_t cols) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % cols;
    store(y, i, bn_mlp::bn_apply(load_acc<acc_t>(x, i), scale[c], shift[c]));
  }
}

template <typename T, typename acc_t>
__global__ void gelu_kernel(const T* __restrict__ h, T* a, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    store(a, i, bn_mlp::gelu(load_acc<acc_t>(h, i)));
}

template <typename T, typename acc_t>
__global__ void gelu_backward_kernel(T* ga, const T* __restrict__ h, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    store(ga, i, load_acc<acc_t>(ga, i) * bn_mlp::gelu_grad(load_acc<acc_t>(h, i)));
}

template <typename x_t, typename acc_t>
__global__ void bn_backward_apply_kernel(const acc_t* __restrict__ gxn, const x_t* __restrict__ x,
                                         const acc_t* __restrict__ mean, const acc_t* __restrict__ rstd,
                                         const acc_t* __restrict__ k_x, const acc_t* __restrict__ k_mean,
                                         const acc_t* __restrict__ k_xhat, x_t* __restrict__ dx, int64_t n,
                                         int64_t cols) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % cols;
    const acc_t xhat = (load_acc<acc_t>(x, i) - mean[c]) * rstd[c];
    store(dx, i, bn_mlp::bn_grad(gxn[i], xhat, k_x[c], k_mean[c], k_xhat[c]));
  }
}

// Elementwise grid: enough blocks to fill the GPU, grid-stride beyond.
unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535 * 8)));
}

// Calls f with a typed null pointer whose type is the element type of dtype.
template <typename F>
int with_dtype(DType dt, F&& f) {
  switch (dt) {
    case DType::kFloat32: return f(static_cast<float*>(nullptr));
    case DType::kFloat16: return f(static_cast<__half*>(nullptr));
    case DType::kBFloat16: return f(static_cast<__nv_bfloat16*>(nullptr));
    case DType::kFloat64: return f(static_cast<double*>(nullptr));
  }
  return int(cudaErrorInvalidValue);
}

template <typename F>
int with_acc(bool acc_double, F&& f) {
  return acc_double ? f(static_cast<double*>(nullptr)) : f(static_cast<float*>(nullptr));
}

template <typename P>
using elem_t = std::remove_pointer_t<P>;

}  // namespace

namespace cuda_launch {
namespace bn_mlp {

int col_partials(const void* x, DType x_dtype, const void* g, const void* center, const void* rstd, void* part,
                 void* part2, bool acc_double, int64_t rows, int64_t cols, int64_t parts, int mode, void* stream) {
  const int64_t rows_per_part = (rows + parts - 1) / parts;
  const dim3 grid(static_cast<unsigned>((cols + kLanesX - 1) / kLanesX), static_cast<unsigned>(parts));
  const dim3 block(kLanesX, kLanesY);
  auto s = static_cast<cudaStream_t>(stream);
  return with_acc(acc_double, [&](auto acc_p) {
    using acc_t = elem_t<decltype(acc_p)>;
    return with_dtype(x_dtype, [&](auto x_p) {
      using x_t = elem_t<decltype(x_p)>;
      const auto* xs = static_cast<const x_t*>(x);
      const auto* gs = static_cast<const acc_t*>(g);
      const auto* cs = static_cast<const acc_t*>(center);
      const auto* rs = static_cast<const acc_t*>(rstd);
      auto* p1 = static_cast<acc_t*>(part);
      auto* p2 = static_cast<acc_t*>(part2);
      if (mode == 0)
        col_partials_kernel<x_t, acc_t, 0><<<grid, block, 0, s>>>(xs, gs, cs, rs, p1, p2, rows, cols, rows_per_part);
      else if (mode == 1)
        col_partials_kernel<x_t, acc_t, 1><<<grid, block, 0, s>>>(xs, gs, cs, rs, p1, p2, rows, cols, rows_per_part);
      else
        col_partials_kernel<x_t, acc_t, 2><<<grid, block, 0, s>>>(xs, gs, cs, rs, p1, p2, rows, cols, rows_per_part);
      return int(cudaGetLastError());
    });
  });
}

int bn_apply(const void* x, DType x_dtype, const void* scale, const void* shift, void* y, DType y_dtype,
             bool acc_double, int64_t rows, int64_t cols, void* stream) {
  const int64_t n = rows * cols;
  auto s = static_cast<cudaStream_t>(stream);
  return with_acc(acc_double, [&](auto acc_p) {
    using acc_t = elem_t<decltype(acc_p)>;
    return with_dtype(x_dtype, [&](auto x_p) {
      using x_t = elem_t<decltype(x_p)>;
      return with_dtype(y_dtype, [&](auto y_p) {
        using y_t = elem_t<decltype(y_p)>;
        bn_apply_kernel<x_t, y_t, acc_t><<<grid_for(n, 256), 256, 0, s>>>(
            static_cast<const x_t*>(x), static_cast<const acc_t*>(scale), static_cast<const acc_t*>(shift),
            static_cast<y_t*>(y), n, cols);
        return int(cudaGetLastError());
      });
    });
  });
}

int gelu(const void* h, void* a, DType dtype, int64_t n, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  return with_dtype(dtype, [&](auto p) {
    using T = elem_t<decltype(p)>;
    using acc_t = std::conditional_t<sizeof(T) == 8, double, float>;
    gelu_kernel<T, acc_t><<<grid_for(n, 256), 256, 0, s>>>(static_cast<const T*>(h), static_cast<T*>(a), n);
    return int(cudaGetLastError());
  });
}

int gelu_backward(void* ga, const void* h, DType dtype, int64_t n, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  return with_dtype(dtype, [&](auto p) {
    using T = elem_t<decltype(p)>;
    using acc_t = std::conditional_t<sizeof(T) == 8, double, float>;
    gelu_backward_kernel<T, acc_t><<<grid_for(n, 256), 256, 0, s>>>(static_cast<T*>(ga), static_cast<const T*>(h), n);
    return int(cudaGetLastError());
  });
}

int bn_backward_apply(const void* gxn, const void* x, DType x_dtype, const void* mean, const void* rstd,
                      const void* k_x, const void* k_mean, const void* k_xhat, void* dx, bool acc_double,
                      int64_t rows, int64_t cols, void* stream) {
  const int64_t n = rows * cols;
  auto s = static_cast<cudaStream_t>(stream);
  return with_acc(acc_double, [&](auto acc_p) {
    using acc_t = elem_t<decltype(acc_p)>;
    return with_dtype(x_dtype, [&](auto x_p) {
      using x_t = elem_t<decltype(x_p)>;
      bn_backward_apply_kernel<x_t, acc_t><<<grid_for(n, 256), 256, 0, s>>>(
          static_cast<const acc_t*>(gxn), static_cast<const x_t*>(x), static_cast<const acc_t*>(mean),
          static_cast<const acc_t*>(rstd), static_cast<const acc_t*>(k_x), static_cast<const acc_t*>(k_mean),
          static_cast<const acc_t*>(k_xhat), static_cast<x_t*>(dx), n, cols);
      return int(cudaGetLastError());
    });
  });
}

}  // namespace bn_mlp
}  // namespace cuda_launch
}  // namespace tds
