// ATen-side wrapper of the CUDA kernel of tds::cls_token_shift (kernel in cls_token_shift_kernels.cu,
// frame arithmetic in common/cls_shift_math.h): checks, allocation, launch on the current stream.
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/alloc.h"
#include "common/cls_shift_math.h"

namespace tds {
namespace {

at::Tensor shift_cuda(const at::Tensor& x_in, int dir, const char* fn) {
  TORCH_CHECK(x_in.dim() == 3, fn, ": x must be (B, T, C), got ", x_in.dim(), " dims");
  const DType dt = dtype_of(x_in.scalar_type(), fn);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = new_output(x.sizes(), x.options());
  if (x.numel() == 0) return y;
  TDS_CUDA_CHECK(cuda_launch::cls_token_shift(x.const_data_ptr(), y.mutable_data_ptr(), dt, x.size(0), x.size(1),
                                              x.size(2), dir, at::cuda::getCurrentCUDAStream().stream()),
                 fn, "launch");
  return y;
}

at::Tensor cls_token_shift_cuda(const at::Tensor& x) { return shift_cuda(x, +1, "tds::cls_token_shift_forward"); }

at::Tensor cls_token_shift_backward_cuda(const at::Tensor& grad_out) {
  return shift_cuda(grad_out, -1, "tds::cls_token_shift_backward");
}

}  // namespace
}  // namespace tds

TORCH_LIBRARY_IMPL(tds, CUDA, m) {
  m.impl("cls_token_shift_forward", &tds::cls_token_shift_cuda);
  m.impl("cls_token_shift_backward", &tds::cls_token_shift_backward_cuda);
}
