// ATen-side wrapper of the CUDA kernels of tds::temporal_max_diff (kernels in
// temporal_max_diff_kernels.cu, per-element math in common/max_diff_math.h). Checks the arguments,
// allocates the outputs and launches on the current stream.
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "common/alloc.h"
#include "common/max_diff_host.h"
#include "common/max_diff_math.h"

namespace tds {
namespace {

using max_diff::check_args;
using max_diff::check_backward_args;
using max_diff::clamp_half;


at::Tensor temporal_max_diff_cuda(const at::Tensor& x_in, int64_t kernel_size, bool mix_on) {
  constexpr const char* fn = "tds::temporal_max_diff_forward";
  check_args(x_in, kernel_size, fn);
  const DType dt = dtype_of(x_in.scalar_type(), fn);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = new_output(x.sizes(), x.options());
  if (x.numel() == 0) return y;
  TDS_CUDA_CHECK(cuda_launch::temporal_max_diff_forward(
                     x.const_data_ptr(), y.mutable_data_ptr(), dt, x.size(0), x.size(1), x.size(2), x.size(3),
                     2 * clamp_half(kernel_size, x.size(1)) + 1, mix_on, at::cuda::getCurrentCUDAStream().stream()),
                 fn, "forward launch");
  return y;
}

at::Tensor temporal_max_diff_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in, int64_t kernel_size,
                                           bool mix_on) {
  constexpr const char* fn = "tds::temporal_max_diff_backward";
  check_backward_args(grad_in, x_in, kernel_size, fn);
  const DType dt = dtype_of(x_in.scalar_type(), fn);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), g = grad_in.contiguous();
  at::Tensor dx = new_output(x.sizes(), x.options());
  if (x.numel() == 0) return dx;
  // mean_C(grad_out) per (b, t, n) for the mix: C times smaller than the data, fp32.
  at::Tensor gmean;
  if (mix_on) gmean = at::empty({x.size(0), x.size(1), x.size(2)}, x.options().dtype(at::kFloat));
  TDS_CUDA_CHECK(cuda_launch::temporal_max_diff_backward(
                     g.const_data_ptr(), x.const_data_ptr(), dx.mutable_data_ptr(),
                     mix_on ? gmean.mutable_data_ptr<float>() : nullptr, dt, x.size(0), x.size(1), x.size(2),
                     x.size(3), 2 * clamp_half(kernel_size, x.size(1)) + 1, mix_on,
                     at::cuda::getCurrentCUDAStream().stream()),
                 fn, "backward launch");
  return dx;
}

}  // namespace
}  // namespace tds

TORCH_LIBRARY_IMPL(tds, CUDA, m) {
  m.impl("temporal_max_diff_forward", &tds::temporal_max_diff_cuda);
  m.impl("temporal_max_diff_backward", &tds::temporal_max_diff_backward_cuda);
}
