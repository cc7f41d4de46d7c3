// Host-side (ATen) pieces of the fused SME stem shared by the CPU and the CUDA wrappers: input
// validation, CLIP-normalisation folding of the conv weights, the RGB border bias map and the
// per-channel parameter pack. Everything here is O(weights) or O(T*h*w*d) work, done with ATen;
// the O(frames) work (patch gathering, tap combination, BatchNorm, fusion) is in the kernels.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <optional>
#include <string>
#include <tuple>
#include <vector>
#include <utility>

#include "common/sme_stem_math.h"

namespace tds {
namespace sme_stem {

struct Call {
  Geom g;
  at::ScalarType acc;  // accumulation / GEMM dtype: float64 when the output is float64, else float32
  at::ScalarType out;  // dtype of the tokens (what the reference produces: the conv's dtype)
  double a[kColours];  // x = a_c * f + b_c = a_c * rgb_value(f) + b_c, with
  double b[kColours];  // b_c = rgb_bias_image(mean_c, std_c): the RGB bias map's constant image
  bool training;
  double alpha, eps;
};

inline bool is_float_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

inline void check_vec(const char* op, const char* name, const at::Tensor& t, int64_t d, const at::Device& dev) {
  TORCH_CHECK_VALUE(t.defined(), op, ": ", name, " is required");
  TORCH_CHECK_TYPE(is_float_dtype(t.scalar_type()), op, ": ", name, " must be a floating-point tensor, got ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == d, op, ": ", name, " must have shape (", d, ",), got ",
                    t.sizes());
  TORCH_CHECK_VALUE(t.device() == dev, op, ": ", name, " is on ", t.device(), " but frames are on ", dev);
}

// Validates every argument (TORCH_CHECK_VALUE / _TYPE raise ValueError / TypeError in Python) and
// derives the shapes. `stats_required`: the four statistics tensors must be (d,) (eval forward and
// the backward); in a training forward they may be empty (not read).
inline Call check_inputs(const char* op, const at::Tensor& frames, const at::Tensor& w_rgb,
                         const std::optional<at::Tensor>& b_rgb, const at::Tensor& w_mot,
                         const std::optional<at::Tensor>& b_mot, const at::Tensor& gamma_rgb,
                         const at::Tensor& beta_rgb, const at::Tensor& gamma_mot, const at::Tensor& beta_mot,
                         const std::vector<std::pair<const char*, at::Tensor>>& stats, bool stats_required,
                         at::ArrayRef<double> pixel_mean, at::ArrayRef<double> pixel_std, double alpha,
                         at::IntArrayRef padding, bool training, double eps) {
  TORCH_CHECK_VALUE(frames.dim() == 6, op, ": frames must be (B, T, 5, 3, H, W), got rank ", frames.dim(),
                    " shape ", frames.sizes());
  TORCH_CHECK_VALUE(frames.size(2) == kWindow, op, ": frames dim 2 is the window of 5 frames, got ",
                    frames.size(2));
  TORCH_CHECK_VALUE(frames.size(3) == kColours, op, ": frames dim 3 must be the 3 colour channels, got ",
                    frames.size(3));
  const auto ft = frames.scalar_type();
  TORCH_CHECK_TYPE(ft == at::kByte || is_float_dtype(ft), op,
                   ": frames must be uint8 or float16/bfloat16/float32/float64, got ", ft);
  for (int k = 0; k < 6; ++k) {
    TORCH_CHECK_VALUE(frames.size(k) > 0, op, ": frames has a zero-size dimension ", k, " (shape ",
                      frames.sizes(), ")");
  }
  TORCH_CHECK_VALUE(w_rgb.dim() == 5 && w_rgb.size(1) == kRgbChannels && w_rgb.size(2) == kTaps &&
                        w_rgb.size(3) == w_rgb.size(4) && w_rgb.size(0) > 0 && w_rgb.size(3) > 0,
                    op, ": w_rgb must be a Conv3d weight (d, 3, 3, P, P), got ", w_rgb.sizes());
  const int64_t d = w_rgb.size(0), P = w_rgb.size(3);
  TORCH_CHECK_VALUE(w_mot.dim() == 5 && w_mot.size(0) == d && w_mot.size(1) == kMotChannels &&
                        w_mot.size(2) == kTaps && w_mot.size(3) == P && w_mot.size(4) == P,
                    op, ": w_mot must be (", d, ", 12, 3, ", P, ", ", P, ") to match w_rgb, got ", w_mot.sizes());
  TORCH_CHECK_TYPE(is_float_dtype(w_rgb.scalar_type()), op, ": w_rgb must be floating point, got ",
                   w_rgb.scalar_type());
  TORCH_CHECK_TYPE(w_mot.scalar_type() == w_rgb.scalar_type(), op, ": w_mot dtype ", w_mot.scalar_type(),
                   " differs from w_rgb dtype ", w_rgb.scalar_type());
  const at::Device dev = frames.device();
  TORCH_CHECK_VALUE(w_rgb.device() == dev, op, ": w_rgb is on ", w_rgb.device(), " but frames are on ", dev);
  TORCH_CHECK_VALUE(w_mot.device() == dev, op, ": w_mot is on ", w_mot.device(), " but frames are on ", dev);
  if (b_rgb.has_value() && b_rgb->defined()) check_vec(op, "b_rgb", *b_rgb, d, dev);
  if (b_mot.has_value() && b_mot->defined()) check_vec(op, "b_mot", *b_mot, d, dev);
  check_vec(op, "gamma_rgb", gamma_rgb, d, dev);
  check_vec(op, "beta_rgb", beta_rgb, d, dev);
  check_vec(op, "gamma_mot", gamma_mot, d, dev);
  check_vec(op, "beta_mot", beta_mot, d, dev);
  for (const auto& kv : stats) {
    if (!stats_required && (!kv.second.defined() || kv.second.numel() == 0)) continue;
    check_vec(op, kv.first, kv.second, d, dev);
  }
  TORCH_CHECK_VALUE(pixel_mean.size() == kColours && pixel_std.size() == kColours, op,
                    ": pixel_mean and pixel_std must have 3 values, got ", pixel_mean.size(), " and ",
                    pixel_std.size());
  for (int c = 0; c < kColours; ++c) {
    TORCH_CHECK_VALUE(std::isfinite(pixel_mean[c]) && std::isfinite(pixel_std[c]) && pixel_std[c] > 0, op,
                      ": pixel_std must be positive and pixel_mean finite, got mean ", pixel_mean, " std ",
                      pixel_std);
  }
  TORCH_CHECK_VALUE(padding.size() == 3 && padding[0] >= 0 && padding[1] >= 0 && padding[2] >= 0, op,
                    ": padding must be 3 non-negative ints (pt, ph, pw), got ", padding);
  TORCH_CHECK_VALUE(eps > 0 && std::isfinite(alpha), op, ": eps must be positive and alpha finite, got eps ",
                    eps, " alpha ", alpha);

  Call c{};
  Geom& g = c.g;
  g.B = frames.size(0);
  g.T = frames.size(1);
  g.H = frames.size(4);
  g.W = frames.size(5);
  g.P = P;
  g.pt = padding[0];
  g.ph = padding[1];
  g.pw = padding[2];
  g.d = d;
  TORCH_CHECK_VALUE(g.T + 2 * g.pt >= kTaps, op, ": T + 2*pt = ", g.T + 2 * g.pt,
                    " is shorter than the temporal kernel 3 (frames T = ", g.T, ", padding ", padding, ")");
  TORCH_CHECK_VALUE(g.H + 2 * g.ph >= P && g.W + 2 * g.pw >= P, op, ": frames ", g.H, "x", g.W,
                    " (padding ", padding, ") are smaller than one ", P, "x", P, " patch");
  g.T_out = out_size(g.T, kTaps, 1, g.pt);
  g.h = out_size(g.H, P, P, g.ph);
  g.w = out_size(g.W, P, P, g.pw);
  c.out = at::isFloatingType(ft) ? at::promote_types(ft, w_rgb.scalar_type()) : w_rgb.scalar_type();
  c.acc = c.out == at::kDouble ? at::kDouble : at::kFloat;
  for (int k = 0; k < kColours; ++k) {
    c.a[k] = norm_scale(pixel_std[k]);
    c.b[k] = rgb_bias_image(pixel_mean[k], pixel_std[k]);
  }
  c.training = training;
  c.alpha = alpha;
  c.eps = eps;
  return c;
}

// Per-input-channel normalisation scale a_c (motion channel 3k + c has colour c).
inline at::Tensor channel_scale(const Call& c, int64_t channels, const at::Device& dev) {
  std::vector<double> s(channels);
  for (int64_t ch = 0; ch < channels; ++ch) s[ch] = c.a[ch % kColours];
  return at::tensor(s, at::TensorOptions().dtype(at::kDouble)).to(dev, c.acc);
}

// Conv3d weight (d, C, 3, P, P) -> GEMM operand (C*P*P, 3*d): rows (channel, ky, kx), columns
// (tap, out channel), with a_c folded in so raw pixel patches can be multiplied directly.
inline at::Tensor fold_weights(const Call& c, const at::Tensor& w) {
  const int64_t C = w.size(1), P = w.size(3), d = w.size(0);
  at::Tensor wf = w.to(c.acc) * channel_scale(c, C, w.device()).view({1, C, 1, 1, 1});
  return wf.permute({1, 3, 4, 2, 0}).reshape({C * P * P, kTaps * d}).contiguous();
}

// Inverse of fold_weights for a gradient: (C*P*P, 3*d) -> (d, C, 3, P, P) times a_c.
inline at::Tensor unfold_grad(const Call& c, const at::Tensor& gf, int64_t C) {
  const int64_t P = c.g.P, d = c.g.d;
  return gf.view({C, P, P, kTaps, d}).permute({4, 0, 3, 1, 2}) * channel_scale(c, C, gf.device()).view({1, C, 1, 1, 1});
}

// 0/1 masks of which kernel taps read real data (not padding): it (T_out, 3), iy (h, P), ix (w, P).
inline at::Tensor tap_mask(int64_t n_out, int64_t kernel, int64_t stride, int64_t pad, int64_t size,
                           const Call& c, const at::Device& dev) {
  at::Tensor m = at::empty({n_out, kernel}, at::TensorOptions().dtype(at::kDouble));
  auto acc = m.accessor<double, 2>();
  for (int64_t o = 0; o < n_out; ++o)
    for (int64_t k = 0; k < kernel; ++k) acc[o][k] = src_index(o, k, stride, pad, size) >= 0 ? 1.0 : 0.0;
  return m.to(dev, c.acc);
}

inline bool has_mean_shift(const Call& c) { return c.b[0] != 0.0 || c.b[1] != 0.0 || c.b[2] != 0.0; }

inline at::Tensor colour_shift(const Call& c, const at::Device& dev) {
  return at::tensor(std::vector<double>(c.b, c.b + kColours), at::TensorOptions().dtype(at::kDouble)).to(dev, c.acc);
}

// sum_c b_c W[:, c] as (3, P, P, d) (tap, ky, kx, out channel): the weight of the constant image.
inline at::Tensor shift_weight(const Call& c, const at::Tensor& w_rgb) {
  return (w_rgb.to(c.acc) * colour_shift(c, w_rgb.device()).view({1, kColours, 1, 1, 1}))
      .sum(1)
      .permute({1, 2, 3, 0})
      .contiguous();
}

// The RGB conv of the constant image b_c (zero in the padding): a bias map (T_out, h, w, d) that is
// the same everywhere except where padding cuts the kernel. The 0/1 masks of the taps that read real
// data are separable, so three small matmuls (over kx, ky, then the temporal taps) give it exactly.
inline at::Tensor rgb_bias_map(const Call& c, const at::Tensor& w_rgb) {
  const Geom& g = c.g;
  const at::Device dev = w_rgb.device();
  const int64_t P = g.P, d = g.d;
  const at::Tensor v = shift_weight(c, w_rgb);  // (3, P, P, d)
  const at::Tensor it = tap_mask(g.T_out, kTaps, 1, g.pt, g.T, c, dev);
  const at::Tensor iy = tap_mask(g.h, P, P, g.ph, g.H, c, dev);
  const at::Tensor ix = tap_mask(g.w, P, P, g.pw, g.W, c, dev);
  const at::Tensor u = at::matmul(ix, v.view({kTaps * P, P, d}));    // (3 P, w, d): over kx
  const at::Tensor r = at::matmul(iy, u.view({kTaps, P, g.w * d}));  // (3, h, w d): over ky
  return at::matmul(it, r.view({kTaps, g.h * g.w * d})).view({g.T_out, g.h, g.w, d});  // over the taps
}

// Gradient of rgb_bias_map w.r.t. w_rgb given D = sum over clips of dZ_rgb, (T_out, h, w, d).
inline at::Tensor rgb_bias_map_grad(const Call& c, const at::Tensor& D) {
  const Geom& g = c.g;
  const at::Device dev = D.device();
  const int64_t P = g.P, d = g.d;
  const at::Tensor it = tap_mask(g.T_out, kTaps, 1, g.pt, g.T, c, dev);
  const at::Tensor iy = tap_mask(g.h, P, P, g.ph, g.H, c, dev);
  const at::Tensor ix = tap_mask(g.w, P, P, g.pw, g.W, c, dev);
  const at::Tensor f1 = at::matmul(it.t(), D.reshape({g.T_out, g.h * g.w * d}));  // (3, h w d)
  const at::Tensor f2 = at::matmul(iy.t(), f1.view({kTaps, g.h, g.w * d}));       // (3, P, w d)
  const at::Tensor dv = at::matmul(ix.t(), f2.view({kTaps * P, g.w, d}));         // (3 P, P, d)
  // dv[kt, ky, kx, o] -> (d, 1, 3, P, P) times b_c
  return dv.view({kTaps, P, P, d}).permute({3, 0, 1, 2}).unsqueeze(1) *
         colour_shift(c, dev).view({1, kColours, 1, 1, 1});
}

// The pre-BatchNorm conv outputs a training forward returns for the backward (docs/model.md §4 op 3):
// Z without the conv bias as (B, T_out, N, d) in the tokens' dtype -- what eager autograd keeps for
// BatchNorm's and the conv's backward. No copy when the kernel's (n_pos, d) buffer already has that dtype.
inline at::Tensor saved_conv_output(const Call& c, const at::Tensor& z) {
  const Geom& g = c.g;
  return z.view({g.B, g.T_out, g.h * g.w, g.d}).to(c.out);
}

using ForwardResults = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The forward's results (the schema's order): tokens, fresh copies of the four statistics rows of
// `stats` (kNumStats, d), then the conv outputs zr / zm (n_pos, d) for the backward in training, or
// two empty tensors in eval.
inline ForwardResults forward_results(const Call& c, const at::Tensor& out, const at::Tensor& stats,
                                      const at::Tensor& zr, const at::Tensor& zm) {
  const at::Tensor none = at::empty({0}, out.options());
  return {out,
          stats[kMeanR].clone(),
          stats[kVarR].clone(),
          stats[kMeanM].clone(),
          stats[kVarM].clone(),
          c.training ? saved_conv_output(c, zr) : none,
          c.training ? saved_conv_output(c, zm) : none.clone()};
}

// Whether the backward got the forward's conv outputs (z_rgb, z_mot) or empty tensors (eval forwards
// keep none: the backward then recomputes them); checks what it got.
inline bool has_saved_conv_outputs(const char* op, const Call& c, const at::Tensor& z_rgb, const at::Tensor& z_mot,
                                   const at::Device& dev) {
  const bool saved = z_rgb.numel() > 0;
  TORCH_CHECK_VALUE(saved == (z_mot.numel() > 0), op, ": z_rgb and z_mot must both be the forward's conv outputs ",
                    "or both be empty, got shapes ", z_rgb.sizes(), " and ", z_mot.sizes());
  if (!saved) return false;
  const Geom& g = c.g;
  for (const auto& kv : {std::make_pair("z_rgb", z_rgb), std::make_pair("z_mot", z_mot)}) {
    const at::Tensor& z = kv.second;
    TORCH_CHECK_TYPE(is_float_dtype(z.scalar_type()), op, ": ", kv.first, " must be floating point, got ",
                     z.scalar_type());
    TORCH_CHECK_VALUE(z.dim() == 4 && z.size(0) == g.B && z.size(1) == g.T_out && z.size(2) == g.h * g.w &&
                          z.size(3) == g.d,
                      op, ": ", kv.first, " must be (", g.B, ", ", g.T_out, ", ", g.h * g.w, ", ", g.d, "), got ",
                      z.sizes());
    TORCH_CHECK_VALUE(z.device() == dev, op, ": ", kv.first, " is on ", z.device(), " but frames are on ", dev);
  }
  return true;
}

// A saved conv output as the (n_pos, d) accumulation-dtype matrix the kernels read (no copy when it
// already is one: read only).
inline at::Tensor conv_output_matrix(const Call& c, const at::Tensor& z) {
  return z.to(c.acc).contiguous().view({-1, c.g.d});
}

// (kNumParams, d) in the accumulation dtype; absent biases and unread statistics are zeros.
inline at::Tensor param_pack(const Call& c, const std::optional<at::Tensor>& b_rgb,
                             const std::optional<at::Tensor>& b_mot, const at::Tensor& gamma_rgb,
                             const at::Tensor& beta_rgb, const at::Tensor& gamma_mot, const at::Tensor& beta_mot,
                             const at::Tensor& rm_r, const at::Tensor& rv_r, const at::Tensor& rm_m,
                             const at::Tensor& rv_m) {
  const auto opts = gamma_rgb.options().dtype(c.acc);
  auto vec = [&](const at::Tensor& t) {
    return (t.defined() && t.numel() == c.g.d) ? t.to(c.acc) : at::zeros({c.g.d}, opts);
  };
  auto opt = [&](const std::optional<at::Tensor>& t) { return vec(t.has_value() ? *t : at::Tensor()); };
  return at::stack({opt(b_rgb), opt(b_mot), vec(gamma_rgb), vec(beta_rgb), vec(gamma_mot), vec(beta_mot),
                    vec(rm_r), vec(rv_r), vec(rm_m), vec(rv_m)})
      .contiguous();
}

// Patch-row groups: group (b, i) holds the T*w rows (t, j) of one token row of one clip, so the
// temporal taps of every output row are inside the group. A chunk is a run of whole groups.
inline int64_t groups_per_chunk(const Geom& g, int64_t target_rows) {
  return std::max<int64_t>(1, target_rows / std::max<int64_t>(1, g.T * g.w));
}

// A fresh (never aliasing) copy of a per-channel gradient in the parameter's dtype.
inline at::Tensor copy_as(const at::Tensor& grad, const at::Tensor& param) {
  return grad.to(param.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
}

// Gradient of an optional bias: an empty tensor when the bias is absent (the schema's convention).
inline at::Tensor grad_like(const at::Tensor& grad, const std::optional<at::Tensor>& param) {
  if (!param.has_value() || !param->defined()) return at::empty({0}, grad.options());
  return copy_as(grad, *param);
}

}  // namespace sme_stem
}  // namespace tds
