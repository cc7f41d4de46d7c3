// Per-element math of the CLS token shift (docs/model.md §3 side block step 2, §4 op 4), shared by the CPU
// kernel (csrc/cpu/cls_token_shift.cpp) and the CUDA kernel (csrc/cuda/cls_token_shift_kernels.cu).
// Plain C++ only: no torch or CUDA headers here.
//
// x (B, T, C), fold = C/2. Forward: channels [0, fold) take frame t+1, channels [fold, C) take frame
// t-1, zeros past either end. Backward is the opposite shift (channels [0, fold) from t-1, the rest
// from t+1), which is the transpose of the forward's permutation-with-zeros.
#pragma once
#include <cstdint>

#include "common/base.h"

namespace tds {
namespace cls_shift {

// dir = +1 for forward, -1 for backward.
TDS_HD inline int64_t source_frame(int64_t t, int64_t c, int64_t fold, int dir) {
  return c < fold ? t + dir : t - dir;
}

TDS_HD inline bool frame_valid(int64_t s, int64_t T) { return s >= 0 && s < T; }

}  // namespace cls_shift

namespace cuda_launch {
// y (B, T, C) = shift of x (B, T, C), both contiguous; dir = +1 forward, -1 backward.
int cls_token_shift(const void* x, void* y, DType dtype, int64_t B, int64_t T, int64_t C, int dir,
                    void* stream);
}  // namespace cuda_launch
}  // namespace tds
