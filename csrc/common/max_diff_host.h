// Argument checks of tds::temporal_max_diff{,_backward}, shared by the CPU and CUDA wrappers
// (csrc/cpu/temporal_max_diff.cpp, csrc/cuda/temporal_max_diff.cpp) so both reject bad input with the
// same messages. g++ only (uses ATen); the per-element math lives in max_diff_math.h.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>

namespace tds {
namespace max_diff {

inline void check_args(const at::Tensor& x, int64_t kernel_size, const char* fn) {
  TORCH_CHECK(x.dim() == 4, fn, ": x must be (B, T, N, C), got ", x.dim(), " dims");
  TORCH_CHECK(kernel_size > 0 && kernel_size % 2 == 1, fn, ": kernel_size must be odd and positive, got ",
              kernel_size);
  TORCH_CHECK(x.size(1) < (int64_t(1) << 30), fn, ": too many frames");
}

// check_args plus grad_out against x: same shape, dtype and device.
inline void check_backward_args(const at::Tensor& grad, const at::Tensor& x, int64_t kernel_size, const char* fn) {
  check_args(x, kernel_size, fn);
  TORCH_CHECK(grad.sizes() == x.sizes(), fn, ": grad_out shape ", grad.sizes(), " != x shape ", x.sizes());
  TORCH_CHECK(grad.scalar_type() == x.scalar_type(), fn, ": grad_out dtype ", grad.scalar_type(), " != x dtype ",
              x.scalar_type());
  TORCH_CHECK(grad.device() == x.device(), fn, ": grad_out is on ", grad.device(), ", x on ", x.device());
}

// A window wider than the clip sees the whole clip: clamping keeps half small and in int range.
inline int clamp_half(int64_t kernel_size, int64_t T) { return int(std::min<int64_t>(kernel_size / 2, T)); }

}  // namespace max_diff
}  // namespace tds
