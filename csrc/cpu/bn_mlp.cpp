// tds::bn_mlp_forward / tds::bn_mlp_backward: the CPU kernels of its per-element work. The orchestration
// shared with the CUDA build is csrc/host/bn_mlp.cpp (interface: common/bn_mlp_host.h).
//
// The op is the side block's MLP, out = Linear2(GELU(Linear1(BatchNorm(x)))), on tokens x (M, d):
// autograd keeps x and the batch statistics only; backward recomputes BN(x), h and GELU(h) one chunk
// of rows at a time (see bn_mlp_host.h). The GEMMs are ATen's; everything else is here:
//  * column statistics: fixed blocks of rows reduce into float64 partial sums that are added in
//    block order, so results do not depend on the thread count;
//  * elementwise loops over contiguous rows (channel axis innermost) that gcc vectorises; the float
//    GELU loops are also compiled for AVX2+FMA (target_clones) and picked at load time.
// Per-element math: common/bn_mlp_math.h (shared with the CUDA kernels).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common/alloc.h"
#include "common/bn_mlp_host.h"
#include "common/bn_mlp_math.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
// An AVX2+FMA copy of the hot float loops next to the baseline (SSE2) one, chosen by the loader.
// "arch=x86-64-v3" is picked by CPU features; "arch=haswell" (used before) is picked by CPU model and
// so never on AMD, where the SSE2 copy ran (measured: GELU' at 3.5x GELU's time, issue #11).
// no-trapping-math lets gcc turn the clamps' float compares into vector blends (it refuses to
// if-convert compares that might trap); values, NaN included, are unchanged.
#define TDS_CLONES __attribute__((target_clones("arch=x86-64-v3", "default"), optimize("no-trapping-math")))
#else
#define TDS_CLONES
#endif

namespace tds {
namespace bn_mlp {

// ------------------------------------------------------------------------------------------------
// CPU kernels

namespace {

constexpr int64_t kRowBlock = 64;  // rows per partial sum of the column reductions

// Element conversions: 16-bit values go through float (their only arithmetic type).
template <typename T>
inline double to_d(T v) {
  return static_cast<double>(static_cast<float>(v));
}
inline double to_d(double v) { return v; }

template <typename T>
inline float to_f(T v) {
  return static_cast<float>(v);
}

template <typename acc_t, typename T>
inline acc_t to_acc(T v) {
  if constexpr (std::is_same_v<T, double>)
    return static_cast<acc_t>(v);
  else
    return static_cast<acc_t>(static_cast<float>(v));
}

// Column sums of f(row, c) over fixed row blocks, in float64, added in block order (deterministic).
// f writes into a row of `cols` doubles: f(r, acc) does acc[c] += term(r, c).
template <typename F>
std::vector<double> column_sums(int64_t rows, int64_t cols, int width, const F& f) {
  const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  std::vector<double> part(blocks * width * cols, 0.0);
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      double* acc = part.data() + b * width * cols;
      const int64_t end = std::min(rows, (b + 1) * kRowBlock);
      for (int64_t r = b * kRowBlock; r < end; ++r) f(r, acc);
    }
  });
  std::vector<double> total(width * cols, 0.0);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t j = 0; j < width * cols; ++j) total[j] += part[b * width * cols + j];
  return total;
}

void col_stats_cpu(const at::Tensor& x, at::Tensor& mean, at::Tensor& var) {
  const int64_t M = x.size(0), d = x.size(1);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bn_mlp col_stats", [&] {
    const scalar_t* px = x.const_data_ptr<scalar_t>();
    // Two passes (mean, then squared deviations) instead of E[x^2] - E[x]^2, which cancels badly.
    std::vector<double> s = column_sums(M, d, 1, [&](int64_t r, double* acc) {
      const scalar_t* row = px + r * d;
      for (int64_t c = 0; c < d; ++c) acc[c] += to_d(row[c]);
    });
    std::vector<double> mu(d);
    for (int64_t c = 0; c < d; ++c) mu[c] = s[c] / double(M);
    std::vector<double> q = column_sums(M, d, 1, [&](int64_t r, double* acc) {
      const scalar_t* row = px + r * d;
      for (int64_t c = 0; c < d; ++c) {
        const double e = to_d(row[c]) - mu[c];
        acc[c] += e * e;
      }
    });
    at::Tensor m64 = at::empty({d}, x.options().dtype(at::kDouble)), v64 = at::empty({d}, m64.options());
    double* pm = m64.mutable_data_ptr<double>();
    double* pv = v64.mutable_data_ptr<double>();
    for (int64_t c = 0; c < d; ++c) {
      pm[c] = mu[c];
      pv[c] = q[c] / double(M);
    }
    mean.copy_(m64);
    var.copy_(v64);
  });
}

