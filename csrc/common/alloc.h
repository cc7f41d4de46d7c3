// Output allocation for the C++/CUDA kernels: with TDS_KERNELS_POISON=1 (set by the tests)
// new floating-point outputs are filled with NaN, so an output element a kernel forgets to
// write shows up as a parity failure. Mirrors tds_kernels/_alloc.py.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <cmath>
#include <cstdlib>

namespace tds {

inline bool poison_enabled() {
  const char* p = std::getenv("TDS_KERNELS_POISON");
  return p != nullptr && p[0] == '1';
}

inline at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = at::empty(sizes, options);
  if (poison_enabled() && at::isFloatingType(t.scalar_type())) t.fill_(NAN);
  return t;
}

}  // namespace tds
