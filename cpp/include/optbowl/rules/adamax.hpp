// Adamax (Kingma & Ba, 2015, section 7.1) with torch.optim.Adamax's options, one element at a
// time, in the order of torch's single-tensor implementation (torch 2.13; no fused CPU kernel):
//     g = maximize ? -grad : grad
//     g = fma(p, weight_decay, g)                 (only when weight_decay != 0)
//     m = lerp(m, g, 1 - beta1)                    (torch's lerp, see torch_lerp)
//     u = max(u * beta2, |g| + eps)                exp_inf (torch.maximum: a NaN wins)
//     p = p + ((-clr) * m) / u
// with clr = lr / (1 - beta1^t) computed in double on the host (adamax_clr) and -clr rounded
// to T. Bit for bit with torch in float32 and float64.
// R rounds an intermediate result as torch rounds each tensor operation for a bfloat16 or
// float16 parameter; Exact (float32, float64) leaves every value as computed. For 16-bit
// parameters 1 - beta1, beta2 and -clr stay float32 (lerp's weight, a multiplication's
// scalar, addcdiv's value); eps and weight_decay are rounded to the parameter's dtype (an
// added scalar, an add's alpha).
#pragma once
#include <cmath>

#include "optbowl/config.hpp"
#include "optbowl/math.hpp"

namespace optbowl {
namespace rules {

template <class T>
struct AdamaxHyper {
  T one_minus_beta1;
  T beta2;
  T eps;
  T weight_decay;
  T neg_clr;  // -(lr / (1 - beta1^t))
  bool maximize;
};

// The step size at step t (t counts from 1), in double as torch computes it.
inline double adamax_clr(double lr, double beta1, double t) { return lr / (1.0 - std::pow(beta1, t)); }

// kScalarTail: rounded as torch's scalar tail (torch_add_scaled, math.hpp).
template <bool kScalarTail = false, class R = Exact, class T>
OPTBOWL_HD void adamax(T& p, T grad, T& exp_avg, T& exp_inf, const AdamaxHyper<T>& h) {
  T g = h.maximize ? flip_sign(grad) : grad;
  if (h.weight_decay != T(0)) g = torch_add_scaled<kScalarTail, R>(g, p, h.weight_decay);
  const T m = R::round(torch_lerp(exp_avg, g, h.one_minus_beta1));
  exp_avg = m;
  const T abs_g = g < T(0) ? -g : g;
  const T u = nan_max(R::round(exp_inf * h.beta2), R::round(abs_g + h.eps));
  exp_inf = u;
  p = p + (h.neg_clr * m) / u;
}

}  // namespace rules
}  // namespace optbowl
