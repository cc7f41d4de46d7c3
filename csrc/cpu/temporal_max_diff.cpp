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

template <typename scalar_t>
void forward_kernel(const scalar_t* x, scalar_t* y, int64_t B, int64_t T, int64_t N, int64_t C, int half,
                    bool mix_on) {
  using acc_t = acc_type_t<scalar_t>;
  constexpr bool same = std::is_same_v<scalar_t, acc_t>;
  const int64_t nt_max = std::max<int64_t>(1, std::min<int64_t>(N, kTargetRun / std::max<int64_t>(C, 1)));
  const int64_t blocks = (N + nt_max - 1) / nt_max;
  const int64_t stride = N * C;
  at::parallel_for(0, B * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> xbuf(same ? 0 : T * nt_max * C), mbuf(same ? 0 : nt_max * C);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / blocks, n0 = (u % blocks) * nt_max;
      const int64_t nt = std::min(nt_max, N - n0), L = nt * C;
      const int64_t off = b * T * stride + n0 * C;
      Rows<scalar_t, acc_t> xr(x + off, T, stride, L, xbuf);
      for (int64_t t = 0; t < T; ++t) {
        // m is built in the output row itself when it has the accumulation type (fp32/fp64).
        acc_t* m;
        if constexpr (same) m = y + off + t * stride; else m = mbuf.data();
        const int lo = window_lo(int(t), half), hi = window_hi(int(t), half, int(T));
        const acc_t* r = xr.ptr[lo];
        for (int64_t j = 0; j < L; ++j) m[j] = r[j];
        for (int s = lo + 1; s <= hi; ++s) {
          r = xr.ptr[s];
          for (int64_t j = 0; j < L; ++j) m[j] = max_step(m[j], r[j]);
        }
        const acc_t* xt = xr.ptr[t];
        for (int64_t j = 0; j < L; ++j) m[j] = xt[j] - m[j];
        if (mix_on) mix_tokens(m, nt, C);
        if constexpr (!same) convert(m, y + off + t * stride, L);
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(const scalar_t* g, const scalar_t* x, scalar_t* dx, int64_t B, int64_t T, int64_t N,
                     int64_t C, int half, bool mix_on) {
  using acc_t = acc_type_t<scalar_t>;
  constexpr bool same = std::is_same_v<scalar_t, acc_t>;
  const int64_t nt_max = std::max<int64_t>(1, std::min<int64_t>(N, kTargetRun / std::max<int64_t>(C, 1)));
  const int64_t blocks = (N + nt_max - 1) / nt_max;
  const int64_t stride = N * C;
  at::parallel_for(0, B * blocks, 1, [&](int64_t begin, int64_t end) {
    const int64_t cap = nt_max * C;
    std::vector<acc_t> xbuf(same ? 0 : T * cap), gbuf((same && !mix_on) ? 0 : T * cap),
        abuf(same ? 0 : T * cap), best(cap);
    std::vector<int32_t> arg(cap);
    std::vector<acc_t*> acc(T);
    std::vector<const acc_t*> G(T);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / blocks, n0 = (u % blocks) * nt_max;
      const int64_t nt = std::min(nt_max, N - n0), L = nt * C;
      const int64_t off = b * T * stride + n0 * C;
      Rows<scalar_t, acc_t> xr(x + off, T, stride, L, xbuf);
      // G[t] = dL/dm[t]: grad_out itself, or its mix transpose (same map as the forward mix).
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
      // Each window s recomputes its argmax from x and takes G[s] off that frame's gradient.
      for (int s = 0; s < int(T); ++s) {
        const int lo = window_lo(s, half), hi = window_hi(s, half, int(T));
        const acc_t* r = xr.ptr[lo];
        for (int64_t j = 0; j < L; ++j) {
          best[j] = r[j];
          arg[j] = lo;
        }
        for (int p = lo + 1; p <= hi; ++p) {
          r = xr.ptr[p];
          for (int64_t j = 0; j < L; ++j) {
            const bool upd = beats(r[j], best[j]);
            best[j] = upd ? r[j] : best[j];
            arg[j] = upd ? p : arg[j];
          }
        }
        const acc_t* gs = G[s];
        for (int t = lo; t <= hi; ++t) {
          acc_t* a = acc[t];
          for (int64_t j = 0; j < L; ++j) {
            const acc_t gv = gs[j];  // loaded unconditionally: keeps the loop branch-free
            a[j] -= routed(arg[j], t, gv);
          }
        }
      }
      if constexpr (!same)
        for (int64_t t = 0; t < T; ++t) convert(acc[t], dx + off + t * stride, L);
    }
  });
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
    forward_kernel<scalar_t>(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), x.size(0),
                             x.size(1), x.size(2), x.size(3), half, mix_on);
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
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "tds::temporal_max_diff_backward",
                                  [&] {
                                    backward_kernel<scalar_t>(g.const_data_ptr<scalar_t>(),
                                                              x.const_data_ptr<scalar_t>(),
                                                              dx.mutable_data_ptr<scalar_t>(), x.size(0),
                                                              x.size(1), x.size(2), x.size(3), half, mix_on);
                                  });
  return dx;
}

}  // namespace
}  // namespace tds

TORCH_LIBRARY_IMPL(tds, CPU, m) {
  m.impl("temporal_max_diff", &tds::temporal_max_diff_cpu);
  m.impl("temporal_max_diff_backward", &tds::temporal_max_diff_backward_cpu);
}
