// The prefix that rules with decoupled or L2 weight decay and two exponential moments share,
// one element at a time, in the order of torch's single-tensor implementations (torch 2.13):
//     g  = maximize ? -grad : grad
//     L2:         g = fma(p, weight_decay, g)          (only when weight_decay != 0)
//     decoupled:  p = p * decay_factor                 (decay_factor = 1 - lr * weight_decay)
//     m  = lerp(m, g, 1 - beta1)                       (torch's lerp, see torch_lerp)
//     v  = fma((1 - beta2) * g, g, v * beta2)
// The caller goes on from the returned (p, g, m, v); p itself is left for it to write.
// R rounds an intermediate result as torch rounds each tensor operation for a bfloat16 or
// float16 parameter; Exact (float32, float64) leaves every value as computed.
#pragma once

#include "optbowl/config.hpp"
#include "optbowl/math.hpp"

namespace optbowl {
namespace rules {

template <class T>
struct Moments {
  T p;  // the parameter after a decoupled decay (not yet stored)
  T g;  // the gradient after maximize and the L2 term
  T m;  // the new first moment (stored)
  T v;  // the new second moment (stored)
};

// kScalarTail: rounded as torch's scalar tail (torch_add_scaled, math.hpp). H: the rule's
// scalars, with one_minus_beta1, beta2, one_minus_beta2, weight_decay (the L2 term, 0 when
// decoupled), decay_factor (1 - lr * weight_decay), decoupled and maximize.
template <bool kScalarTail = false, class R = Exact, class T, class H>
OPTBOWL_HD Moments<T> two_moments(T p, T grad, T& exp_avg, T& exp_avg_sq, const H& h) {
  T g = h.maximize ? flip_sign(grad) : grad;
  T q = p;
  if (h.decoupled)
    q = R::round(q * h.decay_factor);
  else if (h.weight_decay != T(0))
    g = torch_add_scaled<kScalarTail, R>(g, q, h.weight_decay);
  const T m = R::round(torch_lerp(exp_avg, g, h.one_minus_beta1));
  exp_avg = m;
  const T v = R::round(fma_(h.one_minus_beta2 * g, g, R::round(exp_avg_sq * h.beta2)));
  exp_avg_sq = v;
  return {q, g, m, v};
}

}  // namespace rules
}  // namespace optbowl
