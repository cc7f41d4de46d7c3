// Base header of every C++/CUDA source of tds_kernels: the one place for
//   * TDS_HD: functions compiled for both host and device (the per-element math in csrc/common/*_math.h,
//     shared by the CPU kernels and the CUDA kernels, so the CPU tests exercise the GPU's arithmetic);
//   * tds::DType: the one element-type code that crosses the boundary between the ATen wrappers
//     (csrc/cuda/*.cpp) and the CUDA launchers (csrc/cuda/*.cu, which never parse ATen);
//   * dtype_of(): the c10::ScalarType -> DType mapping (host code only);
//   * TDS_CUDA_CHECK: how a wrapper reports a failed launch (every launcher returns the cudaError_t of its
//     launch as an int, 0 = success).
// Plain C++ for nvcc; the ATen/CUDA-runtime parts are left out under nvcc and with TDS_NO_ATEN (the plain
// g++ host test of the math headers, csrc/tests/common_math_host_test.cpp).
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define TDS_HD __host__ __device__
#else
#define TDS_HD
#endif

namespace tds {

enum class DType : int { kUInt8 = 0, kFloat32 = 1, kFloat16 = 2, kBFloat16 = 3, kFloat64 = 4 };

// The accumulation type of a kernel: float64 for float64 data, float32 for everything else.
TDS_HD constexpr DType acc_dtype(DType t) { return t == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32; }

TDS_HD constexpr int element_size(DType t) {
  return t == DType::kFloat64 ? 8 : t == DType::kFloat32 ? 4 : t == DType::kUInt8 ? 1 : 2;
}

}  // namespace tds

#if !defined(__CUDACC__) && !defined(TDS_NO_ATEN)
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

namespace tds {

// `op` names the operator in the error for a dtype no kernel handles.
inline DType dtype_of(c10::ScalarType t, const char* op) {
  switch (t) {
    case c10::ScalarType::Byte: return DType::kUInt8;
    case c10::ScalarType::Float: return DType::kFloat32;
    case c10::ScalarType::Half: return DType::kFloat16;
    case c10::ScalarType::BFloat16: return DType::kBFloat16;
    case c10::ScalarType::Double: return DType::kFloat64;
    default: TORCH_CHECK_TYPE(false, op, ": unsupported dtype ", t);
  }
  return DType::kFloat32;
}

}  // namespace tds

#ifdef TDS_WITH_CUDA
#include <cuda_runtime_api.h>
// Wrappers check each launcher's return value: TDS_CUDA_CHECK(launcher(...), "tds::op", "what").
#define TDS_CUDA_CHECK(expr, op, what)                                                                  \
  do {                                                                                                 \
    const int tds_err_ = static_cast<int>(expr);                                                       \
    TORCH_CHECK(tds_err_ == 0, op, " (CUDA): ", what, " failed: ", cudaGetErrorString(cudaError_t(tds_err_))); \
  } while (0)
#endif
#endif  // !__CUDACC__ && !TDS_NO_ATEN
