// RMSprop (Tieleman & Hinton, 2012) with torch.optim.RMSprop's options, one element at a time:
//     g   = maximize ? -grad : grad
//     g   = fma(p, weight_decay, g)                          (only when weight_decay != 0)
//     v   = fma((1 - alpha) * g, g, v * alpha)
//     centered:  m = lerp(m, g, 1 - alpha),  avg = sqrt(fma(-m, m, v)) + eps
//     else:      avg = sqrt(v) + eps
//     momentum > 0:  buf = buf * momentum + g / avg,  p = fma(buf, -lr, p)
//     else:          p = p + ((-lr) * g) / avg
// every operation in the param dtype, in the order of torch's single-tensor and foreach
// implementations (torch has no fused CPU RMSprop); they agree with torch to an ulp or so.
// R rounds an intermediate result as torch's single-tensor RMSprop does for a bfloat16 or
// float16 parameter (each tensor operation computed in float32 and rounded to the
// parameter's dtype); Exact (float32, float64) leaves every value as computed.
#pragma once
#include "optbowl/config.hpp"
#include "optbowl/math.hpp"

namespace optbowl {
namespace rules {

template <class T>
struct RmspropHyper {
  T neg_lr;
  T alpha;
  T one_minus_alpha;
  T eps;
  T weight_decay;
  T momentum;
  bool centered;
  bool maximize;
};

// grad_avg and momentum_buffer are read and written only when centered / momentum > 0.
// kScalarTail: rounded as torch's scalar tail of a 16-bit tensor (torch_add_scaled, math.hpp).
template <bool kScalarTail = false, class R = Exact, class T>
OPTBOWL_HD void rmsprop(T& p, T grad, T& square_avg, T& grad_avg, T& momentum_buffer,
                        const RmspropHyper<T>& h) {
  T g = h.maximize ? flip_sign(grad) : grad;
  if (h.weight_decay != T(0)) g = torch_add_scaled<kScalarTail, R>(g, p, h.weight_decay);
  const T v = R::round(fma_(h.one_minus_alpha * g, g, R::round(square_avg * h.alpha)));
  square_avg = v;
  T avg;
  if (h.centered) {
    const T m = R::round(torch_lerp(grad_avg, g, h.one_minus_alpha));
    grad_avg = m;
    avg = R::round(R::round(sqrt_(R::round(fma_(-m, m, v)))) + h.eps);
  } else {
    avg = R::round(R::round(sqrt_(v)) + h.eps);
  }
  if (h.momentum > T(0)) {
    const T buf = R::round(R::round(momentum_buffer * h.momentum) + g / avg);
    momentum_buffer = buf;
    p = torch_add_scaled<kScalarTail, R>(p, buf, h.neg_lr);
  } else {
    p = p + (h.neg_lr * g) / avg;
  }
}

}  // namespace rules
}  // namespace optbowl
