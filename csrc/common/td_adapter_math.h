// Per-element math of the fused TD-Adapter (docs/model.md §3 "TD-Adapter", §4 op 2), shared by the CPU kernel
// (csrc/cpu/td_adapter.cpp) and the CUDA kernels (csrc/cuda/td_adapter_kernels.cu), so the CPU tests
// exercise the arithmetic the GPU runs. Plain C++ only: no torch headers here (nvcc includes it).
//
// Notation (u: tokens (B, T, N, d), h = d/r the narrow width, M = B*T*N tokens):
//   b   = u w_down^T                                   (M, h)    ATen matmul
//   v   = (b - center1) * scale1                      BN1 without its shift (it cancels below);
//                                                     center1/scale1 = batch or running mean, gamma/sigma
//   m   = v - maxpool_t(v)                            window of k frames, -inf padding
//   y0c = mix(m) - center2                            mix(m) = 0.5 m + 0.5 mean_h(m); center2 = mean_tokens
//                                                     of mix(m) in training, 0 in eval
//   y   = y0c (scale2 * w_up)^T + bias2               BN2 folded into the expand (ATen matmul)
//   out = u + u (sigmoid(y) - 0.5)   (gated)   or   u + y   (plain)
// Backward (g = grad_out): du = g (0.5 + s), dy = g u s (1 - s) with s = sigmoid(y) (gated), or du = dy = g;
// the window max routes its gradient to the first maximal frame, as max_pool does.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/base.h"
#include "common/max_diff_math.h"

