// CPU kernels of the fused SME stem (SPEC §4 op 3). The formulation is in
// csrc/common/sme_stem_math.h; the ATen-side helpers in csrc/common/sme_stem_host.h.
//
// Forward: the patch-row groups (b, i) are split into chunks of ~kTargetRows rows; each thread,
// for each of its chunks, gathers the RGB and motion patches straight from the (uint8 or float)
// frames into small float buffers that stay in cache, runs one GEMM per branch against the folded
// weights of the three temporal taps (at::mm -> MKL), and combines the taps with the t-1/t/t+1
// shift into the bias-free conv outputs Z (train: kept for the batch statistics; eval: fused into
// the output at once). Neither the normalised frames nor the 12-channel difference tensor exist.
//
// Motion patches hold the 12 differences f_{k+1} - f_k computed while gathering rather than the 15
// raw frames with telescoped weights (W'_0 = -W_0, W'_j = W_{j-1} - W_j, W'_4 = W_3): both read the
// same 5 frames once, but the difference form has 12 P^2 GEMM columns instead of 15 P^2, i.e. 20%
// fewer GEMM FLOPs and 20% less patch buffer traffic, for 12 subtractions per pixel position.
//
// Backward (weights only; frames are data): a first pass recomputes Z chunk by chunk (the autograd
// context keeps only frames, weights and the per-channel statistics) and reduces sum(g), sum(g Z);
// BatchNorm's backward turns Z into dZ in place; a second pass regathers the patches and
// accumulates dW' = patches^T . dZ (shifted per tap) with at::addmm_ into per-thread accumulators.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <tuple>
#include <vector>

#include "common/alloc.h"
#include "common/sme_stem_host.h"
#include "common/sme_stem_math.h"

