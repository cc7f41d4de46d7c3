// ATen-side wrapper of the CUDA kernels of tds::bn_mlp_forward / _backward: the shared host code
// (common/bn_mlp_host.h, implemented in csrc/cpu/bn_mlp.cpp) runs the GEMMs on cuBLAS through ATen and
// calls these Kernels for the per-element work (csrc/cuda/bn_mlp_kernels.cu) on the current stream.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "common/alloc.h"
#include "common/bn_mlp_host.h"
#include "common/bn_mlp_math.h"

namespace tds {
namespace bn_mlp {
namespace {

DType dtype_of(const at::Tensor& t) { return tds::dtype_of(t.scalar_type(), "tds::bn_mlp"); }

void* stream() { return at::cuda::getCurrentCUDAStream().stream(); }

void check(int err, const char* what) { TDS_CUDA_CHECK(err, "tds::bn_mlp", what); }

bool acc_double(const at::Tensor& acc) { return acc.scalar_type() == at::kDouble; }

// Row blocks for the column reductions: ~64 rows each, at most 4096 blocks.
int64_t parts_for(int64_t rows) { return std::max<int64_t>(1, std::min<int64_t>((rows + 63) / 64, 4096)); }

void col_stats_cuda(const at::Tensor& x, at::Tensor& mean, at::Tensor& var) {
  const int64_t M = x.size(0), d = x.size(1), parts = parts_for(M);
  at::Tensor part = at::empty({parts, d}, mean.options());
  check(cuda_launch::bn_mlp::col_partials(x.const_data_ptr(), dtype_of(x), nullptr, nullptr, nullptr,
                                          part.mutable_data_ptr(), nullptr, acc_double(mean), M, d, parts, 0, stream()),
        "mean");
  mean.copy_(at::sum(part, {0}, false, at::kDouble) / double(M));
  check(cuda_launch::bn_mlp::col_partials(x.const_data_ptr(), dtype_of(x), nullptr, mean.const_data_ptr(), nullptr,
                                          part.mutable_data_ptr(), nullptr, acc_double(mean), M, d, parts, 1, stream()),
        "var");
  var.copy_(at::sum(part, {0}, false, at::kDouble) / double(M));
}

void bn_apply_cuda(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift, at::Tensor& y) {
  check(cuda_launch::bn_mlp::bn_apply(x.const_data_ptr(), dtype_of(x), scale.const_data_ptr(), shift.const_data_ptr(),
                                      y.mutable_data_ptr(), dtype_of(y), acc_double(scale), x.size(0), x.size(1),
                                      stream()),
        "bn_apply");
}

void gelu_cuda(const at::Tensor& h, at::Tensor& a) {
  check(cuda_launch::bn_mlp::gelu(h.const_data_ptr(), a.mutable_data_ptr(), dtype_of(h), h.numel(), stream()),
        "gelu");
}

void gelu_backward_cuda(at::Tensor& ga, const at::Tensor& h) {
  check(cuda_launch::bn_mlp::gelu_backward(ga.mutable_data_ptr(), h.const_data_ptr(), dtype_of(h), h.numel(),
                                           stream()),
        "gelu_backward");
}

void bn_backward_reduce_cuda(const at::Tensor& gxn, const at::Tensor& x, const at::Tensor& mean,
                             const at::Tensor& rstd, at::Tensor& dgamma, at::Tensor& dbeta) {
  const int64_t M = x.size(0), d = x.size(1), parts = parts_for(M);
  at::Tensor part = at::empty({parts, d}, gxn.options()), part2 = at::empty({parts, d}, gxn.options());
  check(cuda_launch::bn_mlp::col_partials(x.const_data_ptr(), dtype_of(x), gxn.const_data_ptr(), mean.const_data_ptr(),
                                          rstd.const_data_ptr(), part.mutable_data_ptr(), part2.mutable_data_ptr(),
                                          acc_double(gxn), M, d, parts, 2, stream()),
        "bn_backward_reduce");
  dgamma.copy_(at::sum(part, {0}, false, at::kDouble));
  dbeta.copy_(at::sum(part2, {0}, false, at::kDouble));
}

void bn_backward_apply_cuda(const at::Tensor& gxn, const at::Tensor& x, const at::Tensor& mean,
                            const at::Tensor& rstd, const at::Tensor& k_x, const at::Tensor& k_mean,
                            const at::Tensor& k_xhat, at::Tensor& dx) {
  check(cuda_launch::bn_mlp::bn_backward_apply(gxn.const_data_ptr(), x.const_data_ptr(), dtype_of(x),
                                               mean.const_data_ptr(), rstd.const_data_ptr(), k_x.const_data_ptr(),
                                               k_mean.const_data_ptr(), k_xhat.const_data_ptr(), dx.mutable_data_ptr(),
                                               acc_double(gxn), x.size(0), x.size(1), stream()),
        "bn_backward_apply");
}

// 16M hidden elements per chunk (32 MiB in bf16): big GEMMs for cuBLAS, bounded transient memory.
const Kernels kCudaKernels{col_stats_cuda, bn_apply_cuda, gelu_cuda, gelu_backward_cuda, bn_backward_reduce_cuda,
                           bn_backward_apply_cuda, int64_t(1) << 24, /*gemm_in_acc=*/false};

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cuda(const at::Tensor& x, const at::Tensor& bn_weight,
                                                            const at::Tensor& bn_bias, const at::Tensor& running_mean,
                                                            const at::Tensor& running_var, const at::Tensor& w1,
                                                            const c10::optional<at::Tensor>& b1,
                                                            const at::Tensor& w2,
                                                            const c10::optional<at::Tensor>& b2, bool training,
                                                            double eps) {
  const c10::cuda::CUDAGuard guard(x.device());
  return forward(kCudaKernels, x, bn_weight, bn_bias, running_mean, running_var, w1, b1, w2, b2, training, eps);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& bn_weight, const at::Tensor& bn_bias,
    const at::Tensor& w1, const c10::optional<at::Tensor>& b1, const at::Tensor& w2,
    const c10::optional<at::Tensor>& b2, const at::Tensor& mean, const at::Tensor& var, bool training, double eps) {
  const c10::cuda::CUDAGuard guard(x.device());
  return backward(kCudaKernels, grad_out, x, bn_weight, bn_bias, w1, b1, w2, b2, mean, var, training, eps);
}

}  // namespace
}  // namespace bn_mlp
}  // namespace tds

TORCH_LIBRARY_IMPL(tds, CUDA, m) {
  m.impl("bn_mlp_forward", &tds::bn_mlp::forward_cuda);
  m.impl("bn_mlp_backward", &tds::bn_mlp::backward_cuda);
}
