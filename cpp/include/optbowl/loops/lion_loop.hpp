// The multi-tensor CPU loop of Lion.
#pragma once
#include <cstdint>
#include <tuple>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/element_loop.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/lion.hpp"

namespace optbowl {

struct LionGroup {
  double lr, beta1, beta2, weight_decay;
  bool maximize;

  // For arrays stored as S: -lr is an add's alpha (rounded to a 16-bit parameter's dtype);
  // the lerp weights and the decay factor 1 - lr * weight_decay (computed in double) are
  // the plain conversions, as a multiplication by a Python float takes them.
  template <class S>
  OPTBOWL_HD rules::LionHyper<compute_t<S>> cast() const {
    using T = compute_t<S>;
    return {static_cast<T>(1.0 - beta1),        static_cast<T>(1.0 - beta2),
            scalar_through_storage<S>(-lr),      static_cast<T>(1.0 - lr * weight_decay),
            weight_decay != 0.0,                 maximize};
  }
};

template <class T>
struct LaneFields<rules::LionHyper<T>> {
  using H = rules::LionHyper<T>;
  static constexpr auto list =
      std::make_tuple(&H::one_minus_beta1, &H::one_minus_beta2, &H::neg_lr, &H::decay_factor);
};

// Pointers per tensor: param, grad, exp_avg.
struct LionLoop : ElementLoop<LionLoop, LionGroup, rules::LionHyper, 3, false> {
  static constexpr bool kAvx512InCache = false;  // no square root or division
  static constexpr bool kAvx512Half = true;  // its 16-bit steps run AVX-512 (multi_tensor.hpp)

  template <class S>
  static rules::LionHyper<compute_t<S>> hyper_of(const LionGroup& G, double) {
    return G.template cast<S>();
  }

  // maximize and whether the parameter decays (every array but the gradient read and
  // written: the default).
  static constexpr std::size_t kKeyFlags = 2;
  template <class Lanes, class T>
  auto flags(const rules::LionHyper<T>& h, std::int32_t, const Arrays*) const {
    return std::make_tuple(h.maximize, h.decay);
  }
  template <class S, class Max, class Decay>
  static auto arrays(Max, Decay) {
    return Uses<InOut<>, In<>, InOut<>>{};
  }
  template <class S, class E, class Max, class Decay, class T>
  void element(const E& e, Max, Decay, T& p, T g, T& m) const {
    rules::LionHyper<T> h = e.hyper();
    h.maximize = Max::value;
    h.decay = Decay::value;
    rules::lion<typename Storage<S>::Round>(p, g, m, h);
  }
};

}  // namespace optbowl
