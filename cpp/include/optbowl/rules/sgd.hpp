// SGD with momentum, dampening, Nesterov and weight decay, one element at a time, rounded as
// torch.optim.SGD rounds on the CPU (fused=True, and equally foreach and the single-tensor
// loop in torch 2.13):
//     g   = maximize ? -grad : grad
//     g   = fma(p, weight_decay, g)                       (only when weight_decay != 0)
//     buf = g on the first step, else fma(g, 1 - dampening, buf * momentum)
//     g   = nesterov ? fma(buf, momentum, g) : buf        (only when momentum != 0)
//     p   = fma(g, -lr, p)
// every operation in the param dtype; torch's build contracts each a*b + c into one fused
// multiply-add, and so do we (checked bit for bit in float32 and float64).
#pragma once
#include "optbowl/config.hpp"
#include "optbowl/math.hpp"

namespace optbowl {
namespace rules {

template <class T>
struct SgdHyper {
  T neg_lr;               // -lr, rounded to T
  T weight_decay;
  T momentum;
  T one_minus_dampening;  // 1 - dampening, computed in double and rounded to T
  bool nesterov;
  bool maximize;
  bool first_step;        // the momentum buffer starts as the gradient
  bool with_momentum;     // momentum != 0: the buffer is read and written
};

template <class T>
OPTBOWL_HD void sgd(T& p, T grad, T& momentum_buffer, const SgdHyper<T>& h) {
  T g = h.maximize ? -grad : grad;
  if (h.weight_decay != T(0)) g = fma_(p, h.weight_decay, g);
  if (h.with_momentum) {
    const T buf = h.first_step ? g : fma_(g, h.one_minus_dampening, momentum_buffer * h.momentum);
    momentum_buffer = buf;
    g = h.nesterov ? fma_(buf, h.momentum, g) : buf;
  }
  p = fma_(g, h.neg_lr, p);
}

}  // namespace rules
}  // namespace optbowl