namespace tds {
namespace sme_stem {
namespace {

// ~200 patch rows per chunk: the motion buffer is then 200 x 12 P^2 floats (2.4 MB at P = 16),
// resident in L2/L3 between the gather and the GEMM, and each GEMM is still big enough for MKL.
constexpr int64_t kTargetRows = 200;

struct FrameStrides {
  int64_t b, t, k, c, y, x;
};

// dst[0, P) <- pixels x_base + kx of one frame row, zero where kx is outside [kx0, kx1) (padding).
template <typename scalar_t, typename acc_t>
inline void copy_line(acc_t* dst, const scalar_t* row, int64_t sx, int64_t x_base, int64_t kx0, int64_t kx1,
                      int64_t P) {
  for (int64_t kx = 0; kx < kx0; ++kx) dst[kx] = acc_t(0);
  const scalar_t* src = row + (x_base + kx0) * sx;
  acc_t* out = dst + kx0;
  const int64_t n = kx1 - kx0;
  if (sx == 1) {
    for (int64_t q = 0; q < n; ++q) out[q] = rgb_value<acc_t>(static_cast<acc_t>(src[q]));
  } else {
    for (int64_t q = 0; q < n; ++q) out[q] = rgb_value<acc_t>(static_cast<acc_t>(src[q * sx]));
  }
  for (int64_t kx = kx1; kx < P; ++kx) dst[kx] = acc_t(0);
}

template <typename scalar_t, typename acc_t>
inline void diff_line(acc_t* dst, const scalar_t* next, const scalar_t* prev, int64_t sx, int64_t x_base, int64_t kx0,
                      int64_t kx1, int64_t P) {
  for (int64_t kx = 0; kx < kx0; ++kx) dst[kx] = acc_t(0);
  const scalar_t* s1 = next + (x_base + kx0) * sx;
  const scalar_t* s0 = prev + (x_base + kx0) * sx;
  acc_t* out = dst + kx0;
  const int64_t n = kx1 - kx0;
  if (sx == 1) {
    for (int64_t q = 0; q < n; ++q)
      out[q] = motion_value<acc_t>(static_cast<acc_t>(s1[q]), static_cast<acc_t>(s0[q]));
  } else {
    for (int64_t q = 0; q < n; ++q)
      out[q] = motion_value<acc_t>(static_cast<acc_t>(s1[q * sx]), static_cast<acc_t>(s0[q * sx]));
  }
  for (int64_t kx = kx1; kx < P; ++kx) dst[kx] = acc_t(0);
}

// Patch rows of groups [g0, g1) (rows ordered (group, t, j)) into pr (rows, 3 P^2) and
// pm (rows, 12 P^2).
template <typename scalar_t, typename acc_t>
void gather_chunk(const scalar_t* frames, const FrameStrides& s, const Geom& g, int64_t g0, int64_t g1, acc_t* pr,
                  acc_t* pm) {
  const int64_t P = g.P, P2 = P * P, Kr = kRgbChannels * P2, Km = kMotChannels * P2;
  int64_t row = 0;
  for (int64_t grp = g0; grp < g1; ++grp) {
    const int64_t b = grp / g.h, i = grp % g.h;
    for (int64_t t = 0; t < g.T; ++t) {
      const scalar_t* clip = frames + b * s.b + t * s.t;
      for (int64_t j = 0; j < g.w; ++j, ++row) {
        const int64_t x_base = j * P - g.pw;
        const int64_t kx0 = std::max<int64_t>(0, -x_base), kx1 = std::min<int64_t>(P, g.W - x_base);
        acc_t* r = pr + row * Kr;
        acc_t* m = pm + row * Km;
        for (int64_t ky = 0; ky < P; ++ky) {
          const int64_t y = src_index(i, ky, P, g.ph, g.H);
          for (int64_t c = 0; c < kColours; ++c) {
            acc_t* dst = r + (c * P + ky) * P;
            if (y < 0) {
              std::memset(dst, 0, sizeof(acc_t) * P);
            } else {
              copy_line(dst, clip + kCentre * s.k + c * s.c + y * s.y, s.x, x_base, kx0, kx1, P);
            }
          }
          for (int64_t ch = 0; ch < kMotChannels; ++ch) {
            acc_t* dst = m + (ch * P + ky) * P;
            if (y < 0) {
              std::memset(dst, 0, sizeof(acc_t) * P);
            } else {
              int64_t k, c;
              motion_channel(ch, k, c);
              const scalar_t* base = clip + c * s.c + y * s.y;
              diff_line(dst, base + (k + 1) * s.k, base + k * s.k, s.x, x_base, kx0, kx1, P);
            }
          }
        }
      }
    }
  }
}

// z[0, d) <- bias (or 0) + sum of the valid taps of output frame t_out, token (i, j), from the
// group's GEMM output y_grp (T*w rows of 3d: the three taps side by side).
template <typename acc_t>
inline void sum_taps(acc_t* z, const acc_t* y_grp, const acc_t* bias, int64_t t_out, int64_t j, const Geom& g) {
  const int64_t d = g.d, ld = kTaps * d;
  if (bias != nullptr) {
    for (int64_t o = 0; o < d; ++o) z[o] = bias[o];
  } else {
    for (int64_t o = 0; o < d; ++o) z[o] = acc_t(0);
  }
  for (int64_t kt = 0; kt < kTaps; ++kt) {
    const int64_t t_in = tap_source(t_out, kt, g.pt, g.T);
    if (t_in < 0) continue;
    const acc_t* y = y_grp + (t_in * g.w + j) * ld + kt * d;
    for (int64_t o = 0; o < d; ++o) z[o] += y[o];
  }
}

enum class Pass { kTrainForward, kEvalForward, kBackwardStats };

// Tap combination of one chunk. kTrainForward: Z into zr/zm and the sums of Z (slots kSumZr, kSumZm);
// kEvalForward: the fused output straight into out; kBackwardStats: Z into zr/zm and the sums of g,
// g (Z - shift), Z - shift around the per-channel centres (2, d) (slots of BwdStat).
template <typename acc_t, typename out_t>
void combine_chunk(Pass pass, const Geom& g, int64_t g0, int64_t g1, const acc_t* yr, const acc_t* ym,
                   const acc_t* bias_map, acc_t* zr, acc_t* zm, out_t* out, const acc_t* coefs, const acc_t* grad,
                   const double* centre, double* sums, acc_t* tmp) {
  const int64_t d = g.d, grp_rows = g.T * g.w * kTaps * d;
  for (int64_t grp = g0; grp < g1; ++grp) {
    const int64_t b = grp / g.h, i = grp % g.h;
    const acc_t* yr_g = yr + (grp - g0) * grp_rows;
    const acc_t* ym_g = ym + (grp - g0) * grp_rows;
    for (int64_t t = 0; t < g.T_out; ++t) {
      for (int64_t j = 0; j < g.w; ++j) {
        const int64_t pos = ((b * g.T_out + t) * g.h + i) * g.w + j;
        const acc_t* bm = bias_map ? bias_map + ((t * g.h + i) * g.w + j) * d : nullptr;
        if (pass == Pass::kEvalForward) {
          acc_t* a = tmp;
          acc_t* m = tmp + d;
          sum_taps(a, yr_g, bm, t, j, g);
          sum_taps(m, ym_g, static_cast<const acc_t*>(nullptr), t, j, g);
          const acc_t *mr = coefs + kShiftR * d, *mm = coefs + kShiftM * d;
          const acc_t *sr = coefs + kScaleR * d, *sm = coefs + kScaleM * d, *off = coefs + kOffset * d;
          out_t* o_row = out + pos * d;
          for (int64_t o = 0; o < d; ++o)
            o_row[o] = static_cast<out_t>(fused_output(a[o], m[o], mr[o], mm[o], sr[o], sm[o], off[o]));
          continue;
        }
        acc_t* a = zr + pos * d;
        acc_t* m = zm + pos * d;
        sum_taps(a, yr_g, bm, t, j, g);
        sum_taps(m, ym_g, static_cast<const acc_t*>(nullptr), t, j, g);
        if (pass == Pass::kTrainForward) {
          double* s1r = sums + kSumZr * d;
          double* s1m = sums + kSumZm * d;
          for (int64_t o = 0; o < d; ++o) {
            s1r[o] += static_cast<double>(a[o]);
            s1m[o] += static_cast<double>(m[o]);
          }
        } else {
          const acc_t* gr = grad + pos * d;
          const double *cr = centre, *cm = centre + d;
          double* sg = sums + kSumG * d;
          double* sgr = sums + kSumGZr * d;
          double* sgm = sums + kSumGZm * d;
          double* szr = sums + kSumZr0 * d;
          double* szm = sums + kSumZm0 * d;
          for (int64_t o = 0; o < d; ++o) {
            const double gv = gr[o], vr = a[o] - cr[o], vm = m[o] - cm[o];
            sg[o] += gv;
            sgr[o] += gv * vr;
            sgm[o] += gv * vm;
            szr[o] += vr;
            szm[o] += vm;
          }
        }
      }
    }
  }
}

// Pass 2 of the batch variance: sums of (Z - mean)^2 per channel over fixed blocks of positions
// (deterministic whatever the thread count), into sums rows kSqDevR / kSqDevM.
template <typename acc_t>
void squared_deviations(const acc_t* zr, const acc_t* zm, int64_t n_pos, int64_t d, const double* mean,
                        double* sums) {
  constexpr int64_t kBlock = 256;
  const int64_t n_blocks = (n_pos + kBlock - 1) / kBlock;
  std::vector<double> part(static_cast<size_t>(n_blocks * 2 * d), 0.0);
  at::parallel_for(0, n_blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      double* pr = part.data() + blk * 2 * d;
      double* pm = pr + d;
      const int64_t p1 = std::min(n_pos, (blk + 1) * kBlock);
      for (int64_t p = blk * kBlock; p < p1; ++p) {
        const acc_t* a = zr + p * d;
        const acc_t* m = zm + p * d;
        for (int64_t o = 0; o < d; ++o) {
          const double vr = static_cast<double>(a[o]) - mean[o], vm = static_cast<double>(m[o]) - mean[d + o];
          pr[o] += vr * vr;
          pm[o] += vm * vm;
        }
      }
    }
  });
  for (int64_t blk = 0; blk < n_blocks; ++blk)
    for (int64_t o = 0; o < d; ++o) {
      sums[kSqDevR * d + o] += part[blk * 2 * d + o];
      sums[kSqDevM * d + o] += part[blk * 2 * d + d + o];
    }
}

// dY rows (group, t_in, j) of a chunk: for tap kt the dZ of the output frame t_in reaches through it.
template <typename acc_t>
void shift_grad_chunk(const Geom& g, int64_t g0, int64_t g1, const acc_t* dz, acc_t* dy) {
  const int64_t d = g.d, ld = kTaps * d;
  int64_t row = 0;
  for (int64_t grp = g0; grp < g1; ++grp) {
    const int64_t b = grp / g.h, i = grp % g.h;
    for (int64_t t = 0; t < g.T; ++t) {
      for (int64_t j = 0; j < g.w; ++j, ++row) {
        for (int64_t kt = 0; kt < kTaps; ++kt) {
          acc_t* dst = dy + row * ld + kt * d;
          const int64_t t_out = tap_target(t, kt, g.pt, g.T_out);
          if (t_out < 0) {
            std::memset(dst, 0, sizeof(acc_t) * d);
            continue;
          }
          const acc_t* src = dz + (((b * g.T_out + t_out) * g.h + i) * g.w + j) * d;
          std::memcpy(dst, src, sizeof(acc_t) * d);
        }
      }
    }
  }
}

template <typename F>
void dispatch_frames(at::ScalarType t, F&& f) {
  switch (t) {
    case at::kByte: f(static_cast<uint8_t*>(nullptr)); break;
    case at::kFloat: f(static_cast<float*>(nullptr)); break;
    case at::kDouble: f(static_cast<double*>(nullptr)); break;
    case at::kHalf: f(static_cast<at::Half*>(nullptr)); break;
    case at::kBFloat16: f(static_cast<at::BFloat16*>(nullptr)); break;
    default: TORCH_CHECK_TYPE(false, "sme_stem: unsupported frames dtype ", t);
  }
}

template <typename F>
void dispatch_acc(at::ScalarType t, F&& f) {
  if (t == at::kDouble) {
    f(static_cast<double*>(nullptr));
  } else {
    f(static_cast<float*>(nullptr));
  }
}

FrameStrides strides_of(const at::Tensor& frames) {
  return {frames.stride(0), frames.stride(1), frames.stride(2), frames.stride(3), frames.stride(4), frames.stride(5)};
}

// Runs `body(chunk, g0, g1, pr, pm, yr, ym)` over all chunks with one set of buffers per thread;
// pr/pm hold the chunk's patches (gathered here) and yr/ym their GEMM outputs when `gemm` is set.
template <typename scalar_t, typename acc_t, typename Body>
void for_each_chunk(const Call& c, const at::Tensor& frames, const at::Tensor& wr, const at::Tensor& wm, bool gemm,
                    Body&& body) {
  const Geom& g = c.g;
  const int64_t P2 = g.P * g.P, Kr = kRgbChannels * P2, Km = kMotChannels * P2;
  const int64_t n_groups = g.B * g.h, gpc = groups_per_chunk(g, kTargetRows);
  const int64_t n_chunks = (n_groups + gpc - 1) / gpc, rows_max = gpc * g.T * g.w;
  const scalar_t* fp = frames.const_data_ptr<scalar_t>();
  const FrameStrides s = strides_of(frames);
  const auto opts = wr.options().dtype(c.acc);
  at::parallel_for(0, n_chunks, 1, [&](int64_t c0, int64_t c1) {
    at::Tensor pr = at::empty({rows_max, Kr}, opts), pm = at::empty({rows_max, Km}, opts);
    at::Tensor yr, ym;
    if (gemm) {
      yr = at::empty({rows_max, kTaps * g.d}, opts);
      ym = at::empty({rows_max, kTaps * g.d}, opts);
    }
    for (int64_t ck = c0; ck < c1; ++ck) {
      const int64_t g0 = ck * gpc, g1 = std::min(n_groups, g0 + gpc), rows = (g1 - g0) * g.T * g.w;
      gather_chunk<scalar_t, acc_t>(fp, s, g, g0, g1, pr.data_ptr<acc_t>(), pm.data_ptr<acc_t>());
      at::Tensor prv = pr.narrow(0, 0, rows), pmv = pm.narrow(0, 0, rows);
      if (gemm) {
        at::Tensor yrv = yr.narrow(0, 0, rows), ymv = ym.narrow(0, 0, rows);
        at::mm_out(yrv, prv, wr);
        at::mm_out(ymv, pmv, wm);
        body(ck, g0, g1, prv, pmv, yrv.const_data_ptr<acc_t>(), ymv.const_data_ptr<acc_t>());
      } else {
        body(ck, g0, g1, prv, pmv, static_cast<const acc_t*>(nullptr), static_cast<const acc_t*>(nullptr));
      }
    }
  });
}

int64_t num_chunks(const Geom& g) {
  const int64_t n_groups = g.B * g.h, gpc = groups_per_chunk(g, kTargetRows);
  return (n_groups + gpc - 1) / gpc;
}

// Per-chunk partial sums (n_chunks, n_stats, d) reduced in chunk order: deterministic whatever the
// thread count.
at::Tensor reduce_partials(const at::Tensor& partials) { return partials.sum(0); }

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> sme_stem_forward_cpu(
    const at::Tensor& frames, const at::Tensor& w_rgb, const std::optional<at::Tensor>& b_rgb, const at::Tensor& w_mot,
    const std::optional<at::Tensor>& b_mot, const at::Tensor& gamma_rgb, const at::Tensor& beta_rgb,
    const at::Tensor& gamma_mot, const at::Tensor& beta_mot, const at::Tensor& running_mean_rgb,
    const at::Tensor& running_var_rgb, const at::Tensor& running_mean_mot, const at::Tensor& running_var_mot,
    at::ArrayRef<double> pixel_mean, at::ArrayRef<double> pixel_std, double alpha, at::IntArrayRef padding,
    bool training, double eps) {
  const Call c = check_inputs("sme_stem_forward", frames, w_rgb, b_rgb, w_mot, b_mot, gamma_rgb, beta_rgb, gamma_mot,
                              beta_mot,
                              {{"running_mean_rgb", running_mean_rgb},
                               {"running_var_rgb", running_var_rgb},
                               {"running_mean_mot", running_mean_mot},
                               {"running_var_mot", running_var_mot}},
                              /*stats_required=*/!training, pixel_mean, pixel_std, alpha, padding, training, eps);
  const Geom& g = c.g;
  const at::Tensor wr = fold_weights(c, w_rgb), wm = fold_weights(c, w_mot);
  const at::Tensor bias_map = has_mean_shift(c) ? rgb_bias_map(c, w_rgb) : at::Tensor();
  const at::Tensor params = param_pack(c, b_rgb, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot, running_mean_rgb,
                                       running_var_rgb, running_mean_mot, running_var_mot);
  const auto acc_opts = w_rgb.options().dtype(c.acc);
  const int64_t n_pos = g.B * g.T_out * g.h * g.w, d = g.d;
  at::Tensor out = new_output({g.B, g.T_out, g.h * g.w, d}, w_rgb.options().dtype(c.out));
  at::Tensor stats = new_output({kNumStats, d}, acc_opts);
  at::Tensor coefs = at::empty({kNumFwdCoefs, d}, acc_opts);
  const double n = static_cast<double>(n_pos);

  dispatch_acc(c.acc, [&](auto* acc_tag) {
    using acc_t = std::remove_pointer_t<decltype(acc_tag)>;
    auto finalise = [&](const double* sums) {
      for (int64_t o = 0; o < d; ++o)
        forward_channel<acc_t>(o, d, c.training, n, c.eps, c.alpha, sums, params.const_data_ptr<acc_t>(),
                               stats.data_ptr<acc_t>(), coefs.data_ptr<acc_t>());
    };
    const acc_t* bm = bias_map.defined() ? bias_map.const_data_ptr<acc_t>() : nullptr;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.out, "sme_stem_forward_cpu", [&] {
      using out_t = scalar_t;
      dispatch_frames(frames.scalar_type(), [&](auto* frame_tag) {
        using frame_t = std::remove_pointer_t<decltype(frame_tag)>;
        if (!c.training) {
          finalise(nullptr);
          for_each_chunk<frame_t, acc_t>(
              c, frames, wr, wm, true, [&](int64_t, int64_t g0, int64_t g1, const at::Tensor&, const at::Tensor&,
                                           const acc_t* yr, const acc_t* ym) {
                std::vector<acc_t> tmp(2 * d);
                combine_chunk<acc_t, out_t>(Pass::kEvalForward, g, g0, g1, yr, ym, bm, nullptr, nullptr,
                                            out.data_ptr<out_t>(), coefs.const_data_ptr<acc_t>(), nullptr, nullptr,
                                            nullptr, tmp.data());
              });
          return;
        }
        at::Tensor zr = at::empty({n_pos, d}, acc_opts), zm = at::empty({n_pos, d}, acc_opts);
        at::Tensor partials = at::zeros({num_chunks(g), 2, d}, acc_opts.dtype(at::kDouble));
        for_each_chunk<frame_t, acc_t>(
            c, frames, wr, wm, true, [&](int64_t ck, int64_t g0, int64_t g1, const at::Tensor&, const at::Tensor&,
                                         const acc_t* yr, const acc_t* ym) {
              combine_chunk<acc_t, out_t>(Pass::kTrainForward, g, g0, g1, yr, ym, bm, zr.data_ptr<acc_t>(),
                                          zm.data_ptr<acc_t>(), static_cast<out_t*>(nullptr), nullptr, nullptr,
                                          nullptr, partials[ck].data_ptr<double>(), nullptr);
            });
        // Sums in chunk order (deterministic), then the squared deviations around the batch means.
        at::Tensor sums = at::zeros({kNumFwdStats, d}, acc_opts.dtype(at::kDouble));
        sums.narrow(0, kSumZr, 2).copy_(partials.sum(0));
        std::vector<double> mean(2 * d);
        const double* sp = sums.const_data_ptr<double>();
        for (int64_t o = 0; o < d; ++o) {
          mean[o] = batch_mean(sp[kSumZr * d + o], n);
          mean[d + o] = batch_mean(sp[kSumZm * d + o], n);
        }
        squared_deviations<acc_t>(zr.const_data_ptr<acc_t>(), zm.const_data_ptr<acc_t>(), n_pos, d, mean.data(),
                                  sums.data_ptr<double>());
        finalise(sums.const_data_ptr<double>());
        // Normalise + fuse: one pass over the two Z buffers, parallel over positions.
        const acc_t* zrp = zr.const_data_ptr<acc_t>();
        const acc_t* zmp = zm.const_data_ptr<acc_t>();
        const acc_t* cf = coefs.const_data_ptr<acc_t>();
        out_t* op = out.data_ptr<out_t>();
        at::parallel_for(0, n_pos, 64, [&](int64_t p0, int64_t p1) {
          const acc_t *mr = cf + kShiftR * d, *mm = cf + kShiftM * d;
          const acc_t *sr = cf + kScaleR * d, *sm = cf + kScaleM * d, *off = cf + kOffset * d;
          for (int64_t p = p0; p < p1; ++p) {
            const acc_t* a = zrp + p * d;
            const acc_t* m = zmp + p * d;
            out_t* dst = op + p * d;
            for (int64_t o = 0; o < d; ++o)
              dst[o] = static_cast<out_t>(fused_output(a[o], m[o], mr[o], mm[o], sr[o], sm[o], off[o]));
          }
        });
      });
    });
  });
  return {out, stats[kMeanR].clone(), stats[kVarR].clone(), stats[kMeanM].clone(), stats[kVarM].clone()};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
sme_stem_backward_cpu(const at::Tensor& grad_out, const at::Tensor& frames, const at::Tensor& w_rgb,
                      const std::optional<at::Tensor>& b_rgb, const at::Tensor& w_mot,
                      const std::optional<at::Tensor>& b_mot, const at::Tensor& gamma_rgb, const at::Tensor& beta_rgb,
                      const at::Tensor& gamma_mot, const at::Tensor& beta_mot, const at::Tensor& mean_rgb,
                      const at::Tensor& var_rgb, const at::Tensor& mean_mot, const at::Tensor& var_mot,
                      at::ArrayRef<double> pixel_mean, at::ArrayRef<double> pixel_std, double alpha,
                      at::IntArrayRef padding, bool training, double eps) {
  const Call c = check_inputs("sme_stem_backward", frames, w_rgb, b_rgb, w_mot, b_mot, gamma_rgb, beta_rgb, gamma_mot,
                              beta_mot,
                              {{"mean_rgb", mean_rgb}, {"var_rgb", var_rgb}, {"mean_mot", mean_mot}, {"var_mot", var_mot}},
                              /*stats_required=*/true, pixel_mean, pixel_std, alpha, padding, training, eps);
  const Geom& g = c.g;
  const int64_t n_pos = g.B * g.T_out * g.h * g.w, d = g.d, P2 = g.P * g.P;
  TORCH_CHECK_VALUE(grad_out.dim() == 4 && grad_out.size(0) == g.B && grad_out.size(1) == g.T_out &&
                        grad_out.size(2) == g.h * g.w && grad_out.size(3) == d,
                    "sme_stem_backward: grad_out must be (", g.B, ", ", g.T_out, ", ", g.h * g.w, ", ", d, "), got ",
                    grad_out.sizes());
  TORCH_CHECK_TYPE(is_float_dtype(grad_out.scalar_type()), "sme_stem_backward: grad_out must be floating point");
  TORCH_CHECK_VALUE(grad_out.device() == frames.device(), "sme_stem_backward: grad_out is on ", grad_out.device(),
                    " but frames are on ", frames.device());
  const auto acc_opts = w_rgb.options().dtype(c.acc);
  const at::Tensor grad = grad_out.to(c.acc).contiguous().view({n_pos, d});
  const at::Tensor wr = fold_weights(c, w_rgb), wm = fold_weights(c, w_mot);
  const at::Tensor bias_map = has_mean_shift(c) ? rgb_bias_map(c, w_rgb) : at::Tensor();
  const at::Tensor params = param_pack(c, b_rgb, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot, at::Tensor(),
                                       at::Tensor(), at::Tensor(), at::Tensor());
  const at::Tensor stats = at::stack({mean_rgb.to(c.acc), var_rgb.to(c.acc), mean_mot.to(c.acc), var_mot.to(c.acc)})
                               .contiguous();
  at::Tensor grads = at::empty({kNumGrads, d}, acc_opts);
  at::Tensor coefs = at::empty({kNumBwdCoefs, d}, acc_opts);
  const int64_t Kr = kRgbChannels * P2, Km = kMotChannels * P2;
  at::Tensor dwr, dwm;
  at::Tensor zr = at::empty({n_pos, d}, acc_opts), zm = at::empty({n_pos, d}, acc_opts);

  dispatch_acc(c.acc, [&](auto* acc_tag) {
    using acc_t = std::remove_pointer_t<decltype(acc_tag)>;
    const acc_t* bm = bias_map.defined() ? bias_map.const_data_ptr<acc_t>() : nullptr;
    dispatch_frames(frames.scalar_type(), [&](auto* frame_tag) {
      using frame_t = std::remove_pointer_t<decltype(frame_tag)>;
      // Pass 1: recompute Z; sums of g, g (Z - shift), Z - shift per channel.
      std::vector<double> centre(2 * d);
      for (int64_t o = 0; o < d; ++o)
        backward_shift<acc_t>(o, d, params.const_data_ptr<acc_t>(), stats.const_data_ptr<acc_t>(), centre[o],
                              centre[d + o]);
      at::Tensor partials = at::zeros({num_chunks(g), kNumBwdStats, d}, acc_opts.dtype(at::kDouble));
      for_each_chunk<frame_t, acc_t>(
          c, frames, wr, wm, true, [&](int64_t ck, int64_t g0, int64_t g1, const at::Tensor&, const at::Tensor&,
                                       const acc_t* yr, const acc_t* ym) {
            combine_chunk<acc_t, acc_t>(Pass::kBackwardStats, g, g0, g1, yr, ym, bm, zr.data_ptr<acc_t>(),
                                        zm.data_ptr<acc_t>(), static_cast<acc_t*>(nullptr), nullptr,
                                        grad.const_data_ptr<acc_t>(), centre.data(), partials[ck].data_ptr<double>(),
                                        nullptr);
          });
      const at::Tensor sums = reduce_partials(partials).contiguous();
      for (int64_t o = 0; o < d; ++o)
        backward_channel<acc_t>(o, d, c.training, static_cast<double>(n_pos), c.eps, c.alpha,
                                sums.const_data_ptr<double>(), params.const_data_ptr<acc_t>(),
                                stats.const_data_ptr<acc_t>(), grads.data_ptr<acc_t>(), coefs.data_ptr<acc_t>());
      // BatchNorm backward: Z -> dZ in place.
      {
        acc_t* zrp = zr.data_ptr<acc_t>();
        acc_t* zmp = zm.data_ptr<acc_t>();
        const acc_t* gp = grad.const_data_ptr<acc_t>();
        const acc_t* k = coefs.const_data_ptr<acc_t>();
        at::parallel_for(0, n_pos, 64, [&](int64_t p0, int64_t p1) {
          const acc_t *k1r = k + kK1r * d, *k2r = k + kK2r * d, *k3r = k + kK3r * d, *cr = k + kBShiftR * d;
          const acc_t *k1m = k + kK1m * d, *k2m = k + kK2m * d, *k3m = k + kK3m * d, *cm = k + kBShiftM * d;
          for (int64_t p = p0; p < p1; ++p) {
            acc_t* a = zrp + p * d;
            acc_t* m = zmp + p * d;
            const acc_t* gr = gp + p * d;
            for (int64_t o = 0; o < d; ++o) {
              a[o] = bn_grad(gr[o], a[o], k1r[o], k2r[o], k3r[o], cr[o]);
              m[o] = bn_grad(gr[o], m[o], k1m[o], k2m[o], k3m[o], cm[o]);
            }
          }
        });
      }
      // Pass 2: dW' = patches^T . dY per thread, dY = dZ shifted per tap.
      const int nthreads = at::get_num_threads();
      std::vector<at::Tensor> acc_r(nthreads), acc_m(nthreads);
      const int64_t rows_max = groups_per_chunk(g, kTargetRows) * g.T * g.w;
      std::vector<at::Tensor> dy_r(nthreads), dy_m(nthreads);
      for_each_chunk<frame_t, acc_t>(
          c, frames, wr, wm, false, [&](int64_t, int64_t g0, int64_t g1, const at::Tensor& pr, const at::Tensor& pm,
                                        const acc_t*, const acc_t*) {
            const int tid = at::get_thread_num();
            if (!acc_r[tid].defined()) {
              acc_r[tid] = at::zeros({Kr, kTaps * d}, acc_opts);
              acc_m[tid] = at::zeros({Km, kTaps * d}, acc_opts);
              dy_r[tid] = at::empty({rows_max, kTaps * d}, acc_opts);
              dy_m[tid] = at::empty({rows_max, kTaps * d}, acc_opts);
            }
            const int64_t rows = pr.size(0);
            at::Tensor yr = dy_r[tid].narrow(0, 0, rows), ym = dy_m[tid].narrow(0, 0, rows);
            shift_grad_chunk<acc_t>(g, g0, g1, zr.const_data_ptr<acc_t>(), yr.data_ptr<acc_t>());
            shift_grad_chunk<acc_t>(g, g0, g1, zm.const_data_ptr<acc_t>(), ym.data_ptr<acc_t>());
            acc_r[tid].addmm_(pr.t(), yr);
            acc_m[tid].addmm_(pm.t(), ym);
          });
      for (int t = 0; t < nthreads; ++t) {
        if (!acc_r[t].defined()) continue;
        dwr = dwr.defined() ? dwr.add_(acc_r[t]) : acc_r[t];
        dwm = dwm.defined() ? dwm.add_(acc_m[t]) : acc_m[t];
      }
    });
  });
  at::Tensor gw_rgb = unfold_grad(c, dwr, kRgbChannels);
  if (bias_map.defined()) {
    // D = sum over clips of dZ_rgb feeds the bias map's (border-dependent) share of dW_rgb.
    gw_rgb = gw_rgb + rgb_bias_map_grad(c, zr.view({g.B, g.T_out, g.h, g.w, d}).sum(0));
  }
  at::Tensor gw_mot = unfold_grad(c, dwm, kMotChannels);
  return {gw_rgb.to(w_rgb.scalar_type()).contiguous(),
          grad_like(grads[kDBiasR], b_rgb),
          gw_mot.to(w_mot.scalar_type()).contiguous(),
          grad_like(grads[kDBiasM], b_mot),
          copy_as(grads[kDGammaR], gamma_rgb),
          copy_as(grads[kDBetaR], beta_rgb),
          copy_as(grads[kDGammaM], gamma_mot),
          copy_as(grads[kDBetaM], beta_mot)};
}

}  // namespace

TORCH_LIBRARY_IMPL(tds, CPU, m) {
  m.impl("sme_stem_forward", &sme_stem_forward_cpu);
  m.impl("sme_stem_backward", &sme_stem_backward_cpu);
}

}  // namespace sme_stem
}  // namespace tds
