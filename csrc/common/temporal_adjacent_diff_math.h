// Per-element math of the temporal adjacent difference (tds::temporal_adjacent_diff_forward/_backward), shared
// by the CPU kernel (csrc/cpu/temporal_adjacent_diff.cpp) and the CUDA kernel
// (csrc/cuda/temporal_adjacent_diff_kernels.cu), so the CPU tests exercise the GPU's arithmetic.
// Plain C++ only: no torch or CUDA headers here.
//
// x (B, T, R) with R = N*C flattened (rows of one frame are contiguous). `offset` names the neighbour:
//   offset = -1 (direction "backward"): y_t = x_t - x_{t-1}, y_0 = 0      (M2-CLIP's TED-Adapter)
//   offset = +1 (direction "forward"):  y_t = x_t - x_{t+1}, y_{T-1} = 0  (AM flow's |A_t - A_{t+1}|)
// and with `absolute` y_t = |...|. Backward, with h_t = g_t (times sign(x_t - x_{t+offset}) when absolute):
//   dx_t = [t+offset in range] h_t - [t-offset in range] h_{t-offset}.
// The difference is computed in float (double for double) and rounded once, as PyTorch does.
#pragma once
#include <cstdint>

#include "common/base.h"

namespace tds {
namespace adjacent_diff {

TDS_HD inline bool in_clip(int64_t t, int64_t T) { return t >= 0 && t < T; }

// y_t from x_t and its neighbour (acc_t: float, or double for double tensors).
template <typename acc_t>
TDS_HD inline acc_t value(acc_t cur, acc_t nb, bool absolute) {
  const acc_t d = cur - nb;
  return absolute ? (d < acc_t(0) ? -d : d) : d;  // |d| keeps NaN (comparisons with NaN are false)
}

// The local gradient factor of y_t w.r.t. x_t: 1, or sign(x_t - x_nb) (0 at 0, NaN for NaN) when absolute.
template <typename acc_t>
TDS_HD inline acc_t slope(acc_t cur, acc_t nb, bool absolute) {
  if (!absolute) return acc_t(1);
  const acc_t d = cur - nb;
  return d > acc_t(0) ? acc_t(1) : d < acc_t(0) ? acc_t(-1) : (d == acc_t(0) ? acc_t(0) : d);
}

}  // namespace adjacent_diff

namespace cuda_launch {
// y (B, T, R) = adjacent difference of x (B, T, R), both contiguous.
int temporal_adjacent_diff_forward(const void* x, void* y, DType dtype, int64_t B, int64_t T, int64_t R,
                                   bool absolute, int offset, void* stream);
// dx (B, T, R) from g = dL/dy (B, T, R); x is read only when absolute (may be null otherwise).
int temporal_adjacent_diff_backward(const void* g, const void* x, void* dx, DType dtype, int64_t B, int64_t T,
                                    int64_t R, bool absolute, int offset, void* stream);
}  // namespace cuda_launch
}  // namespace tds
