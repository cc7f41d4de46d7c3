// ATen side of the CUDA SME stem (kernels in sme_stem_kernels.cu, math in common/sme_stem_math.h):
// the same algorithm as csrc/cpu/sme_stem.cpp, with chunks of ~kTargetRows patch rows per GEMM on the
// current stream. Per chunk: gather kernel (frames -> patch buffers), two cuBLAS GEMMs against the
// folded weights of the three taps, tap-combination kernel. Training adds a column-sum kernel for the
// batch statistics and a normalise + fuse kernel; training returns Z for the backward. Backward: column
// sums of the saved Z with the gradient (Z recomputed chunk by chunk only after an eval forward, which
// keeps none), BatchNorm backward into dZ, then per chunk regather + shift + addmm into dW.
// GEMMs run in the accumulation dtype (fp32, or fp64 for a fp64 op) whatever the weight dtype, so
// fp16/bf16 weights get fp32 products; cuBLAS follows torch's TF32 setting for fp32 matmuls.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>

#include "common/alloc.h"
#include "common/sme_stem_host.h"
#include "common/sme_stem_math.h"
#include "cuda/sme_stem_launch.h"

namespace tds {
namespace sme_stem {
namespace {

// Rows per GEMM: big enough for cuBLAS to fill the GPU, small enough that the patch buffers
// (rows x 15 P^2 floats: 63 MB at P = 16) stay far below the size of a training batch's frames.
constexpr int64_t kTargetRows = 4096;

DType acc_type(at::ScalarType t) { return acc_dtype(dtype_of(t, "tds::sme_stem")); }

void check(cudaError_t err, const char* what) { TDS_CUDA_CHECK(err, "tds::sme_stem", what); }

cuda::Strides6 strides_of(const at::Tensor& f) {
  return {f.stride(0), f.stride(1), f.stride(2), f.stride(3), f.stride(4), f.stride(5)};
}

int64_t n_split_for(int64_t n_pos) { return std::max<int64_t>(1, std::min<int64_t>(1024, n_pos / 256)); }

// Runs `body(g0, g1, pr, pm)` for every chunk after gathering its patches into pr / pm.
template <typename Body>
void for_each_chunk(const Call& c, const at::Tensor& frames, const at::Tensor& pr_buf, const at::Tensor& pm_buf,
                    cudaStream_t stream, Body&& body) {
  const Geom& g = c.g;
  const int64_t n_groups = g.B * g.h, gpc = groups_per_chunk(g, kTargetRows);
  for (int64_t g0 = 0; g0 < n_groups; g0 += gpc) {
    const int64_t g1 = std::min(n_groups, g0 + gpc), rows = (g1 - g0) * g.T * g.w;
    at::Tensor pr = pr_buf.narrow(0, 0, rows), pm = pm_buf.narrow(0, 0, rows);
    check(cuda::gather(frames.const_data_ptr(), dtype_of(frames.scalar_type(), "tds::sme_stem"), strides_of(frames), g, g0, g1,
                       pr.mutable_data_ptr(), pm.mutable_data_ptr(), acc_type(c.acc), stream),
          "gather kernel");
    body(g0, g1, pr, pm);
  }
}

struct Buffers {
  at::Tensor pr, pm, yr, ym;
};

Buffers chunk_buffers(const Call& c, const at::TensorOptions& opts, bool with_y) {
  const Geom& g = c.g;
  const int64_t rows_max = std::min(groups_per_chunk(g, kTargetRows), g.B * g.h) * g.T * g.w;
  const int64_t P2 = g.P * g.P;
  Buffers b;
  b.pr = at::empty({rows_max, kRgbChannels * P2}, opts);
  b.pm = at::empty({rows_max, kMotChannels * P2}, opts);
  if (with_y) {
    b.yr = at::empty({rows_max, kTaps * g.d}, opts);
    b.ym = at::empty({rows_max, kTaps * g.d}, opts);
  }
  return b;
}

// Z (bias-free conv outputs) of every chunk into zr / zm, or (eval forward) the output itself.
void conv_pass(const Call& c, const at::Tensor& frames, const at::Tensor& wr, const at::Tensor& wm,
               const at::Tensor& bias_map, bool eval, at::Tensor* zr, at::Tensor* zm, at::Tensor* out,
               const at::Tensor& coefs, const at::TensorOptions& opts, cudaStream_t stream) {
  Buffers b = chunk_buffers(c, opts, true);
  for_each_chunk(c, frames, b.pr, b.pm, stream, [&](int64_t g0, int64_t g1, const at::Tensor& pr, const at::Tensor& pm) {
    at::Tensor yr = b.yr.narrow(0, 0, pr.size(0)), ym = b.ym.narrow(0, 0, pr.size(0));
    at::mm_out(yr, pr, wr);
    at::mm_out(ym, pm, wm);
    check(cuda::combine(eval, c.g, g0, g1, yr.const_data_ptr(), ym.const_data_ptr(),
                        bias_map.defined() ? bias_map.const_data_ptr() : nullptr,
                        zr ? zr->mutable_data_ptr() : nullptr, zm ? zm->mutable_data_ptr() : nullptr,
                        out ? out->mutable_data_ptr() : nullptr, out ? dtype_of(out->scalar_type(), "tds::sme_stem") : DType::kFloat32,
                        coefs.defined() ? coefs.const_data_ptr() : nullptr, acc_type(c.acc), stream),
          "combine kernel");
  });
}

ForwardResults sme_stem_forward_cuda(
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
  const c10::cuda::CUDAGuard guard(frames.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  const Geom& g = c.g;
  const int64_t n_pos = g.B * g.T_out * g.h * g.w, d = g.d;
  const auto opts = w_rgb.options().dtype(c.acc);
  const at::Tensor wr = fold_weights(c, w_rgb), wm = fold_weights(c, w_mot);
  const at::Tensor bias_map = has_mean_shift(c) ? rgb_bias_map(c, w_rgb) : at::Tensor();
  const at::Tensor params = param_pack(c, b_rgb, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot, running_mean_rgb,
                                       running_var_rgb, running_mean_mot, running_var_mot);
  at::Tensor out = new_output({g.B, g.T_out, g.h * g.w, d}, w_rgb.options().dtype(c.out));
  at::Tensor stats = new_output({kNumStats, d}, opts);
  at::Tensor coefs = at::empty({kNumFwdCoefs, d}, opts);
  const double n = static_cast<double>(n_pos);
  at::Tensor zr, zm;  // the conv outputs (training only): the statistics' input, kept for the backward
  if (!c.training) {
    check(cuda::forward_finalise(d, false, n, c.eps, c.alpha, nullptr, params.const_data_ptr(),
                                 stats.mutable_data_ptr(), coefs.mutable_data_ptr(), acc_type(c.acc), stream),
          "finalise kernel");
    conv_pass(c, frames, wr, wm, bias_map, /*eval=*/true, nullptr, nullptr, &out, coefs, opts, stream);
  } else {
    zr = at::empty({n_pos, d}, opts);
    zm = at::empty({n_pos, d}, opts);
    conv_pass(c, frames, wr, wm, bias_map, /*eval=*/false, &zr, &zm, nullptr, at::Tensor(), opts, stream);
    // Batch statistics in two passes: sums -> means, then squared deviations around them.
    const int64_t n_split = n_split_for(n_pos);
    const auto dbl = opts.dtype(at::kDouble);
    at::Tensor partials = at::empty({n_split, 2, d}, dbl);
    check(cuda::column_sums(cuda::SumMode::kSums, zr.const_data_ptr(), zm.const_data_ptr(), nullptr, nullptr, n_pos,
                            d, partials.mutable_data_ptr<double>(), n_split, acc_type(c.acc), stream),
          "column-sum kernel");
    const at::Tensor sum_z = partials.sum(0);
    const at::Tensor centre = (sum_z / n).contiguous();  // batch_mean(sum, n) of the shared math
    check(cuda::column_sums(cuda::SumMode::kSqDev, zr.const_data_ptr(), zm.const_data_ptr(), nullptr,
                            centre.const_data_ptr<double>(), n_pos, d, partials.mutable_data_ptr<double>(), n_split,
                            acc_type(c.acc), stream),
          "column-sum kernel");
    const at::Tensor sums = at::cat({sum_z, partials.sum(0)}).contiguous();  // kSumZr, kSumZm, kSqDevR, kSqDevM
    check(cuda::forward_finalise(d, true, n, c.eps, c.alpha, sums.const_data_ptr<double>(), params.const_data_ptr(),
                                 stats.mutable_data_ptr(), coefs.mutable_data_ptr(), acc_type(c.acc), stream),
          "finalise kernel");
    check(cuda::normalise(zr.const_data_ptr(), zm.const_data_ptr(), coefs.const_data_ptr(), out.mutable_data_ptr(),
                          dtype_of(c.out, "tds::sme_stem"), n_pos, d, acc_type(c.acc), stream),
          "normalise kernel");
  }
  return forward_results(c, out, stats, zr, zm);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
sme_stem_backward_cuda(const at::Tensor& grad_out, const at::Tensor& frames, const at::Tensor& w_rgb,
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
  const c10::cuda::CUDAGuard guard(frames.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  const auto opts = w_rgb.options().dtype(c.acc);
  at::Tensor grad = grad_out.to(c.acc).contiguous();
  // The elementwise kernels move 16-byte channel vectors: a gradient that is a view at an odd offset
  // gets an aligned copy.
  if (reinterpret_cast<uintptr_t>(grad.const_data_ptr()) % 16 != 0) grad = grad.clone();
  const at::Tensor wr = fold_weights(c, w_rgb), wm = fold_weights(c, w_mot);
  const bool saved = has_saved_conv_outputs("sme_stem_backward", c, z_rgb, z_mot, frames.device());
  // The RGB border bias map is part of Z: only a recompute needs it (its share of dW only has_mean_shift).
  const at::Tensor bias_map = has_mean_shift(c) && !saved ? rgb_bias_map(c, w_rgb) : at::Tensor();
  const at::Tensor params = param_pack(c, b_rgb, b_mot, gamma_rgb, beta_rgb, gamma_mot, beta_mot, at::Tensor(),
                                       at::Tensor(), at::Tensor(), at::Tensor());
  const at::Tensor stats =
      at::stack({mean_rgb.to(c.acc), var_rgb.to(c.acc), mean_mot.to(c.acc), var_mot.to(c.acc)}).contiguous();
  at::Tensor grads = at::empty({kNumGrads, d}, opts);
  at::Tensor coefs = at::empty({kNumBwdCoefs, d}, opts);

  // Pass 1: Z -- the forward's (read only; dZ gets its own buffers), or recomputed into buffers that dZ then
  // overwrites; sums of g, g Z, Z.
  at::Tensor zr, zm, dzr, dzm;
  if (saved) {
    zr = conv_output_matrix(c, z_rgb);
    zm = conv_output_matrix(c, z_mot);
    // 16-byte channel vectors, as for grad
    if (reinterpret_cast<uintptr_t>(zr.const_data_ptr()) % 16 != 0) zr = zr.clone();
    if (reinterpret_cast<uintptr_t>(zm.const_data_ptr()) % 16 != 0) zm = zm.clone();
    dzr = at::empty({n_pos, d}, opts);
    dzm = at::empty({n_pos, d}, opts);
  } else {
    zr = dzr = at::empty({n_pos, d}, opts);
    zm = dzm = at::empty({n_pos, d}, opts);
    conv_pass(c, frames, wr, wm, bias_map, /*eval=*/false, &zr, &zm, nullptr, at::Tensor(), opts, stream);
  }
  const int64_t n_split = n_split_for(n_pos);
  at::Tensor partials = at::empty({n_split, kNumBwdStats, d}, opts.dtype(at::kDouble));
  // backward_shift of the shared math: mean - bias per branch, in double.
  const at::Tensor centre =
      at::stack({stats[kMeanR].to(at::kDouble) - params[kBiasR].to(at::kDouble),
                 stats[kMeanM].to(at::kDouble) - params[kBiasM].to(at::kDouble)})
          .contiguous();
  check(cuda::column_sums(cuda::SumMode::kBackward, zr.const_data_ptr(), zm.const_data_ptr(), grad.const_data_ptr(),
                          centre.const_data_ptr<double>(), n_pos, d, partials.mutable_data_ptr<double>(), n_split,
                          acc_type(c.acc), stream),
        "column-sum kernel");
  const at::Tensor sums = partials.sum(0).contiguous();
  check(cuda::backward_finalise(d, c.training, static_cast<double>(n_pos), c.eps, c.alpha,
                                sums.const_data_ptr<double>(), params.const_data_ptr(), stats.const_data_ptr(),
                                grads.mutable_data_ptr(), coefs.mutable_data_ptr(), acc_type(c.acc), stream),
        "finalise kernel");
  check(cuda::bn_backward(zr.const_data_ptr(), zm.const_data_ptr(), grad.const_data_ptr(), coefs.const_data_ptr(),
                          dzr.mutable_data_ptr(), dzm.mutable_data_ptr(), n_pos, d, acc_type(c.acc), stream),
        "BatchNorm-backward kernel");

  // Pass 2: dW' = patches^T . dY, dY = dZ shifted per tap.
  at::Tensor dwr = at::zeros({kRgbChannels * P2, kTaps * d}, opts), dwm = at::zeros({kMotChannels * P2, kTaps * d}, opts);
  Buffers b = chunk_buffers(c, opts, true);  // yr / ym hold dY here
  for_each_chunk(c, frames, b.pr, b.pm, stream, [&](int64_t g0, int64_t g1, const at::Tensor& pr, const at::Tensor& pm) {
    at::Tensor dyr = b.yr.narrow(0, 0, pr.size(0)), dym = b.ym.narrow(0, 0, pr.size(0));
    check(cuda::shift_grad(g, g0, g1, dzr.const_data_ptr(), dyr.mutable_data_ptr(), acc_type(c.acc), stream),
          "shift kernel");
    check(cuda::shift_grad(g, g0, g1, dzm.const_data_ptr(), dym.mutable_data_ptr(), acc_type(c.acc), stream),
          "shift kernel");
    dwr.addmm_(pr.t(), dyr);
    dwm.addmm_(pm.t(), dym);
  });
  at::Tensor gw_rgb = unfold_grad(c, dwr, kRgbChannels);
  if (has_mean_shift(c)) gw_rgb = gw_rgb + rgb_bias_map_grad(c, dzr.view({g.B, g.T_out, g.h, g.w, d}).sum(0));
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

TORCH_LIBRARY_IMPL(tds, CUDA, m) {
  m.impl("sme_stem_forward", &sme_stem_forward_cuda);
  m.impl("sme_stem_backward", &sme_stem_backward_cuda);
}

}  // namespace sme_stem
}  // namespace tds
