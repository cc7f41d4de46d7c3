// Host test of the csrc/common/*_math.h helpers the CPU kernels do not call (only the CUDA kernels do):
// compiled with plain g++ by tests/test_common_math.py, which feeds it cases on stdin and checks the
// printed results against PyTorch (max_pool1d, conv1d, the Conv3d weight layout). Plain C++, no torch.
//
// stdin, one case per line:
//   window  T half t                                  -> max_diff::window_lo, window_hi
//   argmax  T lo hi center scale x_0 .. x_{T-1}        -> td_adapter::window_argmax (x: "nan" allowed)
//   maxdiff T t lo hi center scale x_0 .. x_{T-1}      -> td_adapter::maxdiff_value
//   taps    T_in T_out pt                              -> sme_stem::tap_source / tap_target for every (t, kt)
//   col     P col                                      -> sme_stem::split_col
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "common/max_diff_math.h"
#include "common/sme_stem_math.h"
#include "common/td_adapter_math.h"

static std::vector<double> read_values(std::istringstream& in, int n) {
  std::vector<double> x(n);
  for (int i = 0; i < n; ++i) {
    std::string s;
    in >> s;
    x[i] = std::stod(s);  // "nan" parses to NaN
  }
  return x;
}

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string kind;
    in >> kind;
    if (kind == "window") {
      int T, half, t;
      in >> T >> half >> t;
      std::printf("%d %d\n", tds::max_diff::window_lo(t, half), tds::max_diff::window_hi(t, half, T));
    } else if (kind == "argmax") {
      int T, lo, hi;
      double c, s;
      in >> T >> lo >> hi >> c >> s;
      const std::vector<double> x = read_values(in, T);
      std::printf("%d\n", tds::td_adapter::window_argmax(x.data(), 1, lo, hi, c, s));
    } else if (kind == "maxdiff") {
      int T, t, lo, hi;
      double c, s;
      in >> T >> t >> lo >> hi >> c >> s;
      const std::vector<double> x = read_values(in, T);
      std::printf("%.17g\n", tds::td_adapter::maxdiff_value(x.data(), 1, t, lo, hi, c, s));
    } else if (kind == "taps") {
      long T_in, T_out, pt;
      in >> T_in >> T_out >> pt;
      for (long t = 0; t < T_out; ++t)
        for (long k = 0; k < 3; ++k) std::printf("%ld ", long(tds::sme_stem::tap_source(t, k, pt, T_in)));
      std::printf("|");
      for (long t = 0; t < T_in; ++t)
        for (long k = 0; k < 3; ++k) std::printf(" %ld", long(tds::sme_stem::tap_target(t, k, pt, T_out)));
      std::printf("\n");
    } else if (kind == "col") {
      int64_t P, col, ch, ky, kx;
      in >> P >> col;
      tds::sme_stem::split_col(col, P, ch, ky, kx);
      std::printf("%ld %ld %ld\n", long(ch), long(ky), long(kx));
    }
  }
  return 0;
}
