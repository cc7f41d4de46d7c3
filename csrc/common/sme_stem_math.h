// Per-element and per-channel math of the fused SME stem (docs/model.md §4 op 3), shared by the CPU kernel
// (csrc/cpu/sme_stem.cpp) and the CUDA kernels (csrc/cuda/sme_stem_kernels.cu), so the CPU tests
// exercise the arithmetic the GPU runs. Plain C++ only: no torch and no CUDA headers here.
//
// The formulation both kernels implement (notation of csrc/registration.cpp):
//   * frames f (B, T, 5, 3, H, W) in [0, 255]; CLIP normalisation x = a_c f + b_c with
//     a_c = 1 / (255 std_c), b_c = -mean_c / std_c.
//   * patch rows r = (b, t, i, j) over the T input frames, columns (channel, ky, kx):
//       RGB:    the centre-frame pixel f_2[c] - 128                         (3 P^2 columns)
//       motion: the raw difference f_{k+1}[c] - f_k[c], channel 3k + c       (12 P^2 columns)
//     with 0 where the conv's zero padding cuts the patch. Raw (un-normalised) values: a_c is folded
//     into the weights, the mean cancels in the differences, and the RGB constant term b_c + 128 a_c
//     becomes a small bias map (T_out, h, w, d) that is non-constant only where padding cuts the kernel.
//   * one GEMM per branch against the folded weights of all three temporal taps, (K, 3d); the taps
//     are combined with the t-1/t/t+1 shift: Z[t_out] = sum_kt Y_kt[t_out - pt + kt].
//   * BatchNorm of each branch and the fusion s = BN_rgb(Z_rgb) + alpha BN_mot(Z_mot) are one
//     per-channel affine map of (Z_rgb, Z_mot): out = (Z_rgb - mr) sr + (Z_mot - mm) sm + offset.
// Z here never includes the conv bias: in training it cancels against the batch mean, in eval it
// is folded into the shift, so the bias only enters the returned mean and its own gradient.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/base.h"

