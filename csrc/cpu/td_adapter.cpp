// The fused TD-Adapter (docs/model.md §4 op 2): the CPU kernels of tds::td_adapter_forward / _backward. The
// orchestration below is shared with CUDA and lives in csrc/host/td_adapter.cpp (interface: common/td_adapter_host.h).
//
// Layout: u (B, T, N, d) contiguous (a copy is made otherwise), frames on dim 1, channels last; as a
// matrix it is (M = B*T*N, d) with rows ordered (B, T, N), so a frame step is N rows.
//
// Plan (h = d/r is tiny: 20 or 32):
//   forward  1. b = u w_down^T                         MKL, (M, h)
//            2. BN1 batch stats of b                   two-pass, float64 sums            (training)
//            3. m = v - maxpool_t(v), v = (b-mu1)s1    narrow kernel
//            4. y0c = mix(m) - mean_tokens(mix(m))     narrow kernel; BN2's batch stats follow from the
//               mean and the h x h covariance of y0 (z = y0 w_up^T is linear): no pass over a d-wide z
//            5. y = y0c (s2 w_up)^T + beta2           MKL, BN2 folded into the expand
//            6. out = u + u (sigmoid(y) - 0.5)        d-wide elementwise
//   backward recomputes 1-5 (only u, the weights and the per-channel statistics are saved), then
//            dy and du from the gate, BN2 backward written with narrow algebra (dgamma2, dW_up and
//            d y0 from dy^T y0c, dy w_up and the covariance: dz is never formed), mix and
//            max-difference backward (argmax recomputed, first max wins as max_pool), BN1 backward,
//            dW_down = db^T u and du += db w_down (MKL).
// Statistics accumulate in float64 over fixed-size row chunks (deterministic for any thread count).
#include <ATen/Dispatch.h>
#include <ATen/Functions.h>
#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/alloc.h"
#include "common/td_adapter_host.h"
#include "common/parallel.h"
#include "common/td_adapter_math.h"

namespace tds {
namespace td_adapter {

// ========================================== CPU kernels ==========================================
namespace {

// Row chunks of about this many values: the unit of parallel work and of the partial statistics.
constexpr int64_t kChunkValues = 16384;

int64_t rows_per_chunk(int64_t C) { return std::max<int64_t>(1, kChunkValues / std::max<int64_t>(C, 1)); }

template <typename acc_t, int mode>
void col_sum_kernel(const acc_t* x, const acc_t* y, const acc_t* center, double* partial, int64_t M, int64_t C) {
  const int64_t rows = rows_per_chunk(C);
  const int64_t chunks = (M + rows - 1) / rows;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> cen(C, 0.0);
    if (mode != kSum)
      for (int64_t c = 0; c < C; ++c) cen[c] = double(center[c]);
    for (int64_t ch = begin; ch < end; ++ch) {
      double* acc = partial + ch * C;
      for (int64_t c = 0; c < C; ++c) acc[c] = 0.0;
      const int64_t r1 = std::min(M, (ch + 1) * rows);
      for (int64_t r = ch * rows; r < r1; ++r) {
        const acc_t* xr = x + r * C;
        const acc_t* yr = mode == kCross ? y + r * C : xr;
        for (int64_t c = 0; c < C; ++c) acc[c] += col_term(mode, double(xr[c]), double(yr[c]), cen[c]);
      }
    }
  });
}

at::Tensor col_sum_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& center, int mode) {
  const int64_t M = x.size(0), C = x.size(1);
  const int64_t chunks = (M + rows_per_chunk(C) - 1) / rows_per_chunk(C);
  at::Tensor partial = at::empty({chunks, C}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "td_adapter col_sum", [&] {
    const scalar_t* yp = mode == kCross ? y.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* cp = mode != kSum ? center.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    double* pp = partial.mutable_data_ptr<double>();
    if (mode == kSum) col_sum_kernel<scalar_t, kSum>(xp, yp, cp, pp, M, C);
    else if (mode == kCentredSquares) col_sum_kernel<scalar_t, kCentredSquares>(xp, yp, cp, pp, M, C);
    else col_sum_kernel<scalar_t, kCross>(xp, yp, cp, pp, M, C);
  });
  return partial.sum(0);
}

