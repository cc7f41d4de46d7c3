// Host-side orchestration of the fused BN → Linear → GELU → Linear block, shared by the CPU and CUDA
// kernels: the matrix products go through ATen (MKL / cuBLAS), the per-element work and the column
// statistics through a device's `Kernels`. Implemented in csrc/host/bn_mlp.cpp (always built);
// csrc/cuda/bn_mlp.cpp passes its own Kernels. g++ only (uses ATen).
//
// Memory: autograd keeps only x and the batch statistics. The hidden activations (rows x H: h and
// gelu(h), 4d wide in the side MLP) exist only one chunk of rows at a time, in forward and again,
// recomputed, in backward: that is the point of the op (plain autograd keeps BN's input, BN's output,
// h and gelu(h): 10 d-wide rows per token against 1).
#pragma once
#include <ATen/core/Tensor.h>

#include <tuple>

namespace tds {
namespace bn_mlp {

struct Kernels {
  // Biased per-column mean and variance of x (M, d) (any float dtype) into mean, var (d,) acc tensors.
  void (*col_stats)(const at::Tensor& x, at::Tensor& mean, at::Tensor& var);
  // y = x * scale + shift per column; x (R, d) any float dtype, y (R, d) preallocated (its dtype).
  void (*bn_apply)(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift, at::Tensor& y);
  // a = gelu(h); a may be h itself.
  void (*gelu)(const at::Tensor& h, at::Tensor& a);
  // ga *= gelu'(h), in place.
  void (*gelu_backward)(at::Tensor& ga, const at::Tensor& h);
  // dgamma = sum_rows gxn * (x - mean) * rstd, dbeta = sum_rows gxn; gxn (M, d) acc; outputs (d,) acc.
  void (*bn_backward_reduce)(const at::Tensor& gxn, const at::Tensor& x, const at::Tensor& mean,
                             const at::Tensor& rstd, at::Tensor& dgamma, at::Tensor& dbeta);
  // dx = bn_grad(gxn, xhat, k_x, k_mean, k_xhat) per element; dx preallocated in x's dtype.
  void (*bn_backward_apply)(const at::Tensor& gxn, const at::Tensor& x, const at::Tensor& mean,
                            const at::Tensor& rstd, const at::Tensor& k_x, const at::Tensor& k_mean,
                            const at::Tensor& k_xhat, at::Tensor& dx);
  // Size of one chunk of hidden activations, in elements (rows per chunk = chunk_elems / H).
  int64_t chunk_elems;
  // Run the GEMMs in the accumulation dtype (fp32) for 16-bit inputs: the CPU has no fast 16-bit GEMM
  // everywhere, and fp32 keeps the weight-gradient sums over chunks exact to fp32.
  bool gemm_in_acc;
};

// tds::bn_mlp_forward: returns (out (M, O) in w1's dtype, mean (d,), var (d,)) with mean/var in the
// accumulation dtype (batch statistics in training, copies of the running ones in eval).
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(
    const Kernels& k, const at::Tensor& x, const at::Tensor& bn_weight, const at::Tensor& bn_bias,
    const at::Tensor& running_mean, const at::Tensor& running_var, const at::Tensor& w1,
    const c10::optional<at::Tensor>& b1, const at::Tensor& w2, const c10::optional<at::Tensor>& b2, bool training,
    double eps);

// tds::bn_mlp_backward: (grad_x, grad_bn_weight, grad_bn_bias, grad_w1, grad_b1, grad_w2, grad_b2); the
// bias gradients are empty tensors when the matching bias is absent.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const Kernels& k, const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& bn_weight,
    const at::Tensor& bn_bias, const at::Tensor& w1, const c10::optional<at::Tensor>& b1, const at::Tensor& w2,
    const c10::optional<at::Tensor>& b2, const at::Tensor& mean, const at::Tensor& var, bool training,
    double eps);

}  // namespace bn_mlp
}  // namespace tds
