// CUDA kernels of tds::temporal_max_diff and its backward (docs/model.md §4 op 1). Only CUDA headers and the
// shared per-element math (common/max_diff_math.h) here: no torch headers, so nvcc stays fast. The
// ATen-side wrapper is csrc/cuda/temporal_max_diff.cpp.
//
// Layout: x (B, T, N, C) contiguous; a frame's N*C values are contiguous and the max runs along T,
// elementwise. Each thread owns VEC consecutive channels of one token (VEC*sizeof(scalar_t) = 16
// bytes when C allows it and the pointers are 16-byte aligned, else VEC = 1) and loops over the T
// frames; the k-frame windows re-read x from L1/L2, so DRAM sees x once. Arithmetic in fp32
// (fp64 for fp64 inputs).
//
//  * forward, no mix: flat grid over (vector of channels, b).
//  * forward, mix: a "sub-warp" of S = pow2 >= C/VEC lanes (<= 32) per token, several tokens per
//    warp; the channel mean of m is a shuffle reduction inside the sub-warp, then m is recomputed
//    (cheap, cached) and mixed, so nothing intermediate is written.
//  * backward: mix first reduces mean_C(grad_out) to a small fp32 (B, T, N) scratch with the same
//    sub-warp pattern; then a flat kernel gathers dx[t] = G[t] - sum_{s: argmax(s) == t} G[s],
//    recomputing each window's argmax from x (k*k cached loads per frame, no saved indices).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "common/max_diff_math.h"
#include "cuda/acc_convert.cuh"

namespace tds {
namespace {

using namespace max_diff;

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

// VEC values at p (16-byte aligned when VEC > 1) as acc_t, with one 16-byte transaction.
template <typename scalar_t, int VEC, typename acc_t>
__device__ __forceinline__ void load_vec(const scalar_t* p, acc_t (&v)[VEC]) {
  if constexpr (VEC == 1) {
    v[0] = to_acc(p[0]);
  } else {
    static_assert(VEC * sizeof(scalar_t) == 16, "vector loads are 16 bytes");
    union { uint4 raw; scalar_t s[VEC]; } u;
    u.raw = *reinterpret_cast<const uint4*>(p);
#pragma unroll
    for (int i = 0; i < VEC; ++i) v[i] = to_acc(u.s[i]);
  }
}

template <typename scalar_t, int VEC, typename acc_t>
__device__ __forceinline__ void store_vec(scalar_t* p, const acc_t (&v)[VEC]) {
  if constexpr (VEC == 1) {
    p[0] = from_acc<scalar_t>(v[0]);
  } else {
    union { uint4 raw; scalar_t s[VEC]; } u;
#pragma unroll
    for (int i = 0; i < VEC; ++i) u.s[i] = from_acc<scalar_t>(v[i]);
    *reinterpret_cast<uint4*>(p) = u.raw;
  }
}

// m = x[t] - max(window t) for VEC channels at offset j of frame rows (frame = N*C values).
template <typename scalar_t, int VEC, typename acc_t>
__device__ __forceinline__ void max_diff_vec(const scalar_t* xb, int64_t frame, int64_t j, int t, int T,
                                             int half, acc_t (&m)[VEC]) {
  const int lo = window_lo(t, half), hi = window_hi(t, half, T);
  acc_t best[VEC], v[VEC];
  load_vec<scalar_t, VEC>(xb + lo * frame + j, best);
  for (int s = lo + 1; s <= hi; ++s) {
    load_vec<scalar_t, VEC>(xb + s * frame + j, v);
#pragma unroll
    for (int i = 0; i < VEC; ++i) best[i] = max_step(best[i], v[i]);
  }
  load_vec<scalar_t, VEC>(xb + t * frame + j, v);
#pragma unroll
  for (int i = 0; i < VEC; ++i) m[i] = v[i] - best[i];
}

// Sum over the S lanes of a sub-warp (S a power of two <= 32; every lane of the warp participates).
template <typename acc_t>
__device__ __forceinline__ acc_t subwarp_sum(acc_t v, int S) {
  for (int off = S / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off, S);
  return v;
}

template <typename scalar_t, int VEC>
__global__ void fwd_flat_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y, int T, int64_t frame,
                                int half) {
  using acc_t = typename AccOf<scalar_t>::type;
  const int64_t j = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
  if (j >= frame) return;
  const int64_t base = int64_t(blockIdx.y) * T * frame;
  for (int t = 0; t < T; ++t) {
    acc_t m[VEC];
    max_diff_vec<scalar_t, VEC>(x + base, frame, j, t, T, half, m);
    store_vec<scalar_t, VEC>(y + base + t * frame + j, m);
  }
}

// One sub-warp of S lanes per token (b, n); tokens = B*N.
template <typename scalar_t, int VEC>
__global__ void fwd_mix_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y, int T, int64_t N,
                               int64_t C, int half, int S, int64_t tokens) {
  using acc_t = typename AccOf<scalar_t>::type;
  const int64_t token = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / S;
  const int lane = threadIdx.x % S;
  const bool valid = token < tokens;  // invalid lanes still join the shuffles
  const int64_t b = valid ? token / N : 0, n = valid ? token % N : 0;
  const int64_t frame = N * C, base = b * T * frame + n * C;
  const acc_t inv_c = acc_t(1) / acc_t(C);
  for (int t = 0; t < T; ++t) {
    acc_t sum = 0;
    if (valid)
      for (int64_t c = int64_t(lane) * VEC; c < C; c += int64_t(S) * VEC) {
        acc_t m[VEC];
        max_diff_vec<scalar_t, VEC>(x + base, frame, c, t, T, half, m);
#pragma unroll
        for (int i = 0; i < VEC; ++i) sum += m[i];
      }
    const acc_t mean = subwarp_sum(sum, S) * inv_c;
    if (valid)
      for (int64_t c = int64_t(lane) * VEC; c < C; c += int64_t(S) * VEC) {
        acc_t m[VEC];
        max_diff_vec<scalar_t, VEC>(x + base, frame, c, t, T, half, m);
#pragma unroll
        for (int i = 0; i < VEC; ++i) m[i] = mix(m[i], mean);
        store_vec<scalar_t, VEC>(y + base + t * frame + c, m);
      }
  }
}

