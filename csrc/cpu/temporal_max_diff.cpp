// CPU kernel of tds::temporal_max_diff and its backward (SPEC §4 op 1).
//
// Layout: x (B, T, N, C) contiguous, frames on dim 1. For a fixed frame t the tokens n0..n0+nt-1 are
// one contiguous run of nt*C values, and the max over frames works elementwise along that run, so the
// unit of work is (b, block of whole tokens): T rows of L = nt*C contiguous values, rows N*C apart.
// A unit's T rows (a few tens of KiB) stay in L1/L2 while its windows are scanned, so x is read from
// memory once. Units run in parallel (at::parallel_for); inner loops run over the contiguous run so
// gcc -O3 vectorises them. Arithmetic is fp32 for fp16/bf16/fp32 inputs (fp64 for fp64) and the
// per-element math is shared with the CUDA kernel (common/max_diff_math.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/alloc.h"
#include "common/max_diff_math.h"

namespace tds {
namespace {

using namespace max_diff;

// Units hold about this many values per frame: big enough to amortise the loop overheads, small
// enough that the unit's frames (up to 3 buffers of T rows) stay in L2.
constexpr int64_t kTargetRun = 1024;

template <typename scalar_t>
using acc_type_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// Sum of n values with 8 independent partial sums: gcc vectorises this without -ffast-math (a
// single running sum is a serial dependency it may not reorder). Accumulates in acc_t (fp32 or fp64).
template <typename acc_t>
inline acc_t row_sum(const acc_t* p, int64_t n) {
  acc_t s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) s[l] += p[j + l];
  for (; j < n; ++j) s[j & 7] += p[j];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// y = mix(m, mean_C(m)) for each of the nt tokens of a run, in place.
template <typename acc_t>
inline void mix_tokens(acc_t* m, int64_t nt, int64_t C) {
  const acc_t inv_c = acc_t(1) / acc_t(C);
  for (int64_t i = 0; i < nt; ++i) {
    acc_t* r = m + i * C;
    const acc_t mean = row_sum(r, C) * inv_c;
    for (int64_t c = 0; c < C; ++c) r[c] = mix(r[c], mean);
  }
}

template <typename src_t, typename dst_t>
inline void convert(const src_t* src, dst_t* dst, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<dst_t>(static_cast<float>(src[j]));
}

template <typename T>
inline void convert(const T* src, T* dst, int64_t n) {
  std::copy(src, src + n, dst);
}

// Rows of one unit in acc_t: the tensor's own rows when scalar_t is already acc_t, else a copy.
template <typename scalar_t, typename acc_t>
struct Rows {
  std::vector<const acc_t*> ptr;
  Rows(const scalar_t* base, int64_t T, int64_t stride, int64_t L, std::vector<acc_t>& buf) : ptr(T) {
    for (int64_t t = 0; t < T; ++t) {
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        ptr[t] = base + t * stride;
      } else {
        acc_t* dst = buf.data() + t * L;
        convert(base + t * stride, dst, L);
        ptr[t] = dst;
      }
    }
  }
};

// The j loops below read and write several rows through pointers gcc cannot prove distinct; they
// are (x, dx and G rows live in different buffers; padded window slots share read-only or
// write-zero-only scratch rows), so the loops are marked independent instead of versioned.
#if defined(__clang__)
#define TDS_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define TDS_IVDEP _Pragma("GCC ivdep")
#else
#define TDS_IVDEP
#endif

// m = x[t] - max over the window's rows w[0..k-1] (padding slots point at a row of -inf). With the
// window length W known at compile time (1, 3, 5, 7) this is one vectorised pass; W = 0 is the
// multi-pass fallback for any other k.
template <int W, typename acc_t>
inline void max_diff_row(const acc_t* const* win, int k, const acc_t* xt, acc_t* m, int64_t L) {
  if constexpr (W > 0) {
    const acc_t* w[W];
    for (int i = 0; i < W; ++i) w[i] = win[i];
    TDS_IVDEP
    for (int64_t j = 0; j < L; ++j) {
      acc_t best = w[0][j];
      for (int i = 1; i < W; ++i) best = max_step(best, w[i][j]);
      m[j] = xt[j] - best;
    }
  } else {
    for (int64_t j = 0; j < L; ++j) m[j] = win[0][j];
    for (int i = 1; i < k; ++i) {
      const acc_t* r = win[i];
      for (int64_t j = 0; j < L; ++j) m[j] = max_step(m[j], r[j]);
    }
    for (int64_t j = 0; j < L; ++j) m[j] = xt[j] - m[j];
  }
}

// Window s (rows xw[0..k-1], their gradient rows aw[0..k-1]; padding slots point at a -inf row and a
// scratch row) recomputes its argmax with max_pool's rule, starting at slot i0 (its first real frame,
// kept when every frame is -inf), and takes G[s] off the winner's gradient.
template <int W, typename acc_t>
inline void route_window(const acc_t* const* xwin, acc_t* const* awin, int k, int i0, const acc_t* gs, int64_t L,
                         acc_t* best, int32_t* arg) {
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  if constexpr (W > 0) {
    const acc_t* xw[W];
    acc_t* aw[W];
    for (int i = 0; i < W; ++i) xw[i] = xwin[i], aw[i] = awin[i];
    TDS_IVDEP
    for (int64_t j = 0; j < L; ++j) {
      acc_t b = kNegInf;
      int32_t a = i0;
      for (int i = 0; i < W; ++i) {
        const acc_t v = xw[i][j];
        const bool upd = beats(v, b);
        b = upd ? v : b;
        a = upd ? i : a;
      }
      const acc_t gv = gs[j];  // loaded unconditionally: keeps the loop branch-free
      for (int i = 0; i < W; ++i) aw[i][j] -= routed(a, i, gv);
    }
  } else {
    for (int64_t j = 0; j < L; ++j) best[j] = kNegInf, arg[j] = i0;
    for (int i = 0; i < k; ++i) {
      const acc_t* r = xwin[i];
      for (int64_t j = 0; j < L; ++j) {
        const bool upd = beats(r[j], best[j]);
        best[j] = upd ? r[j] : best[j];
        arg[j] = upd ? i : arg[j];
      }
    }
    for (int i = 0; i < k; ++i) {
      acc_t* a = awin[i];
      for (int64_t j = 0; j < L; ++j) {
        const acc_t gv = gs[j];
        a[j] -= routed(arg[j], i, gv);
      }
    }
  }
}

// Splits (B, N) into units of whole tokens, about kTargetRun values per frame each.
struct Units {
  int64_t nt_max, blocks;
  Units(int64_t N, int64_t C)
      : nt_max(std::max<int64_t>(1, std::min<int64_t>(N, kTargetRun / std::max<int64_t>(C, 1)))),
        blocks((N + nt_max - 1) / nt_max) {}
};

template <int W, typename scalar_t>
void forward_kernel(const scalar_t* x, scalar_t* y, int64_t B, int64_t T, int64_t N, int64_t C, int half,
                    bool mix_on) {
  using acc_t = acc_type_t<scalar_t>;
  constexpr bool same = std::is_same_v<scalar_t, acc_t>;
  const Units units(N, C);
  const int64_t stride = N * C, cap = units.nt_max * C;
  const int k = 2 * half + 1;
  at::parallel_for(0, B * units.blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> xbuf(same ? 0 : T * cap), mbuf(same ? 0 : cap);
    const std::vector<acc_t> neg_inf(cap, -std::numeric_limits<acc_t>::infinity());
    std::vector<const acc_t*> win(k);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / units.blocks, n0 = (u % units.blocks) * units.nt_max;
      const int64_t nt = std::min(units.nt_max, N - n0), L = nt * C;
      const int64_t off = b * T * stride + n0 * C;
      Rows<scalar_t, acc_t> xr(x + off, T, stride, L, xbuf);
      for (int64_t t = 0; t < T; ++t) {
        for (int i = 0; i < k; ++i) {
          const int64_t p = t - half + i;
          win[i] = (p >= 0 && p < T) ? xr.ptr[p] : neg_inf.data();
        }
        // m is built in the output row itself when that has the accumulation type (fp32/fp64).
        acc_t* m;
        if constexpr (same) m = y + off + t * stride; else m = mbuf.data();
        max_diff_row<W>(win.data(), k, xr.ptr[t], m, L);
        if (mix_on) mix_tokens(m, nt, C);
        if constexpr (!same) convert(m, y + off + t * stride, L);
      }
    }
  });
}

