// CPU kernels of the fused SME stem (docs/model.md §4 op 3). The formulation is in
// csrc/common/sme_stem_math.h; the ATen-side helpers in csrc/common/sme_stem_host.h.
//
// The stem is a patchify GEMM (stride = kernel spatially) with a 3-tap temporal conv over the T
// segments. The CPU is FLOP-bound here, so the temporal taps use Winograd F(2,3) (sme_stem_math.h):
// two output segments cost 4 GEMMs against transformed weights instead of 6 -- a third fewer FLOPs
// in every GEMM pass, forward and backward. The CUDA kernels use the direct taps (cuBLAS has
// FLOPs to spare); both share the gather, BatchNorm and fusion math.
//
// Forward: the token-row groups (b, i) are split into chunks of ~kTargetRows rows per Winograd plane;
// each thread, for each of its chunks, gathers the four transformed patch planes straight from the
// (uint8 or float) frames into small float buffers that stay in cache (rows (group, tile, j),
// columns (channel, ky, kx)), multiplies each plane with its transformed folded weights (at::mm ->
// MKL, single-threaded inside the parallel region) and applies the output transform into the
// bias-free conv outputs Z (train: kept for the batch statistics; eval: fused into the output at
// once). Neither the normalised frames nor the 12-channel difference tensor exist.
//
// Motion patches hold the 12 differences f_{k+1} - f_k computed while gathering rather than the 15
// raw frames with telescoped weights (W'_0 = -W_0, W'_j = W_{j-1} - W_j, W'_4 = W_3): both read the
// same 5 frames once, but the difference form has 12 P^2 GEMM columns instead of 15 P^2, i.e. 20%
// fewer GEMM FLOPs and 20% less patch buffer traffic, for 12 subtractions per pixel position.
//
// Backward (weights only; frames are data): a first pass reduces sum(g), sum(g (Z - shift)) over the
// conv outputs Z the training forward returned for it (the autograd context keeps them, as eager
// autograd keeps Conv3d's output for BatchNorm: recomputing them cost the forward's GEMMs again, which
// made the backward slower than eager's; bench/target_notes.md). Only when given none (an eval
// forward fuses straight into the tokens) does that pass recompute Z chunk by chunk. BatchNorm's
// backward turns Z into dZ; a second pass regathers the planes and accumulates A_i = plane_i^T . dm_i
// (dm = the transposed output transform of dZ) with at::addmm_ into per-thread accumulators; the
// transposed weight transform gives dW per tap.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <tuple>
#include <vector>

#include "common/alloc.h"
#include "common/parallel.h"
#include "common/sme_stem_host.h"
#include "common/sme_stem_math.h"

