// Adadelta (Zeiler, 2012) with torch.optim.Adadelta's options, one element at a time, in the
// order of torch's single-tensor implementation (torch 2.13; no fused CPU kernel):
//     g     = maximize ? -grad : grad
//     g     = fma(p, weight_decay, g)                        (only when weight_decay != 0)
//     v     = fma((1 - rho) * g, g, v * rho)                 square_avg
//     std   = sqrt(v + eps)
//     delta = (sqrt(u + eps) / std) * g                       u: acc_delta (before this step)
//     u     = fma((1 - rho) * delta, delta, u * rho)
//     p     = fma(delta, -lr, p)
// every operation in the parameter's dtype (torch's build contracts each addcmul and each add
// with alpha into one fused multiply-add).
// torch's CPU Tensor.sqrt for float32 and float64 is not correctly rounded where torch is
// built with MKL (MKL VML's vsSqrt/vdSqrt, VML_HA mode: within an ulp; about 15% of float32
// and 1% of float64 values off by one, always the same result for the same input); sqrt_
// here is IEEE's. With a correctly rounded sqrt in place of torch's, every other operation agrees
// with torch 2.13 bit for bit in float32 and float64 (every option, 60 steps); with torch's
// own, results differ from it by the sqrt's last bit and what follows from it.
// R rounds an intermediate result as torch rounds each tensor operation for a bfloat16 or
// float16 parameter; Exact (float32, float64) leaves every value as computed. For 16-bit
// parameters rho and 1 - rho stay float32 (a multiplication's scalar, addcmul's value); eps,
// weight_decay and -lr are rounded to the parameter's dtype (an added scalar, an add's alpha).
#pragma once
#include <type_traits>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/math.hpp"

namespace optbowl {
namespace rules {

template <class T>
struct AdadeltaHyper {
  T rho;
  T one_minus_rho;  // 1 - rho, computed in double
  T eps;
  T weight_decay;
  T neg_lr;
  bool maximize;
};

// kScalarTail: rounded as torch's scalar tail (torch_add_scaled).
template <bool kScalarTail = false, class R = Exact, class T>
OPTBOWL_HD void adadelta(T& p, T grad, T& square_avg, T& acc_delta, const AdadeltaHyper<T>& h) {
  T g = h.maximize ? flip_sign(grad) : grad;
  if (h.weight_decay != T(0)) g = torch_add_scaled<kScalarTail, R>(g, p, h.weight_decay);
  const T v = R::round(fma_(h.one_minus_rho * g, g, R::round(square_avg * h.rho)));
  square_avg = v;
  const T std_ = R::round(sqrt_(R::round(v + h.eps)));
  const T rms_delta = R::round(sqrt_(R::round(acc_delta + h.eps)));
  const T delta = R::round(R::round(rms_delta / std_) * g);
  acc_delta = R::round(fma_(h.one_minus_rho * delta, delta, R::round(acc_delta * h.rho)));
  p = torch_add_scaled<kScalarTail, R>(p, delta, h.neg_lr);
}

}  // namespace rules
}  // namespace optbowl
