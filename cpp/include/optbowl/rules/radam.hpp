// RAdam (Liu et al., 2020) with torch.optim.RAdam's options, one element at a time, in the
// order of torch's single-tensor implementation (torch 2.13, capturable=False; no fused CPU
// kernel):
//     g   = maximize ? -grad : grad
//     RAdam:  g = fma(p, weight_decay, g)      decoupled: p = p * (1 - lr * weight_decay)
//             (only when weight_decay != 0; 1 - lr * weight_decay in double, rounded to T)
//     m   = lerp(m, g, 1 - beta1)                      (torch's lerp, see torch_lerp)
//     v   = fma((1 - beta2) * g, g, v * beta2)
//     b   = (m / (1 - beta1^t)) * lr
//     rectified (rho_t > 5):  p = p - (b * (sqrt(1 - beta2^t) * (1 / (sqrt(v) + eps)))) * r_t
//     else:                   p = p - b
// where sqrt(1 - beta2^t) / x is torch's float / Tensor, reciprocal(x) * scalar. The per-step
// scalars come from the host (radam_step), in double as torch computes them:
//     rho_inf = 2 / (1 - beta2) - 1,   rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t),
//     r_t = ((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))^0.5
// each rounded to T.
// torch's CPU Tensor.sqrt for float32 and float64 is not correctly rounded where torch is
// built with MKL (MKL VML's vsSqrt/vdSqrt, VML_HA mode: within an ulp; about 15% of float32
// and 1% of float64 values off by one, always the same result for the same input); sqrt_
// here is IEEE's. With a correctly rounded sqrt in place of torch's, every other operation agrees
// with torch 2.13 bit for bit in float32 and float64 (every option, 60 steps); with torch's
// own, results differ from it by the sqrt's last bit and what follows from it.
// R rounds an intermediate result as torch rounds each tensor operation for a bfloat16 or
// float16 parameter; Exact (float32, float64) leaves every value as computed. For 16-bit
// parameters 1 - beta1, beta2, 1 - beta2, 1 - beta1^t, lr, sqrt(1 - beta2^t), r_t and the
// decay factor stay float32; eps and weight_decay are rounded to the parameter's dtype.
#pragma once
#include <cmath>

#include "optbowl/config.hpp"
#include "optbowl/math.hpp"
#include "optbowl/rules/moments.hpp"

namespace optbowl {
namespace rules {

template <class T>
struct RadamHyper {
  T one_minus_beta1;
  T beta2;
  T one_minus_beta2;
  T bias_correction1;       // 1 - beta1^t
  T lr;
  T bias_correction2_sqrt;  // (1 - beta2^t)^0.5
  T eps;
  T rect;                   // r_t (rectified steps only)
  T weight_decay;           // RAdam's L2 term (0 when decoupled)
  T decay_factor;           // decoupled: 1 - lr * weight_decay (1 when weight_decay == 0)
  bool decoupled;
  bool rectified;           // rho_t > 5
  bool maximize;
};

struct RadamStep {
  double bias_correction1;       // 1 - beta1^t
  double bias_correction2_sqrt;  // (1 - beta2^t)^0.5
  double rho_t;
  double rect;                   // r_t where rho_t > 5, else 0 (unused)
  bool rectified;
};

// Step t's scalars (t counts from 1).
inline RadamStep radam_step(double beta1, double beta2, double t) {
  const double bc1 = 1.0 - std::pow(beta1, t);
  const double bc2 = 1.0 - std::pow(beta2, t);
  const double rho_inf = 2.0 / (1.0 - beta2) - 1.0;
  const double rho_t = rho_inf - 2.0 * t * std::pow(beta2, t) / bc2;
  const bool rectified = rho_t > 5.0;
  const double rect = rectified
      ? std::pow((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t), 0.5)
      : 0.0;
  return {bc1, std::pow(bc2, 0.5), rho_t, rect, rectified};
}

// kScalarTail: rounded as torch's scalar tail (torch_add_scaled, math.hpp).
template <bool kScalarTail = false, class R = Exact, class T>
OPTBOWL_HD void radam(T& p, T grad, T& exp_avg, T& exp_avg_sq, const RadamHyper<T>& h) {
  const Moments<T> s = two_moments<kScalarTail, R>(p, grad, exp_avg, exp_avg_sq, h);
  T b = R::round(R::round(s.m / h.bias_correction1) * h.lr);
  if (h.rectified) {
    const T inv = R::round(T(1) / R::round(R::round(sqrt_(s.v)) + h.eps));
    const T adaptive = R::round(inv * h.bias_correction2_sqrt);
    b = R::round(R::round(b * adaptive) * h.rect);
  }
  p = s.p - b;
}

}  // namespace rules
}  // namespace optbowl
