// CUDA kernels of the fused SME stem. Only CUDA headers and the shared math
// (common/sme_stem_math.h): the same per-element arithmetic as the CPU kernel. The GEMMs
// (patches x folded weights, patches^T x dY) run in cuBLAS through ATen in sme_stem.cpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "common/sme_stem_math.h"
#include "cuda/sme_stem_launch.h"

namespace tds {
namespace sme_stem {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

// ---- conversions (the extension is built with implicit half conversions disabled) ----
template <typename acc_t>
__device__ __forceinline__ acc_t load_as(uint8_t v) { return static_cast<acc_t>(v); }
template <typename acc_t>
__device__ __forceinline__ acc_t load_as(float v) { return static_cast<acc_t>(v); }
template <typename acc_t>
__device__ __forceinline__ acc_t load_as(double v) { return static_cast<acc_t>(v); }
template <typename acc_t>
__device__ __forceinline__ acc_t load_as(__half v) { return static_cast<acc_t>(__half2float(v)); }
template <typename acc_t>
__device__ __forceinline__ acc_t load_as(__nv_bfloat16 v) { return static_cast<acc_t>(__bfloat162float(v)); }

template <typename acc_t>
__device__ __forceinline__ void store_as(float* p, acc_t v) { *p = static_cast<float>(v); }
template <typename acc_t>
__device__ __forceinline__ void store_as(double* p, acc_t v) { *p = static_cast<double>(v); }
template <typename acc_t>
__device__ __forceinline__ void store_as(__half* p, acc_t v) { *p = __float2half_rn(static_cast<float>(v)); }
template <typename acc_t>
__device__ __forceinline__ void store_as(__nv_bfloat16* p, acc_t v) {
  *p = __float2bfloat16_rn(static_cast<float>(v));
}

// Channel-axis vectors: VEC consecutive channels per thread, moved as one 16-byte load/store for the
// accumulation dtype (4 floats / 2 doubles) when d is a multiple of VEC (buffers from at::empty are
// 16-byte aligned and every row starts at a multiple of d elements).
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};
template <int N, typename T>
__device__ __forceinline__ Vec<T, N> load_vec(const T* p) {
  return *reinterpret_cast<const Vec<T, N>*>(p);
}
template <int N, typename T>
__device__ __forceinline__ void store_vec(T* p, const Vec<T, N>& x) {
  *reinterpret_cast<Vec<T, N>*>(p) = x;
}

inline unsigned grid_y(int64_t rows) { return static_cast<unsigned>(rows < kMaxGridY ? (rows > 0 ? rows : 1) : kMaxGridY); }
inline unsigned blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > (1 << 20) ? (1 << 20) : b));
}

// One thread per patch element; consecutive threads take consecutive kx, i.e. consecutive pixels
// of a frame row (coalesced reads of the uint8 frames, coalesced writes of the patch rows).
template <typename frame_t, typename acc_t>
__global__ void gather_kernel(const frame_t* __restrict__ f, Strides6 s, Geom g, int64_t g0, int64_t rows,
                              acc_t* __restrict__ pr, acc_t* __restrict__ pm) {
  const int64_t P2 = g.P * g.P, Kr = kRgbChannels * P2, Km = kMotChannels * P2;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t j = row % g.w, q = row / g.w, t = q % g.T, grp = g0 + q / g.T;
    const int64_t b = grp / g.h, i = grp % g.h;
    const frame_t* clip = f + b * s.b + t * s.t;
    for (int64_t col = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; col < Kr + Km;
         col += (int64_t)gridDim.x * blockDim.x) {
      const bool mot = col >= Kr;
      const int64_t cc = mot ? col - Kr : col;
      int64_t ch, ky, kx;
      split_col(cc, g.P, ch, ky, kx);
      const int64_t y = src_index(i, ky, g.P, g.ph, g.H), x = src_index(j, kx, g.P, g.pw, g.W);
      acc_t v = acc_t(0);
      if (y >= 0 && x >= 0) {
        const frame_t* px = clip + y * s.y + x * s.x;
        if (!mot) {
          v = rgb_value<acc_t>(load_as<acc_t>(px[kCentre * s.k + ch * s.c]));
        } else {
          int64_t k, c;
          motion_channel(ch, k, c);
          v = motion_value<acc_t>(load_as<acc_t>(px[(k + 1) * s.k + c * s.c]), load_as<acc_t>(px[k * s.k + c * s.c]));
        }
      }
      if (mot) {
        pm[row * Km + cc] = v;
      } else {
        pr[row * Kr + cc] = v;
      }
    }
  }
}