template <int W, typename scalar_t>
void backward_kernel(const scalar_t* g, const scalar_t* x, scalar_t* dx, int64_t B, int64_t T, int64_t N,
                     int64_t C, int half, bool mix_on) {
  using acc_t = acc_type_t<scalar_t>;
  constexpr bool same = std::is_same_v<scalar_t, acc_t>;
  const Units units(N, C);
  const int64_t stride = N * C, cap = units.nt_max * C;
  const int k = 2 * half + 1;
  at::parallel_for(0, B * units.blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> xbuf(same ? 0 : T * cap), gbuf((same && !mix_on) ? 0 : T * cap),
        abuf(same ? 0 : T * cap), best(W > 0 ? 0 : cap), scratch(cap, acc_t(0));
    const std::vector<acc_t> neg_inf(cap, -std::numeric_limits<acc_t>::infinity());
    std::vector<int32_t> arg(W > 0 ? 0 : cap);
    std::vector<acc_t*> acc(T), awin(k);
    std::vector<const acc_t*> G(T), xwin(k);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / units.blocks, n0 = (u % units.blocks) * units.nt_max;
      const int64_t nt = std::min(units.nt_max, N - n0), L = nt * C;
      const int64_t off = b * T * stride + n0 * C;
      Rows<scalar_t, acc_t> xr(x + off, T, stride, L, xbuf);
      // G[t] = dL/dm[t]: grad_out itself, or its mix transpose (the same map as the forward mix).
      // dx[t] starts at G[t] (the x[t] term of m) and each window takes its share off.
      for (int64_t t = 0; t < T; ++t) {
        const scalar_t* gt = g + off + t * stride;
        bool borrowed = false;
        if constexpr (same) {
          if (!mix_on) {
            G[t] = gt;
            borrowed = true;
          }
          acc[t] = dx + off + t * stride;  // accumulate straight into the output row
        } else {
          acc[t] = abuf.data() + t * L;
        }
        if (!borrowed) {
          acc_t* dst = gbuf.data() + t * L;
          convert(gt, dst, L);
          if (mix_on) mix_tokens(dst, nt, C);
          G[t] = dst;
        }
        for (int64_t j = 0; j < L; ++j) acc[t][j] = G[t][j];
      }
      // Windows in ascending s (the CUDA kernel subtracts in the same order).
      for (int64_t s = 0; s < T; ++s) {
        int i0 = -1;
        for (int i = 0; i < k; ++i) {
          const int64_t p = s - half + i;
          const bool in = p >= 0 && p < T;
          if (in && i0 < 0) i0 = i;
          xwin[i] = in ? xr.ptr[p] : neg_inf.data();
          awin[i] = in ? acc[p] : scratch.data();  // padding never wins: its share is 0
        }
        route_window<W>(xwin.data(), awin.data(), k, i0, G[s], L, best.data(), arg.data());
      }
      if constexpr (!same)
        for (int64_t t = 0; t < T; ++t) convert(acc[t], dx + off + t * stride, L);
    }
  });
}

