// CPU kernel of tds::temporal_max_diff and its backward (docs/model.md §4 op 1).
//
// Layout: x (B, T, N, C) contiguous, frames on dim 1. For a fixed frame t the tokens n0..n0+nt-1 are
// one contiguous run of nt*C values, and the max over frames works elementwise along that run, so the
// unit of work is (b, block of whole tokens): T rows of L = nt*C contiguous values, rows N*C apart.
// A unit's T rows (a few tens of KiB) stay in L1/L2 while its windows are scanned, so x is read from
// memory once. Units run in parallel (at::parallel_for); the inner loops run along the contiguous run
// and vectorise. The window length is a compile-time constant for k in {1, 3, 5, 7} (one fused pass
// per row; any other k takes a multi-pass path), and on x86 the unit loops are also compiled for
// AVX2 and picked at run time, as ATen does for its own kernels. Arithmetic is fp32 for
// fp16/bf16/fp32 inputs (fp64 for fp64); the per-element math is shared with the CUDA kernel
// (common/max_diff_math.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/alloc.h"
#include "common/max_diff_host.h"
#include "common/max_diff_math.h"

#if defined(__GNUC__) || defined(__clang__)
#define TDS_INLINE inline __attribute__((always_inline))
#else
#define TDS_INLINE inline
#endif

// The fused loops read and write several rows through pointers the compiler cannot prove distinct.
// They are: x, G and dx rows live in different buffers, and padded window slots share a read-only
// -inf row or a scratch row that only ever gets 0 subtracted. So the loops are declared independent
// instead of being versioned (too many pointers for gcc's runtime alias checks).
#if defined(__clang__)
#define TDS_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define TDS_IVDEP _Pragma("GCC ivdep")
#else
#define TDS_IVDEP
#endif

// An AVX2 copy of the unit loops, chosen at run time: the extension is built for baseline x86-64
// (SSE2) so that it runs anywhere, which would leave half of an AVX2 core's vector width unused
// (and convert fp16 one value at a time, without F16C).
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define TDS_HAVE_AVX2_CLONE 1
#define TDS_TARGET_AVX2 __attribute__((target("avx2,f16c")))
#include <immintrin.h>
#else
#define TDS_HAVE_AVX2_CLONE 0
#endif

namespace tds {
namespace {

using namespace max_diff;

// Units hold about this many values per frame: enough to amortise the per-row overheads, small enough
// that a unit's rows (x, G, dx: 3 buffers of T rows) stay in L2.
constexpr int64_t kTargetRun = 1024;

template <typename scalar_t>
using acc_type_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

bool cpu_has_avx2() {
#if TDS_HAVE_AVX2_CLONE
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  return has;
#else
  return false;
#endif
}

// Sum of n values with 8 independent partial sums: vectorises without -ffast-math (one running sum
// is a serial dependency the compiler may not reorder). Accumulates in acc_t (fp32 or fp64).
template <typename acc_t>
TDS_INLINE acc_t row_sum(const acc_t* p, int64_t n) {
  acc_t s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) s[l] += p[j + l];
  for (; j < n; ++j) s[j & 7] += p[j];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// out = mix(m, mean_C(m)) for each of the nt tokens of a run (out may be m itself).
template <typename acc_t>
TDS_INLINE void mix_tokens(const acc_t* m, acc_t* out, int64_t nt, int64_t C) {
  const acc_t inv_c = acc_t(1) / acc_t(C);
  for (int64_t i = 0; i < nt; ++i) {
    const acc_t* r = m + i * C;
    acc_t* o = out + i * C;
    const acc_t mean = row_sum(r, C) * inv_c;
    for (int64_t c = 0; c < C; ++c) o[c] = mix(r[c], mean);
  }
}

#if TDS_HAVE_AVX2_CLONE
// fp16 <-> fp32 with the F16C instructions (round to nearest even, like c10::Half); out-of-line
// functions, called once per row, so the rest of the code needs no F16C target.
__attribute__((target("avx2,f16c"))) void half_to_float_f16c(const c10::Half* src, float* dst, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j))));
  for (; j < n; ++j) dst[j] = static_cast<float>(src[j]);
}

__attribute__((target("avx2,f16c"))) void float_to_half_f16c(const float* src, c10::Half* dst, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + j),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + j), _MM_FROUND_TO_NEAREST_INT));
  for (; j < n; ++j) dst[j] = static_cast<c10::Half>(src[j]);
}
#endif