// One thread per (output position of the chunk, VEC channels): Z = bias map + sum of the valid taps.
template <typename acc_t, typename out_t, int VEC>
__global__ void combine_kernel(bool eval, Geom g, int64_t g0, int64_t rows_out, const acc_t* __restrict__ yr,
                               const acc_t* __restrict__ ym, const acc_t* __restrict__ bias_map, acc_t* zr, acc_t* zm,
                               out_t* out, const acc_t* __restrict__ coefs) {
  const int64_t d = g.d, ld = kTaps * d;
  for (int64_t row = blockIdx.y; row < rows_out; row += gridDim.y) {
    const int64_t j = row % g.w, q = row / g.w, t = q % g.T_out, lg = q / g.T_out, grp = g0 + lg;
    const int64_t b = grp / g.h, i = grp % g.h;
    const int64_t pos = ((b * g.T_out + t) * g.h + i) * g.w + j;
    for (int64_t o = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * VEC; o < d;
         o += (int64_t)gridDim.x * blockDim.x * VEC) {
      Vec<acc_t, VEC> a, m;
      if (bias_map != nullptr) {
        a = load_vec<VEC>(bias_map + ((t * g.h + i) * g.w + j) * d + o);
      } else {
#pragma unroll
        for (int v = 0; v < VEC; ++v) a.v[v] = acc_t(0);
      }
#pragma unroll
      for (int v = 0; v < VEC; ++v) m.v[v] = acc_t(0);
      for (int64_t kt = 0; kt < kTaps; ++kt) {
        const int64_t t_in = tap_source(t, kt, g.pt, g.T);
        if (t_in < 0) continue;
        const int64_t idx = ((lg * g.T + t_in) * g.w + j) * ld + kt * d + o;
        const Vec<acc_t, VEC> yr_v = load_vec<VEC>(yr + idx), ym_v = load_vec<VEC>(ym + idx);
#pragma unroll
        for (int v = 0; v < VEC; ++v) {
          a.v[v] += yr_v.v[v];
          m.v[v] += ym_v.v[v];
        }
      }
      if (eval) {
#pragma unroll
        for (int v = 0; v < VEC; ++v) {
          const int64_t c = o + v;
          store_as<acc_t>(out + pos * d + c,
                          fused_output(a.v[v], m.v[v], coefs[kShiftR * d + c], coefs[kShiftM * d + c],
                                       coefs[kScaleR * d + c], coefs[kScaleM * d + c], coefs[kOffset * d + c]));
        }
      } else {
        store_vec<VEC>(zr + pos * d + o, a);
        store_vec<VEC>(zm + pos * d + o, m);
      }
    }
  }
}

// Column sums over positions in double (modes: see SumMode in sme_stem_launch.h).
// Block (32 channels x 8 row lanes), grid (channel tiles, splits).
template <typename acc_t>
__global__ void column_sums_kernel(int mode, const acc_t* __restrict__ zr, const acc_t* __restrict__ zm,
                                   const acc_t* __restrict__ grad, const double* __restrict__ centre, int64_t n_pos,
                                   int64_t d, double* partials) {
  constexpr int kLanes = 8, kMaxStats = kNumBwdStats;
  __shared__ double red[kLanes][kMaxStats][32];
  const int64_t o = blockIdx.x * 32 + threadIdx.x;
  const int64_t n_split = gridDim.y, split = blockIdx.y;
  const int64_t per = (n_pos + n_split - 1) / n_split, p0 = split * per;
  const int64_t p1 = p0 + per < n_pos ? p0 + per : n_pos;
  const int n_stats = mode == static_cast<int>(SumMode::kBackward) ? kNumBwdStats : 2;
  double acc[kMaxStats] = {0.0, 0.0, 0.0, 0.0, 0.0};
  if (o < d) {
    const double cr = centre != nullptr ? centre[o] : 0.0, cm = centre != nullptr ? centre[d + o] : 0.0;
    for (int64_t p = p0 + threadIdx.y; p < p1; p += kLanes) {
      const double a = static_cast<double>(zr[p * d + o]) - cr, m = static_cast<double>(zm[p * d + o]) - cm;
      if (mode == static_cast<int>(SumMode::kSums)) {
        acc[0] += a;
        acc[1] += m;
      } else if (mode == static_cast<int>(SumMode::kSqDev)) {
        acc[0] += a * a;
        acc[1] += m * m;
      } else {
        const double gv = static_cast<double>(grad[p * d + o]);
        acc[kSumG] += gv;
        acc[kSumGZr] += gv * a;
        acc[kSumGZm] += gv * m;
        acc[kSumZr0] += a;
        acc[kSumZm0] += m;
      }
    }
  }
  for (int k = 0; k < kMaxStats; ++k) red[threadIdx.y][k][threadIdx.x] = acc[k];
  __syncthreads();
  if (threadIdx.y == 0 && o < d) {
    for (int k = 0; k < n_stats; ++k) {
      double s = 0.0;
      for (int l = 0; l < kLanes; ++l) s += red[l][k][threadIdx.x];
      partials[(split * n_stats + k) * d + o] = s;
    }
  }
}

