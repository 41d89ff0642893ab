// The multi-tensor CPU loop of Adamax.
#pragma once
#include <cstdint>
#include <tuple>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/element_loop.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/adamax.hpp"

namespace optbowl {

struct AdamaxGroup {
  double lr, beta1, beta2, eps, weight_decay;
  bool maximize;

  // The rule's scalars at step t (counting from 1). For arrays stored as S: 1 - beta1 (a
  // lerp's weight), beta2 (a multiplication's scalar) and -lr / (1 - beta1^t) (addcdiv's
  // value, computed in double) stay in the compute type; eps (an added scalar) and
  // weight_decay (an add's alpha) are rounded to a 16-bit parameter's dtype first.
  template <class S>
  rules::AdamaxHyper<compute_t<S>> at_step(double t) const {
    using T = compute_t<S>;
    return {static_cast<T>(1.0 - beta1),          static_cast<T>(beta2),
            scalar_through_storage<S>(eps),       scalar_through_storage<S>(weight_decay),
            static_cast<T>(-rules::adamax_clr(lr, beta1, t)), maximize};
  }
};

template <class T>
struct LaneFields<rules::AdamaxHyper<T>> {
  using H = rules::AdamaxHyper<T>;
  static constexpr auto list =
      std::make_tuple(&H::one_minus_beta1, &H::beta2, &H::eps, &H::weight_decay, &H::neg_clr);
};

// Pointers per tensor: param, grad, exp_avg, exp_inf.
struct AdamaxLoop : ElementLoop<AdamaxLoop, AdamaxGroup, rules::AdamaxHyper, 4, true> {
  static constexpr bool kAvx512InCache = true;  // a division (multi_tensor.hpp)
  static constexpr bool kHalfTail = true;  // torch's 16-bit scalar tail (multi_tensor.hpp)

  template <class S>
  static rules::AdamaxHyper<compute_t<S>> hyper_of(const AdamaxGroup& G, double t) {
    return G.template at_step<S>(t);
  }

  // maximize (the default arrays: every one read and written but the gradient).
  static constexpr std::size_t kKeyFlags = 1;
  template <class Lanes, class T>
  auto flags(const rules::AdamaxHyper<T>& h, std::int32_t, const Arrays*) const {
    return std::make_tuple(h.maximize);
  }
  template <class S, class Max>
  static auto arrays(Max) {
    return Uses<InOut<>, In<>, InOut<>, InOut<>>{};
  }
  template <class S, class E, class Max, class T>
  void element(const E& e, Max, T& p, T g, T& m, T& u) const {
    rules::AdamaxHyper<T> h = e.hyper();
    h.maximize = Max::value;
    rules::adamax<E::kScalarTail, typename Storage<S>::Round>(p, g, m, u, h);
  }
};

}  // namespace optbowl