namespace tds {
namespace sme_stem {
namespace {

// ~448 rows per plane per chunk. Bigger chunks amortise what each GEMM call costs besides its FLOPs:
// MKL repacks the whole weight plane per call, and the backward's accumulators (K x d) are read and
// written per call. The planes (4 x 448 x 12 P^2 floats, 22 MB at P = 16) then stream from memory,
// which the GEMM's compute (~0.1 s per chunk) hides.
constexpr int64_t kTargetRows = 448;

struct FrameStrides {
  int64_t b, t, k, c, y, x;
};

// Winograd tiles: tile tau holds the output segments 2 tau and 2 tau + 1.
int64_t num_tiles(const Geom& g) { return (g.T_out + 1) / 2; }
int64_t rows_per_group(const Geom& g) { return num_tiles(g) * g.w; }
int64_t groups_per_chunk_cpu(const Geom& g) { return std::max<int64_t>(1, kTargetRows / rows_per_group(g)); }
int64_t num_chunks(const Geom& g) {
  const int64_t gpc = groups_per_chunk_cpu(g);
  return (g.B * g.h + gpc - 1) / gpc;
}

// line[0, n) <- the raw values of one frame row at x = q - pw, q in [0, n): the pixel (prev == nullptr)
// or the motion difference next - prev; zero outside [q0, q1), the q whose x lies inside the frame.
template <typename scalar_t, typename acc_t>
inline void load_line(acc_t* line, const scalar_t* next, const scalar_t* prev, int64_t sx, int64_t pw, int64_t q0,
                      int64_t q1, int64_t n) {
  for (int64_t q = 0; q < q0; ++q) line[q] = acc_t(0);
  const scalar_t* s1 = next + (q0 - pw) * sx;
  acc_t* out = line + q0;
  const int64_t m = q1 - q0;
  if (prev == nullptr) {
    if (sx == 1) {
      for (int64_t q = 0; q < m; ++q) out[q] = rgb_value<acc_t>(static_cast<acc_t>(s1[q]));
    } else {
      for (int64_t q = 0; q < m; ++q) out[q] = rgb_value<acc_t>(static_cast<acc_t>(s1[q * sx]));
    }
  } else {
    const scalar_t* s0 = prev + (q0 - pw) * sx;
    if (sx == 1) {
      for (int64_t q = 0; q < m; ++q) out[q] = motion_value<acc_t>(static_cast<acc_t>(s1[q]), static_cast<acc_t>(s0[q]));
    } else {
      for (int64_t q = 0; q < m; ++q)
        out[q] = motion_value<acc_t>(static_cast<acc_t>(s1[q * sx]), static_cast<acc_t>(s0[q * sx]));
    }
  }
  for (int64_t q = std::max(q1, q0); q < n; ++q) line[q] = acc_t(0);
}

// Winograd input transform of four lines. Kept out of line: inlined into the gather, gcc loses the
// restrict qualifiers (all lines live in one buffer) and falls back to scalar code.
template <typename acc_t>
__attribute__((noinline)) void transform_lines(const acc_t* __restrict__ l0, const acc_t* __restrict__ l1, const acc_t* __restrict__ l2,
                            const acc_t* __restrict__ l3, acc_t* __restrict__ d0, acc_t* __restrict__ d1,
                            acc_t* __restrict__ d2, acc_t* __restrict__ d3, int64_t n) {
  for (int64_t q = 0; q < n; ++q) {
    acc_t v[kPlanes];
    winograd_input(l0[q], l1[q], l2[q], l3[q], v);
    d0[q] = v[0];
    d1[q] = v[1];
    d2[q] = v[2];
    d3[q] = v[3];
  }
}

// The four transformed planes of groups [g0, g1) of a chunk: plane p, row (group, tile, j) at
// planes + p * plane_stride + row * K, columns (channel, ky, kx) of the branch (K = C P^2).
// Work goes by whole frame rows: for one (group, tile, channel, ky) the w patches of a token row are
// one contiguous run of w P pixels, so the conversion, the motion differences and the Winograd input
// transform run over long vectorisable lines, and each patch line is then one P-element copy.
template <typename scalar_t, typename acc_t>
void gather_chunk(const scalar_t* frames, const FrameStrides& s, const Geom& g, int64_t g0, int64_t g1, acc_t* pr,
                  int64_t stride_r, acc_t* pm, int64_t stride_m) {
  const int64_t P = g.P, P2 = P * P, n = g.w * P, n_tiles = num_tiles(g);
  const int64_t q0 = std::min(n, g.pw), q1 = std::min(n, g.W + g.pw);  // valid x = q - pw
  std::vector<acc_t> buf(static_cast<size_t>(8 * n));
  acc_t* l[4] = {buf.data(), buf.data() + n, buf.data() + 2 * n, buf.data() + 3 * n};
  acc_t* D[kPlanes] = {buf.data() + 4 * n, buf.data() + 5 * n, buf.data() + 6 * n, buf.data() + 7 * n};
  int64_t row0 = 0;
  for (int64_t grp = g0; grp < g1; ++grp) {
    const int64_t b = grp / g.h, i = grp % g.h;
    for (int64_t tau = 0; tau < n_tiles; ++tau, row0 += g.w) {
      const scalar_t* seg[4];  // the 4 input segments of the tile; nullptr in the temporal padding
      for (int k = 0; k < 4; ++k) {
        const int64_t t_in = src_index(2 * tau, k, 1, g.pt, g.T);
        seg[k] = t_in >= 0 ? frames + b * s.b + t_in * s.t : nullptr;
      }
      for (int64_t ch = 0; ch < kRgbChannels + kMotChannels; ++ch) {
        const bool mot = ch >= kRgbChannels;
        const int64_t cm = mot ? ch - kRgbChannels : ch;
        int64_t win = kCentre - 1, c = cm;  // RGB: the centre frame (win + 1)
        if (mot) motion_channel(cm, win, c);
        acc_t* planes = mot ? pm : pr;
        const int64_t stride = mot ? stride_m : stride_r, K = (mot ? kMotChannels : kRgbChannels) * P2;
        for (int64_t ky = 0; ky < P; ++ky) {
          const int64_t y = src_index(i, ky, P, g.ph, g.H);
          for (int k = 0; k < 4; ++k) {
            if (y < 0 || seg[k] == nullptr) {
              std::memset(l[k], 0, sizeof(acc_t) * n);
            } else {
              const scalar_t* base = seg[k] + c * s.c + y * s.y;
              load_line(l[k], base + (win + 1) * s.k, mot ? base + win * s.k : nullptr, s.x, g.pw, q0, q1, n);
            }
          }
          transform_lines(l[0], l[1], l[2], l[3], D[0], D[1], D[2], D[3], n);
          const int64_t col = (cm * P + ky) * P;
          for (int64_t j = 0; j < g.w; ++j) {
            acc_t* dst = planes + (row0 + j) * K + col;
            for (int p = 0; p < kPlanes; ++p) std::memcpy(dst + p * stride, D[p] + j * P, sizeof(acc_t) * P);
          }
        }
      }
    }
  }
}

enum class Pass { kTrainForward, kEvalForward, kBackwardStats };

// Output transform of one chunk (plane products yr / ym: plane p, row (group, tile, j), d wide).
// kTrainForward: Z into zr/zm and the sums of Z (slots kSumZr, kSumZm); kEvalForward: the fused output
// straight into out; kBackwardStats: Z into zr/zm and the sums of g, g (Z - shift), Z - shift around
// the per-channel centres (2, d) (slots of BwdStat).
template <typename acc_t, typename out_t>
void combine_chunk(Pass pass, const Geom& g, int64_t g0, int64_t g1, const acc_t* yr, const acc_t* ym,
                   int64_t plane_stride, const acc_t* bias_map, acc_t* zr, acc_t* zm, out_t* out, const acc_t* coefs,
                   const acc_t* grad, const double* centre, double* sums, acc_t* tmp) {
  const int64_t d = g.d, n_tiles = num_tiles(g);
  int64_t row = 0;
  for (int64_t grp = g0; grp < g1; ++grp) {
    const int64_t b = grp / g.h, i = grp % g.h;
    for (int64_t tau = 0; tau < n_tiles; ++tau) {
      for (int64_t j = 0; j < g.w; ++j, ++row) {
        const acc_t* mr = yr + row * d;
        const acc_t* mm = ym + row * d;
        acc_t* a[2];
        acc_t* m[2];
        int64_t pos[2];
        const int n_out = 2 * tau + 1 < g.T_out ? 2 : 1;
        for (int u = 0; u < n_out; ++u) {
          const int64_t t = 2 * tau + u;
          pos[u] = ((b * g.T_out + t) * g.h + i) * g.w + j;
          a[u] = pass == Pass::kEvalForward ? tmp + (2 * u) * d : zr + pos[u] * d;
          m[u] = pass == Pass::kEvalForward ? tmp + (2 * u + 1) * d : zm + pos[u] * d;
        }
        const acc_t* bm0 = bias_map ? bias_map + ((2 * tau * g.h + i) * g.w + j) * d : nullptr;
        const acc_t* bm1 = (bias_map && n_out == 2) ? bias_map + (((2 * tau + 1) * g.h + i) * g.w + j) * d : nullptr;
        const int64_t ps = plane_stride;
        if (n_out == 2) {
          for (int64_t o = 0; o < d; ++o) {
            acc_t z0, z1, y0, y1;
            winograd_output(mr[o], mr[ps + o], mr[2 * ps + o], mr[3 * ps + o], z0, z1);
            winograd_output(mm[o], mm[ps + o], mm[2 * ps + o], mm[3 * ps + o], y0, y1);
            a[0][o] = bm0 ? z0 + bm0[o] : z0;
            a[1][o] = bm1 ? z1 + bm1[o] : z1;
            m[0][o] = y0;
            m[1][o] = y1;
          }
        } else {
          for (int64_t o = 0; o < d; ++o) {
            acc_t z0, z1, y0, y1;
            winograd_output(mr[o], mr[ps + o], mr[2 * ps + o], mr[3 * ps + o], z0, z1);
            winograd_output(mm[o], mm[ps + o], mm[2 * ps + o], mm[3 * ps + o], y0, y1);
            a[0][o] = bm0 ? z0 + bm0[o] : z0;
            m[0][o] = y0;
          }
        }
        for (int u = 0; u < n_out; ++u) {
          if (pass == Pass::kEvalForward) {
            const acc_t *sr_ = coefs + kShiftR * d, *sm_ = coefs + kShiftM * d;
            const acc_t *kr = coefs + kScaleR * d, *km = coefs + kScaleM * d, *off = coefs + kOffset * d;
            out_t* dst = out + pos[u] * d;
            for (int64_t o = 0; o < d; ++o)
              dst[o] = static_cast<out_t>(fused_output(a[u][o], m[u][o], sr_[o], sm_[o], kr[o], km[o], off[o]));
          } else if (pass == Pass::kTrainForward) {
            double* s1r = sums + kSumZr * d;
            double* s1m = sums + kSumZm * d;
            for (int64_t o = 0; o < d; ++o) {
              s1r[o] += static_cast<double>(a[u][o]);
              s1m[o] += static_cast<double>(m[u][o]);
            }
          } else {
            const acc_t* gr = grad + pos[u] * d;
            const double *cr = centre, *cm = centre + d;
            double* sg = sums + kSumG * d;
            double* sgr = sums + kSumGZr * d;
            double* sgm = sums + kSumGZm * d;
            double* szr = sums + kSumZr0 * d;
            double* szm = sums + kSumZm0 * d;
            for (int64_t o = 0; o < d; ++o) {
              const double gv = gr[o], vr = a[u][o] - cr[o], vm = m[u][o] - cm[o];
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

// Pass 1 of the backward over saved conv outputs: sums of g, g (Z - shift), Z - shift per channel
// around the per-channel centres (2, d), over fixed blocks of positions (deterministic whatever the
// thread count), into sums (kNumBwdStats, d) -- what combine_chunk's kBackwardStats pass sums when it
// recomputes Z.
template <typename acc_t>
void backward_sums(const acc_t* zr, const acc_t* zm, const acc_t* grad, int64_t n_pos, int64_t d,
                   const double* centre, double* sums) {
  constexpr int64_t kBlock = 256;
  const int64_t n_blocks = (n_pos + kBlock - 1) / kBlock;
  std::vector<double> part(static_cast<size_t>(n_blocks * kNumBwdStats * d), 0.0);
  at::parallel_for(0, n_blocks, 1, [&](int64_t b0, int64_t b1) {
    const double *cr = centre, *cm = centre + d;
    for (int64_t blk = b0; blk < b1; ++blk) {
      double* pt = part.data() + blk * kNumBwdStats * d;
      double *sg = pt + kSumG * d, *sgr = pt + kSumGZr * d, *sgm = pt + kSumGZm * d;
      double *szr = pt + kSumZr0 * d, *szm = pt + kSumZm0 * d;
      const int64_t p1 = std::min(n_pos, (blk + 1) * kBlock);
      for (int64_t p = blk * kBlock; p < p1; ++p) {
        const acc_t* a = zr + p * d;
        const acc_t* m = zm + p * d;
        const acc_t* gr = grad + p * d;
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
  });
  for (int64_t blk = 0; blk < n_blocks; ++blk)
    for (int64_t k = 0; k < kNumBwdStats * d; ++k) sums[k] += part[blk * kNumBwdStats * d + k];
}

// Gradients of the four plane products of a chunk (plane p, row (group, tile, j), d wide) from dZ.
template <typename acc_t>
void plane_grads_chunk(const Geom& g, int64_t g0, int64_t g1, const acc_t* dz, acc_t* dm, int64_t plane_stride) {
  const int64_t d = g.d, n_tiles = num_tiles(g);
  int64_t row = 0;
  for (int64_t grp = g0; grp < g1; ++grp) {
    const int64_t b = grp / g.h, i = grp % g.h;
    for (int64_t tau = 0; tau < n_tiles; ++tau) {
      for (int64_t j = 0; j < g.w; ++j, ++row) {
        const acc_t* d0 = dz + (((b * g.T_out + 2 * tau) * g.h + i) * g.w + j) * d;
        const acc_t* d1 = 2 * tau + 1 < g.T_out ? d0 + g.h * g.w * d : nullptr;  // next segment, same token
        acc_t* o = dm + row * d;
        for (int64_t c = 0; c < d; ++c) {
          acc_t v[kPlanes];
          winograd_output_grad(d0[c], d1 ? d1[c] : acc_t(0), v);
          o[c] = v[0];
          o[plane_stride + c] = v[1];
          o[2 * plane_stride + c] = v[2];
          o[3 * plane_stride + c] = v[3];
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

// Rows (channel, ky, kx) of the weight planes handled per block by the two weight transforms below:
// the planes are (K, d), the Conv3d weight (d, C, 3, P, P), so each is the other's transpose. Going by
// blocks of kRowBlock rows and, inside, over the output channel o, the transform reads/writes runs
// of up to kRowBlock consecutive (ky, kx) of the Conv3d layout and kRowBlock plane rows at column o,
// all in cache, instead of a strided whole-matrix transpose (~17 ms for w_mot at d = 320 here).
constexpr int64_t kRowBlock = 16;

// Conv3d weight (d, C, 3, P, P) -> the Winograd weight planes (4, K, d), K = C P^2, rows (channel, ky,
// kx), with the normalisation scale a_c folded in.
at::Tensor weight_planes(const Call& c, const at::Tensor& w) {
  const int64_t d = w.size(0), C = w.size(1), P2 = c.g.P * c.g.P, K = C * P2, KK = C * kTaps * P2;
  const at::Tensor wc = w.to(c.acc).contiguous();
  at::Tensor planes = at::empty({kPlanes, K, d}, wc.options());
  dispatch_acc(c.acc, [&](auto* tag) {
    using acc_t = std::remove_pointer_t<decltype(tag)>;
    const acc_t* src = wc.const_data_ptr<acc_t>();
    acc_t* dst = planes.data_ptr<acc_t>();
    at::parallel_for(0, K, kRowBlock, [&](int64_t r0, int64_t r1) {
      for (int64_t b0 = r0; b0 < r1; b0 += kRowBlock) {
        const int64_t b1 = std::min(r1, b0 + kRowBlock);
        for (int64_t o = 0; o < d; ++o) {
          for (int64_t r = b0; r < b1; ++r) {
            const int64_t ch = r / P2, q = r % P2;
            const acc_t a = static_cast<acc_t>(c.a[ch % kColours]);
            const acc_t* w0 = src + o * KK + ch * kTaps * P2 + q;  // taps at w0, w0 + P2, w0 + 2 P2
            acc_t G[kPlanes];
            winograd_weight(a * w0[0], a * w0[P2], a * w0[2 * P2], G);
            for (int p = 0; p < kPlanes; ++p) dst[(p * K + r) * d + o] = G[p];
          }
        }
      }
    });
  });
  return planes;
}

// Transpose of weight_planes for a gradient: plane gradients (4, K, d) -> Conv3d layout (d, C, 3, P, P).
at::Tensor weight_grad_from_planes(const Call& c, const at::Tensor& planes, int64_t C) {
  const int64_t d = c.g.d, P2 = c.g.P * c.g.P, K = C * P2, KK = C * kTaps * P2;
  at::Tensor out = at::empty({d, C, kTaps, c.g.P, c.g.P}, planes.options());
  dispatch_acc(c.acc, [&](auto* tag) {
    using acc_t = std::remove_pointer_t<decltype(tag)>;
    const acc_t* src = planes.const_data_ptr<acc_t>();
    acc_t* dst = out.data_ptr<acc_t>();
    at::parallel_for(0, K, kRowBlock, [&](int64_t r0, int64_t r1) {
      for (int64_t b0 = r0; b0 < r1; b0 += kRowBlock) {
        const int64_t b1 = std::min(r1, b0 + kRowBlock);
        for (int64_t o = 0; o < d; ++o) {
          for (int64_t r = b0; r < b1; ++r) {
            const int64_t ch = r / P2, q = r % P2;
            const acc_t a = static_cast<acc_t>(c.a[ch % kColours]);
            const acc_t* a0 = src + r * d + o;
            acc_t dw[kTaps];
            winograd_weight_grad(a0[0], a0[K * d], a0[2 * K * d], a0[3 * K * d], dw);
            acc_t* w0 = dst + o * KK + ch * kTaps * P2 + q;
            w0[0] = a * dw[0];
            w0[P2] = a * dw[1];
            w0[2 * P2] = a * dw[2];
          }
        }
      }
    });
  });
  return out;
}

// Per-thread chunk buffers: the 4 planes of both branches and, with `gemm`, their products.
struct Buffers {
  at::Tensor pr, pm, yr, ym;
  int64_t rows_max;
};

Buffers make_buffers(const Geom& g, const at::TensorOptions& opts, bool gemm) {
  Buffers bf;
  const int64_t P2 = g.P * g.P;
  bf.rows_max = groups_per_chunk_cpu(g) * rows_per_group(g);
  bf.pr = at::empty({kPlanes, bf.rows_max, kRgbChannels * P2}, opts);
  bf.pm = at::empty({kPlanes, bf.rows_max, kMotChannels * P2}, opts);
  if (gemm) {
    bf.yr = at::empty({kPlanes, bf.rows_max, g.d}, opts);
    bf.ym = at::empty({kPlanes, bf.rows_max, g.d}, opts);
  }
  return bf;
}

// Runs `body(chunk, g0, g1, rows, buffers)` over all chunks with one set of buffers per thread, after
// gathering the chunk's planes and, with `gemm`, multiplying them with the weight planes wr / wm.
template <typename scalar_t, typename acc_t, typename Body>
void for_each_chunk(const Call& c, const at::Tensor& frames, const at::Tensor& wr, const at::Tensor& wm, bool gemm,
                    Body&& body) {
  const Geom& g = c.g;
  const int64_t n_groups = g.B * g.h, gpc = groups_per_chunk_cpu(g), n_chunks = num_chunks(g);
  const scalar_t* fp = frames.const_data_ptr<scalar_t>();
  const FrameStrides s = strides_of(frames);
  const auto opts = wr.options().dtype(c.acc);
  tds::parallel_for(0, n_chunks, 1, [&](int64_t c0, int64_t c1) {
    Buffers bf = make_buffers(g, opts, gemm);
    for (int64_t ck = c0; ck < c1; ++ck) {
      const int64_t g0 = ck * gpc, g1 = std::min(n_groups, g0 + gpc), rows = (g1 - g0) * rows_per_group(g);
      gather_chunk<scalar_t, acc_t>(fp, s, g, g0, g1, bf.pr.data_ptr<acc_t>(), bf.pr.stride(0),
                                    bf.pm.data_ptr<acc_t>(), bf.pm.stride(0));
      if (gemm) {
        for (int64_t p = 0; p < kPlanes; ++p) {
          at::Tensor yr = bf.yr[p].narrow(0, 0, rows), ym = bf.ym[p].narrow(0, 0, rows);
          at::mm_out(yr, bf.pr[p].narrow(0, 0, rows), wr[p]);
          at::mm_out(ym, bf.pm[p].narrow(0, 0, rows), wm[p]);
        }
      }
      body(ck, g0, g1, rows, bf);
    }
  });
}

ForwardResults sme_stem_forward_cpu(
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
  const int64_t n_pos = g.B * g.T_out * g.h * g.w, d = g.d;
  const at::Tensor wr = weight_planes(c, w_rgb), wm = weight_planes(c, w_mot);
  const at::Tensor bias_map = has_mean_shift(c) ? rgb_bias_map(c, w_rgb) : at::Tensor();
  const at::Tensor params = param_pack(c, b_rgb, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot, running_mean_rgb,
                                       running_var_rgb, running_mean_mot, running_var_mot);
  const auto acc_opts = w_rgb.options().dtype(c.acc);
  at::Tensor out = new_output({g.B, g.T_out, g.h * g.w, d}, w_rgb.options().dtype(c.out));
  at::Tensor stats = new_output({kNumStats, d}, acc_opts);
  at::Tensor coefs = at::empty({kNumFwdCoefs, d}, acc_opts);
  at::Tensor zr, zm;  // the conv outputs (training only): the statistics' input, kept for the backward
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
          for_each_chunk<frame_t, acc_t>(c, frames, wr, wm, true, [&](int64_t, int64_t g0, int64_t g1, int64_t,
                                                                      Buffers& bf) {
            std::vector<acc_t> tmp(4 * d);
            combine_chunk<acc_t, out_t>(Pass::kEvalForward, g, g0, g1, bf.yr.const_data_ptr<acc_t>(),
                                        bf.ym.const_data_ptr<acc_t>(), bf.yr.stride(0), bm, nullptr, nullptr,
                                        out.data_ptr<out_t>(), coefs.const_data_ptr<acc_t>(), nullptr, nullptr,
                                        nullptr, tmp.data());
          });
          return;
        }
        zr = at::empty({n_pos, d}, acc_opts);
        zm = at::empty({n_pos, d}, acc_opts);
        at::Tensor partials = at::zeros({num_chunks(g), 2, d}, acc_opts.dtype(at::kDouble));
        for_each_chunk<frame_t, acc_t>(c, frames, wr, wm, true, [&](int64_t ck, int64_t g0, int64_t g1, int64_t,
                                                                    Buffers& bf) {
          combine_chunk<acc_t, out_t>(Pass::kTrainForward, g, g0, g1, bf.yr.const_data_ptr<acc_t>(),
                                      bf.ym.const_data_ptr<acc_t>(), bf.yr.stride(0), bm, zr.data_ptr<acc_t>(),
                                      zm.data_ptr<acc_t>(), static_cast<out_t*>(nullptr), nullptr, nullptr, nullptr,
                                      partials[ck].data_ptr<double>(), nullptr);
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
  return forward_results(c, out, stats, zr, zm);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
sme_stem_backward_cpu(const at::Tensor& grad_out, const at::Tensor& frames, const at::Tensor& w_rgb,
                      const std::optional<at::Tensor>& b_rgb, const at::Tensor& w_mot,
                      const std::optional<at::Tensor>& b_mot, const at::Tensor& gamma_rgb, const at::Tensor& beta_rgb,
                      const at::Tensor& gamma_mot, const at::Tensor& beta_mot, const at::Tensor& mean_rgb,
                      const at::Tensor& var_rgb, const at::Tensor& mean_mot, const at::Tensor& var_mot,
                      const at::Tensor& z_rgb, const at::Tensor& z_mot, at::ArrayRef<double> pixel_mean,
                      at::ArrayRef<double> pixel_std, double alpha, at::IntArrayRef padding, bool training,
                      double eps) {
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
  const bool saved = has_saved_conv_outputs("sme_stem_backward", c, z_rgb, z_mot, frames.device());
  // The weight planes and the RGB border bias map make Z: only a recompute needs them (the bias map's
  // share of dW needs only has_mean_shift).
  const at::Tensor wr = saved ? at::empty({0}, acc_opts) : weight_planes(c, w_rgb);
  const at::Tensor wm = saved ? at::empty({0}, acc_opts) : weight_planes(c, w_mot);
  const at::Tensor bias_map = has_mean_shift(c) && !saved ? rgb_bias_map(c, w_rgb) : at::Tensor();
  const at::Tensor params = param_pack(c, b_rgb, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot, at::Tensor(),
                                       at::Tensor(), at::Tensor(), at::Tensor());
  const at::Tensor stats = at::stack({mean_rgb.to(c.acc), var_rgb.to(c.acc), mean_mot.to(c.acc), var_mot.to(c.acc)})
                               .contiguous();
  at::Tensor grads = at::empty({kNumGrads, d}, acc_opts);
  at::Tensor coefs = at::empty({kNumBwdCoefs, d}, acc_opts);
  const int64_t Kr = kRgbChannels * P2, Km = kMotChannels * P2;
  at::Tensor a_r, a_m;  // plane gradients (4, K, d)
  // Z: the forward's (read only; dZ gets its own buffers), or recomputed into buffers dZ then overwrites.
  const at::Tensor zr = saved ? conv_output_matrix(c, z_rgb) : at::empty({n_pos, d}, acc_opts);
  const at::Tensor zm = saved ? conv_output_matrix(c, z_mot) : at::empty({n_pos, d}, acc_opts);
  const at::Tensor dzr = saved ? at::empty({n_pos, d}, acc_opts) : zr;
  const at::Tensor dzm = saved ? at::empty({n_pos, d}, acc_opts) : zm;

  dispatch_acc(c.acc, [&](auto* acc_tag) {
    using acc_t = std::remove_pointer_t<decltype(acc_tag)>;
    const acc_t* bm = bias_map.defined() ? bias_map.const_data_ptr<acc_t>() : nullptr;
    dispatch_frames(frames.scalar_type(), [&](auto* frame_tag) {
      using frame_t = std::remove_pointer_t<decltype(frame_tag)>;
      // Pass 1: sums of g, g (Z - shift), Z - shift per channel (recomputing Z if it was not saved).
      std::vector<double> centre(2 * d);
      for (int64_t o = 0; o < d; ++o)
        backward_shift<acc_t>(o, d, params.const_data_ptr<acc_t>(), stats.const_data_ptr<acc_t>(), centre[o],
                              centre[d + o]);
      at::Tensor sums;
      if (saved) {
        sums = at::zeros({kNumBwdStats, d}, acc_opts.dtype(at::kDouble));
        backward_sums<acc_t>(zr.const_data_ptr<acc_t>(), zm.const_data_ptr<acc_t>(), grad.const_data_ptr<acc_t>(),
                             n_pos, d, centre.data(), sums.data_ptr<double>());
      } else {
        at::Tensor partials = at::zeros({num_chunks(g), kNumBwdStats, d}, acc_opts.dtype(at::kDouble));
        for_each_chunk<frame_t, acc_t>(c, frames, wr, wm, true, [&](int64_t ck, int64_t g0, int64_t g1, int64_t,
                                                                    Buffers& bf) {
          combine_chunk<acc_t, acc_t>(Pass::kBackwardStats, g, g0, g1, bf.yr.const_data_ptr<acc_t>(),
                                      bf.ym.const_data_ptr<acc_t>(), bf.yr.stride(0), bm, zr.data_ptr<acc_t>(),
                                      zm.data_ptr<acc_t>(), static_cast<acc_t*>(nullptr), nullptr,
                                      grad.const_data_ptr<acc_t>(), centre.data(), partials[ck].data_ptr<double>(),
                                      nullptr);
        });
        sums = partials.sum(0).contiguous();  // chunk order: deterministic
      }
      for (int64_t o = 0; o < d; ++o)
        backward_channel<acc_t>(o, d, c.training, static_cast<double>(n_pos), c.eps, c.alpha,
                                sums.const_data_ptr<double>(), params.const_data_ptr<acc_t>(),
                                stats.const_data_ptr<acc_t>(), grads.data_ptr<acc_t>(), coefs.data_ptr<acc_t>());
      // BatchNorm backward: Z -> dZ (in place over recomputed Z).
      {
        const acc_t* zrp = zr.const_data_ptr<acc_t>();
        const acc_t* zmp = zm.const_data_ptr<acc_t>();
        acc_t* dzrp = dzr.data_ptr<acc_t>();
        acc_t* dzmp = dzm.data_ptr<acc_t>();
        const acc_t* gp = grad.const_data_ptr<acc_t>();
        const acc_t* k = coefs.const_data_ptr<acc_t>();
        at::parallel_for(0, n_pos, 64, [&](int64_t p0, int64_t p1) {
          const acc_t *k1r = k + kK1r * d, *k2r = k + kK2r * d, *k3r = k + kK3r * d, *cr = k + kBShiftR * d;
          const acc_t *k1m = k + kK1m * d, *k2m = k + kK2m * d, *k3m = k + kK3m * d, *cm = k + kBShiftM * d;
          for (int64_t p = p0; p < p1; ++p) {
            const acc_t* a = zrp + p * d;
            const acc_t* m = zmp + p * d;
            acc_t* da = dzrp + p * d;
            acc_t* dm = dzmp + p * d;
            const acc_t* gr = gp + p * d;
            for (int64_t o = 0; o < d; ++o) {
              da[o] = bn_grad(gr[o], a[o], k1r[o], k2r[o], k3r[o], cr[o]);
              dm[o] = bn_grad(gr[o], m[o], k1m[o], k2m[o], k3m[o], cm[o]);
            }
          }
        });
      }
      // Pass 2: A_p += plane_p^T . dm_p per thread.
      const int nthreads = at::get_num_threads();
      std::vector<at::Tensor> acc_r(nthreads), acc_m(nthreads), dm_r(nthreads), dm_m(nthreads);
      const int64_t rows_max = groups_per_chunk_cpu(g) * rows_per_group(g);
      for_each_chunk<frame_t, acc_t>(c, frames, wr, wm, false, [&](int64_t, int64_t g0, int64_t g1, int64_t rows,
                                                                   Buffers& bf) {
        const int tid = at::get_thread_num();
        const bool first = !acc_r[tid].defined();
        if (first) {  // the thread's first chunk writes its accumulators (no zero fill)
          acc_r[tid] = at::empty({kPlanes, Kr, d}, acc_opts);
          acc_m[tid] = at::empty({kPlanes, Km, d}, acc_opts);
          dm_r[tid] = at::empty({kPlanes, rows_max, d}, acc_opts);
          dm_m[tid] = at::empty({kPlanes, rows_max, d}, acc_opts);
        }
        plane_grads_chunk<acc_t>(g, g0, g1, dzr.const_data_ptr<acc_t>(), dm_r[tid].data_ptr<acc_t>(),
                                 dm_r[tid].stride(0));
        plane_grads_chunk<acc_t>(g, g0, g1, dzm.const_data_ptr<acc_t>(), dm_m[tid].data_ptr<acc_t>(),
                                 dm_m[tid].stride(0));
        for (int64_t p = 0; p < kPlanes; ++p) {
          at::Tensor ar = acc_r[tid][p], am = acc_m[tid][p];
          const at::Tensor xr = bf.pr[p].narrow(0, 0, rows).t(), xm = bf.pm[p].narrow(0, 0, rows).t();
          const at::Tensor gr = dm_r[tid][p].narrow(0, 0, rows), gm = dm_m[tid][p].narrow(0, 0, rows);
          if (first) {
            at::mm_out(ar, xr, gr);
            at::mm_out(am, xm, gm);
          } else {
            ar.addmm_(xr, gr);
            am.addmm_(xm, gm);
          }
        }
      });
      for (int t = 0; t < nthreads; ++t) {  // thread order: deterministic for a given thread count
        if (!acc_r[t].defined()) continue;
        a_r = a_r.defined() ? a_r.add_(acc_r[t]) : acc_r[t];
        a_m = a_m.defined() ? a_m.add_(acc_m[t]) : acc_m[t];
      }
    });
  });
  at::Tensor gw_rgb = weight_grad_from_planes(c, a_r, kRgbChannels);
  if (has_mean_shift(c)) {
    // D = sum over clips of dZ_rgb feeds the bias map's (border-dependent) share of dW_rgb.
    gw_rgb = gw_rgb + rgb_bias_map_grad(c, dzr.view({g.B, g.T_out, g.h, g.w, d}).sum(0));
  }
  at::Tensor gw_mot = weight_grad_from_planes(c, a_m, kMotChannels);
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
