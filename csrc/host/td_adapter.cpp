// Host orchestration of the fused TD-Adapter (docs/model.md §4 op 2), the same on every device: the checks
// of the schema's tensors, the matrix products and the per-channel algebra through ATen (MKL / cuBLAS),
// and the narrow elementwise passes through the device's `Kernels` (csrc/cpu/td_adapter.cpp,
// csrc/cuda/td_adapter.cpp). The plan of forward and backward is written at the top of the CPU file.
// A fix here holds for the CPU and the CUDA kernels alike; g++ only (uses ATen).

#include <ATen/Functions.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <utility>

#include "common/alloc.h"
#include "common/td_adapter_host.h"
#include "common/td_adapter_math.h"

namespace tds {
namespace td_adapter {

namespace {

void check_vec(const at::Tensor& t, const char* name, int64_t n, const at::Tensor& u) {
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == n, "tds::td_adapter: ", name, " must have shape (", n,
                    "), got ", t.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), "tds::td_adapter: ", name,
                   " must be a floating tensor, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == u.device(), "tds::td_adapter: ", name, " is on ", t.device(),
                    " but u is on ", u.device());
}

// Shapes, dtypes and devices of the schema's tensors; returns (h, d).
std::pair<int64_t, int64_t> check_inputs(const at::Tensor& u, const at::Tensor& w_down, const at::Tensor& w_up,
                                         const at::Tensor& gamma1, const at::Tensor& beta1,
                                         const at::Tensor& gamma2, const at::Tensor& beta2,
                                         const at::Tensor& mean1, const at::Tensor& var1, const at::Tensor& mean2,
                                         const at::Tensor& var2, double eps, int64_t kernel_size, bool training) {
  TORCH_CHECK_VALUE(u.dim() == 4, "tds::td_adapter: u must be (B, T, N, d), got ", u.dim(), " dims");
  const auto st = u.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16,
                   "tds::td_adapter: u must be float32, float64, float16 or bfloat16, got ", st);
  for (int i = 0; i < 4; ++i)
    TORCH_CHECK_VALUE(u.size(i) > 0, "tds::td_adapter: u has a zero-size dimension: ", u.sizes());
  const int64_t d = u.size(3);
  TORCH_CHECK_VALUE(w_down.dim() == 2 && w_down.size(1) == d && w_down.size(0) > 0,
                    "tds::td_adapter: w_down must be (h, d) with d = ", d, ", got ", w_down.sizes());
  const int64_t h = w_down.size(0);
  TORCH_CHECK_VALUE(w_up.dim() == 2 && w_up.size(0) == d && w_up.size(1) == h,
                    "tds::td_adapter: w_up must be (d, h) = (", d, ", ", h, "), got ", w_up.sizes());
  for (const at::Tensor* w : {&w_down, &w_up}) {
    TORCH_CHECK_TYPE(at::isFloatingType(w->scalar_type()), "tds::td_adapter: weights must be floating, got ",
                     w->scalar_type());
    TORCH_CHECK_VALUE(w->device() == u.device(), "tds::td_adapter: weights are on ", w->device(),
                      " but u is on ", u.device());
  }
  check_vec(gamma1, "gamma1", h, u);
  check_vec(beta1, "beta1", h, u);
  check_vec(mean1, "mean1 / running_mean1", h, u);
  check_vec(var1, "var1 / running_var1", h, u);
  check_vec(gamma2, "gamma2", d, u);
  check_vec(beta2, "beta2", d, u);
  check_vec(mean2, "mean2 / running_mean2", d, u);
  check_vec(var2, "var2 / running_var2", d, u);
  TORCH_CHECK_VALUE(kernel_size > 0 && kernel_size % 2 == 1,
                    "tds::td_adapter: kernel_size must be odd and positive, got ", kernel_size);
  TORCH_CHECK_VALUE(eps >= 0, "tds::td_adapter: eps must be >= 0, got ", eps);
  TORCH_CHECK_VALUE(!training || u.numel() / d > 1,
                    "tds::td_adapter: training-mode BatchNorm needs more than one token per channel, got u ",
                    u.sizes());
  TORCH_CHECK_VALUE(u.size(1) < (int64_t(1) << 30), "tds::td_adapter: too many frames");
  return {h, d};
}

