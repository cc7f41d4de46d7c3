// Per-element math of the fused BN → Linear → GELU → Linear block (tds::bn_mlp_*), shared by the CPU
// kernel (csrc/cpu/bn_mlp.cpp) and the CUDA kernels (csrc/cuda/bn_mlp_kernels.cu), so the CPU tests
// exercise the arithmetic the GPU runs. Plain C++ only: no torch or CUDA headers here.
//
//   xn  = x * scale + shift                  BatchNorm as a per-channel affine map:
//                                            scale = gamma * rstd, shift = beta - mean * scale
//   h   = xn w1^T + b1;  a = gelu(h);  out = a w2^T + b2          (the GEMMs are ATen's)
// Backward (g = grad_out), with xhat = (x - mean) * rstd and gxn = dL/dxn:
//   ga  = g w2;  gh = ga * gelu'(h);  gxn = gh w1
//   dgamma = sum_rows gxn * xhat,  dbeta = sum_rows gxn
//   dx  = gamma * rstd * (gxn - (dbeta + xhat * dgamma) / M)     (training: batch statistics)
//   dx  = gamma * rstd * gxn                                      (eval: running statistics)
//
// GELU is the exact one, 0.5 h (1 + erf(h / sqrt 2)). In float, erf and exp are polynomial
// approximations (erf: the rational minimax fit used by XLA and Eigen, |error| < 5e-7; exp: Cody-Waite
// range reduction + degree-7 Taylor, relative error < 1e-7) written without libm calls or branches,
// so gcc vectorises the CPU loops and the GPU runs the same arithmetic; double uses libm's erf/exp
// (float64 is for exact tests).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/base.h"

// Forced inlining: the CPU kernel's hot loops are also compiled for AVX2 (target_clones), and gcc does
// not inline ordinary functions into those clones, which would leave one call per element unvectorised.
#ifdef __CUDACC__
#define TDS_BN_INLINE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define TDS_BN_INLINE inline __attribute__((always_inline))
#else
#define TDS_BN_INLINE inline
#endif

namespace tds {
namespace bn_mlp {

// erf(x) for float: x * P(x^2) / Q(x^2) on x clamped to [-4, 4] (erf is +-1 in float beyond).
TDS_BN_INLINE float erf_approx(float x) {
  x = x < -4.f ? -4.f : (x > 4.f ? 4.f : x);
  const float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  return x * p / q;
}

// exp(x) for float x <= 0 (the GELU derivative only needs exp(-h^2/2)): x = n ln2 + r, |r| <= ln2/2,
// exp(r) by its Taylor polynomial, 2^n built from the exponent bits. Clamped at -87 (2^-126 is the
// smallest normal float; the true value there is below 1e-37 and multiplies a bounded factor).
TDS_BN_INLINE float exp_nonpos(float x) {
  x = x < -87.f ? -87.f : (x > 0.f ? 0.f : x);
  const float t = x * 1.44269504088896341f;
  // round to nearest via truncation (SSE2 has a truncating float->int conversion, not a rounding one)
  const int n = static_cast<int>(t + (t >= 0.f ? 0.5f : -0.5f));
  const float nf = static_cast<float>(n);
  float r = x - nf * 0.693145751953125f;  // ln2 split in two (Cody-Waite) so n*ln2_hi is exact
  r = r - nf * 1.428606765330187045e-06f;
  float p = 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const int32_t bits = (n + 127) << 23;
  float scale;  // the float whose bits are `bits` (a register move on both devices)
#ifdef __CUDA_ARCH__
  scale = __int_as_float(bits);
#else
  std::memcpy(&scale, &bits, sizeof(scale));
#endif
  return p * scale;
}

TDS_BN_INLINE float erf_(float x) { return erf_approx(x); }
TDS_BN_INLINE double erf_(double x) { return ::erf(x); }
TDS_BN_INLINE float exp_neg_half_sq(float h) { return exp_nonpos(-0.5f * h * h); }
TDS_BN_INLINE double exp_neg_half_sq(double h) { return ::exp(-0.5 * h * h); }

template <typename acc_t>
TDS_BN_INLINE acc_t gelu(acc_t h) {
  return acc_t(0.5) * h * (acc_t(1) + erf_(h * acc_t(0.70710678118654752440)));
}

// d gelu / dh = Phi(h) + h * phi(h)
template <typename acc_t>
TDS_BN_INLINE acc_t gelu_grad(acc_t h) {
  const acc_t cdf = acc_t(0.5) * (acc_t(1) + erf_(h * acc_t(0.70710678118654752440)));
  return cdf + h * acc_t(0.39894228040143267794) * exp_neg_half_sq(h);
}

// BatchNorm as the affine map the forward and the recomputation in backward both use.
template <typename acc_t>
TDS_BN_INLINE acc_t bn_apply(acc_t x, acc_t scale, acc_t shift) {
  return x * scale + shift;
}

// dx of the batch norm for one element. k_x = gamma * rstd; training: k_mean = dbeta / M and
// k_xhat = dgamma / M (the gradient through the batch mean and variance), eval: both 0.
template <typename acc_t>
TDS_BN_INLINE acc_t bn_grad(acc_t gxn, acc_t xhat, acc_t k_x, acc_t k_mean, acc_t k_xhat) {
  return k_x * (gxn - k_mean - xhat * k_xhat);
}

}  // namespace bn_mlp

// Host-side entry points of the CUDA kernels (csrc/cuda/bn_mlp_kernels.cu, called from
// csrc/cuda/bn_mlp.cpp). Plain types keep ATen out of the .cu file. Returns a cudaError_t as int.
namespace cuda_launch {
namespace bn_mlp {
// Column partial sums of x (rows, cols), `parts` row blocks -> part (parts, cols) in acc (float or double
// as acc_double): mode 0 sums x, mode 1 sums (x - center)^2, mode 2 sums g * (x - center) * rstd
// into part and g into part2 (g is acc-typed, same shape as x).
int col_partials(const void* x, DType x_dtype, const void* g, const void* center, const void* rstd, void* part,
                 void* part2, bool acc_double, int64_t rows, int64_t cols, int64_t parts, int mode, void* stream);
// y (rows, cols) in y_dtype = x * scale[c] + shift[c]; scale/shift acc-typed.
int bn_apply(const void* x, DType x_dtype, const void* scale, const void* shift, void* y, DType y_dtype,
             bool acc_double, int64_t rows, int64_t cols, void* stream);
// a = gelu(h) elementwise (a may be h), n values of dtype.
int gelu(const void* h, void* a, DType dtype, int64_t n, void* stream);
// ga *= gelu'(h) elementwise.
int gelu_backward(void* ga, const void* h, DType dtype, int64_t n, void* stream);
// dx (rows, cols) in dx_dtype from gxn (acc) and x: bn_grad with per-column k_x, k_mean, k_xhat (acc).
int bn_backward_apply(const void* gxn, const void* x, DType x_dtype, const void* mean, const void* rstd,
                      const void* k_x, const void* k_mean, const void* k_xhat, void* dx, bool acc_double,
                      int64_t rows, int64_t cols, void* stream);
}  // namespace bn_mlp
}  // namespace cuda_launch
}  // namespace tds
