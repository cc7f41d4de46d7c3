// Argument checks of tds::temporal_adjacent_diff_forward/_backward, shared by the CPU and CUDA wrappers
// (csrc/cpu/temporal_adjacent_diff.cpp, csrc/cuda/temporal_adjacent_diff.cpp) so both reject bad input with
// the same messages. g++ only (uses ATen); the per-element math lives in temporal_adjacent_diff_math.h.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <optional>

namespace tds {
namespace adjacent_diff {

// The neighbour's frame offset of a direction name: -1 for "backward" (x_t - x_{t-1}), +1 for "forward".
inline int offset_of(c10::string_view direction, const char* fn) {
  if (direction == "backward") return -1;
  if (direction == "forward") return 1;
  TORCH_CHECK(false, fn, ": direction must be 'backward' or 'forward', got '", std::string(direction), "'");
  return 0;
}

inline void check_args(const at::Tensor& x, const char* fn) {
  TORCH_CHECK(x.dim() == 4, fn, ": x must be (B, T, N, C), got ", x.dim(), " dims");
}

// The backward's x (contiguous) when absolute, an undefined tensor otherwise (x is not read then).
inline at::Tensor backward_x(const at::Tensor& grad, const std::optional<at::Tensor>& x, bool absolute,
                             const char* fn) {
  check_args(grad, fn);
  if (!absolute) return at::Tensor();
  TORCH_CHECK(x.has_value() && x->defined(), fn, ": absolute=True needs x");
  TORCH_CHECK(x->sizes() == grad.sizes(), fn, ": x shape ", x->sizes(), " != grad_out shape ", grad.sizes());
  TORCH_CHECK(x->scalar_type() == grad.scalar_type(), fn, ": x dtype ", x->scalar_type(), " != grad_out dtype ",
              grad.scalar_type());
  TORCH_CHECK(x->device() == grad.device(), fn, ": x is on ", x->device(), ", grad_out on ", grad.device());
  return x->contiguous();
}

}  // namespace adjacent_diff
}  // namespace tds