// Runs `body` with W = the window length as a compile-time constant when it is 1, 3, 5 or 7.
template <typename F>
void with_window(int k, F&& body) {
  switch (k) {
    case 1: body(std::integral_constant<int, 1>{}); break;
    case 3: body(std::integral_constant<int, 3>{}); break;
    case 5: body(std::integral_constant<int, 5>{}); break;
    case 7: body(std::integral_constant<int, 7>{}); break;
    default: body(std::integral_constant<int, 0>{}); break;
  }
}

void check_args(const at::Tensor& x, int64_t kernel_size, const char* fn) {
  TORCH_CHECK(x.dim() == 4, fn, ": x must be (B, T, N, C), got ", x.dim(), " dims");
  TORCH_CHECK(kernel_size > 0 && kernel_size % 2 == 1, fn, ": kernel_size must be odd and positive, got ",
              kernel_size);
  TORCH_CHECK(x.size(1) < (int64_t(1) << 30), fn, ": too many frames");
}

at::Tensor temporal_max_diff_cpu(const at::Tensor& x_in, int64_t kernel_size, bool mix_on) {
  check_args(x_in, kernel_size, "tds::temporal_max_diff");
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = new_output(x.sizes(), x.options());
  if (x.numel() == 0) return y;
  // A window wider than 2T-1 frames sees the same frames as one of 2T-1; clamping keeps half in int.
  const int half = int(std::min<int64_t>(kernel_size / 2, x.size(1)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "tds::temporal_max_diff", [&] {
    with_window(2 * half + 1, [&](auto W) {
      forward_kernel<decltype(W)::value, scalar_t>(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(),
                                                   x.size(0), x.size(1), x.size(2), x.size(3), half, mix_on);
    });
  });
  return y;
}

at::Tensor temporal_max_diff_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in, int64_t kernel_size,
                                          bool mix_on) {
  check_args(x_in, kernel_size, "tds::temporal_max_diff_backward");
  TORCH_CHECK(grad_in.sizes() == x_in.sizes(), "tds::temporal_max_diff_backward: grad_out shape ",
              grad_in.sizes(), " != x shape ", x_in.sizes());
  TORCH_CHECK(grad_in.scalar_type() == x_in.scalar_type(), "tds::temporal_max_diff_backward: grad_out dtype ",
              grad_in.scalar_type(), " != x dtype ", x_in.scalar_type());
  TORCH_CHECK(grad_in.device() == x_in.device(), "tds::temporal_max_diff_backward: grad_out is on ",
              grad_in.device(), ", x on ", x_in.device());
  const at::Tensor x = x_in.contiguous(), g = grad_in.contiguous();
  at::Tensor dx = new_output(x.sizes(), x.options());
  if (x.numel() == 0) return dx;
  const int half = int(std::min<int64_t>(kernel_size / 2, x.size(1)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "tds::temporal_max_diff_backward", [&] {
    with_window(2 * half + 1, [&](auto W) {
      backward_kernel<decltype(W)::value, scalar_t>(g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                                    dx.mutable_data_ptr<scalar_t>(), x.size(0), x.size(1),
                                                    x.size(2), x.size(3), half, mix_on);
    });
  });
  return dx;
}

}  // namespace
}  // namespace tds

TORCH_LIBRARY_IMPL(tds, CPU, m) {
  m.impl("temporal_max_diff", &tds::temporal_max_diff_cpu);
  m.impl("temporal_max_diff_backward", &tds::temporal_max_diff_backward_cpu);
}
