// NAdam (Dozat, 2016) with torch.optim.NAdam's options, one element at a time, in the order of
// torch's single-tensor implementation (torch 2.13, capturable=False; no fused CPU kernel):
//     g     = maximize ? -grad : grad
//     NAdam:  g = fma(p, weight_decay, g)      decoupled: p = p * (1 - lr * weight_decay)
//             (only when weight_decay != 0; 1 - lr * weight_decay in double, rounded to T)
//     m     = lerp(m, g, 1 - beta1)                    (torch's lerp, see torch_lerp)
//     v     = fma((1 - beta2) * g, g, v * beta2)
//     denom = sqrt(v / (1 - beta2^t)) + eps
//     p     = p + (c_g * g) / denom
//     p     = p + (c_m * m) / denom
// The per-step scalars come from the host (nadam_step), in torch's dtypes and order:
//     mu_t       = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))            (double)
//     mu_product = mu_product * mu_t      in the dtype of the mu_product state (float32 unless
//                                         torch's default dtype is float64), mu_t rounded to it
//     c_g = (-lr * (1 - mu_t)) / (1 - mu_product)                            (double)
//     c_m = (-lr * mu_{t+1}) / (1 - mu_product * mu_{t+1})                   (double, the
//                                         product of mu_product widened to double and mu_{t+1})
// each rounded to T.
// torch's CPU Tensor.sqrt for float32 and float64 is not correctly rounded where torch is
// built with MKL (MKL VML's vsSqrt/vdSqrt, VML_HA mode: within an ulp; about 15% of float32
// and 1% of float64 values off by one, always the same result for the same input); sqrt_
// here is IEEE's. With a correctly rounded sqrt in place of torch's, every other operation agrees
// with torch 2.13 bit for bit in float32 and float64 (every option, 60 steps); with torch's
// own, results differ from it by the sqrt's last bit and what follows from it.
// R rounds an intermediate result as torch rounds each tensor operation for a bfloat16 or
// float16 parameter; Exact (float32, float64) leaves every value as computed. For 16-bit
// parameters 1 - beta1, beta2, 1 - beta2, 1 - beta2^t, the decay factor, c_g and c_m stay
// float32 (lerp's weight, scalars of a multiplication, addcmul, a division and addcdiv); eps
// and weight_decay are rounded to the parameter's dtype (an added scalar, an add's alpha).
#pragma once
#include <cmath>

#include "optbowl/config.hpp"
#include "optbowl/math.hpp"
#include "optbowl/rules/moments.hpp"

namespace optbowl {
namespace rules {

template <class T>
struct NadamHyper {
  T one_minus_beta1;
  T beta2;
  T one_minus_beta2;
  T bias_correction2;  // 1 - beta2^t
  T eps;
  T weight_decay;      // NAdam's L2 term (0 when decoupled)
  T decay_factor;      // decoupled: 1 - lr * weight_decay (1 when weight_decay == 0)
  T grad_coef;         // c_g
  T exp_avg_coef;      // c_m
  bool decoupled;
  bool maximize;
};

// The momentum coefficient mu_t at step t (t counts from 1), in double as torch computes it.
inline double nadam_mu(double beta1, double momentum_decay, double t) {
  return beta1 * (1.0 - 0.5 * std::pow(0.96, t * momentum_decay));
}

struct NadamStep {
  double bias_correction2;  // 1 - beta2^t
  double grad_coef;         // c_g
  double exp_avg_coef;      // c_m
};

// Step t's scalars; advances mu_product (the state, of dtype P: float, or double where torch's
// default dtype is float64) from step t - 1 to step t, as torch's mu_product *= mu_t does.
template <class P>
inline NadamStep nadam_step(double lr, double beta1, double beta2, double momentum_decay, double t,
                            P& mu_product) {
  const double mu = nadam_mu(beta1, momentum_decay, t);
  const double mu_next = nadam_mu(beta1, momentum_decay, t + 1.0);
  mu_product = mu_product * static_cast<P>(mu);
  const double prod = static_cast<double>(mu_product);
  const double prod_next = prod * mu_next;
  return {1.0 - std::pow(beta2, t), (-lr * (1.0 - mu)) / (1.0 - prod), (-lr * mu_next) / (1.0 - prod_next)};
}

// kScalarTail: rounded as torch's scalar tail (torch_add_scaled, math.hpp).
template <bool kScalarTail = false, class R = Exact, class T>
OPTBOWL_HD void nadam(T& p, T grad, T& exp_avg, T& exp_avg_sq, const NadamHyper<T>& h) {
  const Moments<T> s = two_moments<kScalarTail, R>(p, grad, exp_avg, exp_avg_sq, h);
  const T denom = R::round(R::round(sqrt_(R::round(s.v / h.bias_correction2))) + h.eps);
  const T q = R::round(s.p + (h.grad_coef * s.g) / denom);
  p = q + (h.exp_avg_coef * s.m) / denom;
}

}  // namespace rules
}  // namespace optbowl
