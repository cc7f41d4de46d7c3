// CUDA kernels of tds::temporal_adjacent_diff_forward and _backward. Only CUDA headers and the shared element
// math (common/temporal_adjacent_diff_math.h) here; the ATen wrapper is temporal_adjacent_diff.cpp.
//
// x (B, T, R) contiguous. A flat grid over output elements (grid-stride loop): each thread reads its
// element of frame t and of the neighbour frame t + offset (both coalesced: consecutive threads, consecutive
// r), subtracts in float (double for double), rounds once. The op is memory bound: one read of each input
// row per use, one write.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/temporal_adjacent_diff_math.h"
#include "cuda/acc_convert.cuh"

namespace tds {
namespace {

template <typename scalar_t>
using acc_of = decltype(to_acc(scalar_t()));

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y, int64_t T, int64_t R,
                               bool absolute, int offset, int64_t total) {
  using A = acc_of<scalar_t>;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / R, t = row % T;
    A v = A(0);
    if (adjacent_diff::in_clip(t + offset, T)) v = adjacent_diff::value<A>(to_acc(x[i]), to_acc(x[i + offset * R]), absolute);
    y[i] = from_acc<scalar_t>(v);
  }
}

// h_t at element i of frame t (0 when t or t + offset is outside the clip).
template <typename scalar_t>
__device__ __forceinline__ acc_of<scalar_t> h_at(const scalar_t* __restrict__ g, const scalar_t* __restrict__ x,
                                                 int64_t i, int64_t t, int64_t T, int64_t R, bool absolute,
                                                 int offset) {
  using A = acc_of<scalar_t>;
  if (!adjacent_diff::in_clip(t, T) || !adjacent_diff::in_clip(t + offset, T)) return A(0);
  const A gv = to_acc(g[i]);
  if (!absolute) return gv;
  return gv * adjacent_diff::slope<A>(to_acc(x[i]), to_acc(x[i + offset * R]), true);
}

template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ x,
                                scalar_t* __restrict__ dx, int64_t T, int64_t R, bool absolute, int offset,
                                int64_t total) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = (i / R) % T;
    // dx_t = h_t - h_{t-offset}: frame t is the "current" frame of y_t and the neighbour of y_{t-offset}.
    const auto own = h_at(g, x, i, t, T, R, absolute, offset);
    const auto other = h_at(g, x, i - offset * R, t - offset, T, R, absolute, offset);
    dx[i] = from_acc<scalar_t>(own - other);
  }
}

constexpr int kThreads = 256;

unsigned grid_for(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return unsigned(blocks < 65535 * 32 ? blocks : 65535 * 32);  // grid-stride loop covers the rest
}

template <typename scalar_t>
cudaError_t forward_t(const void* x, void* y, int64_t B, int64_t T, int64_t R, bool absolute, int offset,
                      cudaStream_t st) {
  const int64_t total = B * T * R;
  forward_kernel<scalar_t><<<grid_for(total), kThreads, 0, st>>>(
      static_cast<const scalar_t*>(x), static_cast<scalar_t*>(y), T, R, absolute, offset, total);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t backward_t(const void* g, const void* x, void* dx, int64_t B, int64_t T, int64_t R, bool absolute,
                       int offset, cudaStream_t st) {
  const int64_t total = B * T * R;
  backward_kernel<scalar_t><<<grid_for(total), kThreads, 0, st>>>(
      static_cast<const scalar_t*>(g), static_cast<const scalar_t*>(x), static_cast<scalar_t*>(dx), T, R, absolute,
      offset, total);
  return cudaGetLastError();
}

}  // namespace

namespace cuda_launch {

int temporal_adjacent_diff_forward(const void* x, void* y, DType dtype, int64_t B, int64_t T, int64_t R,
                                   bool absolute, int offset, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kFloat32: return int(forward_t<float>(x, y, B, T, R, absolute, offset, st));
    case DType::kFloat64: return int(forward_t<double>(x, y, B, T, R, absolute, offset, st));
    case DType::kFloat16: return int(forward_t<__half>(x, y, B, T, R, absolute, offset, st));
    case DType::kBFloat16: return int(forward_t<__nv_bfloat16>(x, y, B, T, R, absolute, offset, st));
    default: break;
  }
  return int(cudaErrorInvalidValue);
}

int temporal_adjacent_diff_backward(const void* g, const void* x, void* dx, DType dtype, int64_t B, int64_t T,
                                    int64_t R, bool absolute, int offset, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kFloat32: return int(backward_t<float>(g, x, dx, B, T, R, absolute, offset, st));
    case DType::kFloat64: return int(backward_t<double>(g, x, dx, B, T, R, absolute, offset, st));
    case DType::kFloat16: return int(backward_t<__half>(g, x, dx, B, T, R, absolute, offset, st));
    case DType::kBFloat16: return int(backward_t<__nv_bfloat16>(g, x, dx, B, T, R, absolute, offset, st));
    default: break;
  }
  return int(cudaErrorInvalidValue);
}

}  // namespace cuda_launch
}  // namespace tds
