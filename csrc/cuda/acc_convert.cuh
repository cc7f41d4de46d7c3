// Element <-> accumulator conversions of the CUDA kernels (nvcc only): float32 accumulation for float32,
// float16 and bfloat16 data, float64 for float64; round-to-nearest on the way back. Shared by
// temporal_max_diff_kernels.cu and temporal_adjacent_diff_kernels.cu.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace tds {

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_acc(float v);
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <typename T> __device__ __forceinline__ T from_acc(double v) { return static_cast<T>(v); }

}  // namespace tds