// The max-difference works on units of (clip, block of tokens): for a fixed frame a unit's tokens are
// one contiguous run of nt*h values and frames are N*h apart, so the unit's T runs stay in cache while
// its windows are scanned and the inner loops run over the contiguous run (vectorised).
struct Units {
  int64_t nt_max, blocks;
  Units(int64_t N, int64_t h) {
    nt_max = std::max<int64_t>(1, std::min<int64_t>(N, 1024 / std::max<int64_t>(h, 1)));
    blocks = (N + nt_max - 1) / nt_max;
  }
};

// The unit's per-channel BN1 centre / scale repeated over its nt tokens, so the loops below run flat
// over the contiguous run of nt*h values (vectorised) instead of nesting a short loop over h.
template <typename acc_t>
struct RunAffine {
  std::vector<acc_t> center, scale;
  RunAffine(const acc_t* c, const acc_t* s, int64_t nt, int64_t h) : center(nt * h), scale(nt * h) {
    for (int64_t j = 0; j < nt; ++j)
      for (int64_t k = 0; k < h; ++k) {
        center[j * h + k] = c[k];
        scale[j * h + k] = s[k];
      }
  }
};

// c ? a : b as a bit-mask select: under gcc's default -ftrapping-math a float ?: is kept as a branch
// and stops the vectoriser, integer masks are not (same trick as td_adapter_math.h's select_bits).
template <typename acc_t>
inline acc_t select_mask(bool c, acc_t a, acc_t b) {
  using bits_t = std::conditional_t<sizeof(acc_t) == 8, int64_t, int32_t>;
  bits_t ia, ib;
  std::memcpy(&ia, &a, sizeof a);
  std::memcpy(&ib, &b, sizeof b);
  const bits_t mask = -static_cast<bits_t>(c);
  const bits_t r = (ia & mask) | (ib & ~mask);
  acc_t out;
  std::memcpy(&out, &r, sizeof out);
  return out;
}

// best[e] = max over frames lo..hi of v (first maximum kept, as max_pool) for the run's L values.
template <typename acc_t>
inline void window_max_run(const acc_t* b, int64_t stride, int lo, int hi, const RunAffine<acc_t>& af, int64_t L,
                           acc_t* best) {
  const acc_t* cen = af.center.data();
  const acc_t* sc = af.scale.data();
  const acc_t* r = b + lo * stride;
  for (int64_t e = 0; e < L; ++e) best[e] = bn_key(r[e], cen[e], sc[e]);
  for (int s = lo + 1; s <= hi; ++s) {
    r = b + s * stride;
    for (int64_t e = 0; e < L; ++e) {
      const acc_t v = bn_key(r[e], cen[e], sc[e]);
      best[e] = select_mask(beats(v, best[e]), v, best[e]);
    }
  }
}

// The same, also recording the frame of the maximum (as a value of acc_t, to keep the loop one type).
template <typename acc_t>
inline void window_argmax_run(const acc_t* b, int64_t stride, int lo, int hi, const RunAffine<acc_t>& af,
                              int64_t L, acc_t* best, acc_t* arg) {
  const acc_t* cen = af.center.data();
  const acc_t* sc = af.scale.data();
  const acc_t* r = b + lo * stride;
  for (int64_t e = 0; e < L; ++e) {
    best[e] = bn_key(r[e], cen[e], sc[e]);
    arg[e] = acc_t(lo);
  }
  for (int s = lo + 1; s <= hi; ++s) {
    r = b + s * stride;
    for (int64_t e = 0; e < L; ++e) {
      const acc_t v = bn_key(r[e], cen[e], sc[e]);
      const bool upd = beats(v, best[e]);
      best[e] = select_mask(upd, v, best[e]);
      arg[e] = select_mask(upd, acc_t(s), arg[e]);
    }
  }
}

template <typename acc_t>
void maxdiff_forward_kernel(const acc_t* b, const acc_t* center, const acc_t* scale, acc_t* m, int64_t B,
                            int64_t T, int64_t N, int64_t h, int half) {
  const Units un(N, h);
  const int64_t stride = N * h;
  at::parallel_for(0, B * un.blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> best(un.nt_max * h);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t bb = unit / un.blocks, n0 = (unit % un.blocks) * un.nt_max;
      const int64_t nt = std::min(un.nt_max, N - n0), L = nt * h;
      const int64_t off = bb * T * stride + n0 * h;
      const RunAffine<acc_t> af(center, scale, nt, h);
      for (int t = 0; t < int(T); ++t) {
        window_max_run(b + off, stride, window_lo(t, half), window_hi(t, half, int(T)), af, L, best.data());
        const acc_t* r = b + off + t * stride;
        acc_t* mt = m + off + t * stride;
        for (int64_t e = 0; e < L; ++e) mt[e] = bn_key(r[e], af.center[e], af.scale[e]) - best[e];
      }
    }
  });
}

