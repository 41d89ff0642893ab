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
//
// The scalar tail (sgd_tail): torch's fused CPU kernel (its AVX2 and AVX-512 builds) steps the
// last numel % (32 bytes / sizeof(T)) elements of each tensor in a scalar loop that its
// compiler contracts otherwise, only in the buffer (found by testing candidates against torch
// 2.13, every tensor size, float32 and float64):
//     buf = fma(buf, momentum, g * (1 - dampening))
// torch's foreach and single-tensor paths round every element as the fused body.
// multi_tensor.hpp says which elements are a tensor's tail.
//
// R rounds an intermediate result as torch's single-tensor SGD does for a bfloat16 or
// float16 parameter (one tensor operation each, computed in float32 and rounded to the
// parameter's dtype: the weight-decayed gradient, buf * momentum, the new buffer and
// Nesterov's gradient); Exact (float32, float64) leaves every value as computed. There
// torch's Tensor.add(x, alpha=a) rounds a to the parameter's dtype (the weight decay, 1 -
// dampening, Nesterov's momentum and -lr), Tensor.mul_(momentum) does not: the loop
// rounds the hyper-parameters so (loops/sgd_loop.hpp).
#pragma once
#include <type_traits>

#include "optbowl/config.hpp"
#include "optbowl/math.hpp"

namespace optbowl {
namespace rules {

template <class T>
struct SgdHyper {
  T neg_lr;               // -lr, rounded to T
  T weight_decay;
  T momentum;             // buf * momentum
  T one_minus_dampening;  // 1 - dampening, computed in double and rounded to T
  T nesterov_momentum;    // Nesterov's g + momentum * buf (momentum rounded as an add's alpha)
  bool nesterov;
  bool maximize;
  bool first_step;        // the momentum buffer starts as the gradient
  bool with_momentum;     // momentum != 0: the buffer is read and written
};

// kScalarTail: rounded as torch's scalar tail: for float32/float64 (R = Exact) its fused
// kernel's (see the top of this file), for a 16-bit parameter its single-tensor ops', whose
// add(alpha=) rounds the product first (torch_add_scaled, math.hpp).
template <bool kScalarTail = false, class R = Exact, class T>
OPTBOWL_HD void sgd(T& p, T grad, T& momentum_buffer, const SgdHyper<T>& h) {
  // torch negates the gradient apart (math.hpp, flip_sign), but its fused kernel's scalar
  // tail folds the negation into the L2 term's fused multiply-add: a NaN keeps its sign
  constexpr bool kFoldedNegation = kScalarTail && std::is_same<R, Exact>::value;
  T g = grad;
  if (h.maximize) g = kFoldedNegation && h.weight_decay != T(0) ? negate_keeping_nan(grad) : flip_sign(grad);
  if (h.weight_decay != T(0)) g = torch_add_scaled<kScalarTail, R>(g, p, h.weight_decay);
  if (h.with_momentum) {
    T buf = g;
    if (!h.first_step) {
      if constexpr (kScalarTail && std::is_same<R, Exact>::value)
        buf = fma_(momentum_buffer, h.momentum, g * h.one_minus_dampening);
      else
        buf = torch_add_scaled<kScalarTail, R>(R::round(momentum_buffer * h.momentum), g, h.one_minus_dampening);
    }
    momentum_buffer = buf;
    g = h.nesterov ? torch_add_scaled<kScalarTail, R>(g, buf, h.nesterov_momentum) : buf;
  }
  p = torch_add_scaled<kScalarTail, R>(p, g, h.neg_lr);
}

template <class T>
OPTBOWL_HD void sgd_tail(T& p, T grad, T& momentum_buffer, const SgdHyper<T>& h) {
  sgd<true>(p, grad, momentum_buffer, h);
}

}  // namespace rules
}  // namespace optbowl