template <typename acc_t>
__global__ void forward_finalise_kernel(int64_t d, bool training, double n, double eps, double alpha,
                                        const double* sums, const acc_t* params, acc_t* stats, acc_t* coefs) {
  const int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (o < d) forward_channel<acc_t>(o, d, training, n, eps, alpha, sums, params, stats, coefs);
}

template <typename acc_t>
__global__ void backward_finalise_kernel(int64_t d, bool training, double n, double eps, double alpha,
                                         const double* sums, const acc_t* params, const acc_t* stats, acc_t* grads,
                                         acc_t* coefs) {
  const int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (o < d) backward_channel<acc_t>(o, d, training, n, eps, alpha, sums, params, stats, grads, coefs);
}

// Elementwise kernels over (n_pos, d), VEC channels per thread (d % VEC == 0).
template <typename acc_t, typename out_t, int VEC>
__global__ void normalise_kernel(const acc_t* __restrict__ zr, const acc_t* __restrict__ zm,
                                 const acc_t* __restrict__ coefs, out_t* __restrict__ out, int64_t total, int64_t d) {
  for (int64_t e = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * VEC; e < total;
       e += (int64_t)gridDim.x * blockDim.x * VEC) {
    const int64_t o = e % d;
    const Vec<acc_t, VEC> a = load_vec<VEC>(zr + e), m = load_vec<VEC>(zm + e);
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
      const int64_t c = o + v;
      store_as<acc_t>(out + e + v, fused_output(a.v[v], m.v[v], coefs[kShiftR * d + c], coefs[kShiftM * d + c],
                                                coefs[kScaleR * d + c], coefs[kScaleM * d + c], coefs[kOffset * d + c]));
    }
  }
}

template <typename acc_t, int VEC>
__global__ void bn_grad_kernel(const acc_t* zr, const acc_t* zm, const acc_t* __restrict__ grad,
                               const acc_t* __restrict__ k, acc_t* dzr, acc_t* dzm, int64_t total, int64_t d) {
  for (int64_t e = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * VEC; e < total;
       e += (int64_t)gridDim.x * blockDim.x * VEC) {
    const int64_t o = e % d;
    const Vec<acc_t, VEC> gv = load_vec<VEC>(grad + e);
    Vec<acc_t, VEC> a = load_vec<VEC>(zr + e), m = load_vec<VEC>(zm + e);
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
      const int64_t c = o + v;
      a.v[v] = bn_grad(gv.v[v], a.v[v], k[kK1r * d + c], k[kK2r * d + c], k[kK3r * d + c], k[kBShiftR * d + c]);
      m.v[v] = bn_grad(gv.v[v], m.v[v], k[kK1m * d + c], k[kK2m * d + c], k[kK3m * d + c], k[kBShiftM * d + c]);
    }
    store_vec<VEC>(dzr + e, a);
    store_vec<VEC>(dzm + e, m);
  }
}

// dY rows (group, t_in, j), columns (tap, channel); VEC channels never straddle two taps (d % VEC == 0).
template <typename acc_t, int VEC>
__global__ void shift_grad_kernel(Geom g, int64_t g0, int64_t rows, const acc_t* __restrict__ dz,
                                  acc_t* __restrict__ dy) {
  const int64_t d = g.d, ld = kTaps * d;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t j = row % g.w, q = row / g.w, t = q % g.T, grp = g0 + q / g.T;
    const int64_t b = grp / g.h, i = grp % g.h;
    for (int64_t col = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * VEC; col < ld;
         col += (int64_t)gridDim.x * blockDim.x * VEC) {
      const int64_t kt = col / d, o = col % d;
      const int64_t t_out = tap_target(t, kt, g.pt, g.T_out);
      Vec<acc_t, VEC> x;
      if (t_out < 0) {
#pragma unroll
        for (int v = 0; v < VEC; ++v) x.v[v] = acc_t(0);
      } else {
        x = load_vec<VEC>(dz + (((b * g.T_out + t_out) * g.h + i) * g.w + j) * d + o);
      }
      store_vec<VEC>(dy + row * ld + col, x);
    }
  }
}

