// AdaGrad, one element at a time, rounded as torch.optim.Adagrad(fused=True) on the CPU:
//     g   = maximize ? -grad : grad
//     g   = fma(p, weight_decay, g)          (only when weight_decay != 0)
//     sum = fma(g, g, sum)
//     p   = p + ((-clr) * g) / (sqrt(sum) + eps)
// with clr = lr / (1 + (t - 1) * lr_decay) computed in double and rounded to T. torch's
// build contracts the denominator into one fused multiply-add, and so do we.
#pragma once
#include "optbowl/config.hpp"
#include "optbowl/math.hpp"

namespace optbowl {
namespace rules {

template <class T>
struct AdagradHyper {
  T neg_clr;        // -(lr / (1 + (t - 1) * lr_decay)), rounded to T
  T weight_decay;
  T eps;
  bool maximize;
};

// Learning rate at step t (t counts from 1), in double as torch computes it.
OPTBOWL_HD double adagrad_clr(double lr, double lr_decay, double t) {
  return lr / std::fma(t - 1.0, lr_decay, 1.0);
}

template <class T>
OPTBOWL_HD void adagrad(T& p, T grad, T& sum, const AdagradHyper<T>& h) {
  // torch's fused kernel negates the gradient apart, but folds the negation into the L2
  // term's fused multiply-add: a NaN gradient keeps its sign there (math.hpp, flip_sign)
  T g = grad;
  if (h.weight_decay != T(0))
    g = fma_(p, h.weight_decay, h.maximize ? negate_keeping_nan(grad) : grad);
  else if (h.maximize)
    g = flip_sign(grad);
  const T s = fma_(g, g, sum);
  sum = s;
  p = p + (h.neg_clr * g) / (sqrt_(s) + h.eps);
}

}  // namespace rules
}  // namespace optbowl