// gmean[row] = mean_C(grad_out[row]) for the B*T*N rows of C values; one sub-warp per row.
template <typename scalar_t, int VEC>
__global__ void row_mean_kernel(const scalar_t* __restrict__ g, float* __restrict__ gmean, int64_t C, int S,
                                int64_t rows) {
  using acc_t = typename AccOf<scalar_t>::type;
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / S;
  const int lane = threadIdx.x % S;
  const bool valid = row < rows;
  acc_t sum = 0;
  if (valid)
    for (int64_t c = int64_t(lane) * VEC; c < C; c += int64_t(S) * VEC) {
      acc_t v[VEC];
      load_vec<scalar_t, VEC>(g + row * C + c, v);
#pragma unroll
      for (int i = 0; i < VEC; ++i) sum += v[i];
    }
  sum = subwarp_sum(sum, S);
  if (valid && lane == 0) gmean[row] = float(sum / acc_t(C));
}

// G[s] = dL/dm[s] for VEC channels: grad_out, or its mix transpose with the precomputed row mean.
template <typename scalar_t, int VEC, typename acc_t>
__device__ __forceinline__ void load_g(const scalar_t* gb, const float* gmean_b, int64_t frame, int64_t N,
                                       int64_t j, int64_t n, int s, acc_t (&G)[VEC]) {
  load_vec<scalar_t, VEC>(gb + s * frame + j, G);
  if (gmean_b != nullptr) {
    const acc_t mean = acc_t(gmean_b[s * N + n]);
#pragma unroll
    for (int i = 0; i < VEC; ++i) G[i] = mix(G[i], mean);
  }
}