template <typename acc_t>
void maxdiff_backward_kernel(const acc_t* b, const acc_t* center, const acc_t* scale, const acc_t* dm, acc_t* dv,
                             int64_t B, int64_t T, int64_t N, int64_t h, int half) {
  const Units un(N, h);
  const int64_t stride = N * h;
  at::parallel_for(0, B * un.blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> best(un.nt_max * h), arg(un.nt_max * h);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t bb = unit / un.blocks, n0 = (unit % un.blocks) * un.nt_max;
      const int64_t nt = std::min(un.nt_max, N - n0), L = nt * h;
      const int64_t off = bb * T * stride + n0 * h;
      const RunAffine<acc_t> af(center, scale, nt, h);
      for (int64_t t = 0; t < T; ++t)
        std::copy(dm + off + t * stride, dm + off + t * stride + L, dv + off + t * stride);
      // m[t] = v[t] - v[argmax of window t]: the window's gradient dm[t] leaves through its argmax.
      for (int t = 0; t < int(T); ++t) {
        const int lo = window_lo(t, half), hi = window_hi(t, half, int(T));
        window_argmax_run(b + off, stride, lo, hi, af, L, best.data(), arg.data());
        const acc_t* dmt = dm + off + t * stride;
        for (int s = lo; s <= hi; ++s) {
          acc_t* dvs = dv + off + s * stride;
          for (int64_t e = 0; e < L; ++e) dvs[e] -= select_mask(arg[e] == acc_t(s), dmt[e], acc_t(0));
        }
      }
    }
  });
}

template <typename acc_t>
void mix_rows_kernel(const acc_t* x, const acc_t* center, acc_t* out, int64_t M, int64_t h, bool mix) {
  at::parallel_for(0, M, rows_per_chunk(h), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const acc_t* xr = x + r * h;
      acc_t* o = out + r * h;
      acc_t mean = 0;
      if (mix) {
        for (int64_t c = 0; c < h; ++c) mean += xr[c];
        mean /= acc_t(h);
      }
      for (int64_t c = 0; c < h; ++c) o[c] = mix_value(xr[c], mean, center[c], mix);
    }
  });
}

template <typename acc_t>
void bn1_backward_kernel(const acc_t* dv, const acc_t* b, const acc_t* center, const acc_t* invstd,
                         const acc_t* scale, const acc_t* k_mean, const acc_t* k_xhat, acc_t* db, int64_t M,
                         int64_t h) {
  at::parallel_for(0, M, rows_per_chunk(h), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      for (int64_t c = 0; c < h; ++c) {
        const int64_t e = r * h + c;
        db[e] = bn1_backward(dv[e], b[e], center[c], invstd[c], scale[c], k_mean[c], k_xhat[c]);
      }
  });
}

// ---- the d-wide part: expand (MKL) + BN2 + gate, in row blocks -------------------------------------
// Each block of kBlockRows tokens gets y = y0c Wp^T + bias into a per-thread buffer that stays in L2,
// and the gate (or its backward) consumes it at once: the (M, d) fp32 y / dy never goes to memory.
// Blocks run in parallel; inside the parallel region ATen's GEMM runs single-threaded (no nesting).
constexpr int64_t kBlockRows = 256;

// The extension is built for baseline x86-64 (SSE2); the gate loops are worth an AVX2+FMA clone,
// picked at load time (gcc function multi-versioning), so one binary runs everywhere.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define TDS_VEC_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define TDS_VEC_CLONES
#endif

template <typename scalar_t, typename acc_t, bool gated>
TDS_VEC_CLONES void gate_forward_rows(const scalar_t* u, const acc_t* y, scalar_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<scalar_t>(gate_forward(static_cast<acc_t>(u[i]), y[i], gated));
}

