// tds::parallel_for: at::parallel_for for CPU kernels whose workers call ATen ops (GEMMs into
// preallocated buffers with at::mm_out / at::addmm_out). The op itself runs below autograd on the
// calling thread, but dispatch-key state is thread-local and at::parallel_for's OpenMP workers start
// with autograd on: an out= op there on a tensor that requires grad (a float64 weight passed through
// unconverted) raised "addmm(): functions with out=... arguments don't support automatic
// differentiation" (issue #12 (c)). Each worker re-enters the caller's state. CPU only (uses ATen).
#pragma once
#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>

#include <cstdint>

namespace tds {

template <typename F>
inline void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  at::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;  // as on the thread that called the op
    f(b, e);
  });
}

}  // namespace tds