template <typename scalar_t, int VEC>
__global__ void bwd_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ x,
                           scalar_t* __restrict__ dx, const float* __restrict__ gmean, int T, int64_t N, int64_t C,
                           int half) {
  using acc_t = typename AccOf<scalar_t>::type;
  const int64_t frame = N * C;
  const int64_t j = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
  if (j >= frame) return;
  const int64_t b = blockIdx.y, n = j / C;  // a vector never straddles two tokens (C % VEC == 0)
  const scalar_t* xb = x + b * T * frame;
  const scalar_t* gb = g + b * T * frame;
  const float* gmean_b = gmean == nullptr ? nullptr : gmean + b * T * N;
  for (int t = 0; t < T; ++t) {
    acc_t acc[VEC];
    load_g<scalar_t, VEC>(gb, gmean_b, frame, N, j, n, t, acc);
    const int s_lo = window_lo(t, half), s_hi = window_hi(t, half, T);
    for (int s = s_lo; s <= s_hi; ++s) {  // windows containing t, ascending (as the CPU kernel)
      const int lo = window_lo(s, half), hi = window_hi(s, half, T);
      acc_t best[VEC], v[VEC];
      int arg[VEC];
      load_vec<scalar_t, VEC>(xb + lo * frame + j, best);
#pragma unroll
      for (int i = 0; i < VEC; ++i) arg[i] = lo;
      for (int p = lo + 1; p <= hi; ++p) {
        load_vec<scalar_t, VEC>(xb + p * frame + j, v);
#pragma unroll
        for (int i = 0; i < VEC; ++i) {
          const bool upd = beats(v[i], best[i]);
          best[i] = upd ? v[i] : best[i];
          arg[i] = upd ? p : arg[i];
        }
      }
      bool any = false;
#pragma unroll
      for (int i = 0; i < VEC; ++i) any |= arg[i] == t;
      if (!any) continue;  // G[s] is only read where window s routes to t
      acc_t G[VEC];
      load_g<scalar_t, VEC>(gb, gmean_b, frame, N, j, n, s, G);
#pragma unroll
      for (int i = 0; i < VEC; ++i) acc[i] -= routed(arg[i], t, G[i]);
    }
    store_vec<scalar_t, VEC>(dx + b * T * frame + t * frame + j, acc);
  }
}

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

