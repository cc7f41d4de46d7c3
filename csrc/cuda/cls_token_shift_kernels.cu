// CUDA kernel of tds::cls_token_shift and its backward (docs/model.md §4 op 4). Only CUDA headers and the
// shared frame arithmetic (common/cls_shift_math.h) here; the ATen wrapper is cls_token_shift.cpp.
//
// x (B, T, C) contiguous. A flat grid over output vectors of VEC channels of one (b, t) row; each
// vector copies VEC channels of its source frame or writes zeros. 16-byte vectors when both halves
// split on vector boundaries (C and C/2 multiples of VEC) and the pointers are 16-byte aligned, so a
// vector never straddles the fold; otherwise one value per thread. Pure data movement: exact.
#include <cuda_runtime.h>

#include <cstdint>

#include "common/cls_shift_math.h"

namespace tds {
namespace {

// Each thread moves one `word_t` (VEC values of the element type, viewed as raw bits).
template <typename word_t>
__global__ void shift_kernel(const word_t* __restrict__ x, word_t* __restrict__ y, int64_t T, int64_t Cw,
                             int64_t fold_w, int dir, int64_t total) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t cw = i % Cw, row = i / Cw, t = row % T, b = row / T;
  const int64_t s = cls_shift::source_frame(t, cw, fold_w, dir);
  word_t v{};  // zero bits are +0.0 in every float format
  if (cls_shift::frame_valid(s, T)) v = x[(b * T + s) * Cw + cw];
  y[i] = v;
}

template <typename word_t>
cudaError_t launch(const void* x, void* y, int64_t B, int64_t T, int64_t Cw, int64_t fold_w, int dir,
                   cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t total = B * T * Cw;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  shift_kernel<word_t><<<unsigned(blocks), kThreads, 0, stream>>>(
      static_cast<const word_t*>(x), static_cast<word_t*>(y), T, Cw, fold_w, dir, total);
  return cudaGetLastError();
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

namespace cuda_launch {

int cls_token_shift(const void* x, void* y, DType dtype, int64_t B, int64_t T, int64_t C, int dir, void* stream) {
  const int elem = element_size(dtype);
  const int64_t fold = C / 2;
  const int64_t vec = 16 / elem;  // values per 16-byte word
  auto st = static_cast<cudaStream_t>(stream);
  if (C % vec == 0 && fold % vec == 0 && aligned16(x) && aligned16(y))
    return int(launch<uint4>(x, y, B, T, C / vec, fold / vec, dir, st));
  switch (elem) {
    case 8: return int(launch<uint2>(x, y, B, T, C, fold, dir, st));
    case 4: return int(launch<uint32_t>(x, y, B, T, C, fold, dir, st));
    default: return int(launch<uint16_t>(x, y, B, T, C, fold, dir, st));
  }
}

}  // namespace cuda_launch
}  // namespace tds