template <typename F>
void with_acc(DType at, F&& f) {
  if (at == DType::kFloat64) {
    f(static_cast<double*>(nullptr));
  } else {
    f(static_cast<float*>(nullptr));
  }
}

template <typename F>
void with_out(DType ot, F&& f) {
  switch (ot) {
    case DType::kFloat64: f(static_cast<double*>(nullptr)); break;
    case DType::kFloat16: f(static_cast<__half*>(nullptr)); break;
    case DType::kBFloat16: f(static_cast<__nv_bfloat16*>(nullptr)); break;
    default: f(static_cast<float*>(nullptr)); break;
  }
}

template <typename F>
void with_frames(DType ft, F&& f) {
  switch (ft) {
    case DType::kUInt8: f(static_cast<uint8_t*>(nullptr)); break;
    case DType::kFloat32: f(static_cast<float*>(nullptr)); break;
    case DType::kFloat64: f(static_cast<double*>(nullptr)); break;
    case DType::kFloat16: f(static_cast<__half*>(nullptr)); break;
    case DType::kBFloat16: f(static_cast<__nv_bfloat16*>(nullptr)); break;
  }
}

template <typename T>
using strip = typename std::remove_pointer<T>::type;

// 16-byte channel vectors when d allows them, else scalars.
template <typename acc_t, typename F>
void with_vec(int64_t d, F&& f) {
  constexpr int kVec = 16 / sizeof(acc_t);
  if (d % kVec == 0) {
    f(std::integral_constant<int, kVec>());
  } else {
    f(std::integral_constant<int, 1>());
  }
}

}  // namespace

cudaError_t gather(const void* frames, DType ft, Strides6 s, Geom g, int64_t g0, int64_t g1, void* pr, void* pm,
                   DType at, cudaStream_t stream) {
  const int64_t rows = (g1 - g0) * g.T * g.w, cols = (kRgbChannels + kMotChannels) * g.P * g.P;
  const dim3 grid(blocks_for(cols, kThreads), grid_y(rows));
  with_acc(at, [&](auto* a) {
    using acc_t = strip<decltype(a)>;
    with_frames(ft, [&](auto* fp) {
      using frame_t = strip<decltype(fp)>;
      gather_kernel<frame_t, acc_t><<<grid, kThreads, 0, stream>>>(static_cast<const frame_t*>(frames), s, g, g0,
                                                                   rows, static_cast<acc_t*>(pr),
                                                                   static_cast<acc_t*>(pm));
    });
  });
  return cudaGetLastError();
}

cudaError_t combine(bool eval, Geom g, int64_t g0, int64_t g1, const void* yr, const void* ym, const void* bias_map,
                    void* zr, void* zm, void* out, DType ot, const void* coefs, DType at, cudaStream_t stream) {
  const int64_t rows_out = (g1 - g0) * g.T_out * g.w;
  with_acc(at, [&](auto* a) {
    using acc_t = strip<decltype(a)>;
    with_vec<acc_t>(g.d, [&](auto vec) {
      constexpr int VEC = decltype(vec)::value;
      const int64_t lanes = g.d / VEC;
      const int threads = lanes >= kThreads ? kThreads : static_cast<int>(((lanes + 31) / 32) * 32);
      const dim3 grid(blocks_for(lanes, threads), grid_y(rows_out));
      with_out(ot, [&](auto* op) {
        using out_t = strip<decltype(op)>;
        combine_kernel<acc_t, out_t, VEC><<<grid, threads, 0, stream>>>(
            eval, g, g0, rows_out, static_cast<const acc_t*>(yr), static_cast<const acc_t*>(ym),
            static_cast<const acc_t*>(bias_map), static_cast<acc_t*>(zr), static_cast<acc_t*>(zm),
            static_cast<out_t*>(out), static_cast<const acc_t*>(coefs));
      });
    });
  });
  return cudaGetLastError();
}