inline int subwarp_size(int64_t lanes_needed) {
  int S = 1;
  while (S < 32 && S < lanes_needed) S *= 2;
  return S;
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

template <typename scalar_t, int VEC>
cudaError_t launch_forward(const scalar_t* x, scalar_t* y, int64_t B, int64_t T, int64_t N, int64_t C, int half,
                           bool mix_on, cudaStream_t stream) {
  if (!mix_on) {
    const int64_t frame = N * C;
    for (int64_t b0 = 0; b0 < B; b0 += kMaxGridY) {  // grid.y holds at most 65535 clips
      const int64_t nb = B - b0 < kMaxGridY ? B - b0 : kMaxGridY, off = b0 * T * frame;
      const dim3 grid(unsigned((frame / VEC + kThreads - 1) / kThreads), unsigned(nb));
      fwd_flat_kernel<scalar_t, VEC><<<grid, kThreads, 0, stream>>>(x + off, y + off, int(T), frame, half);
    }
  } else {
    const int S = subwarp_size(C / VEC);
    const int64_t tokens = B * N, per_block = kThreads / S;
    const unsigned blocks = unsigned((tokens + per_block - 1) / per_block);
    fwd_mix_kernel<scalar_t, VEC><<<blocks, kThreads, 0, stream>>>(x, y, int(T), N, C, half, S, tokens);
  }
  return cudaGetLastError();
}

template <typename scalar_t, int VEC>
cudaError_t launch_backward(const scalar_t* g, const scalar_t* x, scalar_t* dx, float* gmean, int64_t B, int64_t T,
                            int64_t N, int64_t C, int half, bool mix_on, cudaStream_t stream) {
  if (mix_on) {
    const int S = subwarp_size(C / VEC);
    const int64_t rows = B * T * N, per_block = kThreads / S;
    row_mean_kernel<scalar_t, VEC><<<unsigned((rows + per_block - 1) / per_block), kThreads, 0, stream>>>(
        g, gmean, C, S, rows);
  }
  const int64_t frame = N * C;
  for (int64_t b0 = 0; b0 < B; b0 += kMaxGridY) {
    const int64_t nb = B - b0 < kMaxGridY ? B - b0 : kMaxGridY, off = b0 * T * frame;
    const dim3 grid(unsigned((frame / VEC + kThreads - 1) / kThreads), unsigned(nb));
    bwd_kernel<scalar_t, VEC><<<grid, kThreads, 0, stream>>>(g + off, x + off, dx + off,
                                                             mix_on ? gmean + b0 * T * N : nullptr, int(T), N, C,
                                                             half);
  }
  return cudaGetLastError();
}

// 16-byte vectors when every row start is 16-byte aligned (C*sizeof multiple of 16, aligned bases).
template <typename scalar_t>
bool use_vec(int64_t C, std::initializer_list<const void*> ptrs) {
  if ((C * int64_t(sizeof(scalar_t))) % 16 != 0) return false;
  for (const void* p : ptrs)
    if (!aligned16(p)) return false;
  return true;
}

template <typename scalar_t>
cudaError_t forward_t(const void* x, void* y, int64_t B, int64_t T, int64_t N, int64_t C, int half, bool mix_on,
                      cudaStream_t st) {
  constexpr int V = 16 / sizeof(scalar_t);
  auto xs = static_cast<const scalar_t*>(x);
  auto ys = static_cast<scalar_t*>(y);
  if (use_vec<scalar_t>(C, {x, y})) return launch_forward<scalar_t, V>(xs, ys, B, T, N, C, half, mix_on, st);
  return launch_forward<scalar_t, 1>(xs, ys, B, T, N, C, half, mix_on, st);
}

template <typename scalar_t>
cudaError_t backward_t(const void* g, const void* x, void* dx, float* gmean, int64_t B, int64_t T, int64_t N,
                       int64_t C, int half, bool mix_on, cudaStream_t st) {
  constexpr int V = 16 / sizeof(scalar_t);
  auto gs = static_cast<const scalar_t*>(g);
  auto xs = static_cast<const scalar_t*>(x);
  auto ds = static_cast<scalar_t*>(dx);
  if (use_vec<scalar_t>(C, {g, x, dx}))
    return launch_backward<scalar_t, V>(gs, xs, ds, gmean, B, T, N, C, half, mix_on, st);
  return launch_backward<scalar_t, 1>(gs, xs, ds, gmean, B, T, N, C, half, mix_on, st);
}

}  // namespace

namespace cuda_launch {

int temporal_max_diff_forward(const void* x, void* y, DType dtype, int64_t B, int64_t T, int64_t N, int64_t C,
                              int kernel_size, bool mix_on, void* stream) {
  const int half = kernel_size / 2;
  auto st = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kFloat32: return int(forward_t<float>(x, y, B, T, N, C, half, mix_on, st));
    case DType::kFloat16: return int(forward_t<__half>(x, y, B, T, N, C, half, mix_on, st));
    case DType::kBFloat16: return int(forward_t<__nv_bfloat16>(x, y, B, T, N, C, half, mix_on, st));
    case DType::kFloat64: return int(forward_t<double>(x, y, B, T, N, C, half, mix_on, st));
  }
  return int(cudaErrorInvalidValue);
}

int temporal_max_diff_backward(const void* grad_out, const void* x, void* grad_x, float* gmean, DType dtype,
                               int64_t B, int64_t T, int64_t N, int64_t C, int kernel_size, bool mix_on,
                               void* stream) {
  const int half = kernel_size / 2;
  auto st = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kFloat32: return int(backward_t<float>(grad_out, x, grad_x, gmean, B, T, N, C, half, mix_on, st));
    case DType::kFloat16: return int(backward_t<__half>(grad_out, x, grad_x, gmean, B, T, N, C, half, mix_on, st));
    case DType::kBFloat16:
      return int(backward_t<__nv_bfloat16>(grad_out, x, grad_x, gmean, B, T, N, C, half, mix_on, st));
    case DType::kFloat64: return int(backward_t<double>(grad_out, x, grad_x, gmean, B, T, N, C, half, mix_on, st));
  }
  return int(cudaErrorInvalidValue);
}

}  // namespace cuda_launch
}  // namespace tds