namespace tds {
namespace td_adapter {

// ---- temporal window ---------------------------------------------------------------------------
// The window of frame t and max_pool's update rule (a strictly larger value or a NaN replaces the running
// best: NaN propagates, the first of equal maxima is kept, where F.max_pool3d routes the gradient) are
// the temporal max-difference's (max_diff_math.h): one definition for both ops.
using max_diff::beats;
using max_diff::window_hi;
using max_diff::window_lo;

// BN1 as the max-difference sees it: (b - center) * scale. The BN shift beta cancels in v - max(v),
// and scale = gamma/sigma may be negative (then the max of v is the min of b: no special case needed).
template <typename acc_t>
TDS_HD inline acc_t bn_key(acc_t b, acc_t center, acc_t scale) {
  return (b - center) * scale;
}

// Index of the first maximal key in frames [lo, hi] of one channel; col points at frame 0 of the
// channel and consecutive frames are `stride` elements apart.
template <typename acc_t>
TDS_HD inline int window_argmax(const acc_t* col, int64_t stride, int lo, int hi, acc_t center, acc_t scale) {
  int best_t = lo;
  acc_t best = bn_key(col[lo * stride], center, scale);
  for (int s = lo + 1; s <= hi; ++s) {
    const acc_t v = bn_key(col[s * stride], center, scale);
    if (beats(v, best)) {
      best = v;
      best_t = s;
    }
  }
  return best_t;
}

// m[t] = v[t] - max over the window of frame t, for one channel (same addressing as above).
template <typename acc_t>
TDS_HD inline acc_t maxdiff_value(const acc_t* col, int64_t stride, int t, int lo, int hi, acc_t center,
                                  acc_t scale) {
  acc_t best = bn_key(col[lo * stride], center, scale);
  for (int s = lo + 1; s <= hi; ++s) {
    const acc_t v = bn_key(col[s * stride], center, scale);
    best = beats(v, best) ? v : best;
  }
  return bn_key(col[t * stride], center, scale) - best;
}

// ---- channel-mean mix ------------------------------------------------------------------------------
// y = 0.5 m + 0.5 mean_h(m). The map is symmetric, so the same function is its own backward
// (dm = 0.5 dy + 0.5 mean_h(dy)). center is subtracted afterwards (the token mean in training).
template <typename acc_t>
TDS_HD inline acc_t mix_value(acc_t m, acc_t row_mean, acc_t center, bool mix) {
  return (mix ? acc_t(0.5) * m + acc_t(0.5) * row_mean : m) - center;
}

// ---- sigmoid gate ----------------------------------------------------------------------------------
// exp for the gate, written with arithmetic and bit casts only so that gcc -O3 vectorises the CPU
// loops: std::exp is a libm call it does not vectorise, and under the default -ftrapping-math a
// float compare-and-select or a float->int conversion also stops it, hence the bit-mask select and
// the integer exponent read from the bits of the rounded value. Cody-Waite reduction x = n ln2 + r,
// |r| <= ln2/2, and the Cephes expf polynomial: within 2 ulp of expf over the clamped range
// [-87, 88], which keeps 2^n a normal float (the gate saturates long before the clamp matters).
TDS_HD inline float bits_to_float(int32_t i) {
#ifdef __CUDA_ARCH__
  return __int_as_float(i);
#else
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
#endif
}

TDS_HD inline int32_t float_to_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_int(f);
#else
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
#endif
}

// c ? a : b without a branch (NaN in b passes through when c is false, as in the ternary).
TDS_HD inline float select_bits(bool c, float a, float b) {
  const int32_t mask = -static_cast<int32_t>(c);
  return bits_to_float((float_to_bits(a) & mask) | (float_to_bits(b) & ~mask));
}

TDS_HD inline float exp_approx(float x) {
  x = select_bits(x < -87.0f, -87.0f, x);
  x = select_bits(x > 88.0f, 88.0f, x);
  // t = round(x / ln2) + 1.5*2^23: the float add rounds to an integer, whose value sits in the low
  // mantissa bits of t (exact for |x / ln2| < 2^22)
  const float shifter = 12582912.0f;
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  const int32_t e = float_to_bits(t) - float_to_bits(shifter);  // n as an integer
  return p * bits_to_float((e + 127) << 23);
}

TDS_HD inline float sigmoid(float y) { return 1.0f / (1.0f + exp_approx(-y)); }
TDS_HD inline double sigmoid(double y) { return 1.0 / (1.0 + exp(-y)); }

// out = u + u (sigmoid(y) - 0.5)  (the reference's expression order), or u + y for the plain variant.
template <typename acc_t>
TDS_HD inline acc_t gate_forward(acc_t u, acc_t y, bool gated) {
  return gated ? u + u * (sigmoid(y) - acc_t(0.5)) : u + y;
}

// d out / d u = 0.5 + s and d out / d y = u s (1 - s) (gated); 1 and 1 (plain).
template <typename acc_t>
TDS_HD inline void gate_backward(acc_t g, acc_t u, acc_t y, bool gated, acc_t* du, acc_t* dy) {
  if (gated) {
    const acc_t s = sigmoid(y);
    *du = g * (acc_t(0.5) + s);
    *dy = g * u * (s * (acc_t(1) - s));
  } else {
    *du = g;
    *dy = g;
  }
}

// ---- BatchNorm 1 backward ------------------------------------------------------------------------
// db = scale (dv - mean(dv) - xhat mean(dv xhat)) with xhat = (b - center) invstd (training: the
// gradient flows through the batch statistics); eval passes k_mean = k_xhat = 0: db = scale dv.
template <typename acc_t>
TDS_HD inline acc_t bn1_backward(acc_t dv, acc_t b, acc_t center, acc_t invstd, acc_t scale, acc_t k_mean,
                                 acc_t k_xhat) {
  return scale * (dv - k_mean - (b - center) * invstd * k_xhat);
}

// ---- column statistics -----------------------------------------------------------------------------
// Terms summed over tokens (in double) by the statistics kernels: the sum, the centred sum of
// squares (two-pass variance), and the sum of x * (y - c) (BN1 backward's sum of dv * xhat / invstd).
enum ColTerm : int { kSum = 0, kCentredSquares = 1, kCross = 2 };

TDS_HD inline double col_term(int mode, double x, double y, double c) {
  return mode == kSum ? x : (mode == kCentredSquares ? (x - c) * (x - c) : x * (y - c));
}

}  // namespace td_adapter
}  // namespace tds
