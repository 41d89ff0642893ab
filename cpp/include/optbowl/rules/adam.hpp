// Adam, AdamW (decoupled weight decay) and AMSGrad, one element at a time, rounded as
// torch.optim.Adam/AdamW(fused=True) round on the CPU:
//     g    = maximize ? -grad : grad                (math.hpp: flip_sign, negate_keeping_nan)
//     Adam:  g = fma(p, weight_decay, g)        AdamW: p = p * (1 - lr * weight_decay)
//            (Adam: only when weight_decay != 0; 1 - lr * weight_decay in double, rounded to T)
//     m    = lerp(m, g, 1 - beta1)              (torch's lerp, see torch_lerp)
//     v    = fma((1 - beta2) * g, g, v * beta2)
//     vmax = max(vmax, v) and v_hat = vmax with amsgrad (a NaN wins), else v_hat = v
//     p    = p + ((-step_size) * m) / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)
// with step_size = lr / (1 - beta1^t) and the bias corrections computed in double and rounded
// to T. Checked bit for bit against torch 2.13 in float32 and float64.
//
// The scalar tail (adam_tail, amsgrad_tail): torch's fused CPU kernel (its AVX2 and AVX-512
// builds) steps the last numel % (32 bytes / sizeof(T)) elements of each tensor in a scalar
// loop that its compiler contracts otherwise (found by testing candidates against torch 2.13,
// every tensor size, float32 and float64):
//     v    = fma(v, beta2, ((1 - beta2) * g) * g)
//     vmax = vmax < v ? v : vmax                    (std::max: a NaN v leaves vmax as it was)
//     p    = p - (step_size * m) / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)
// the rest as above. multi_tensor.hpp says which elements are a tensor's tail.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "optbowl/config.hpp"
#include "optbowl/math.hpp"

namespace optbowl {
namespace rules {

// The NaN with every bit set (sign, exponent and payload), as torch's vectorised maximum
// makes it: its blend with an all-ones mask.
template <class T>
OPTBOWL_HD T all_ones_nan() {
  using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  const Bits ones = ~Bits(0);
  T x;
  std::memcpy(&x, &ones, sizeof x);
  return x;
}

// max as torch's vectorised maximum (its fused body, foreach and single-tensor paths): the
// all-ones NaN if either is NaN (checked bit for bit against torch 2.13). One unordered
// comparison and one select after the max: nested selects took AMSGrad's AVX-512 loop 1.3x
// the time in L1 (GCC, AMD Zen 5).
template <class T>
OPTBOWL_HD T nan_max(T a, T b) {
  const T m = max_(a, b);
  return (a != a || b != b) ? all_ones_nan<T>() : m;
}

template <class T>
struct AdamHyper {
  T one_minus_beta1;
  T beta2;
  T one_minus_beta2;
  T neg_step_size;          // -(lr / (1 - beta1^t))
  T bias_correction2_sqrt;  // sqrt(1 - beta2^t)
  T eps;
  T weight_decay;           // Adam's L2 term (0 for AdamW)
  T decay_factor;           // AdamW's 1 - lr * weight_decay (1 when weight_decay == 0)
  bool decoupled;
  bool maximize;
};

// The moments; kScalarTail: rounded as torch's scalar tail (see the top of this file).
template <bool kScalarTail = false, class T>
OPTBOWL_HD T adam_moments(T& p, T grad, T& exp_avg, T& exp_avg_sq, const AdamHyper<T>& h) {
  // torch negates the gradient apart (math.hpp, flip_sign), but its fused float32 body
  // folds the negation into the L2 term's fused multiply-add: a NaN keeps its sign there
  const bool folded = !kScalarTail && sizeof(T) == 4 && !h.decoupled && h.weight_decay != T(0);
  T g = grad;
  if (h.maximize) g = folded ? negate_keeping_nan(grad) : flip_sign(grad);
  if (h.decoupled)
    p = p * h.decay_factor;
  else if (h.weight_decay != T(0))
    g = fma_(p, h.weight_decay, g);
  exp_avg = torch_lerp(exp_avg, g, h.one_minus_beta1);
  if constexpr (kScalarTail) {
    exp_avg_sq = fma_(exp_avg_sq, h.beta2, (h.one_minus_beta2 * g) * g);
  } else {
    // AdamW's fused body squares the gradient itself, (-grad)^2 folded into grad^2: the
    // same value, and a NaN keeps its sign there
    const T s = h.decoupled ? grad : g;
    exp_avg_sq = fma_(h.one_minus_beta2 * s, s, exp_avg_sq * h.beta2);
  }
  return exp_avg_sq;
}

template <class T>
OPTBOWL_HD void adam_move(T& p, T exp_avg, T second_moment, const AdamHyper<T>& h) {
  const T denom = sqrt_(second_moment) / h.bias_correction2_sqrt + h.eps;
  p = p + (h.neg_step_size * exp_avg) / denom;
}

// The scalar tail's move: p minus the step (the same value as adam_move's; a NaN in both p
// and the step leaves p's, as torch's scalar loop does).
template <class T>
OPTBOWL_HD void adam_move_tail(T& p, T exp_avg, T second_moment, const AdamHyper<T>& h) {
  const T denom = sqrt_(second_moment) / h.bias_correction2_sqrt + h.eps;
  p = p - ((-h.neg_step_size) * exp_avg) / denom;
}

template <class T>
OPTBOWL_HD void adam(T& p, T grad, T& exp_avg, T& exp_avg_sq, const AdamHyper<T>& h) {
  const T v = adam_moments(p, grad, exp_avg, exp_avg_sq, h);
  adam_move(p, exp_avg, v, h);
}

template <class T>
OPTBOWL_HD void amsgrad(T& p, T grad, T& exp_avg, T& exp_avg_sq, T& max_exp_avg_sq,
                        const AdamHyper<T>& h) {
  const T v = adam_moments(p, grad, exp_avg, exp_avg_sq, h);
  const T v_hat = nan_max(max_exp_avg_sq, v);
  max_exp_avg_sq = v_hat;
  adam_move(p, exp_avg, v_hat, h);
}

template <class T>
OPTBOWL_HD void adam_tail(T& p, T grad, T& exp_avg, T& exp_avg_sq, const AdamHyper<T>& h) {
  const T v = adam_moments<true>(p, grad, exp_avg, exp_avg_sq, h);
  adam_move_tail(p, exp_avg, v, h);
}

template <class T>
OPTBOWL_HD void amsgrad_tail(T& p, T grad, T& exp_avg, T& exp_avg_sq, T& max_exp_avg_sq,
                             const AdamHyper<T>& h) {
  const T v = adam_moments<true>(p, grad, exp_avg, exp_avg_sq, h);
  const T v_hat = max_exp_avg_sq < v ? v : max_exp_avg_sq;  // std::max(max_exp_avg_sq, v)
  max_exp_avg_sq = v_hat;
  adam_move_tail(p, exp_avg, v_hat, h);
}

}  // namespace rules
}  // namespace optbowl
