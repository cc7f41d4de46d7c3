// Host-side orchestration of the fused TD-Adapter, shared by the CPU and CUDA kernels: the matrix
// products and the tiny per-channel algebra go through ATen (MKL / cuBLAS), the narrow elementwise
// work and the statistics through a device's `Kernels`. Implemented in csrc/host/td_adapter.cpp
// (always built); csrc/cuda/td_adapter.cpp passes its own Kernels. g++ only (uses ATen).
//
// Tensors handed to the kernels are contiguous; "acc" is float32 (float64 for float64 inputs);
// narrow tensors are (M, h) acc, d-wide ones (M, d); u/g/out keep the input dtype.
#pragma once
#include <ATen/core/Tensor.h>

#include <tuple>

namespace tds {
namespace td_adapter {

struct Kernels {
  // Per column of x (M, C): sum over rows of col_term(mode, x, y, center[c]) in float64 -> (C,) double.
  // y and center are only read by the modes that need them (pass undefined tensors otherwise).
  at::Tensor (*col_sum)(const at::Tensor& x, const at::Tensor& y, const at::Tensor& center, int mode);
  // m = v - maxpool_t(v), v = (b - center) * scale; b, m: (B*T*N, h) rows ordered (B, T, N).
  void (*maxdiff_forward)(const at::Tensor& b, const at::Tensor& center, const at::Tensor& scale, at::Tensor& m,
                          int64_t B, int64_t T, int64_t N, int64_t kernel_size);
  // dv = dm - (dm routed to each window's first argmax of v); same layout as maxdiff_forward.
  void (*maxdiff_backward)(const at::Tensor& b, const at::Tensor& center, const at::Tensor& scale,
                           const at::Tensor& dm, at::Tensor& dv, int64_t B, int64_t T, int64_t N,
                           int64_t kernel_size);
  // out = mix(x) - center per row (mix: 0.5 x + 0.5 mean_h(x)); may run in place (out is x).
  void (*mix_rows)(const at::Tensor& x, const at::Tensor& center, at::Tensor& out, bool mix);
  // The d-wide part, expand + BN2 + gate: out = gate_forward(u, y0c Wp^T + bias). u, out (M, d) input
  // dtype; y0c (M, h), Wp (d, h), bias (d,) acc. The CPU runs it in row blocks that stay in cache.
  void (*expand_gate_forward)(const at::Tensor& u, const at::Tensor& y0c, const at::Tensor& Wp,
                              const at::Tensor& bias, at::Tensor& out, bool gated);
  // Its backward up to BN2: du = d out/du * g (acc, (M, d)) is written, and from dy = d out/dy * g
  // (never stored whole) it returns (sum_tokens dy: (d,) double, dy^T y0c: (d, h) double, dy Wp: (M, h) acc).
  std::tuple<at::Tensor, at::Tensor, at::Tensor> (*expand_gate_backward)(
      const at::Tensor& g, const at::Tensor& u, const at::Tensor& y0c, const at::Tensor& Wp, const at::Tensor& bias,
      at::Tensor& du, bool gated);
  // db = bn1_backward(dv, b, center, invstd, scale, k_mean, k_xhat) elementwise (per-channel vectors).
  void (*bn1_backward)(const at::Tensor& dv, const at::Tensor& b, const at::Tensor& center,
                       const at::Tensor& invstd, const at::Tensor& scale, const at::Tensor& k_mean,
                       const at::Tensor& k_xhat, at::Tensor& db);
};

// tds::td_adapter_forward / _backward (schemas in csrc/registration.cpp).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward(
    const Kernels& k, const at::Tensor& u, const at::Tensor& w_down, const at::Tensor& w_up,
    const at::Tensor& gamma1, const at::Tensor& beta1, const at::Tensor& gamma2, const at::Tensor& beta2,
    const at::Tensor& running_mean1, const at::Tensor& running_var1, const at::Tensor& running_mean2,
    const at::Tensor& running_var2, bool training, double eps, int64_t kernel_size, bool mix, bool gated);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const Kernels& k, const at::Tensor& grad_out, const at::Tensor& u, const at::Tensor& w_down,
    const at::Tensor& w_up, const at::Tensor& gamma1, const at::Tensor& beta1, const at::Tensor& gamma2,
    const at::Tensor& beta2, const at::Tensor& mean1, const at::Tensor& var1, const at::Tensor& mean2,
    const at::Tensor& var2, bool training, double eps, int64_t kernel_size, bool mix, bool gated);

}  // namespace td_adapter
}  // namespace tds