cudaError_t column_sums(SumMode mode, const void* zr, const void* zm, const void* grad, const double* centre,
                        int64_t n_pos, int64_t d, double* partials, int64_t n_split, DType at, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((d + 31) / 32), static_cast<unsigned>(n_split)), block(32, 8);
  with_acc(at, [&](auto* a) {
    using acc_t = strip<decltype(a)>;
    column_sums_kernel<acc_t><<<grid, block, 0, stream>>>(static_cast<int>(mode), static_cast<const acc_t*>(zr),
                                                          static_cast<const acc_t*>(zm),
                                                          static_cast<const acc_t*>(grad), centre, n_pos, d, partials);
  });
  return cudaGetLastError();
}

cudaError_t forward_finalise(int64_t d, bool training, double n, double eps, double alpha, const double* sums,
                             const void* params, void* stats, void* coefs, DType at, cudaStream_t stream) {
  with_acc(at, [&](auto* a) {
    using acc_t = strip<decltype(a)>;
    forward_finalise_kernel<acc_t><<<blocks_for(d, 128), 128, 0, stream>>>(
        d, training, n, eps, alpha, sums, static_cast<const acc_t*>(params), static_cast<acc_t*>(stats),
        static_cast<acc_t*>(coefs));
  });
  return cudaGetLastError();
}

cudaError_t backward_finalise(int64_t d, bool training, double n, double eps, double alpha, const double* sums,
                              const void* params, const void* stats, void* grads, void* coefs, DType at,
                              cudaStream_t stream) {
  with_acc(at, [&](auto* a) {
    using acc_t = strip<decltype(a)>;
    backward_finalise_kernel<acc_t><<<blocks_for(d, 128), 128, 0, stream>>>(
        d, training, n, eps, alpha, sums, static_cast<const acc_t*>(params), static_cast<const acc_t*>(stats),
        static_cast<acc_t*>(grads), static_cast<acc_t*>(coefs));
  });
  return cudaGetLastError();
}

cudaError_t normalise(const void* zr, const void* zm, const void* coefs, void* out, DType ot, int64_t n_pos,
                      int64_t d, DType at, cudaStream_t stream) {
  const int64_t total = n_pos * d;
  with_acc(at, [&](auto* a) {
    using acc_t = strip<decltype(a)>;
    with_vec<acc_t>(d, [&](auto vec) {
      constexpr int VEC = decltype(vec)::value;
      with_out(ot, [&](auto* op) {
        using out_t = strip<decltype(op)>;
        normalise_kernel<acc_t, out_t, VEC><<<blocks_for(total / VEC, kThreads), kThreads, 0, stream>>>(
            static_cast<const acc_t*>(zr), static_cast<const acc_t*>(zm), static_cast<const acc_t*>(coefs),
            static_cast<out_t*>(out), total, d);
      });
    });
  });
  return cudaGetLastError();
}

cudaError_t bn_backward(const void* zr, const void* zm, const void* grad, const void* coefs, void* dzr, void* dzm,
                        int64_t n_pos, int64_t d, DType at, cudaStream_t stream) {
  const int64_t total = n_pos * d;
  with_acc(at, [&](auto* a) {
    using acc_t = strip<decltype(a)>;
    with_vec<acc_t>(d, [&](auto vec) {
      constexpr int VEC = decltype(vec)::value;
      bn_grad_kernel<acc_t, VEC><<<blocks_for(total / VEC, kThreads), kThreads, 0, stream>>>(
          static_cast<const acc_t*>(zr), static_cast<const acc_t*>(zm), static_cast<const acc_t*>(grad),
          static_cast<const acc_t*>(coefs), static_cast<acc_t*>(dzr), static_cast<acc_t*>(dzm), total, d);
    });
  });
  return cudaGetLastError();
}

cudaError_t shift_grad(Geom g, int64_t g0, int64_t g1, const void* dz, void* dy, DType at, cudaStream_t stream) {
  const int64_t rows = (g1 - g0) * g.T * g.w;
  with_acc(at, [&](auto* a) {
    using acc_t = strip<decltype(a)>;
    with_vec<acc_t>(g.d, [&](auto vec) {
      constexpr int VEC = decltype(vec)::value;
      const dim3 grid(blocks_for(kTaps * g.d / VEC, kThreads), grid_y(rows));
      shift_grad_kernel<acc_t, VEC><<<grid, kThreads, 0, stream>>>(g, g0, rows, static_cast<const acc_t*>(dz),
                                                                   static_cast<acc_t*>(dy));
    });
  });
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace sme_stem
}  // namespace tds
