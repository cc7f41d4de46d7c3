// CPU kernel of tds::cls_token_shift and its backward (docs/model.md §4 op 4).
//
// x (B, T, C) contiguous. Every output row (b, t) is two contiguous copies (channels [0, fold) from one
// neighbouring frame, [fold, C) from the other) or zeros where that frame is past the end of the
// clip. Rows run in parallel; the copies are plain memcpy-like loops. Pure data movement, so every
// dtype is exact. The frame arithmetic is shared with the CUDA kernel (common/cls_shift_math.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>

#include "common/alloc.h"
#include "common/cls_shift_math.h"

namespace tds {
namespace {

template <typename scalar_t>
void shift_kernel(const scalar_t* x, scalar_t* y, int64_t B, int64_t T, int64_t C, int dir) {
  const int64_t fold = C / 2;
  // Rows are short (C values); batch enough of them per task to amortise the scheduling.
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(C, 1));
  at::parallel_for(0, B * T, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / T, t = r % T;
      scalar_t* out = y + r * C;
      // The two channel ranges: [0, fold) and [fold, C); each comes from one frame (c = its first channel).
      const int64_t ranges[2][2] = {{0, fold}, {fold, C}};
      for (const auto& range : ranges) {
        const int64_t c0 = range[0], n = range[1] - range[0];
        if (n == 0) continue;
        const int64_t s = cls_shift::source_frame(t, c0, fold, dir);
        if (cls_shift::frame_valid(s, T))
          std::memcpy(out + c0, x + (b * T + s) * C + c0, n * sizeof(scalar_t));
        else
          std::fill(out + c0, out + c0 + n, scalar_t(0));
      }
    }
  });
}

at::Tensor shift(const at::Tensor& x_in, int dir, const char* fn) {
  TORCH_CHECK(x_in.dim() == 3, fn, ": x must be (B, T, C), got ", x_in.dim(), " dims");
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = new_output(x.sizes(), x.options());
  if (x.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "tds::cls_token_shift_forward", [&] {
    shift_kernel<scalar_t>(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), x.size(0), x.size(1),
                           x.size(2), dir);
  });
  return y;
}

at::Tensor cls_token_shift_cpu(const at::Tensor& x) { return shift(x, +1, "tds::cls_token_shift_forward"); }

at::Tensor cls_token_shift_backward_cpu(const at::Tensor& grad_out) {
  return shift(grad_out, -1, "tds::cls_token_shift_backward");
}

}  // namespace
}  // namespace tds

TORCH_LIBRARY_IMPL(tds, CPU, m) {
  m.impl("cls_token_shift_forward", &tds::cls_token_shift_cpu);
  m.impl("cls_token_shift_backward", &tds::cls_token_shift_backward_cpu);
}
