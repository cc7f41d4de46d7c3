// Host orchestration of the fused BN -> Linear -> GELU -> Linear block (docs/model.md §4), the same on every
// device: argument checks, the row-chunk plan and the matrix products through ATen (MKL / cuBLAS); the
// per-element work and column statistics through the device's `Kernels` (csrc/cpu/bn_mlp.cpp,
// csrc/cuda/bn_mlp.cpp). A fix here holds for the CPU and the CUDA kernels alike; g++ only (uses ATen).

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "common/alloc.h"
#include "common/bn_mlp_host.h"

namespace tds {
namespace bn_mlp {

namespace {

at::ScalarType acc_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

bool is_float_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble;
}

void check_vec(const at::Tensor& t, int64_t n, const at::Tensor& x, const char* name, const char* fn) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == n, fn, ": ", name, " must have shape (", n, "), got ", t.sizes());
  TORCH_CHECK(is_float_dtype(t.scalar_type()), fn, ": ", name, " must be floating point, got ", t.scalar_type());
  TORCH_CHECK(t.device() == x.device(), fn, ": ", name, " is on ", t.device(), ", x on ", x.device());
}

// Shapes, dtypes and devices of the arguments both ops share. Returns (M, d, H, O).
std::tuple<int64_t, int64_t, int64_t, int64_t> check_args(const at::Tensor& x, const at::Tensor& bn_weight,
                                                          const at::Tensor& bn_bias, const at::Tensor& w1,
                                                          const c10::optional<at::Tensor>& b1,
                                                          const at::Tensor& w2,
                                                          const c10::optional<at::Tensor>& b2, const char* fn) {
  TORCH_CHECK(x.dim() == 2, fn, ": x must be (M, d), got ", x.dim(), " dims");
  TORCH_CHECK(w1.dim() == 2 && w2.dim() == 2, fn, ": w1 and w2 must be 2-D, got ", w1.sizes(), " and ", w2.sizes());
  const int64_t M = x.size(0), d = x.size(1), H = w1.size(0), O = w2.size(0);
  TORCH_CHECK(M > 0 && d > 0 && H > 0 && O > 0, fn, ": zero-size dimension (x ", x.sizes(), ", w1 ", w1.sizes(),
              ", w2 ", w2.sizes(), ")");
  TORCH_CHECK(w1.size(1) == d, fn, ": w1 must be (H, ", d, "), got ", w1.sizes());
  TORCH_CHECK(w2.size(1) == H, fn, ": w2 must be (O, ", H, "), got ", w2.sizes());
  const auto C = w1.scalar_type();
  TORCH_CHECK(is_float_dtype(C), fn, ": w1 has unsupported dtype ", C, " (float16, bfloat16, float32, float64)");
  TORCH_CHECK(w2.scalar_type() == C, fn, ": w2 dtype ", w2.scalar_type(), " != w1 dtype ", C);
  TORCH_CHECK(x.scalar_type() == C || x.scalar_type() == at::kFloat, fn, ": x dtype ", x.scalar_type(),
              " must be w1's dtype ", C, " or float32");
  TORCH_CHECK(w1.device() == x.device() && w2.device() == x.device(), fn, ": w1/w2 are not on x's device ",
              x.device());
  check_vec(bn_weight, d, x, "bn_weight", fn);
  check_vec(bn_bias, d, x, "bn_bias", fn);
  if (b1.has_value()) {
    check_vec(*b1, H, x, "b1", fn);
    TORCH_CHECK(b1->scalar_type() == C, fn, ": b1 dtype ", b1->scalar_type(), " != w1 dtype ", C);
  }
  if (b2.has_value()) {
    check_vec(*b2, O, x, "b2", fn);
    TORCH_CHECK(b2->scalar_type() == C, fn, ": b2 dtype ", b2->scalar_type(), " != w1 dtype ", C);
  }
  return {M, d, H, O};
}

int64_t rows_per_chunk(const Kernels& k, int64_t M, int64_t width) {
  return std::max<int64_t>(1, std::min<int64_t>(M, k.chunk_elems / std::max<int64_t>(width, 1)));
}

