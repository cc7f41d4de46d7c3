// CUDA kernels of tds::td_adapter_forward / tds::td_adapter_backward (docs/model.md §4 op 2). The orchestration
// is the one the CPU runs (common/td_adapter_host.h, implemented in cpu/td_adapter.cpp): matrix products
// in cuBLAS through ATen, the narrow elementwise work, the gate and the statistics in
// cuda/td_adapter_kernels.cu (whose per-element math is common/td_adapter_math.h, shared with the CPU).
// g++-compiled: this file holds the ATen side, the .cu file no torch header.
#include <ATen/Functions.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "common/base.h"
#include "common/td_adapter_host.h"
#include "common/td_adapter_math.h"
#include "cuda/td_adapter_kernels.h"

namespace tds {
namespace td_adapter {
namespace {

namespace kc = tds::td_adapter::cuda;

DType dtype_code(const at::Tensor& t) { return dtype_of(t.scalar_type(), "tds::td_adapter"); }

cudaStream_t stream() { return at::cuda::getCurrentCUDAStream().stream(); }

int half_of(int64_t kernel_size, int64_t T) { return int(std::min<int64_t>(kernel_size / 2, T)); }

const void* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.const_data_ptr() : nullptr; }

at::Tensor col_sum_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& center, int mode) {
  const int64_t M = x.size(0), C = x.size(1);
  at::Tensor partial = at::empty({kc::col_chunks(M), C}, x.options().dtype(at::kDouble));
  TDS_CUDA_CHECK(kc::col_sum(dtype_code(x), x.const_data_ptr(), ptr_or_null(y), ptr_or_null(center),
              partial.mutable_data_ptr<double>(), M, C, mode, stream()), "tds::td_adapter", "col_sum");
  return partial.sum(0);
}

void maxdiff_forward_cuda(const at::Tensor& b, const at::Tensor& center, const at::Tensor& scale, at::Tensor& m,
                          int64_t B, int64_t T, int64_t N, int64_t kernel_size) {
  TDS_CUDA_CHECK(kc::maxdiff_forward(dtype_code(b), b.const_data_ptr(), center.const_data_ptr(), scale.const_data_ptr(),
                      m.mutable_data_ptr(), B, T, N, b.size(1), half_of(kernel_size, T), stream()), "tds::td_adapter", "maxdiff_forward");
}

void maxdiff_backward_cuda(const at::Tensor& b, const at::Tensor& center, const at::Tensor& scale,
                           const at::Tensor& dm, at::Tensor& dv, int64_t B, int64_t T, int64_t N,
                           int64_t kernel_size) {
  TDS_CUDA_CHECK(kc::maxdiff_backward(dtype_code(b), b.const_data_ptr(), center.const_data_ptr(), scale.const_data_ptr(),
                       dm.const_data_ptr(), dv.mutable_data_ptr(), B, T, N, b.size(1), half_of(kernel_size, T),
                       stream()), "tds::td_adapter", "maxdiff_backward");
}

void mix_rows_cuda(const at::Tensor& x, const at::Tensor& center, at::Tensor& out, bool mix) {
  TDS_CUDA_CHECK(kc::mix_rows(dtype_code(x), x.const_data_ptr(), center.const_data_ptr(), out.mutable_data_ptr(), x.size(0),
               x.size(1), mix, stream()), "tds::td_adapter", "mix_rows");
}

void bn1_backward_cuda(const at::Tensor& dv, const at::Tensor& b, const at::Tensor& center,
                       const at::Tensor& invstd, const at::Tensor& scale, const at::Tensor& k_mean,
                       const at::Tensor& k_xhat, at::Tensor& db) {
  TDS_CUDA_CHECK(kc::bn1_backward(dtype_code(dv), dv.const_data_ptr(), b.const_data_ptr(), center.const_data_ptr(),
                   invstd.const_data_ptr(), scale.const_data_ptr(), k_mean.const_data_ptr(), k_xhat.const_data_ptr(),
                   db.mutable_data_ptr(), dv.size(0), dv.size(1), stream()), "tds::td_adapter", "bn1_backward");
}

// On the GPU the expand is one cuBLAS GEMM into an (M, d) fp32 buffer and the gate one streaming kernel.
void expand_gate_forward_cuda(const at::Tensor& u, const at::Tensor& y0c, const at::Tensor& Wp,
                              const at::Tensor& bias, at::Tensor& out, bool gated) {
  const at::Tensor y = at::addmm(bias, y0c, Wp.t());
  TDS_CUDA_CHECK(kc::gate_forward(dtype_code(u), u.const_data_ptr(), y.const_data_ptr(), out.mutable_data_ptr(), u.numel(), gated,
                   stream()), "tds::td_adapter", "gate_forward");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> expand_gate_backward_cuda(const at::Tensor& g, const at::Tensor& u,
                                                                         const at::Tensor& y0c, const at::Tensor& Wp,
                                                                         const at::Tensor& bias, at::Tensor& du,
                                                                         bool gated) {
  at::Tensor dy = at::addmm(bias, y0c, Wp.t());  // y, overwritten with dy
  TDS_CUDA_CHECK(kc::gate_backward(dtype_code(u), g.const_data_ptr(), u.const_data_ptr(), dy.mutable_data_ptr(),
                    du.mutable_data_ptr(), u.numel(), gated, stream()), "tds::td_adapter", "gate_backward");
  at::Tensor sum_dy = col_sum_cuda(dy, {}, {}, kSum);
  at::Tensor G = at::mm(dy.t(), y0c).to(at::kDouble);
  return {sum_dy, G, at::mm(dy, Wp)};
}

const Kernels kCudaKernels{&col_sum_cuda,           &maxdiff_forward_cuda,      &maxdiff_backward_cuda,
                           &mix_rows_cuda,          &expand_gate_forward_cuda, &expand_gate_backward_cuda,
                           &bn1_backward_cuda};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward_cuda(
    const at::Tensor& u, const at::Tensor& w_down, const at::Tensor& w_up, const at::Tensor& gamma1,
    const at::Tensor& beta1, const at::Tensor& gamma2, const at::Tensor& beta2, const at::Tensor& running_mean1,
    const at::Tensor& running_var1, const at::Tensor& running_mean2, const at::Tensor& running_var2,
    bool training, double eps, int64_t kernel_size, bool mix, bool gated) {
  const c10::cuda::CUDAGuard guard(u.device());
  return forward(kCudaKernels, u, w_down, w_up, gamma1, beta1, gamma2, beta2, running_mean1, running_var1,
                 running_mean2, running_var2, training, eps, kernel_size, mix, gated);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& u, const at::Tensor& w_down, const at::Tensor& w_up,
    const at::Tensor& gamma1, const at::Tensor& beta1, const at::Tensor& gamma2, const at::Tensor& beta2,
    const at::Tensor& mean1, const at::Tensor& var1, const at::Tensor& mean2, const at::Tensor& var2,
    bool training, double eps, int64_t kernel_size, bool mix, bool gated) {
  const c10::cuda::CUDAGuard guard(u.device());
  return backward(kCudaKernels, grad_out, u, w_down, w_up, gamma1, beta1, gamma2, beta2, mean1, var1, mean2, var2,
                  training, eps, kernel_size, mix, gated);
}

}  // namespace
}  // namespace td_adapter
}  // namespace tds

TORCH_LIBRARY_IMPL(tds, CUDA, m) {
  m.impl("td_adapter_forward", &tds::td_adapter::forward_cuda);
  m.impl("td_adapter_backward", &tds::td_adapter::backward_cuda);
}