namespace tds {
namespace sme_stem {

constexpr int64_t kWindow = 5;    // frames per local window; the centre one (index 2) is the RGB input
constexpr int64_t kCentre = 2;
constexpr int64_t kColours = 3;
constexpr int64_t kTaps = 3;      // temporal kernel size of both Conv3d stems
constexpr int64_t kRgbChannels = kColours;                 // 3
constexpr int64_t kMotChannels = (kWindow - 1) * kColours;  // 12

// Shapes of one call. Built on the host (sme_stem_host.h) and passed by value to the kernels.
struct Geom {
  int64_t B, T, H, W;     // clips, input segments, frame height / width
  int64_t P;              // patch size = spatial kernel = spatial stride
  int64_t pt, ph, pw;     // Conv3d padding
  int64_t T_out, h, w;    // output segments and token grid
  int64_t d;              // output channels of both stems
};

TDS_HD inline int64_t out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad) {
  return (in + 2 * pad - kernel) / stride + 1;
}

// Coordinate read by output index `o` at kernel offset `k` along an axis of length `size`, or -1
// where the conv's zero padding is read instead.
TDS_HD inline int64_t src_index(int64_t o, int64_t k, int64_t stride, int64_t pad, int64_t size) {
  const int64_t v = o * stride - pad + k;
  return (v >= 0 && v < size) ? v : -1;
}

// Temporal taps. Output frame t_out reads input frame t_out - pt + kt (forward) ...
TDS_HD inline int64_t tap_source(int64_t t_out, int64_t kt, int64_t pt, int64_t T) {
  return src_index(t_out, kt, 1, pt, T);
}
// ... so input frame t_in feeds output frame t_in + pt - kt (backward: dW gathers dZ this way).
TDS_HD inline int64_t tap_target(int64_t t_in, int64_t kt, int64_t pt, int64_t T_out) {
  const int64_t t = t_in + pt - kt;
  return (t >= 0 && t < T_out) ? t : -1;
}

// ---- Winograd F(2,3) along time (the CPU kernel's form of the temporal taps) -----------------
// Two consecutive outputs t0, t0+1 of a 3-tap temporal conv read the four input frames
// d_k = P[t0 - pt + k], k = 0..3. With G_0 = W_0, G_1 = (W_0 + W_1 + W_2)/2, G_2 = (W_0 - W_1 + W_2)/2,
// G_3 = W_2 and m_i = D_i G_i, where D_0 = d0 - d2, D_1 = d1 + d2, D_2 = d2 - d1, D_3 = d1 - d3:
//   Z[t0] = m0 + m1 + m2,   Z[t0 + 1] = m1 - m2 - m3
// (exactly d0 W_0 + d1 W_1 + d2 W_2 and d1 W_0 + d2 W_1 + d3 W_2): 4 GEMMs per 2 outputs instead of 6.
// The input transforms are exact for uint8 frames (sums of small integers).
constexpr int64_t kPlanes = 4;

template <typename acc_t>
TDS_HD inline void winograd_input(acc_t d0, acc_t d1, acc_t d2, acc_t d3, acc_t* D) {
  D[0] = d0 - d2;
  D[1] = d1 + d2;
  D[2] = d2 - d1;
  D[3] = d1 - d3;
}

template <typename acc_t>
TDS_HD inline void winograd_output(acc_t m0, acc_t m1, acc_t m2, acc_t m3, acc_t& z0, acc_t& z1) {
  z0 = m0 + m1 + m2;
  z1 = m1 - m2 - m3;
}

// Weight transform (G_0..G_3 from the three taps) and its transpose (tap gradients from the plane
// gradients A_0..A_3 = dL/dG_p).
template <typename acc_t>
TDS_HD inline void winograd_weight(acc_t w0, acc_t w1, acc_t w2, acc_t* G) {
  G[0] = w0;
  G[1] = (w0 + w1 + w2) * acc_t(0.5);
  G[2] = (w0 - w1 + w2) * acc_t(0.5);
  G[3] = w2;
}

template <typename acc_t>
TDS_HD inline void winograd_weight_grad(acc_t a0, acc_t a1, acc_t a2, acc_t a3, acc_t* dw) {
  const acc_t half = (a1 + a2) * acc_t(0.5);
  dw[0] = a0 + half;
  dw[1] = (a1 - a2) * acc_t(0.5);
  dw[2] = half + a3;
}

// Transpose of winograd_output: the gradients of the four products from those of the two outputs.
template <typename acc_t>
TDS_HD inline void winograd_output_grad(acc_t dz0, acc_t dz1, acc_t* dm) {
  dm[0] = dz0;
  dm[1] = dz0 + dz1;
  dm[2] = dz0 - dz1;
  dm[3] = -dz1;
}

// Patch column -> (channel, ky, kx); the column order matches Conv3d's weight (d, C, 3, P, P)
// with the temporal tap moved to the GEMM's N dimension.
TDS_HD inline void split_col(int64_t col, int64_t P, int64_t& ch, int64_t& ky, int64_t& kx) {
  kx = col % P;
  const int64_t q = col / P;
  ky = q % P;
  ch = q / P;
}

// Motion channel 3k + c is f_{k+1} - f_k of colour c.
TDS_HD inline void motion_channel(int64_t ch, int64_t& k, int64_t& c) {
  k = ch / kColours;
  c = ch % kColours;
}

// Patch values (normalisation lives in the folded weights and the bias map). RGB pixels are centred
// on 128 (exact for uint8): x = a f + b = a (f - 128) + (b + 128 a), so the GEMM sums terms of both
// signs and the bias map's constant image b + 128 a is small -- with raw pixels the GEMM term and a
// large negative bias map would cancel and cost fp32 precision.
constexpr double kPixelCentre = 128.0;
template <typename acc_t>
TDS_HD inline acc_t rgb_value(acc_t f) { return f - static_cast<acc_t>(kPixelCentre); }
template <typename acc_t>
TDS_HD inline acc_t motion_value(acc_t f_next, acc_t f_prev) { return f_next - f_prev; }

// CLIP normalisation x = a f + b for pixel values f in [0, 255]; the constant image of the RGB bias
// map is b + a * kPixelCentre (see rgb_value).
TDS_HD inline double norm_scale(double std_c) { return 1.0 / (255.0 * std_c); }
TDS_HD inline double norm_shift(double mean_c, double std_c) { return -mean_c / std_c; }
TDS_HD inline double rgb_bias_image(double mean_c, double std_c) {
  return norm_shift(mean_c, std_c) + norm_scale(std_c) * kPixelCentre;
}

// ---- BatchNorm + fusion, per channel ---------------------------------------------------------
// Everything is written around a per-channel shift (the batch mean of Z in training, running mean -
// bias in eval) so that no large mean ever cancels against itself: the variance is a second pass
// sum((Z - mean)^2) and the backward reduces sum(g (Z - shift)) rather than sum(g Z) - shift sum(g).

// Per-channel statistic slots of the reductions. Forward: pass 1 sums Z, pass 2 the squared
// deviations from the batch mean. Backward: sums of g, g (Z - shift) and (Z - shift).
enum FwdStat : int { kSumZr = 0, kSumZm = 1, kSqDevR = 2, kSqDevM = 3, kNumFwdStats = 4 };
enum BwdStat : int { kSumG = 0, kSumGZr = 1, kSumGZm = 2, kSumZr0 = 3, kSumZm0 = 4, kNumBwdStats = 5 };

// Per-channel coefficient slots shared by the CPU and CUDA kernels.
enum FwdCoef : int { kShiftR = 0, kShiftM, kScaleR, kScaleM, kOffset, kNumFwdCoefs };
enum BwdCoef : int { kK1r = 0, kK2r, kK3r, kBShiftR, kK1m, kK2m, kK3m, kBShiftM, kNumBwdCoefs };

// Rows of the per-channel parameter pack (d columns each) the host builds for both kernels; absent
// biases are zeros, and the running statistics are only read in eval mode.
enum Param : int {
  kBiasR = 0, kBiasM, kGammaR, kBetaR, kGammaM, kBetaM, kRunMeanR, kRunVarR, kRunMeanM, kRunVarM, kNumParams
};
// Rows of the statistics the op returns: (mean_rgb, var_rgb, mean_mot, var_mot).
enum Stat : int { kMeanR = 0, kVarR = 1, kMeanM = 2, kVarM = 3, kNumStats = 4 };
// Rows of the per-channel gradients the backward returns besides the conv weights.
enum Grad : int { kDGammaR = 0, kDBetaR, kDGammaM, kDBetaM, kDBiasR, kDBiasM, kNumGrads };

// Batch mean of the bias-free Z from the pass-1 sum (the pass-2 centre and the returned mean).
TDS_HD inline double batch_mean(double sum_z, double n) { return sum_z / n; }

// Forward, one channel of one branch. Training: from the sum of the bias-free conv output Z and the
// sum of its squared deviations over the n = B*T_out*h*w positions; eval: from the running
// statistics. Gives the statistics the op returns (mean of Z + bias and biased variance, or copies
// of the running ones) and x_hat = (Z - shift) * rstd for the bias-free Z.
TDS_HD inline void bn_forward_channel(bool training, double sum_z, double sq_dev, double n, double bias,
                                      double running_mean, double running_var, double eps,
                                      double& mean_out, double& var_out, double& shift, double& rstd) {
  if (training) {
    shift = batch_mean(sum_z, n);
    mean_out = shift + bias;
    var_out = sq_dev / n;
  } else {
    mean_out = running_mean;
    var_out = running_var;
    shift = running_mean - bias;
  }
  rstd = 1.0 / sqrt(var_out + eps);
}

// out = BN_rgb(Z_rgb) + alpha BN_mot(Z_mot) = (Z_rgb - shift_r) scale_r + (Z_mot - shift_m) scale_m + offset.
template <typename acc_t>
TDS_HD inline acc_t fused_output(acc_t z_rgb, acc_t z_mot, acc_t shift_r, acc_t shift_m, acc_t scale_r,
                                 acc_t scale_m, acc_t offset) {
  return (z_rgb - shift_r) * scale_r + (z_mot - shift_m) * scale_m + offset;
}

// Backward, one channel of one branch whose output enters the fusion with weight `wt` (1 for RGB,
// alpha for motion). Inputs: sums over all positions of g, g (Z - shift) and (Z - shift).
// With x_hat = (Z - shift) rstd, BN's backward is
//   training: dZ = wt gamma rstd (g - mean(g) - x_hat mean(g x_hat))   (batch stats depend on Z)
//   eval:     dZ = wt gamma rstd g
// i.e. dZ = k1 g + k2 (Z - shift) + k3 per channel; the conv-bias gradient is sum(dZ).
TDS_HD inline void bn_backward_channel(bool training, double n, double wt, double gamma, double rstd, double sum_g,
                                       double sum_g_zc, double sum_zc, double& d_gamma, double& d_beta,
                                       double& d_bias, double& k1, double& k2, double& k3) {
  const double sum_g_xhat = rstd * sum_g_zc;
  d_gamma = wt * sum_g_xhat;
  d_beta = wt * sum_g;
  k1 = wt * gamma * rstd;
  if (training) {
    k2 = -k1 * rstd * sum_g_xhat / n;
    k3 = -k1 * sum_g / n;
  } else {
    k2 = 0.0;
    k3 = 0.0;
  }
  d_bias = k1 * sum_g + k2 * sum_zc + k3 * n;
}

template <typename acc_t>
TDS_HD inline acc_t bn_grad(acc_t g, acc_t z, acc_t k1, acc_t k2, acc_t k3, acc_t shift) {
  return k1 * g + k2 * (z - shift) + k3;
}

// Element (row, o) of a (rows, d) per-channel table, as double.
template <typename acc_t>
TDS_HD inline double row_at(const acc_t* table, int row, int64_t d, int64_t o) {
  return static_cast<double>(table[row * d + o]);
}

// Forward finaliser for channel o: statistics to return and the fusion coefficients.
// sums: (kNumFwdStats, d) in double (ignored in eval); params: (kNumParams, d); stats: (kNumStats, d);
// coefs: (kNumFwdCoefs, d).
template <typename acc_t>
TDS_HD inline void forward_channel(int64_t o, int64_t d, bool training, double n, double eps, double alpha,
                                   const double* sums, const acc_t* params, acc_t* stats, acc_t* coefs) {
  double mean_r, var_r, shift_r, rstd_r, mean_m, var_m, shift_m, rstd_m;
  const double s1r = training ? sums[kSumZr * d + o] : 0.0, s2r = training ? sums[kSqDevR * d + o] : 0.0;
  const double s1m = training ? sums[kSumZm * d + o] : 0.0, s2m = training ? sums[kSqDevM * d + o] : 0.0;
  bn_forward_channel(training, s1r, s2r, n, row_at(params, kBiasR, d, o), row_at(params, kRunMeanR, d, o),
                     row_at(params, kRunVarR, d, o), eps, mean_r, var_r, shift_r, rstd_r);
  bn_forward_channel(training, s1m, s2m, n, row_at(params, kBiasM, d, o), row_at(params, kRunMeanM, d, o),
                     row_at(params, kRunVarM, d, o), eps, mean_m, var_m, shift_m, rstd_m);
  stats[kMeanR * d + o] = static_cast<acc_t>(mean_r);
  stats[kVarR * d + o] = static_cast<acc_t>(var_r);
  stats[kMeanM * d + o] = static_cast<acc_t>(mean_m);
  stats[kVarM * d + o] = static_cast<acc_t>(var_m);
  coefs[kShiftR * d + o] = static_cast<acc_t>(shift_r);
  coefs[kShiftM * d + o] = static_cast<acc_t>(shift_m);
  coefs[kScaleR * d + o] = static_cast<acc_t>(row_at(params, kGammaR, d, o) * rstd_r);
  coefs[kScaleM * d + o] = static_cast<acc_t>(alpha * row_at(params, kGammaM, d, o) * rstd_m);
  coefs[kOffset * d + o] = static_cast<acc_t>(row_at(params, kBetaR, d, o) + alpha * row_at(params, kBetaM, d, o));
}

// The centre of the backward's reductions for channel o: the stats are what the forward returned
// (in eval: the running statistics), so in both modes shift = mean - bias.
template <typename acc_t>
TDS_HD inline void backward_shift(int64_t o, int64_t d, const acc_t* params, const acc_t* stats, double& shift_r,
                                  double& shift_m) {
  shift_r = row_at(stats, kMeanR, d, o) - row_at(params, kBiasR, d, o);
  shift_m = row_at(stats, kMeanM, d, o) - row_at(params, kBiasM, d, o);
}

// Backward finaliser for channel o. sums: (kNumBwdStats, d) double, centred on backward_shift;
// grads: (kNumGrads, d); coefs: (kNumBwdCoefs, d).
template <typename acc_t>
TDS_HD inline void backward_channel(int64_t o, int64_t d, bool training, double n, double eps, double alpha,
                                    const double* sums, const acc_t* params, const acc_t* stats, acc_t* grads,
                                    acc_t* coefs) {
  const double sum_g = sums[kSumG * d + o];
  double shift_r, shift_m, dg, db, dbias, k1, k2, k3;
  backward_shift(o, d, params, stats, shift_r, shift_m);
  const double rstd_r = 1.0 / sqrt(row_at(stats, kVarR, d, o) + eps);
  bn_backward_channel(training, n, 1.0, row_at(params, kGammaR, d, o), rstd_r, sum_g, sums[kSumGZr * d + o],
                      sums[kSumZr0 * d + o], dg, db, dbias, k1, k2, k3);
  grads[kDGammaR * d + o] = static_cast<acc_t>(dg);
  grads[kDBetaR * d + o] = static_cast<acc_t>(db);
  grads[kDBiasR * d + o] = static_cast<acc_t>(dbias);
  coefs[kK1r * d + o] = static_cast<acc_t>(k1);
  coefs[kK2r * d + o] = static_cast<acc_t>(k2);
  coefs[kK3r * d + o] = static_cast<acc_t>(k3);
  coefs[kBShiftR * d + o] = static_cast<acc_t>(shift_r);
  const double rstd_m = 1.0 / sqrt(row_at(stats, kVarM, d, o) + eps);
  bn_backward_channel(training, n, alpha, row_at(params, kGammaM, d, o), rstd_m, sum_g, sums[kSumGZm * d + o],
                      sums[kSumZm0 * d + o], dg, db, dbias, k1, k2, k3);
  grads[kDGammaM * d + o] = static_cast<acc_t>(dg);
  grads[kDBetaM * d + o] = static_cast<acc_t>(db);
  grads[kDBiasM * d + o] = static_cast<acc_t>(dbias);
  coefs[kK1m * d + o] = static_cast<acc_t>(k1);
  coefs[kK2m * d + o] = static_cast<acc_t>(k2);
  coefs[kK3m * d + o] = static_cast<acc_t>(k3);
  coefs[kBShiftM * d + o] = static_cast<acc_t>(shift_m);
}

}  // namespace sme_stem
}  // namespace tds
