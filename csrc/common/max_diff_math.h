// Per-element math of the temporal max-difference (docs/model.md §4 op 1), shared by the CPU kernel
// (csrc/cpu/temporal_max_diff.cpp) and the CUDA kernel (csrc/cuda/temporal_max_diff_kernels.cu), so the
// CPU tests exercise the arithmetic the GPU runs. Plain C++ only: no torch or CUDA headers here.
//
//   m[t] = x[t] - max(x[lo(t)..hi(t)])        window of k = 2*half+1 frames, -inf padding
//   y[t] = 0.5*m[t] + 0.5*mean_C(m[t])          (mix)
//   dx[t] = G[t] - sum_{s : argmax(window s) == t} G[s],   G = dy (or its mix transpose)
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/base.h"

namespace tds {
namespace max_diff {

// Frames of the window of frame t. Padding is -inf, which never wins a max against a real frame
// (nor against NaN), so clamping the window to [0, T-1] is exact.
TDS_HD inline int window_lo(int t, int half) { return t - half < 0 ? 0 : t - half; }
TDS_HD inline int window_hi(int t, int half, int T) { return t + half > T - 1 ? T - 1 : t + half; }

// max_pool's update rule (ATen's CPU and CUDA kernels): a strictly larger value, or a NaN, replaces
// the running best. So a NaN in the window wins (NaN propagates) and among equal maxima the first
// (lowest t) one is kept, which is where the reference routes the gradient. Bitwise | keeps the
// expression branch-free so gcc vectorises it. Never build with -ffast-math: it deletes v != v.
template <typename acc_t>
TDS_HD inline bool beats(acc_t v, acc_t best) {
  return (v > best) | (v != v);
}

template <typename acc_t>
TDS_HD inline acc_t max_step(acc_t best, acc_t v) {
  return beats(v, best) ? v : best;
}

// The channel-mean mix y = 0.5*m + 0.5*mean_C(m). Its Jacobian (0.5*I + 0.5/C * 1 1^T) is symmetric,
// so the same function maps dy to dm in backward.
template <typename acc_t>
TDS_HD inline acc_t mix(acc_t m, acc_t mean) {
  return acc_t(0.5) * m + acc_t(0.5) * mean;
}

// Gradient routing: window s hands its gradient G[s] to its argmax frame, which subtracts it; this
// is the share of G[s] that frame t receives: G[s] or +0 (x - +0 == x for every x, so the caller
// subtracts unconditionally). Both kernels subtract in ascending s, so CPU and GPU round the same
// way. On the host the select is a bit mask: gcc turns a ternary here into a branch and then will
// not vectorise the fused argmax-and-route loop; the value is identical either way.
template <typename acc_t>
TDS_HD inline acc_t routed(int argmax_s, int t, acc_t g_s) {
#ifdef __CUDA_ARCH__
  return argmax_s == t ? g_s : acc_t(0);
#else
  using bits_t = std::conditional_t<sizeof(acc_t) == 8, uint64_t, uint32_t>;
  static_assert(sizeof(bits_t) == sizeof(acc_t), "fp32 or fp64 accumulation");
  bits_t bits;
  std::memcpy(&bits, &g_s, sizeof bits);
  bits &= bits_t(0) - bits_t(argmax_s == t);  // all ones or all zeros
  acc_t share;
  std::memcpy(&share, &bits, sizeof share);
  return share;
#endif
}

}  // namespace max_diff

// Host-side entry points of the CUDA kernels (defined in csrc/cuda/temporal_max_diff_kernels.cu,
// called from csrc/cuda/temporal_max_diff.cpp). Plain types keep ATen out of the .cu file and CUDA
// types out of this header. dtype: see tds::DType. Returns a cudaError_t as int (0 = success).
namespace cuda_launch {
// y (B, T, N, C) = max-difference of x (B, T, N, C), both contiguous.
int temporal_max_diff_forward(const void* x, void* y, DType dtype, int64_t B, int64_t T, int64_t N,
                              int64_t C, int kernel_size, bool mix, void* stream);
// gmean (B*T*N floats, scratch, only used when mix) receives mean_C(grad_out).
int temporal_max_diff_backward(const void* grad_out, const void* x, void* grad_x, float* gmean, DType dtype,
                               int64_t B, int64_t T, int64_t N, int64_t C, int kernel_size, bool mix,
                               void* stream);
}  // namespace cuda_launch
}  // namespace tds
