// CPU kernel of tds::temporal_adjacent_diff_forward and _backward (the adjacent difference along frames).
//
// x (B, T, R) contiguous (R = N*C). Each task takes one clip b and a chunk of R and walks the T frames:
// every output row is one subtraction per element (a streaming loop the compiler vectorises), rows with
// no neighbour are zeros. The element math (rounding once from float/double, |.|, sign) is shared with
// the CUDA kernel (common/temporal_adjacent_diff_math.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>

#include "common/alloc.h"
#include "common/temporal_adjacent_diff_host.h"
#include "common/temporal_adjacent_diff_math.h"

namespace tds {
namespace {

template <typename scalar_t>
using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

constexpr int64_t kChunk = 2048;  // elements of R per task: a few rows of a frame stay in L1 across t

// Runs body(b, r0, r1) over every clip and chunk of R in parallel.
template <typename F>
void for_chunks(int64_t B, int64_t R, const F& body) {
  const int64_t chunks = (R + kChunk - 1) / kChunk;
  at::parallel_for(0, B * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / chunks, r0 = (i % chunks) * kChunk;
      body(b, r0, std::min(R, r0 + kChunk));
    }
  });
}

// ABS is a template parameter so that every inner loop is branch-free and vectorises.
template <typename scalar_t, bool ABS>
void forward_kernel(const scalar_t* x, scalar_t* y, int64_t B, int64_t T, int64_t R, int offset) {
  using A = acc_t<scalar_t>;
  for_chunks(B, R, [&](int64_t b, int64_t r0, int64_t r1) {
    for (int64_t t = 0; t < T; ++t) {
      scalar_t* out = y + (b * T + t) * R;
      const int64_t s = t + offset;
      if (!adjacent_diff::in_clip(s, T)) {
        std::fill(out + r0, out + r1, scalar_t(0));
        continue;
      }
      const scalar_t* cur = x + (b * T + t) * R;
      const scalar_t* nb = x + (b * T + s) * R;
      for (int64_t r = r0; r < r1; ++r) out[r] = scalar_t(adjacent_diff::value<A>(A(cur[r]), A(nb[r]), ABS));
    }
  });
}

// dx_t = h_t - h_{t-offset}, h_t = g_t (* sign(x_t - x_{t+offset}) when ABS) where frame t has a neighbour:
// frame t is the "current" frame of y_t and the neighbour of y_{t-offset}. Row-level flags, flat inner loops.
template <typename scalar_t, bool ABS>
void backward_kernel(const scalar_t* g, const scalar_t* x, scalar_t* dx, int64_t B, int64_t T, int64_t R,
                     int offset) {
  using A = acc_t<scalar_t>;
  for_chunks(B, R, [&](int64_t b, int64_t r0, int64_t r1) {
    for (int64_t t = 0; t < T; ++t) {
      scalar_t* out = dx + (b * T + t) * R;
      const int64_t p = t - offset;  // the frame whose neighbour t is
      const bool own = adjacent_diff::in_clip(t + offset, T), other = adjacent_diff::in_clip(p, T);
      const scalar_t* g_t = g + (b * T + t) * R;
      const scalar_t* g_p = g + (b * T + (other ? p : t)) * R;
      const scalar_t* x_t = ABS ? x + (b * T + t) * R : nullptr;
      const scalar_t* x_n = ABS && own ? x + (b * T + t + offset) * R : nullptr;
      const scalar_t* x_p = ABS && other ? x + (b * T + p) * R : nullptr;
      if (!own && !other) {
        std::fill(out + r0, out + r1, scalar_t(0));
      } else if (!ABS && own && other) {
        for (int64_t r = r0; r < r1; ++r) out[r] = scalar_t(A(g_t[r]) - A(g_p[r]));
      } else if (!ABS && own) {  // no y_p: the unused g never enters (inf/NaN there must not leak in)
        for (int64_t r = r0; r < r1; ++r) out[r] = g_t[r];
      } else if (!ABS) {
        for (int64_t r = r0; r < r1; ++r) out[r] = scalar_t(-A(g_p[r]));
      } else {
        for (int64_t r = r0; r < r1; ++r) {
          const A h_own = own ? A(g_t[r]) * adjacent_diff::slope<A>(A(x_t[r]), A(x_n[r]), true) : A(0);
          const A h_other = other ? A(g_p[r]) * adjacent_diff::slope<A>(A(x_p[r]), A(x_t[r]), true) : A(0);
          out[r] = scalar_t(h_own - h_other);
        }
      }
    }
  });
}

at::Tensor forward_cpu(const at::Tensor& x_in, bool absolute, c10::string_view direction) {
  constexpr const char* fn = "tds::temporal_adjacent_diff_forward";
  adjacent_diff::check_args(x_in, fn);
  const int offset = adjacent_diff::offset_of(direction, fn);
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = new_output(x.sizes(), x.options());
  if (x.numel() == 0) return y;
  const int64_t B = x.size(0), T = x.size(1), R = x.size(2) * x.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), fn, [&] {
    if (absolute)
      forward_kernel<scalar_t, true>(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), B, T, R, offset);
    else
      forward_kernel<scalar_t, false>(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), B, T, R, offset);
  });
  return y;
}

at::Tensor backward_cpu(const at::Tensor& g_in, const std::optional<at::Tensor>& x_opt, bool absolute,
                        c10::string_view direction) {
  constexpr const char* fn = "tds::temporal_adjacent_diff_backward";
  const at::Tensor x = adjacent_diff::backward_x(g_in, x_opt, absolute, fn);
  const int offset = adjacent_diff::offset_of(direction, fn);
  const at::Tensor g = g_in.contiguous();
  at::Tensor dx = new_output(g.sizes(), g.options());
  if (g.numel() == 0) return dx;
  const int64_t B = g.size(0), T = g.size(1), R = g.size(2) * g.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), fn, [&] {
    if (absolute)
      backward_kernel<scalar_t, true>(g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                      dx.mutable_data_ptr<scalar_t>(), B, T, R, offset);
    else
      backward_kernel<scalar_t, false>(g.const_data_ptr<scalar_t>(), nullptr, dx.mutable_data_ptr<scalar_t>(), B, T,
                                       R, offset);
  });
  return dx;
}

}  // namespace
}  // namespace tds

TORCH_LIBRARY_IMPL(tds, CPU, m) {
  m.impl("temporal_adjacent_diff_forward", &tds::forward_cpu);
  m.impl("temporal_adjacent_diff_backward", &tds::backward_cpu);
}
