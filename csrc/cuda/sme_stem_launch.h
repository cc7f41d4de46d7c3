// Launchers of the fused SME stem's CUDA kernels (defined in sme_stem_kernels.cu, which includes only
// CUDA headers; called from sme_stem.cpp, which owns the ATen side: allocation, GEMMs, chunking).
// Pointers are raw device pointers; the dtypes travel as tds::DType (common/base.h): frames any of them,
// outputs a float type, accumulation kFloat32 or kFloat64. Each launcher returns cudaGetLastError() after
// its launch (the wrapper checks it with TDS_CUDA_CHECK).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/base.h"
#include "common/sme_stem_math.h"

namespace tds {
namespace sme_stem {
namespace cuda {

struct Strides6 {
  int64_t b, t, k, c, y, x;
};

// Patch rows (group, t, j) of groups [g0, g1) into pr (rows, 3 P^2) and pm (rows, 12 P^2).
cudaError_t gather(const void* frames, DType ft, Strides6 s, Geom g, int64_t g0, int64_t g1, void* pr, void* pm,
                   DType at, cudaStream_t stream);

// Tap combination of the GEMM outputs yr/ym (rows (group, t, j), 3d wide) of groups [g0, g1).
// eval: out = fused output (coefs: kNumFwdCoefs x d); otherwise Z into zr/zm (n_pos x d).
cudaError_t combine(bool eval, Geom g, int64_t g0, int64_t g1, const void* yr, const void* ym, const void* bias_map,
                    void* zr, void* zm, void* out, DType ot, const void* coefs, DType at, cudaStream_t stream);

// Per-channel partial sums over the n_pos positions into partials (n_split, n_stats, d) doubles:
//   kSums:    sum Z_rgb, sum Z_mot                                             (2 stats)
//   kSqDev:   sum (Z_rgb - c_r)^2, sum (Z_mot - c_m)^2                          (2 stats)
//   kBackward: sum g, g (Z_rgb - c_r), g (Z_mot - c_m), Z_rgb - c_r, Z_mot - c_m (kNumBwdStats)
// centre: (2, d) doubles (c_r, c_m), unused for kSums; grad only for kBackward.
enum class SumMode : int { kSums = 0, kSqDev = 1, kBackward = 2 };
cudaError_t column_sums(SumMode mode, const void* zr, const void* zm, const void* grad, const double* centre,
                        int64_t n_pos, int64_t d, double* partials, int64_t n_split, DType at, cudaStream_t stream);

cudaError_t forward_finalise(int64_t d, bool training, double n, double eps, double alpha, const double* sums,
                             const void* params, void* stats, void* coefs, DType at, cudaStream_t stream);
cudaError_t backward_finalise(int64_t d, bool training, double n, double eps, double alpha, const double* sums,
                              const void* params, const void* stats, void* grads, void* coefs, DType at,
                              cudaStream_t stream);

// out = fused_output(Z_rgb, Z_mot, coefs) (training forward, after the statistics).
cudaError_t normalise(const void* zr, const void* zm, const void* coefs, void* out, DType ot, int64_t n_pos,
                      int64_t d, DType at, cudaStream_t stream);

// BatchNorm backward: dZ = k1 g + k2 (Z - shift) + k3 for both branches (dZ may overwrite a recomputed Z).
cudaError_t bn_backward(const void* zr, const void* zm, const void* grad, const void* coefs, void* dzr, void* dzm,
                        int64_t n_pos, int64_t d, DType at, cudaStream_t stream);

// dY rows (group, t_in, j) of groups [g0, g1), 3d wide: dZ of the output frame each tap reaches.
cudaError_t shift_grad(Geom g, int64_t g0, int64_t g1, const void* dz, void* dy, DType at, cudaStream_t stream);

}  // namespace cuda
}  // namespace sme_stem
}  // namespace tds
