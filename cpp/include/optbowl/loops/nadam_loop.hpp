// The multi-tensor CPU loop of NAdam.
#pragma once
#include <cstdint>
#include <tuple>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/element_loop.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/nadam.hpp"

namespace optbowl {

struct NadamGroup {
  double lr, beta1, beta2, eps, weight_decay, momentum_decay;
  bool decoupled_weight_decay, maximize;
  // The scalar state of the group's tensors before this step (one value for the group: the
  // caller groups tensors by it), exactly as stored, and whether it is stored as float64
  // (else float32).
  double mu_product;
  bool scalar_float64;

  // Step t's scalars (t counts from 1), from a copy of mu_product advanced as torch's
  // mu_product *= mu_t advances the state, in the state's dtype.
  rules::NadamStep step_at(double t) const {
    if (scalar_float64) {
      double product = mu_product;
      return rules::nadam_step(lr, beta1, beta2, momentum_decay, t, product);
    }
    float product = static_cast<float>(mu_product);
    return rules::nadam_step(lr, beta1, beta2, momentum_decay, t, product);
  }

  // The scalar state after step t: mu_product advanced by step t's mu_t.
  void after_step(double t) {
    if (scalar_float64) {
      double product = mu_product;
      rules::nadam_step(lr, beta1, beta2, momentum_decay, t, product);
      mu_product = product;
    } else {
      float product = static_cast<float>(mu_product);
      rules::nadam_step(lr, beta1, beta2, momentum_decay, t, product);
      mu_product = product;
    }
  }

  // For arrays stored as S: 1 - beta1, beta2, 1 - beta2, 1 - beta2^t, the decay factor
  // (1 - lr * weight_decay, in double), c_g and c_m stay in the compute type (lerp's weight,
  // a multiplication's scalar, addcmul's value, a division, addcdiv's values); eps (an added
  // scalar) and weight_decay (an add's alpha) are rounded to a 16-bit parameter's dtype first.
  template <class S>
  rules::NadamHyper<compute_t<S>> at_step(double t) const {
    using T = compute_t<S>;
    const rules::NadamStep s = step_at(t);
    const bool decoupled = decoupled_weight_decay && weight_decay != 0.0;
    return {static_cast<T>(1.0 - beta1),
            static_cast<T>(beta2),
            static_cast<T>(1.0 - beta2),
            static_cast<T>(s.bias_correction2),
            scalar_through_storage<S>(eps),
            scalar_through_storage<S>(decoupled_weight_decay ? 0.0 : weight_decay),
            static_cast<T>(1.0 - lr * weight_decay),
            static_cast<T>(s.grad_coef),
            static_cast<T>(s.exp_avg_coef),
            decoupled,
            maximize};
  }
};

template <class T>
struct LaneFields<rules::NadamHyper<T>> {
  using H = rules::NadamHyper<T>;
  static constexpr auto list =
      std::make_tuple(&H::one_minus_beta1, &H::beta2, &H::one_minus_beta2, &H::bias_correction2, &H::eps,
                      &H::weight_decay, &H::decay_factor, &H::grad_coef, &H::exp_avg_coef);
};

// Pointers per tensor: param, grad, exp_avg, exp_avg_sq.
struct NadamLoop : ElementLoop<NadamLoop, NadamGroup, rules::NadamHyper, 4, true> {
  static constexpr bool kAvx512InCache = true;  // a square root and divisions (multi_tensor.hpp)
  static constexpr bool kHalfTail = true;  // torch's 16-bit scalar tail (multi_tensor.hpp)

  template <class S>
  static rules::NadamHyper<compute_t<S>> hyper_of(const NadamGroup& G, double t) {
    return G.template at_step<S>(t);
  }

  // maximize, decoupled weight decay (every array read and written but the gradient).
  static constexpr std::size_t kKeyFlags = 2;
  template <class Lanes, class T>
  auto flags(const rules::NadamHyper<T>& h, std::int32_t, const Arrays*) const {
    return std::make_tuple(h.maximize, h.decoupled);
  }
  template <class S, class Max, class Decoupled>
  static auto arrays(Max, Decoupled) {
    return Uses<InOut<>, In<>, InOut<>, InOut<>>{};
  }
  template <class S, class E, class Max, class Decoupled, class T>
  void element(const E& e, Max, Decoupled, T& p, T g, T& m, T& v) const {
    rules::NadamHyper<T> h = e.hyper();
    h.maximize = Max::value;
    h.decoupled = Decoupled::value;
    rules::nadam<E::kScalarTail, typename Storage<S>::Round>(p, g, m, v, h);
  }
};

}  // namespace optbowl
