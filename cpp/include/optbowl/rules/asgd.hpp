// Averaged SGD (Polyak & Juditsky, 1992) with torch.optim.ASGD's options, one element at a
// time, in the order of torch's single-tensor implementation (torch 2.13, capturable=False;
// no fused CPU kernel):
//     g  = maximize ? -grad : grad
//     g  = fma(p, weight_decay, g)                      (only when weight_decay != 0)
//     p  = p * (1 - lambd * eta)                        (the factor in double, rounded to T)
//     p  = fma(g, -eta, p)
//     ax = ax + (p - ax) * mu     where mu != 1, else ax = p
// eta and mu are the values of the per-parameter state from the previous step (eta = lr and
// mu = 1 before the first). After the step the host advances them (asgd_eta, asgd_mu), in
// the dtype P of torch's scalar state (float32 unless torch's default dtype is float64):
//     eta = P(lr / (1 + lambd * lr * t)^alpha),   mu = P(1 / max(1, t - t0))   (double, rounded)
// Bit for bit with torch in float32 and float64.
// R rounds an intermediate result as torch rounds each tensor operation for a bfloat16 or
// float16 parameter; Exact (float32, float64) leaves every value as computed. For 16-bit
// parameters the decay factor and mu stay float32 (a multiplication's scalar); weight_decay
// and -eta are rounded to the parameter's dtype (an add's alpha).
#pragma once
#include <cmath>

#include "optbowl/config.hpp"
#include "optbowl/math.hpp"

namespace optbowl {
namespace rules {

template <class T>
struct AsgdHyper {
  T weight_decay;
  T decay_factor;  // 1 - lambd * eta, computed in double from eta's state value
  T neg_eta;       // -eta
  T mu;
  bool average;    // mu != 1: ax moves towards p; else ax = p
  bool maximize;
};

// The step size after step t (t counts from 1), in double as torch computes it; the state
// keeps it rounded to its dtype.
inline double asgd_eta(double lr, double lambd, double alpha, double t) {
  return lr / std::pow(1.0 + lambd * lr * t, alpha);
}

// The averaging weight after step t: 1 / max(1, t - t0).
inline double asgd_mu(double t0, double t) {
  const double d = t - t0;
  return d > 1.0 ? 1.0 / d : 1.0;
}

// The decay factor of a step taken with the state's eta.
inline double asgd_decay_factor(double lambd, double eta) { return 1.0 - lambd * eta; }

// kScalarTail: rounded as torch's scalar tail (torch_add_scaled, math.hpp).
template <bool kScalarTail = false, class R = Exact, class T>
OPTBOWL_HD void asgd(T& p, T grad, T& ax, const AsgdHyper<T>& h) {
  T g = h.maximize ? flip_sign(grad) : grad;
  if (h.weight_decay != T(0)) g = torch_add_scaled<kScalarTail, R>(g, p, h.weight_decay);
  const T q = torch_add_scaled<kScalarTail, R>(R::round(p * h.decay_factor), g, h.neg_eta);
  if (h.average)
    ax = R::round(ax + R::round(R::round(q - ax) * h.mu));
  else
    ax = q;
  p = q;
}

}  // namespace rules
}  // namespace optbowl