// du = d out/du * g, y_dy <- d out/dy * g, and dy's column sums added to sum_dy (double).
template <typename scalar_t, typename acc_t, bool gated>
TDS_VEC_CLONES void gate_backward_rows(const scalar_t* g, const scalar_t* u, acc_t* y_dy, acc_t* du, double* sum_dy, int64_t rows,
                        int64_t d) {
  for (int64_t r = 0; r < rows; ++r) {
    const scalar_t* gr = g + r * d;
    const scalar_t* ur = u + r * d;
    acc_t* yr = y_dy + r * d;
    acc_t* dr = du + r * d;
    for (int64_t c = 0; c < d; ++c) {
      acc_t a, b;
      gate_backward(static_cast<acc_t>(gr[c]), static_cast<acc_t>(ur[c]), yr[c], gated, &a, &b);
      dr[c] = a;
      yr[c] = b;
      sum_dy[c] += double(b);
    }
  }
}

template <typename scalar_t>
using acc_of = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

void expand_gate_forward_cpu(const at::Tensor& u, const at::Tensor& y0c, const at::Tensor& Wp, const at::Tensor& bias,
                             at::Tensor& out, bool gated) {
  const int64_t M = u.size(0), d = u.size(1);
  const int64_t blocks = (M + kBlockRows - 1) / kBlockRows;
  const at::Tensor WpT = Wp.t();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, u.scalar_type(), "td_adapter expand_gate_forward", [&] {
    using acc_t = acc_of<scalar_t>;
    const scalar_t* up = u.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    tds::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      at::Tensor ybuf = at::empty({kBlockRows, d}, y0c.options());
      for (int64_t blk = begin; blk < end; ++blk) {
        const int64_t r0 = blk * kBlockRows, rows = std::min(kBlockRows, M - r0);
        at::Tensor y = ybuf.narrow(0, 0, rows);
        at::addmm_out(y, bias, y0c.narrow(0, r0, rows), WpT);
        const acc_t* yp = y.const_data_ptr<acc_t>();
        if (gated) gate_forward_rows<scalar_t, acc_t, true>(up + r0 * d, yp, op + r0 * d, rows * d);
        else gate_forward_rows<scalar_t, acc_t, false>(up + r0 * d, yp, op + r0 * d, rows * d);
      }
    });
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> expand_gate_backward_cpu(const at::Tensor& g, const at::Tensor& u,
                                                                        const at::Tensor& y0c, const at::Tensor& Wp,
                                                                        const at::Tensor& bias, at::Tensor& du,
                                                                        bool gated) {
  const int64_t M = u.size(0), d = u.size(1), h = y0c.size(1);
  const int64_t blocks = (M + kBlockRows - 1) / kBlockRows;
  const at::Tensor WpT = Wp.t();
  // per-block partial sums, reduced in a fixed order afterwards: deterministic for any thread count
  at::Tensor sum_dy = at::zeros({blocks, d}, y0c.options().dtype(at::kDouble));
  at::Tensor G = at::empty({blocks, h, d}, y0c.options());  // (dy^T y0c)^T per block: MKL is faster this way
  at::Tensor dyWp = at::empty({M, h}, y0c.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, u.scalar_type(), "td_adapter expand_gate_backward", [&] {
    using acc_t = acc_of<scalar_t>;
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* up = u.const_data_ptr<scalar_t>();
    acc_t* dp = du.mutable_data_ptr<acc_t>();
    double* sp = sum_dy.mutable_data_ptr<double>();
    tds::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      at::Tensor ybuf = at::empty({kBlockRows, d}, y0c.options());
      for (int64_t blk = begin; blk < end; ++blk) {
        const int64_t r0 = blk * kBlockRows, rows = std::min(kBlockRows, M - r0);
        at::Tensor y = ybuf.narrow(0, 0, rows);
        const at::Tensor y0b = y0c.narrow(0, r0, rows);
        at::addmm_out(y, bias, y0b, WpT);
        acc_t* yp = y.mutable_data_ptr<acc_t>();  // becomes dy
        if (gated) gate_backward_rows<scalar_t, acc_t, true>(gp + r0 * d, up + r0 * d, yp, dp + r0 * d, sp + blk * d, rows, d);
        else gate_backward_rows<scalar_t, acc_t, false>(gp + r0 * d, up + r0 * d, yp, dp + r0 * d, sp + blk * d, rows, d);
        at::Tensor Gb = G.select(0, blk);
        at::mm_out(Gb, y0b.t(), y);
        at::Tensor dyWpb = dyWp.narrow(0, r0, rows);
        at::mm_out(dyWpb, y, Wp);
      }
    });
  });
  return {sum_dy.sum(0), G.to(at::kDouble).sum(0).t(), dyWp};
}

int half_of(int64_t kernel_size, int64_t T) { return int(std::min<int64_t>(kernel_size / 2, T)); }

