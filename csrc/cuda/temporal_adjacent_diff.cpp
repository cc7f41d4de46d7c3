// ATen-side wrapper of the CUDA kernels of tds::temporal_adjacent_diff (kernels in
// temporal_adjacent_diff_kernels.cu, element math in common/adjacent_diff_math.h): checks, allocation,
// launch on the current stream.
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/adjacent_diff_math.h"
#include "common/alloc.h"

namespace tds {
namespace {

DType dtype_of(const at::Tensor& t, const char* fn) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kFloat32;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    case at::kDouble: return DType::kFloat64;
    default: TORCH_CHECK(false, fn, ": unsupported dtype ", t.scalar_type(), " (float16, bfloat16, float32, float64)");
  }
}

void check(const at::Tensor& t, int64_t offset, const char* fn) {
  TORCH_CHECK(t.dim() == 4, fn, ": x must be (B, T, N, C), got ", t.dim(), " dims");
  TORCH_CHECK(offset == -1 || offset == 1, fn, ": offset must be -1 (backward) or +1 (forward), got ", offset);
}

at::Tensor forward_cuda(const at::Tensor& x_in, bool absolute, int64_t offset) {
  const char* fn = "tds::temporal_adjacent_diff";
  check(x_in, offset, fn);
  const DType dt = dtype_of(x_in, fn);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = new_output(x.sizes(), x.options());
  if (x.numel() == 0) return y;
  const int err = cuda_launch::temporal_adjacent_diff(x.const_data_ptr(), y.mutable_data_ptr(), dt, x.size(0),
                                                      x.size(1), x.size(2) * x.size(3), absolute, int(offset),
                                                      at::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, fn, ": CUDA launch failed: ", cudaGetErrorString(cudaError_t(err)));
  return y;
}

at::Tensor backward_cuda(const at::Tensor& g_in, const std::optional<at::Tensor>& x_opt, bool absolute,
                         int64_t offset) {
  const char* fn = "tds::temporal_adjacent_diff_backward";
  check(g_in, offset, fn);
  TORCH_CHECK(!absolute || x_opt.has_value(), fn, ": absolute=True needs x");
  const DType dt = dtype_of(g_in, fn);
  const c10::cuda::CUDAGuard guard(g_in.device());
  const at::Tensor g = g_in.contiguous();
  at::Tensor x;
  if (absolute) {
    TORCH_CHECK(x_opt->sizes() == g.sizes(), fn, ": x has shape ", x_opt->sizes(), ", grad_out ", g.sizes());
    TORCH_CHECK(x_opt->scalar_type() == g.scalar_type(), fn, ": x and grad_out dtypes differ");
    TORCH_CHECK(x_opt->device() == g.device(), fn, ": x and grad_out are on different devices");
    x = x_opt->contiguous();
  }
  at::Tensor dx = new_output(g.sizes(), g.options());
  if (g.numel() == 0) return dx;
  const int err = cuda_launch::temporal_adjacent_diff_backward(
      g.const_data_ptr(), absolute ? x.const_data_ptr() : nullptr, dx.mutable_data_ptr(), dt, g.size(0), g.size(1),
      g.size(2) * g.size(3), absolute, int(offset), at::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, fn, ": CUDA launch failed: ", cudaGetErrorString(cudaError_t(err)));
  return dx;
}

}  // namespace
}  // namespace tds

TORCH_LIBRARY_IMPL(tds, CUDA, m) {
  m.impl("temporal_adjacent_diff", &tds::forward_cuda);
  m.impl("temporal_adjacent_diff_backward", &tds::backward_cuda);
}