// Row conversions between the tensor dtype and acc_t. bf16 is written out as bit operations
// (exactly c10::BFloat16's round-to-nearest-even, NaN -> 0x7FC0) because the c10 conversion has a
// branch that stops vectorisation; fp16 uses F16C in the AVX2 build (kAvx2).
template <bool kAvx2, typename src_t, typename dst_t>
TDS_INLINE void convert(const src_t* src, dst_t* dst, int64_t n) {
  if constexpr (std::is_same_v<src_t, dst_t>) {
    std::copy(src, src + n, dst);
  } else if constexpr (std::is_same_v<src_t, c10::BFloat16> && std::is_same_v<dst_t, float>) {
    for (int64_t j = 0; j < n; ++j) {
      const uint32_t bits = uint32_t(src[j].x) << 16;
      std::memcpy(dst + j, &bits, sizeof bits);
    }
  } else if constexpr (std::is_same_v<src_t, float> && std::is_same_v<dst_t, c10::BFloat16>) {
    for (int64_t j = 0; j < n; ++j) {
      const float f = src[j];
      uint32_t bits;
      std::memcpy(&bits, &f, sizeof bits);
      const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
      dst[j].x = uint16_t(f != f ? 0x7FC0u : rounded);
    }
#if TDS_HAVE_AVX2_CLONE
  } else if constexpr (kAvx2 && std::is_same_v<src_t, c10::Half> && std::is_same_v<dst_t, float>) {
    half_to_float_f16c(src, dst, n);
  } else if constexpr (kAvx2 && std::is_same_v<src_t, float> && std::is_same_v<dst_t, c10::Half>) {
    float_to_half_f16c(src, dst, n);
#endif
  } else {
    for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<dst_t>(static_cast<float>(src[j]));
  }
}

// Pointers to a unit's T rows in acc_t: the tensor's own rows when scalar_t is already acc_t, else
// rows converted into buf.
template <bool kAvx2, typename scalar_t, typename acc_t>
TDS_INLINE void load_rows(const scalar_t* base, int64_t T, int64_t stride, int64_t L, acc_t* buf,
                          const acc_t** rows) {
  for (int64_t t = 0; t < T; ++t) {
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      rows[t] = base + t * stride;
    } else {
      convert<kAvx2>(base + t * stride, buf + t * L, L);
      rows[t] = buf + t * L;
    }
  }
}