at::ScalarType acc_type(const at::Tensor& u) { return u.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

// What forward and backward both compute: the narrow tensors and the folded expand.
struct Narrow {
  at::Tensor u2;       // (M, d) u, contiguous, input dtype
  at::Tensor uf;       // (M, d) u in acc (u2 itself when it already is)
  at::Tensor Wd, Wu;   // (h, d), (d, h) in acc
  at::Tensor b;        // (M, h) acc: u w_down^T
  at::Tensor mean1, var1, invstd1, scale1;  // (h,) acc, acc, double, acc
  at::Tensor y0c;      // (M, h) acc: mix(m) - center2
  at::Tensor ybar;     // (h,) double: token mean of mix(m) (training)
  at::Tensor S;        // (h, h) double: y0c^T y0c (training)
  at::Tensor mean2, var2;  // (d,) double
  at::Tensor invstd2, scale2;  // (d,) double
  at::Tensor Wp;       // (d, h) acc: scale2 * w_up
  at::Tensor bias;     // (d,) acc: BN2 shift after folding
};

// batch_stats1/2: compute BN1's / BN2's batch statistics here (forward in training); otherwise normalise
// with the given ones (eval: the running statistics; backward: the statistics forward returned).
Narrow recompute(const Kernels& k, const at::Tensor& u, const at::Tensor& w_down, const at::Tensor& w_up,
                 const at::Tensor& gamma1, const at::Tensor& gamma2, const at::Tensor& beta2,
                 const at::Tensor& mean1_in, const at::Tensor& var1_in, const at::Tensor& mean2_in,
                 const at::Tensor& var2_in, bool batch_stats1, bool batch_stats2, bool training, double eps,
                 int64_t kernel_size, bool mix) {
  Narrow n;
  const auto acc = acc_type(u);
  const int64_t B = u.size(0), T = u.size(1), N = u.size(2), d = u.size(3), h = w_down.size(0);
  const int64_t M = B * T * N;
  n.u2 = u.contiguous().view({M, d});
  n.uf = n.u2.scalar_type() == acc ? n.u2 : n.u2.to(acc);
  n.Wd = w_down.to(acc).contiguous();
  n.Wu = w_up.to(acc).contiguous();

  n.b = at::mm(n.uf, n.Wd.t());
  if (batch_stats1) {
    n.mean1 = (k.col_sum(n.b, {}, {}, kSum) / double(M)).to(acc);
    n.var1 = (k.col_sum(n.b, {}, n.mean1, kCentredSquares) / double(M)).to(acc);
  } else {
    n.mean1 = mean1_in.to(acc);
    n.var1 = var1_in.to(acc);
  }
  n.invstd1 = (n.var1.to(at::kDouble) + eps).rsqrt();
  n.scale1 = (gamma1.to(at::kDouble) * n.invstd1).to(acc);

  at::Tensor m = at::empty({M, h}, n.b.options());
  k.maxdiff_forward(n.b, n.mean1, n.scale1, m, B, T, N, kernel_size);

  at::Tensor center2;
  if (training) {
    // token mean of mix(m) = mix of the token mean of m (mix is linear)
    const at::Tensor mbar = k.col_sum(m, {}, {}, kSum) / double(M);
    n.ybar = mix ? 0.5 * mbar + 0.5 * mbar.mean() : mbar;
    center2 = n.ybar.to(acc);
  } else {
    center2 = at::zeros({h}, n.b.options());
  }
  k.mix_rows(m, center2, m, mix);  // in place: m becomes y0c
  n.y0c = m;

  const at::Tensor Wud = n.Wu.to(at::kDouble);
  if (training) {
    const at::Tensor y0d = n.y0c.to(at::kDouble);
    n.S = at::mm(y0d.t(), y0d);
  }
  if (batch_stats2) {
    // z = y0 w_up^T: mean(z) = ybar w_up^T, var(z)_c = w_c^T Cov(y0) w_c, Cov(y0) = S / M.
    n.mean2 = at::mv(Wud, n.ybar);
    n.var2 = (at::mm(Wud, n.S) * Wud).sum(1) / double(M);
  } else {
    n.mean2 = mean2_in.to(at::kDouble);
    n.var2 = var2_in.to(at::kDouble);
  }
  n.invstd2 = (n.var2 + eps).rsqrt();
  n.scale2 = gamma2.to(at::kDouble) * n.invstd2;
  n.Wp = (Wud * n.scale2.unsqueeze(1)).to(acc);
  // training: z - mean2 = y0c w_up^T exactly, so only beta2 remains; eval: the running mean is folded.
  n.bias = (training ? beta2.to(at::kDouble) : beta2.to(at::kDouble) - n.scale2 * n.mean2).to(acc);
  return n;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward(
    const Kernels& k, const at::Tensor& u, const at::Tensor& w_down, const at::Tensor& w_up,
    const at::Tensor& gamma1, const at::Tensor& beta1, const at::Tensor& gamma2, const at::Tensor& beta2,
    const at::Tensor& running_mean1, const at::Tensor& running_var1, const at::Tensor& running_mean2,
    const at::Tensor& running_var2, bool training, double eps, int64_t kernel_size, bool mix, bool gated) {
  check_inputs(u, w_down, w_up, gamma1, beta1, gamma2, beta2, running_mean1, running_var1, running_mean2,
               running_var2, eps, kernel_size, training);
  const auto acc = acc_type(u);
  Narrow n = recompute(k, u, w_down, w_up, gamma1, gamma2, beta2, running_mean1, running_var1, running_mean2,
                       running_var2, training, training, training, eps, kernel_size, mix);
  at::Tensor out = new_output(u.sizes(), u.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor out2 = out.view({-1, u.size(3)});
  k.expand_gate_forward(n.u2, n.y0c, n.Wp, n.bias, out2, gated);
  // fresh tensors (the op's outputs never alias its inputs): clone in eval, where they are the running stats
  auto stat = [&](const at::Tensor& t) { return t.to(acc).clone(); };
  return {out, stat(n.mean1), stat(n.var1), stat(n.mean2), stat(n.var2)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const Kernels& k, const at::Tensor& grad_out, const at::Tensor& u, const at::Tensor& w_down,
    const at::Tensor& w_up, const at::Tensor& gamma1, const at::Tensor& beta1, const at::Tensor& gamma2,
    const at::Tensor& beta2, const at::Tensor& mean1, const at::Tensor& var1, const at::Tensor& mean2,
    const at::Tensor& var2, bool training, double eps, int64_t kernel_size, bool mix, bool gated) {
  check_inputs(u, w_down, w_up, gamma1, beta1, gamma2, beta2, mean1, var1, mean2, var2, eps, kernel_size, false);
  TORCH_CHECK_VALUE(grad_out.sizes() == u.sizes(), "tds::td_adapter_backward: grad_out shape ", grad_out.sizes(),
                    " != u shape ", u.sizes());
  TORCH_CHECK_VALUE(grad_out.device() == u.device(), "tds::td_adapter_backward: grad_out is on ",
                    grad_out.device(), " but u is on ", u.device());
  const auto acc = acc_type(u);
  const int64_t d = u.size(3), h = w_down.size(0);
  const int64_t M = u.numel() / d;
  // The saved statistics are used as they are: BN2's mean is only needed in eval (training recomputes
  // the exact token mean of y0 to centre it, as forward did).
  Narrow n = recompute(k, u, w_down, w_up, gamma1, gamma2, beta2, mean1, var1, mean2, var2, false, false,
                       training, eps, kernel_size, mix);
  const bool du_is_output = u.scalar_type() == acc;
  at::Tensor du = du_is_output ? new_output({M, d}, n.y0c.options()) : at::empty({M, d}, n.y0c.options());
  const at::Tensor g2 = grad_out.to(u.scalar_type()).contiguous().view({M, d});

  // ---- BN2 + expand backward in narrow terms (dz = s2 (dy - mean(dy) - zhat mean(dy zhat)) never formed)
  auto [Sdy, G, dy0] = k.expand_gate_backward(g2, n.u2, n.y0c, n.Wp, n.bias, du, gated);  // dbeta2, dy^T y0c, dy Wp
  const at::Tensor Wud = n.Wu.to(at::kDouble);
  const at::Tensor rowGW = (G * Wud).sum(1);                   // sum_t dy_tc (y0c_t . w_c)
  at::Tensor dgamma2, dWu;
  if (training) {
    dgamma2 = n.invstd2 * rowGW;                               // sum dy zhat, zhat = (y0c w_c) invstd2
    const at::Tensor kz = dgamma2 * n.invstd2 / double(M);
    dWu = n.scale2.unsqueeze(1) * (G - kz.unsqueeze(1) * at::mm(Wud, n.S));
    const at::Tensor r = at::mv(Wud.t(), n.scale2 * Sdy / double(M));        // mean(dy) term, (h,)
    const at::Tensor Q = at::mm(Wud.t(), Wud * (n.scale2 * kz).unsqueeze(1));  // zhat term, (h, h)
    dy0.addmm_(n.y0c, Q.to(acc), 1, -1);
    dy0.sub_(r.to(acc));
  } else {
    dgamma2 = n.invstd2 * (rowGW - n.mean2 * Sdy);             // zhat = (y0 w_c - running_mean) invstd2
    dWu = n.scale2.unsqueeze(1) * G;
  }

  // ---- mix (its own transpose), max-difference and BN1 backward on the narrow tensors
  k.mix_rows(dy0, at::zeros({h}, dy0.options()), dy0, mix);  // dy0 -> dm in place (mix is symmetric)
  at::Tensor dv = at::empty({M, h}, dy0.options());
  k.maxdiff_backward(n.b, n.mean1, n.scale1, dy0, dv, u.size(0), u.size(1), u.size(2), kernel_size);
  const at::Tensor dbeta1 = k.col_sum(dv, {}, {}, kSum);
  const at::Tensor dgamma1 = k.col_sum(dv, n.b, n.mean1, kCross) * n.invstd1;  // sum dv xhat
  at::Tensor k_mean, k_xhat;
  if (training) {
    k_mean = (dbeta1 / double(M)).to(acc);
    k_xhat = (dgamma1 / double(M)).to(acc);
  } else {
    k_mean = at::zeros({h}, dy0.options());
    k_xhat = k_mean;
  }
  at::Tensor db = dv;  // in place: each element reads only its own dv
  k.bn1_backward(dv, n.b, n.mean1, n.invstd1.to(acc), n.scale1, k_mean, k_xhat, db);

  // ---- reduce backward
  const at::Tensor dWd = at::mm(db.t(), n.uf);  // (h, d)
  du.addmm_(db, n.Wd);
  at::Tensor grad_u = du.view(u.sizes());
  if (!du_is_output) {  // fp16/bf16 input: du was accumulated in fp32
    grad_u = new_output(u.sizes(), u.options().memory_format(at::MemoryFormat::Contiguous));
    grad_u.copy_(du.view(u.sizes()));
  }
  // contiguous in the parameters' dtypes (dW_up comes out of the algebra transposed)
  auto as = [](const at::Tensor& g, const at::Tensor& like) { return g.to(like.scalar_type()).contiguous(); };
  return {grad_u, as(dWd, w_down), as(dWu, w_up), as(dgamma1, gamma1), as(dbeta1, beta1), as(dgamma2, gamma2),
          as(Sdy, beta2)};
}

}  // namespace td_adapter
}  // namespace tds