// out = bias + a @ b (bias may be absent), written into out.
void linear_out(at::Tensor& out, const c10::optional<at::Tensor>& bias, const at::Tensor& a, const at::Tensor& b) {
  if (bias.has_value())
    at::addmm_out(out, *bias, a, b);
  else
    at::mm_out(out, a, b);
}

// acc += a @ b, accumulated in acc's dtype even when a and b are 16-bit.
void accumulate_mm(at::Tensor& acc, const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() == acc.scalar_type())
    acc.addmm_(a, b);
  else
    acc.add_(at::mm(a, b));
}

c10::optional<at::Tensor> cast_opt(const c10::optional<at::Tensor>& t, at::ScalarType dt) {
  if (!t.has_value()) return c10::nullopt;
  return t->to(dt).contiguous();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(
    const Kernels& k, const at::Tensor& x_in, const at::Tensor& bn_weight, const at::Tensor& bn_bias,
    const at::Tensor& running_mean, const at::Tensor& running_var, const at::Tensor& w1,
    const c10::optional<at::Tensor>& b1, const at::Tensor& w2, const c10::optional<at::Tensor>& b2, bool training,
    double eps) {
  constexpr const char* fn = "tds::bn_mlp_forward";
  const auto [M, d, H, O] = check_args(x_in, bn_weight, bn_bias, w1, b1, w2, b2, fn);
  if (!training) {
    check_vec(running_mean, d, x_in, "running_mean", fn);
    check_vec(running_var, d, x_in, "running_var", fn);
  }
  const auto C = w1.scalar_type(), A = acc_type(C), G = k.gemm_in_acc ? A : C;
  const at::Tensor x = x_in.contiguous();
  const auto acc_opts = x.options().dtype(A);
  at::Tensor mean, var;
  if (training) {
    mean = at::empty({d}, acc_opts);
    var = at::empty({d}, acc_opts);
    k.col_stats(x, mean, var);
  } else {
    mean = running_mean.to(A, /*non_blocking=*/false, /*copy=*/true);
    var = running_var.to(A, /*non_blocking=*/false, /*copy=*/true);
  }
  const at::Tensor scale = bn_weight.to(A) * (var + eps).rsqrt();
  const at::Tensor shift = bn_bias.to(A) - mean * scale;
  const at::Tensor w1t = w1.to(G).t(), w2t = w2.to(G).t();  // (d, H), (H, O) views for mm
  const auto b1g = cast_opt(b1, G), b2g = cast_opt(b2, G);

  at::Tensor out = new_output({M, O}, w1.options());
  const int64_t R = rows_per_chunk(k, M, std::max({H, d, O}));
  const auto g_opts = x.options().dtype(G);
  at::Tensor xn_buf = at::empty({R, d}, g_opts), h_buf = at::empty({R, H}, g_opts);
  for (int64_t r0 = 0; r0 < M; r0 += R) {
    const int64_t r = std::min(R, M - r0);
    at::Tensor xn = xn_buf.narrow(0, 0, r), h = h_buf.narrow(0, 0, r), out_c = out.narrow(0, r0, r);
    k.bn_apply(x.narrow(0, r0, r), scale, shift, xn);
    linear_out(h, b1g, xn, w1t);
    k.gelu(h, h);
    if (G == C) {
      linear_out(out_c, b2g, h, w2t);
    } else {
      at::Tensor tmp = at::empty({r, O}, g_opts);
      linear_out(tmp, b2g, h, w2t);
      out_c.copy_(tmp);
    }
  }
  return {out, mean, var};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const Kernels& k, const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& bn_weight,
    const at::Tensor& bn_bias, const at::Tensor& w1, const c10::optional<at::Tensor>& b1, const at::Tensor& w2,
    const c10::optional<at::Tensor>& b2, const at::Tensor& mean_in, const at::Tensor& var_in, bool training,
    double eps) {
  constexpr const char* fn = "tds::bn_mlp_backward";
  const auto [M, d, H, O] = check_args(x_in, bn_weight, bn_bias, w1, b1, w2, b2, fn);
  TORCH_CHECK(grad_in.dim() == 2 && grad_in.size(0) == M && grad_in.size(1) == O, fn, ": grad_out must be (", M,
              ", ", O, "), got ", grad_in.sizes());
  TORCH_CHECK(grad_in.scalar_type() == w1.scalar_type(), fn, ": grad_out dtype ", grad_in.scalar_type(),
              " != w1 dtype ", w1.scalar_type());
  TORCH_CHECK(grad_in.device() == x_in.device(), fn, ": grad_out is on ", grad_in.device(), ", x on ",
              x_in.device());
  check_vec(mean_in, d, x_in, "mean", fn);
  check_vec(var_in, d, x_in, "var", fn);
  const auto C = w1.scalar_type(), A = acc_type(C), G = k.gemm_in_acc ? A : C;
  const at::Tensor x = x_in.contiguous(), g = grad_in.contiguous();
  const auto acc_opts = x.options().dtype(A), g_opts = x.options().dtype(G);
  const at::Tensor mean = mean_in.to(A).contiguous();
  const at::Tensor rstd = (var_in.to(A) + eps).rsqrt();
  const at::Tensor gamma = bn_weight.to(A);
  const at::Tensor scale = gamma * rstd;
  const at::Tensor shift = bn_bias.to(A) - mean * scale;
  const at::Tensor w1g = w1.to(G).contiguous(), w2g = w2.to(G).contiguous();
  const at::Tensor w1t = w1g.t(), w2t = w2g.t();
  const auto b1g = cast_opt(b1, G);

  at::Tensor gw1 = at::zeros({H, d}, acc_opts), gw2 = at::zeros({O, H}, acc_opts), gb1 = at::zeros({H}, acc_opts);
  at::Tensor gxn = at::empty({M, d}, acc_opts);  // dL/d BN(x), needed whole by the BN backward below
  const int64_t R = rows_per_chunk(k, M, std::max({H, d, O}));
  at::Tensor xn_buf = at::empty({R, d}, g_opts), h_buf = at::empty({R, H}, g_opts);
  at::Tensor a_buf = at::empty({R, H}, g_opts), ga_buf = at::empty({R, H}, g_opts);
  for (int64_t r0 = 0; r0 < M; r0 += R) {
    const int64_t r = std::min(R, M - r0);
    at::Tensor xn = xn_buf.narrow(0, 0, r), h = h_buf.narrow(0, 0, r);
    at::Tensor a = a_buf.narrow(0, 0, r), ga = ga_buf.narrow(0, 0, r);
    // recompute the chunk's activations
    k.bn_apply(x.narrow(0, r0, r), scale, shift, xn);
    linear_out(h, b1g, xn, w1t);
    k.gelu(h, a);
    at::Tensor gc = g.narrow(0, r0, r);
    if (G != C) gc = gc.to(G);
    // second linear, GELU, first linear
    accumulate_mm(gw2, gc.t(), a);
    at::mm_out(ga, gc, w2g);
    k.gelu_backward(ga, h);
    accumulate_mm(gw1, ga.t(), xn);
    gb1.add_(at::sum(ga, {0}, false, A));
    at::Tensor gxn_c = gxn.narrow(0, r0, r);
    if (G == A)
      at::mm_out(gxn_c, ga, w1g);
    else
      gxn_c.copy_(at::mm(ga, w1g));
  }
  at::Tensor dgamma = at::empty({d}, acc_opts), dbeta = at::empty({d}, acc_opts);
  k.bn_backward_reduce(gxn, x, mean, rstd, dgamma, dbeta);
  at::Tensor k_mean, k_xhat;
  if (training) {  // the batch statistics depend on x: their part of the gradient
    k_mean = dbeta / double(M);
    k_xhat = dgamma / double(M);
  } else {
    k_mean = at::zeros({d}, acc_opts);
    k_xhat = at::zeros({d}, acc_opts);
  }
  at::Tensor dx = new_output(x.sizes(), x.options());
  k.bn_backward_apply(gxn, x, mean, rstd, scale, k_mean, k_xhat, dx);

  at::Tensor gb1_out = b1.has_value() ? gb1.to(b1->scalar_type()) : at::empty({0}, w1.options());
  at::Tensor gb2_out = b2.has_value() ? at::sum(g, {0}, false, A).to(b2->scalar_type()) : at::empty({0}, w1.options());
  return {dx, dgamma.to(bn_weight.scalar_type()), dbeta.to(bn_bias.scalar_type()), gw1.to(C), gb1_out,
          gw2.to(C), gb2_out};
}

}  // namespace bn_mlp
}  // namespace tds