// m = x[t] - max over the window's rows w[0..k-1] (padding slots point at a row of -inf). With the
// window length W a compile-time constant this is one pass; W = 0 is the multi-pass path for any k.
template <int W, typename acc_t>
TDS_INLINE void max_diff_row(const acc_t* const* win, int k, const acc_t* xt, acc_t* m, int64_t L) {
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

// Bit masks for the fused route loop: all ones / all zeros in an integer as wide as acc_t. Masking G
// with them gives exactly G or +0 (as max_diff::routed does), but as and/andnot operations, which the
// compiler vectorises; selects between loaded values inside this loop it turns into branches.
template <typename acc_t>
using bits_t = std::conditional_t<sizeof(acc_t) == 8, uint64_t, uint32_t>;

template <typename acc_t>
TDS_INLINE bits_t<acc_t> mask_of(bool c) {
  return bits_t<acc_t>(0) - bits_t<acc_t>(c);
}

template <typename acc_t>
TDS_INLINE acc_t masked(acc_t v, bits_t<acc_t> m) {
  bits_t<acc_t> b;
  std::memcpy(&b, &v, sizeof b);
  b &= m;
  std::memcpy(&v, &b, sizeof v);
  return v;
}

// Window s: rows xw[0..k-1] of x and aw[0..k-1] of dx (padding slots point at the -inf row and the
// scratch row). Recomputes the argmax with max_pool's rule, starting at slot i0 (the first real frame,
// which keeps the max when every frame is -inf), and takes G[s] off the winner's dx.
//
// Fast path (W = 3, 5 or 7 known at compile time): slot 0 is the initial best; the winner is the last
// slot whose value beats the running best (max_diff::beats), else slot i0 (which is slot 0 unless the
// window starts before the clip: then slot i0 counts as updated and the -inf padding never does).
// Each slot's share of G[s] comes from the update masks, in one pass per window; that pass also
// initialises the last slot's dx row (first touched by this window) from g_last, its G row, which
// saves a separate initialisation pass over dx. For any other k the multi-pass path runs with the
// argmax index and max_diff::routed, on rows initialised beforehand.
template <int W, typename acc_t>
TDS_INLINE void route_window(const acc_t* const* xwin, acc_t* const* awin, int k, int i0, const acc_t* gs,
                             const acc_t* g_last, int64_t L, acc_t* best, int32_t* arg) {
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  if constexpr (W > 1) {
    {
      const acc_t* xw[W];
      acc_t* aw[W];
      bits_t<acc_t> force[W];  // slot i0 is the initial winner: counts as updated (i0 > 0 only)
      for (int i = 0; i < W; ++i) xw[i] = xwin[i], aw[i] = awin[i], force[i] = mask_of<acc_t>(i0 > 0 && i == i0);
      TDS_IVDEP
      for (int64_t j = 0; j < L; ++j) {
        acc_t b = xw[0][j];
        bits_t<acc_t> upd[W];
        for (int i = 1; i < W; ++i) {
          const acc_t v = xw[i][j];
          const bool u = beats(v, b);
          upd[i] = mask_of<acc_t>(u) | force[i];
          b = u ? v : b;
        }
        const acc_t gv = gs[j];
        // The last slot's dx row is touched here for the first time: it starts from its G row.
        aw[W - 1][j] = g_last[j] - masked(gv, upd[W - 1]);
        bits_t<acc_t> later = upd[W - 1];  // some slot after i updated: i lost
        for (int i = W - 2; i >= 1; --i) {
          aw[i][j] -= masked(gv, upd[i] & ~later);
          later |= upd[i];
        }
        aw[0][j] -= masked(gv, ~later);
      }
      return;
    }
  }
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

// Problem geometry: (B, N) split into units of whole tokens, about kTargetRun values per frame each.
struct Geometry {
  int64_t B, T, N, C, stride, nt_max, blocks, cap;
  int half, k;
  Geometry(const at::Tensor& x, int half_)
      : B(x.size(0)), T(x.size(1)), N(x.size(2)), C(x.size(3)), stride(N * C),
        nt_max(std::max<int64_t>(1, std::min<int64_t>(N, kTargetRun / std::max<int64_t>(C, 1)))),
        blocks((N + nt_max - 1) / nt_max), cap(nt_max * C), half(half_), k(2 * half_ + 1) {}
  int64_t units() const { return B * blocks; }
};

// Unit u: clip b = u / blocks, tokens n0 .. n0 + nt of it; a run of L = nt C values per frame, starting
// at offset off of frame 0 (frame t at off + t stride).
struct Unit {
  int64_t nt, L, off;
};
TDS_INLINE Unit unit_of(const Geometry& g, int64_t u) {
  const int64_t b = u / g.blocks, n0 = (u % g.blocks) * g.nt_max;
  const int64_t nt = std::min(g.nt_max, g.N - n0);
  return {nt, nt * g.C, b * g.T * g.stride + n0 * g.C};
}

// Per-thread scratch, allocated once per parallel chunk.
template <typename acc_t>
struct Scratch {
  std::vector<acc_t> xbuf, gbuf, abuf, mbuf, best, zero_row, neg_inf;
  std::vector<int32_t> arg;
  std::vector<const acc_t*> xrows, grows, win;
  std::vector<acc_t*> arows, awin;
  Scratch(const Geometry& g, bool same, bool backward, bool mix_on)
      : xbuf(same ? 0 : g.T * g.cap), gbuf(backward && (!same || mix_on) ? g.T * g.cap : 0),
        abuf(backward && !same ? g.T * g.cap : 0), mbuf(!backward && !same ? g.cap : 0),
        best(backward ? g.cap : 0), zero_row(backward ? g.cap : 0, acc_t(0)),
        neg_inf(g.cap, -std::numeric_limits<acc_t>::infinity()), arg(backward ? g.cap : 0), xrows(g.T),
        grows(g.T), win(g.k), arows(g.T), awin(g.k) {}
};

template <int W, bool kAvx2, typename scalar_t, typename acc_t>
TDS_INLINE void forward_units(const scalar_t* x, scalar_t* y, const Geometry& g, bool mix_on, Scratch<acc_t>& sc,
                              int64_t begin, int64_t end) {
  constexpr bool same = std::is_same_v<scalar_t, acc_t>;
  for (int64_t u = begin; u < end; ++u) {
    const auto [nt, L, off] = unit_of(g, u);
    load_rows<kAvx2>(x + off, g.T, g.stride, L, sc.xbuf.data(), sc.xrows.data());
    for (int64_t t = 0; t < g.T; ++t) {
      // slot i holds frame t - half + i: a frame of the window (max_diff::window_lo/hi, as the CUDA
      // kernel) or the -inf padding
      const int lo = window_lo(int(t), g.half), hi = window_hi(int(t), g.half, int(g.T));
      for (int i = 0; i < g.k; ++i) {
        const int64_t p = t - g.half + i;
        sc.win[i] = (p >= lo && p <= hi) ? sc.xrows[p] : sc.neg_inf.data();
      }
      // m is built in the output row itself when that has the accumulation type (fp32/fp64).
      acc_t* m;
      if constexpr (same) m = y + off + t * g.stride; else m = sc.mbuf.data();
      max_diff_row<W>(sc.win.data(), g.k, sc.xrows[t], m, L);
      if (mix_on) mix_tokens(m, m, nt, g.C);
      if constexpr (!same) convert<kAvx2>(m, y + off + t * g.stride, L);
    }
  }
}

template <int W, bool kAvx2, typename scalar_t, typename acc_t>
TDS_INLINE void backward_units(const scalar_t* gr, const scalar_t* x, scalar_t* dx, const Geometry& g, bool mix_on,
                               Scratch<acc_t>& sc, int64_t begin, int64_t end) {
  constexpr bool same = std::is_same_v<scalar_t, acc_t>;
  for (int64_t u = begin; u < end; ++u) {
    const auto [nt, L, off] = unit_of(g, u);
    load_rows<kAvx2>(x + off, g.T, g.stride, L, sc.xbuf.data(), sc.xrows.data());
    // G[t] = dL/dm[t]: grad_out itself, or its mix transpose (the same map as the forward mix).
    // dx[t] starts at G[t] (the x[t] term of m); each window then takes its share off its argmax.
    for (int64_t t = 0; t < g.T; ++t) {
      const scalar_t* gt = gr + off + t * g.stride;
      if (same && !mix_on) {
        sc.grows[t] = reinterpret_cast<const acc_t*>(gt);  // only reached when scalar_t == acc_t
      } else {
        acc_t* dst = sc.gbuf.data() + t * L;
        if constexpr (same) {
          mix_tokens(reinterpret_cast<const acc_t*>(gt), dst, nt, g.C);  // mix_on here
        } else {
          convert<kAvx2>(gt, dst, L);
          if (mix_on) mix_tokens(dst, dst, nt, g.C);
        }
        sc.grows[t] = dst;
      }
      if constexpr (same) sc.arows[t] = dx + off + t * g.stride;  // accumulate in the output row
      else sc.arows[t] = sc.abuf.data() + t * L;
      // Rows the fused path of route_window does not initialise itself: frames < half, which window 0
      // touches first in a slot other than its last; all of them without the fused path.
      if (t < (W > 1 ? g.half : g.T)) std::copy(sc.grows[t], sc.grows[t] + L, sc.arows[t]);
    }
    for (int64_t s = 0; s < g.T; ++s) {  // ascending s, as the CUDA kernel
      int i0 = -1;
      const int lo = window_lo(int(s), g.half), hi = window_hi(int(s), g.half, int(g.T));
      for (int i = 0; i < g.k; ++i) {
        const int64_t p = s - g.half + i;
        const bool in = p >= lo && p <= hi;
        if (in && i0 < 0) i0 = i;
        sc.win[i] = in ? sc.xrows[p] : sc.neg_inf.data();
        sc.awin[i] = in ? sc.arows[p] : sc.zero_row.data();  // padding never wins: gets 0 subtracted
      }
      const int64_t last = s + g.half;  // the frame of the last slot (its G row; zeros past the end)
      const acc_t* g_last = last < g.T ? sc.grows[last] : sc.zero_row.data();
      route_window<W>(sc.win.data(), sc.awin.data(), g.k, i0, sc.grows[s], g_last, L, sc.best.data(),
                      sc.arg.data());
    }
    if constexpr (!same)
      for (int64_t t = 0; t < g.T; ++t) convert<kAvx2>(sc.arows[t], dx + off + t * g.stride, L);
  }
}

// The same unit loops compiled twice: for the build's baseline ISA and for AVX2 (inlined bodies
// take the target of the function they are inlined into).
template <int W, typename scalar_t, typename acc_t>
void forward_units_base(const scalar_t* x, scalar_t* y, const Geometry& g, bool mix_on, Scratch<acc_t>& sc,
                        int64_t begin, int64_t end) {
  forward_units<W, false>(x, y, g, mix_on, sc, begin, end);
}
template <int W, typename scalar_t, typename acc_t>
void backward_units_base(const scalar_t* gr, const scalar_t* x, scalar_t* dx, const Geometry& g, bool mix_on,
                         Scratch<acc_t>& sc, int64_t begin, int64_t end) {
  backward_units<W, false>(gr, x, dx, g, mix_on, sc, begin, end);
}
#if TDS_HAVE_AVX2_CLONE
template <int W, typename scalar_t, typename acc_t>
TDS_TARGET_AVX2 void forward_units_avx2(const scalar_t* x, scalar_t* y, const Geometry& g, bool mix_on,
                                        Scratch<acc_t>& sc, int64_t begin, int64_t end) {
  forward_units<W, true>(x, y, g, mix_on, sc, begin, end);
}
template <int W, typename scalar_t, typename acc_t>
TDS_TARGET_AVX2 void backward_units_avx2(const scalar_t* gr, const scalar_t* x, scalar_t* dx, const Geometry& g,
                                         bool mix_on, Scratch<acc_t>& sc, int64_t begin, int64_t end) {
  backward_units<W, true>(gr, x, dx, g, mix_on, sc, begin, end);
}
#endif

template <int W, typename scalar_t>
void forward_kernel(const scalar_t* x, scalar_t* y, const Geometry& g, bool mix_on) {
  using acc_t = acc_type_t<scalar_t>;
  const bool avx2 = cpu_has_avx2();
  at::parallel_for(0, g.units(), 1, [&](int64_t begin, int64_t end) {
    Scratch<acc_t> sc(g, std::is_same_v<scalar_t, acc_t>, /*backward=*/false, mix_on);
#if TDS_HAVE_AVX2_CLONE
    if (avx2) return forward_units_avx2<W>(x, y, g, mix_on, sc, begin, end);
#endif
    (void)avx2;
    forward_units_base<W>(x, y, g, mix_on, sc, begin, end);
  });
}

template <int W, typename scalar_t>
void backward_kernel(const scalar_t* gr, const scalar_t* x, scalar_t* dx, const Geometry& g, bool mix_on) {
  using acc_t = acc_type_t<scalar_t>;
  const bool avx2 = cpu_has_avx2();
  at::parallel_for(0, g.units(), 1, [&](int64_t begin, int64_t end) {
    Scratch<acc_t> sc(g, std::is_same_v<scalar_t, acc_t>, /*backward=*/true, mix_on);
#if TDS_HAVE_AVX2_CLONE
    if (avx2) return backward_units_avx2<W>(gr, x, dx, g, mix_on, sc, begin, end);
#endif
    (void)avx2;
    backward_units_base<W>(gr, x, dx, g, mix_on, sc, begin, end);
  });
}

// Runs `body` with the window length as a compile-time constant when it is 1, 3, 5 or 7 (else 0).
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


at::Tensor temporal_max_diff_cpu(const at::Tensor& x_in, int64_t kernel_size, bool mix_on) {
  check_args(x_in, kernel_size, "tds::temporal_max_diff_forward");
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = new_output(x.sizes(), x.options());
  if (x.numel() == 0) return y;
  const Geometry geo(x, clamp_half(kernel_size, x.size(1)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "tds::temporal_max_diff_forward", [&] {
    with_window(geo.k, [&](auto W) {
      forward_kernel<decltype(W)::value>(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), geo, mix_on);
    });
  });
  return y;
}

at::Tensor temporal_max_diff_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in, int64_t kernel_size,
                                          bool mix_on) {
  constexpr const char* fn = "tds::temporal_max_diff_backward";
  check_backward_args(grad_in, x_in, kernel_size, fn);
  const at::Tensor x = x_in.contiguous(), g = grad_in.contiguous();
  at::Tensor dx = new_output(x.sizes(), x.options());
  if (x.numel() == 0) return dx;
  const Geometry geo(x, clamp_half(kernel_size, x.size(1)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), fn, [&] {
    with_window(geo.k, [&](auto W) {
      backward_kernel<decltype(W)::value>(g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                          dx.mutable_data_ptr<scalar_t>(), geo, mix_on);
    });
  });
  return dx;
}

}  // namespace
}  // namespace tds

TORCH_LIBRARY_IMPL(tds, CPU, m) {
  m.impl("temporal_max_diff_forward", &tds::temporal_max_diff_cpu);
  m.impl("temporal_max_diff_backward", &tds::temporal_max_diff_backward_cpu);
}
