// The one place where the `tds::` operator schemas are defined (as pytorch/extension-cpp does).
// CPU kernels are registered in csrc/cpu/*.cpp, CUDA kernels in csrc/cuda/*.cpp, each in its own
// TORCH_LIBRARY_IMPL block; fake (meta) kernels and autograd are registered in Python
// (tds_kernels/ops/<op>/op.py). No op calls another registered op.
// Names: every op <op> of tds_kernels/ops/registry.py has the schemas <op>_forward and <op>_backward (the
// Triton custom ops tds_triton::<op>_forward / _backward mirror them); see docs/adding-an-op.md.
//
// Layouts (all activations contiguous, channels last):
//   temporal_max_diff: x (B, T, N, C), frames on dim 1.
//   cls_token_shift:   x (B, T, C).
//   temporal_adjacent_diff: x (B, T, N, C), frames on dim 1.
//   td_adapter:        u (B, T, N, d); w_down (d/r, d); w_up (d, d/r); BN params per channel.
//   sme_stem:          frames (B, T, 5, 3, H, W) uint8/float; w_* are the Conv3d weights
//                      (d, C_in, 3, P, P); output tokens (B, T, N, d).
// Batch statistics are returned (mean, biased var) instead of updating running buffers in
// place, so the ops stay functional; the nn.Modules update the buffers like nn.BatchNorm.
#include <torch/library.h>

TORCH_LIBRARY(tds, m) {
  // Op 1: temporal max-difference  y = x - maxpool_t(x) (kernel k, stride 1, -inf pad),
  // optionally mixed y = 0.5*y + 0.5*mean_C(y).
  m.def("temporal_max_diff_forward(Tensor x, int kernel_size, bool mix) -> Tensor");
  m.def("temporal_max_diff_backward(Tensor grad_out, Tensor x, int kernel_size, bool mix) -> Tensor");

  // Op 4: CLS token shift: channels [:C/2] from frame t+1, [C/2:] from frame t-1, zeros past the ends.
  m.def("cls_token_shift_forward(Tensor x) -> Tensor");
  m.def("cls_token_shift_backward(Tensor grad_out) -> Tensor");

  // Temporal adjacent difference (M2-CLIP TED-Adapter, AM flow): y_t = x_t - x_{t-1} (direction "backward",
  // y_0 = 0) or x_t - x_{t+1} ("forward", y_{T-1} = 0); |.| when absolute.
  // The backward reads x only when absolute (x may be None otherwise).
  m.def("temporal_adjacent_diff_forward(Tensor x, bool absolute, str direction) -> Tensor");
  m.def("temporal_adjacent_diff_backward(Tensor grad_out, Tensor? x, bool absolute, str direction) -> Tensor");

  // Op 2: TD-Adapter path. Returns (out, mean1, var1, mean2, var2): in training the batch
  // statistics of the two BatchNorms (biased variance), in eval a copy of the running ones.
  m.def(
      "td_adapter_forward(Tensor u, Tensor w_down, Tensor w_up, Tensor gamma1, Tensor beta1, "
      "Tensor gamma2, Tensor beta2, Tensor running_mean1, Tensor running_var1, "
      "Tensor running_mean2, Tensor running_var2, bool training, float eps, int kernel_size, "
      "bool mix, bool gated) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Returns (grad_u, grad_w_down, grad_w_up, grad_gamma1, grad_beta1, grad_gamma2, grad_beta2).
  m.def(
      "td_adapter_backward(Tensor grad_out, Tensor u, Tensor w_down, Tensor w_up, Tensor gamma1, "
      "Tensor beta1, Tensor gamma2, Tensor beta2, Tensor mean1, Tensor var1, Tensor mean2, "
      "Tensor var2, bool training, float eps, int kernel_size, bool mix, bool gated) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");

  // Op 3: SME stem. bias tensors may be absent (Conv3d(bias=False)). pixel_mean/std are the
  // CLIP normalisation in [0,1] units; frames are pixel values in [0,255] (uint8 or float).
  // padding is the Conv3d padding (pt, ph, pw). Returns (tokens, mean_rgb, var_rgb, mean_mot, var_mot,
  // z_rgb, z_mot): z_* are the pre-BatchNorm conv outputs without the conv bias, (B, T_out, N, d) in the
  // tokens' dtype, kept for the backward (what eager autograd keeps too); in eval, where the forward
  // fuses straight into the tokens, they are empty (0,) tensors.
  m.def(
      "sme_stem_forward(Tensor frames, Tensor w_rgb, Tensor? b_rgb, Tensor w_mot, Tensor? b_mot, "
      "Tensor gamma_rgb, Tensor beta_rgb, Tensor gamma_mot, Tensor beta_mot, "
      "Tensor running_mean_rgb, Tensor running_var_rgb, Tensor running_mean_mot, "
      "Tensor running_var_mot, float[] pixel_mean, float[] pixel_std, float alpha, int[] padding, "
      "bool training, float eps) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Frames get no gradient (they are data). z_rgb / z_mot: the forward's; empty ones make the
  // backward recompute the convolutions. Returns (grad_w_rgb, grad_b_rgb, grad_w_mot,
  // grad_b_mot, grad_gamma_rgb, grad_beta_rgb, grad_gamma_mot, grad_beta_mot); the bias
  // gradients are empty tensors when the matching bias is absent.
  m.def(
      "sme_stem_backward(Tensor grad_out, Tensor frames, Tensor w_rgb, Tensor? b_rgb, Tensor w_mot, "
      "Tensor? b_mot, Tensor gamma_rgb, Tensor beta_rgb, Tensor gamma_mot, Tensor beta_mot, "
      "Tensor mean_rgb, Tensor var_rgb, Tensor mean_mot, Tensor var_mot, Tensor z_rgb, Tensor z_mot, "
      "float[] pixel_mean, float[] pixel_std, float alpha, int[] padding, bool training, float eps) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");

  // Extra op (issue #5): the side block's MLP, out = Linear2(GELU(Linear1(BatchNorm(x)))) on tokens
  // x (M, d), keeping only x (and the batch statistics) for backward. w1 (H, d), w2 (O, H); x in w1's
  // dtype or float32. Returns (out (M, O) in w1's dtype, mean, var): batch statistics (biased var) in
  // training, copies of the running ones in eval; float32 (float64 for float64 weights).
  m.def(
      "bn_mlp_forward(Tensor x, Tensor bn_weight, Tensor bn_bias, Tensor running_mean, Tensor running_var, "
      "Tensor w1, Tensor? b1, Tensor w2, Tensor? b2, bool training, float eps) -> (Tensor, Tensor, Tensor)");
  // Returns (grad_x, grad_bn_weight, grad_bn_bias, grad_w1, grad_b1, grad_w2, grad_b2); a bias gradient
  // is an empty tensor when that bias is absent.
  m.def(
      "bn_mlp_backward(Tensor grad_out, Tensor x, Tensor bn_weight, Tensor bn_bias, Tensor w1, Tensor? b1, "
      "Tensor w2, Tensor? b2, Tensor mean, Tensor var, bool training, float eps) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}