template <typename acc_t, typename x_t, typename y_t>
void bn_apply_rows(const x_t* x, const acc_t* scale, const acc_t* shift, y_t* y, int64_t rows, int64_t d) {
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / d), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const x_t* xr = x + r * d;
      y_t* yr = y + r * d;
      for (int64_t c = 0; c < d; ++c)
        yr[c] = static_cast<y_t>(bn_apply(to_acc<acc_t>(xr[c]), scale[c], shift[c]));
    }
  });
}

void bn_apply_cpu(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift, at::Tensor& y) {
  const int64_t rows = x.size(0), d = x.size(1);
  TORCH_CHECK(x.is_contiguous() && y.is_contiguous(), "bn_mlp bn_apply: non-contiguous buffers");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bn_mlp bn_apply x", [&] {
    using x_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "bn_mlp bn_apply y", [&] {
      using y_t = scalar_t;
      if (scale.scalar_type() == at::kDouble)
        bn_apply_rows<double>(x.const_data_ptr<x_t>(), scale.const_data_ptr<double>(),
                              shift.const_data_ptr<double>(), y.mutable_data_ptr<y_t>(), rows, d);
      else
        bn_apply_rows<float>(x.const_data_ptr<x_t>(), scale.const_data_ptr<float>(), shift.const_data_ptr<float>(),
                             y.mutable_data_ptr<y_t>(), rows, d);
    });
  });
}

TDS_CLONES void gelu_f32(const float* h, float* a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) a[i] = gelu(h[i]);
}

TDS_CLONES void gelu_backward_f32(float* ga, const float* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) ga[i] *= gelu_grad(h[i]);
}

constexpr int64_t kElemGrain = 32768;

void gelu_cpu(const at::Tensor& h, at::Tensor& a) {
  TORCH_CHECK(h.is_contiguous() && a.is_contiguous(), "bn_mlp gelu: non-contiguous buffers");
  const int64_t n = h.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "bn_mlp gelu", [&] {
    const scalar_t* ph = h.const_data_ptr<scalar_t>();
    scalar_t* pa = a.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kElemGrain, [&](int64_t i0, int64_t i1) {
      if constexpr (std::is_same_v<scalar_t, float>) {
        // (the dispatch lambda is no template: the cast keeps the other dtypes' branch compiling)
        gelu_f32(reinterpret_cast<const float*>(ph) + i0, reinterpret_cast<float*>(pa) + i0, i1 - i0);
      } else if constexpr (std::is_same_v<scalar_t, double>) {
        for (int64_t i = i0; i < i1; ++i) pa[i] = gelu(ph[i]);
      } else {
        for (int64_t i = i0; i < i1; ++i) pa[i] = static_cast<scalar_t>(gelu(to_f(ph[i])));
      }
    });
  });
}

void gelu_backward_cpu(at::Tensor& ga, const at::Tensor& h) {
  TORCH_CHECK(h.is_contiguous() && ga.is_contiguous(), "bn_mlp gelu_backward: non-contiguous buffers");
  const int64_t n = h.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "bn_mlp gelu_backward", [&] {
    const scalar_t* ph = h.const_data_ptr<scalar_t>();
    scalar_t* pg = ga.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kElemGrain, [&](int64_t i0, int64_t i1) {
      if constexpr (std::is_same_v<scalar_t, float>) {
        gelu_backward_f32(reinterpret_cast<float*>(pg) + i0, reinterpret_cast<const float*>(ph) + i0, i1 - i0);
      } else if constexpr (std::is_same_v<scalar_t, double>) {
        for (int64_t i = i0; i < i1; ++i) pg[i] *= gelu_grad(ph[i]);
      } else {
        for (int64_t i = i0; i < i1; ++i) pg[i] = static_cast<scalar_t>(to_f(pg[i]) * gelu_grad(to_f(ph[i])));
      }
    });
  });
}

template <typename acc_t>
void bn_backward_reduce_impl(const at::Tensor& gxn, const at::Tensor& x, const at::Tensor& mean,
                             const at::Tensor& rstd, at::Tensor& dgamma, at::Tensor& dbeta) {
  const int64_t M = x.size(0), d = x.size(1);
  const acc_t* pg = gxn.const_data_ptr<acc_t>();
  const acc_t* pm = mean.const_data_ptr<acc_t>();
  const acc_t* ps = rstd.const_data_ptr<acc_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bn_mlp bn_backward_reduce", [&] {
    const scalar_t* px = x.const_data_ptr<scalar_t>();
    // acc[0:d] = sum g * xhat, acc[d:2d] = sum g
    std::vector<double> s = column_sums(M, d, 2, [&](int64_t r, double* acc) {
      const scalar_t* xr = px + r * d;
      const acc_t* gr = pg + r * d;
      for (int64_t c = 0; c < d; ++c) {
        const double gv = gr[c];
        acc[c] += gv * (double(to_acc<acc_t>(xr[c]) - pm[c]) * double(ps[c]));
        acc[d + c] += gv;
      }
    });
    acc_t* og = dgamma.mutable_data_ptr<acc_t>();
    acc_t* ob = dbeta.mutable_data_ptr<acc_t>();
    for (int64_t c = 0; c < d; ++c) {
      og[c] = static_cast<acc_t>(s[c]);
      ob[c] = static_cast<acc_t>(s[d + c]);
    }
  });
}

