// Launchers of the TD-Adapter CUDA kernels (csrc/cuda/td_adapter_kernels.cu), called by the ATen wrapper
// csrc/cuda/td_adapter.cpp. No torch headers: pointers, sizes and a tds::DType (common/base.h) cross the
// boundary, so nvcc never parses ATen. Every launcher enqueues on `stream`, returns without synchronising,
// and returns the cudaError_t of its launch as an int (the wrapper checks it with TDS_CUDA_CHECK).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/base.h"

namespace tds {
namespace td_adapter {
namespace cuda {

// Element types: the narrow / accumulation tensors are kFloat32 or kFloat64; u, g and out may be any float.

// Rows per block-row of the column reductions: partial sums are (ceil(M / kColRows), C) doubles.
constexpr int64_t kColRows = 256;
inline int64_t col_chunks(int64_t M) { return (M + kColRows - 1) / kColRows; }

int col_sum(DType acc, const void* x, const void* y, const void* center, double* partial, int64_t M, int64_t C,
             int mode, cudaStream_t stream);
int maxdiff_forward(DType acc, const void* b, const void* center, const void* scale, void* m, int64_t B,
                     int64_t T, int64_t N, int64_t h, int half, cudaStream_t stream);
int maxdiff_backward(DType acc, const void* b, const void* center, const void* scale, const void* dm, void* dv,
                      int64_t B, int64_t T, int64_t N, int64_t h, int half, cudaStream_t stream);
int mix_rows(DType acc, const void* x, const void* center, void* out, int64_t M, int64_t h, bool mix,
              cudaStream_t stream);
int gate_forward(DType dtype, const void* u, const void* y, void* out, int64_t n, bool gated,
                  cudaStream_t stream);
int gate_backward(DType dtype, const void* g, const void* u, void* y_dy, void* du, int64_t n, bool gated,
                   cudaStream_t stream);
int bn1_backward(DType acc, const void* dv, const void* b, const void* center, const void* invstd,
                  const void* scale, const void* k_mean, const void* k_xhat, void* db, int64_t M, int64_t h,
                  cudaStream_t stream);

}  // namespace cuda
}  // namespace td_adapter
}  // namespace tds
