// ATen-side wrapper of the CUDA kernels of tds::temporal_adjacent_diff_forward/_backward (kernels in
// temporal_adjacent_diff_kernels.cu, element math in common/temporal_adjacent_diff_math.h, argument checks
// shared with the CPU wrapper in common/temporal_adjacent_diff_host.h): allocation, launch on the current stream.
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/alloc.h"
#include "common/temporal_adjacent_diff_host.h"
#include "common/temporal_adjacent_diff_math.h"

namespace tds {
namespace {

at::Tensor forward_cuda(const at::Tensor& x_in, bool absolute, c10::string_view direction) {
  constexpr const char* fn = "tds::temporal_adjacent_diff_forward";
  adjacent_diff::check_args(x_in, fn);
  const int offset = adjacent_diff::offset_of(direction, fn);
  const DType dt = dtype_of(x_in.scalar_type(), fn);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = new_output(x.sizes(), x.options());
  if (x.numel() == 0) return y;
  TDS_CUDA_CHECK(cuda_launch::temporal_adjacent_diff_forward(x.const_data_ptr(), y.mutable_data_ptr(), dt, x.size(0),
                                                             x.size(1), x.size(2) * x.size(3), absolute, offset,
                                                             at::cuda::getCurrentCUDAStream().stream()),
                 fn, "forward launch");
  return y;
}

at::Tensor backward_cuda(const at::Tensor& g_in, const std::optional<at::Tensor>& x_opt, bool absolute,
                         c10::string_view direction) {
  constexpr const char* fn = "tds::temporal_adjacent_diff_backward";
  const at::Tensor x = adjacent_diff::backward_x(g_in, x_opt, absolute, fn);
  const int offset = adjacent_diff::offset_of(direction, fn);
  const DType dt = dtype_of(g_in.scalar_type(), fn);
  const c10::cuda::CUDAGuard guard(g_in.device());
  const at::Tensor g = g_in.contiguous();
  at::Tensor dx = new_output(g.sizes(), g.options());
  if (g.numel() == 0) return dx;
  TDS_CUDA_CHECK(cuda_launch::temporal_adjacent_diff_backward(
                     g.const_data_ptr(), absolute ? x.const_data_ptr() : nullptr, dx.mutable_data_ptr(), dt, g.size(0),
                     g.size(1), g.size(2) * g.size(3), absolute, offset, at::cuda::getCurrentCUDAStream().stream()),
                 fn, "backward launch");
  return dx;
}

}  // namespace
}  // namespace tds

TORCH_LIBRARY_IMPL(tds, CUDA, m) {
  m.impl("temporal_adjacent_diff_forward", &tds::forward_cuda);
  m.impl("temporal_adjacent_diff_backward", &tds::backward_cuda);
}