void bn_backward_reduce_cpu(const at::Tensor& gxn, const at::Tensor& x, const at::Tensor& mean,
                            const at::Tensor& rstd, at::Tensor& dgamma, at::Tensor& dbeta) {
  if (gxn.scalar_type() == at::kDouble)
    bn_backward_reduce_impl<double>(gxn, x, mean, rstd, dgamma, dbeta);
  else
    bn_backward_reduce_impl<float>(gxn, x, mean, rstd, dgamma, dbeta);
}

template <typename acc_t>
void bn_backward_apply_impl(const at::Tensor& gxn, const at::Tensor& x, const at::Tensor& mean,
                            const at::Tensor& rstd, const at::Tensor& k_x, const at::Tensor& k_mean,
                            const at::Tensor& k_xhat, at::Tensor& dx) {
  const int64_t M = x.size(0), d = x.size(1);
  const acc_t* pg = gxn.const_data_ptr<acc_t>();
  const acc_t* pm = mean.const_data_ptr<acc_t>();
  const acc_t* ps = rstd.const_data_ptr<acc_t>();
  const acc_t* kx = k_x.const_data_ptr<acc_t>();
  const acc_t* km = k_mean.const_data_ptr<acc_t>();
  const acc_t* kh = k_xhat.const_data_ptr<acc_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bn_mlp bn_backward_apply", [&] {
    const scalar_t* px = x.const_data_ptr<scalar_t>();
    scalar_t* pd = dx.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, M, std::max<int64_t>(1, 16384 / d), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* xr = px + r * d;
        const acc_t* gr = pg + r * d;
        scalar_t* dr = pd + r * d;
        for (int64_t c = 0; c < d; ++c) {
          const acc_t xhat = (to_acc<acc_t>(xr[c]) - pm[c]) * ps[c];
          dr[c] = static_cast<scalar_t>(bn_grad(gr[c], xhat, kx[c], km[c], kh[c]));
        }
      }
    });
  });
}

void bn_backward_apply_cpu(const at::Tensor& gxn, const at::Tensor& x, const at::Tensor& mean,
                           const at::Tensor& rstd, const at::Tensor& k_x, const at::Tensor& k_mean,
                           const at::Tensor& k_xhat, at::Tensor& dx) {
  if (gxn.scalar_type() == at::kDouble)
    bn_backward_apply_impl<double>(gxn, x, mean, rstd, k_x, k_mean, k_xhat, dx);
  else
    bn_backward_apply_impl<float>(gxn, x, mean, rstd, k_x, k_mean, k_xhat, dx);
}

// 4M hidden elements (16 MiB fp32) per chunk: MKL's GEMMs lose up to 2x on row blocks of a few hundred
// rows (measured), while the transient buffers stay small next to the activations this op avoids keeping.
const Kernels kCpuKernels{col_stats_cpu, bn_apply_cpu, gelu_cpu, gelu_backward_cpu, bn_backward_reduce_cpu,
                          bn_backward_apply_cpu, int64_t(1) << 22, /*gemm_in_acc=*/true};

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(const at::Tensor& x, const at::Tensor& bn_weight,
                                                           const at::Tensor& bn_bias, const at::Tensor& running_mean,
                                                           const at::Tensor& running_var, const at::Tensor& w1,
                                                           const c10::optional<at::Tensor>& b1, const at::Tensor& w2,
                                                           const c10::optional<at::Tensor>& b2, bool training,
                                                           double eps) {
  return forward(kCpuKernels, x, bn_weight, bn_bias, running_mean, running_var, w1, b1, w2, b2, training, eps);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& bn_weight, const at::Tensor& bn_bias,
    const at::Tensor& w1, const c10::optional<at::Tensor>& b1, const at::Tensor& w2,
    const c10::optional<at::Tensor>& b2, const at::Tensor& mean, const at::Tensor& var, bool training, double eps) {
  return backward(kCpuKernels, grad_out, x, bn_weight, bn_bias, w1, b1, w2, b2, mean, var, training, eps);
}

}  // namespace
}  // namespace bn_mlp
}  // namespace tds

TORCH_LIBRARY_IMPL(tds, CPU, m) {
  m.impl("bn_mlp_forward", &tds::bn_mlp::forward_cpu);
  m.impl("bn_mlp_backward", &tds::bn_mlp::backward_cpu);
}
