// The multi-tensor CPU loop of RAdam.
#pragma once
#include <cstdint>
#include <tuple>
#include <type_traits>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/element_loop.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/radam.hpp"

namespace optbowl {

struct RadamGroup {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled_weight_decay, maximize;

  // The rule's scalars at step t (counting from 1), from radam_step in double as torch
  // computes them. For arrays stored as S: 1 - beta1, beta2, 1 - beta2, 1 - beta1^t, lr,
  // (1 - beta2^t)^0.5, r_t and the decay factor 1 - lr * weight_decay (scalars of lerp,
  // multiplications and divisions) stay in the compute type; eps (an added scalar) and
  // weight_decay (an add's alpha) are rounded to a 16-bit parameter's dtype first. The
  // decay is decoupled only where weight_decay != 0; r_t is 0 on the steps that are not
  // rectified (rho_t <= 5), and positive on the others.
  template <class S>
  rules::RadamHyper<compute_t<S>> at_step(double t) const {
    using T = compute_t<S>;
    const rules::RadamStep s = rules::radam_step(beta1, beta2, t);
    const bool decoupled = decoupled_weight_decay && weight_decay != 0.0;
    return {static_cast<T>(1.0 - beta1),
            static_cast<T>(beta2),
            static_cast<T>(1.0 - beta2),
            static_cast<T>(s.bias_correction1),
            static_cast<T>(lr),
            static_cast<T>(s.bias_correction2_sqrt),
            scalar_through_storage<S>(eps),
            static_cast<T>(s.rectified ? s.rect : 0.0),
            decoupled ? T(0) : scalar_through_storage<S>(weight_decay),
            static_cast<T>(decoupled ? 1.0 - lr * weight_decay : 1.0),
            decoupled,
            s.rectified,
            maximize};
  }
};

template <class T>
struct LaneFields<rules::RadamHyper<T>> {
  using H = rules::RadamHyper<T>;
  static constexpr auto list =
      std::make_tuple(&H::one_minus_beta1, &H::beta2, &H::one_minus_beta2, &H::bias_correction1, &H::lr,
                      &H::bias_correction2_sqrt, &H::eps, &H::rect, &H::weight_decay, &H::decay_factor);
};

// Pointers per tensor: param, grad, exp_avg, exp_avg_sq.
struct RadamLoop : ElementLoop<RadamLoop, RadamGroup, rules::RadamHyper, 4, true> {
  static constexpr bool kAvx512InCache = true;  // a square root and a division (multi_tensor.hpp)
  static constexpr bool kHalfTail = true;  // torch's 16-bit scalar tail (multi_tensor.hpp)

  template <class S>
  static rules::RadamHyper<compute_t<S>> hyper_of(const RadamGroup& G, double t) {
    return G.template at_step<S>(t);
  }

  // maximize and decoupled weight decay (the lane key), then whether the step is rectified
  // and whether each element says so itself. One group's tensors agree on the step count,
  // so on the optimizers' path rectified is one constant for the range; the lanes of a bowl
  // sweep reach rho_t > 5 at steps of their own (beta2 differs), so there each element
  // takes it from its own r_t, which is positive exactly on the rectified steps.
  static constexpr std::size_t kKeyFlags = 2;
  template <class Lanes, class T>
  auto flags(const rules::RadamHyper<T>& h, std::int32_t, const Arrays*) const {
    if constexpr (Lanes::value)
      return std::make_tuple(h.maximize, h.decoupled, std::false_type{}, std::true_type{});
    else
      return std::make_tuple(h.maximize, h.decoupled, h.rectified, std::false_type{});
  }
  template <class S, class Max, class Decoupled, class Rectified, class PerElement>
  static auto arrays(Max, Decoupled, Rectified, PerElement) {
    return Uses<InOut<>, In<>, InOut<>, InOut<>>{};
  }
  template <class S, class E, class Max, class Decoupled, class Rectified, class PerElement, class T>
  void element(const E& e, Max, Decoupled, Rectified, PerElement, T& p, T g, T& m, T& v) const {
    rules::RadamHyper<T> h = e.hyper();
    h.maximize = Max::value;
    h.decoupled = Decoupled::value;
    if constexpr (PerElement::value) h.rectified = h.rect > T(0);
    else h.rectified = Rectified::value;
    rules::radam<E::kScalarTail, typename Storage<S>::Round>(p, g, m, v, h);
  }
};

}  // namespace optbowl