void maxdiff_forward_cpu(const at::Tensor& b, const at::Tensor& center, const at::Tensor& scale, at::Tensor& m,
                         int64_t B, int64_t T, int64_t N, int64_t kernel_size) {
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "td_adapter maxdiff_forward", [&] {
    maxdiff_forward_kernel<scalar_t>(b.const_data_ptr<scalar_t>(), center.const_data_ptr<scalar_t>(),
                                     scale.const_data_ptr<scalar_t>(), m.mutable_data_ptr<scalar_t>(), B, T, N,
                                     b.size(1), half_of(kernel_size, T));
  });
}

void maxdiff_backward_cpu(const at::Tensor& b, const at::Tensor& center, const at::Tensor& scale,
                          const at::Tensor& dm, at::Tensor& dv, int64_t B, int64_t T, int64_t N,
                          int64_t kernel_size) {
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "td_adapter maxdiff_backward", [&] {
    maxdiff_backward_kernel<scalar_t>(b.const_data_ptr<scalar_t>(), center.const_data_ptr<scalar_t>(),
                                      scale.const_data_ptr<scalar_t>(), dm.const_data_ptr<scalar_t>(),
                                      dv.mutable_data_ptr<scalar_t>(), B, T, N, b.size(1),
                                      half_of(kernel_size, T));
  });
}

void mix_rows_cpu(const at::Tensor& x, const at::Tensor& center, at::Tensor& out, bool mix) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "td_adapter mix_rows", [&] {
    mix_rows_kernel<scalar_t>(x.const_data_ptr<scalar_t>(), center.const_data_ptr<scalar_t>(),
                              out.mutable_data_ptr<scalar_t>(), x.size(0), x.size(1), mix);
  });
}

void bn1_backward_cpu(const at::Tensor& dv, const at::Tensor& b, const at::Tensor& center,
                      const at::Tensor& invstd, const at::Tensor& scale, const at::Tensor& k_mean,
                      const at::Tensor& k_xhat, at::Tensor& db) {
  AT_DISPATCH_FLOATING_TYPES(dv.scalar_type(), "td_adapter bn1_backward", [&] {
    bn1_backward_kernel<scalar_t>(dv.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(),
                                  center.const_data_ptr<scalar_t>(), invstd.const_data_ptr<scalar_t>(),
                                  scale.const_data_ptr<scalar_t>(), k_mean.const_data_ptr<scalar_t>(),
                                  k_xhat.const_data_ptr<scalar_t>(), db.mutable_data_ptr<scalar_t>(), dv.size(0),
                                  dv.size(1));
  });
}

const Kernels kCpuKernels{&col_sum_cpu,           &maxdiff_forward_cpu,      &maxdiff_backward_cpu, &mix_rows_cpu,
                          &expand_gate_forward_cpu, &expand_gate_backward_cpu, &bn1_backward_cpu};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward_cpu(
    const at::Tensor& u, const at::Tensor& w_down, const at::Tensor& w_up, const at::Tensor& gamma1,
    const at::Tensor& beta1, const at::Tensor& gamma2, const at::Tensor& beta2, const at::Tensor& running_mean1,
    const at::Tensor& running_var1, const at::Tensor& running_mean2, const at::Tensor& running_var2,
    bool training, double eps, int64_t kernel_size, bool mix, bool gated) {
  return forward(kCpuKernels, u, w_down, w_up, gamma1, beta1, gamma2, beta2, running_mean1, running_var1,
                 running_mean2, running_var2, training, eps, kernel_size, mix, gated);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& u, const at::Tensor& w_down, const at::Tensor& w_up,
    const at::Tensor& gamma1, const at::Tensor& beta1, const at::Tensor& gamma2, const at::Tensor& beta2,
    const at::Tensor& mean1, const at::Tensor& var1, const at::Tensor& mean2, const at::Tensor& var2,
    bool training, double eps, int64_t kernel_size, bool mix, bool gated) {
  return backward(kCpuKernels, grad_out, u, w_down, w_up, gamma1, beta1, gamma2, beta2, mean1, var1, mean2, var2,
                  training, eps, kernel_size, mix, gated);
}

}  // namespace
}  // namespace td_adapter
}  // namespace tds

TORCH_LIBRARY_IMPL(tds, CPU, m) {
  m.impl("td_adapter_forward", &tds::td_adapter::forward_cpu);
  m.impl("td_adapter_backward", &tds::td_adapter::backward_cpu);
}
