// Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"), one element at a
// time, in the order of the reference implementation's tensor operations:
//     g = maximize ? -grad : grad
//     p = p * (1 - lr * weight_decay)      (only when weight_decay != 0; the factor computed
//                                           in double and rounded to T)
//     c = lerp(m, g, 1 - beta1)            (torch's lerp, see torch_lerp)
//     p = fma(sign(c), -lr, p)             (exact product: p - lr, p + lr or p)
//     m = lerp(m, g, 1 - beta2)
// that is p.mul_(1 - lr * wd); p.add_(m.lerp(g, 1 - beta1).sign_(), alpha=-lr);
// m.lerp_(g, 1 - beta2) in torch, bit for bit in float32 and float64. sign(0) = 0 and
// sign(NaN) = NaN (torch's sign gives 0 for a NaN: a NaN gradient would leave p as it was
// and freeze it from then on; here the NaN reaches p).
// R rounds an intermediate result as torch rounds each tensor operation for a bfloat16 or
// float16 parameter (computed in float32, rounded to the parameter's dtype); Exact (float32,
// float64) leaves every value as computed. For 16-bit parameters the weights of the lerps
// and the decay factor stay float32, -lr is rounded to the parameter's dtype (an add's
// alpha).
#pragma once
#include "optbowl/config.hpp"
#include "optbowl/math.hpp"

namespace optbowl {
namespace rules {

template <class T>
struct LionHyper {
  T one_minus_beta1;
  T one_minus_beta2;
  T neg_lr;        // -lr (an add's alpha: through the storage type for 16-bit parameters)
  T decay_factor;  // 1 - lr * weight_decay, computed in double
  bool decay;      // weight_decay != 0
  bool maximize;
};

// sign(x): +1, -1, +0 for either zero, and x itself (NaN) for a NaN.
template <class T>
OPTBOWL_HD T sign_keeping_nan(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : (x == T(0) ? T(0) : x));
}

template <class R = Exact, class T>
OPTBOWL_HD void lion(T& p, T grad, T& exp_avg, const LionHyper<T>& h) {
  const T g = h.maximize ? flip_sign(grad) : grad;
  T q = p;
  if (h.decay) q = R::round(q * h.decay_factor);
  const T c = R::round(torch_lerp(exp_avg, g, h.one_minus_beta1));
  p = fma_(sign_keeping_nan(c), h.neg_lr, q);
  exp_avg = R::round(torch_lerp(exp_avg, g, h.one_minus_beta2));
}

}  // namespace rules
}  // namespace optbowl
