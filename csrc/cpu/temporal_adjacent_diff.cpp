// CPU kernel of tds::temporal_adjacent_diff and its backward (the adjacent difference along frames).
//
// x (B, T, R) contiguous (R = N*C). Each task takes one clip b and a chunk of R and walks the T frames:
// every output row is one subtraction per element (a streaming loop the compiler vectorises), rows with
// no neighbour are zeros. The element math (rounding once from float/double, |.|, sign) is shared with
// the CUDA kernel (common/adjacent_diff_math.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>

#include "common/adjacent_diff_math.h"
#include "common/alloc.h"

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

template <typename scalar_t>
void forward_kernel(const scalar_t* x, scalar_t* y, int64_t B, int64_t T, int64_t R, bool absolute, int offset) {
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
      for (int64_t r = r0; r < r1; ++r)
        out[r] = scalar_t(adjacent_diff::value<A>(A(cur[r]), A(nb[r]), absolute));
    }
  });
}

// h_t = g_t * slope_t where frame t has a neighbour, else 0.
template <typename scalar_t>
inline acc_t<scalar_t> h_at(const scalar_t* g, const scalar_t* x, int64_t b, int64_t t, int64_t r, int64_t T,
                            int64_t R, bool absolute, int offset) {
  using A = acc_t<scalar_t>;
  if (!adjacent_diff::in_clip(t, T) || !adjacent_diff::in_clip(t + offset, T)) return A(0);
  const A gv = A(g[(b * T + t) * R + r]);
  if (!absolute) return gv;
  return gv * adjacent_diff::slope<A>(A(x[(b * T + t) * R + r]), A(x[(b * T + t + offset) * R + r]), true);
}

template <typename scalar_t>
void backward_kernel(const scalar_t* g, const scalar_t* x, scalar_t* dx, int64_t B, int64_t T, int64_t R,
                     bool absolute, int offset) {
  for_chunks(B, R, [&](int64_t b, int64_t r0, int64_t r1) {
    for (int64_t t = 0; t < T; ++t) {
      scalar_t* out = dx + (b * T + t) * R;
      for (int64_t r = r0; r < r1; ++r) {
        // dx_t = h_t - h_{t-offset}: frame t is "cur" of y_t and "neighbour" of y_{t-offset}.
        out[r] = scalar_t(h_at(g, x, b, t, r, T, R, absolute, offset) -
                          h_at(g, x, b, t - offset, r, T, R, absolute, offset));
      }
    }
  });
}

void check(const at::Tensor& t, int64_t offset, const char* fn) {
  TORCH_CHECK(t.dim() == 4, fn, ": x must be (B, T, N, C), got ", t.dim(), " dims");
  TORCH_CHECK(offset == -1 || offset == 1, fn, ": offset must be -1 (backward) or +1 (forward), got ", offset);
}

at::Tensor forward_cpu(const at::Tensor& x_in, bool absolute, int64_t offset) {
  const char* fn = "tds::temporal_adjacent_diff";
  check(x_in, offset, fn);
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = new_output(x.sizes(), x.options());
  if (x.numel() == 0) return y;
  const int64_t B = x.size(0), T = x.size(1), R = x.size(2) * x.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "tds::temporal_adjacent_diff", [&] {
    forward_kernel<scalar_t>(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), B, T, R, absolute,
                             int(offset));
  });
  return y;
}

at::Tensor backward_cpu(const at::Tensor& g_in, const std::optional<at::Tensor>& x_opt, bool absolute,
                        int64_t offset) {
  const char* fn = "tds::temporal_adjacent_diff_backward";
  check(g_in, offset, fn);
  TORCH_CHECK(!absolute || x_opt.has_value(), fn, ": absolute=True needs x");
  const at::Tensor g = g_in.contiguous();
  at::Tensor x;
  if (absolute) {
    TORCH_CHECK(x_opt->sizes() == g.sizes(), fn, ": x has shape ", x_opt->sizes(), ", grad_out ", g.sizes());
    TORCH_CHECK(x_opt->scalar_type() == g.scalar_type(), fn, ": x and grad_out dtypes differ");
    x = x_opt->contiguous();
  }
  at::Tensor dx = new_output(g.sizes(), g.options());
  if (g.numel() == 0) return dx;
  const int64_t B = g.size(0), T = g.size(1), R = g.size(2) * g.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "tds::temporal_adjacent_diff_backward", [&] {
    backward_kernel<scalar_t>(g.const_data_ptr<scalar_t>(), absolute ? x.const_data_ptr<scalar_t>() : nullptr,
                              dx.mutable_data_ptr<scalar_t>(), B, T, R, absolute, int(offset));
  });
  return dx;
}

}  // namespace
}  // namespace tds

TORCH_LIBRARY_IMPL(tds, CPU, m) {
  m.impl("temporal_adjacent_diff", &tds::forward_cpu);
  m.impl("temporal_adjacent_diff_backward", &tds::backward_cpu);
}
