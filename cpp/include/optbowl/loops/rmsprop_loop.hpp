// The multi-tensor CPU loop of RMSprop.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/element_loop.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/rmsprop.hpp"

namespace optbowl {

struct RmspropGroup {
  double lr, alpha, eps, weight_decay, momentum;
  bool centered, maximize;

  // For arrays stored as S. torch's single-tensor RMSprop hands the weight decay, and with
  // momentum -lr, to Tensor.add as its alpha, which rounds it to the parameter's dtype;
  // the other scalars (mul_, addcmul_, addcdiv_'s value) it takes as floats. For float32
  // and float64 every one is the plain conversion.
  template <class S>
  rules::RmspropHyper<compute_t<S>> cast() const {
    using T = compute_t<S>;
    return {momentum > 0.0 ? scalar_through_storage<S>(-lr) : static_cast<T>(-lr),
            static_cast<T>(alpha),
            static_cast<T>(1.0 - alpha),
            static_cast<T>(eps),
            scalar_through_storage<S>(weight_decay),
            static_cast<T>(momentum),
            centered,
            maximize};
  }
};

template <class T>
struct LaneFields<rules::RmspropHyper<T>> {
  using H = rules::RmspropHyper<T>;
  static constexpr auto list =
      std::make_tuple(&H::neg_lr, &H::alpha, &H::one_minus_alpha, &H::eps, &H::weight_decay, &H::momentum);
};

// Pointers per tensor: param, grad, square_avg, grad_avg (used when centered), momentum
// buffer (used when momentum > 0).
struct RmspropLoop : ElementLoop<RmspropLoop, RmspropGroup, rules::RmspropHyper, 5, false> {
  static constexpr bool kAvx512InCache = true;  // square roots and divisions (multi_tensor.hpp)
  static constexpr bool kHalfTail = true;  // torch's 16-bit scalar tail (multi_tensor.hpp)

  template <class S>
  static rules::RmspropHyper<compute_t<S>> hyper_of(const RmspropGroup& G, double) {
    return G.template cast<S>();
  }

  // maximize, centered, momentum. grad_avg / buf are given (non-null) whenever a centered /
  // momentum group needs them (the binding checks); an array not given is Unused, and the
  // momentum branch of the rule is folded away with it.
  static constexpr std::size_t kKeyFlags = 3;
  template <class Lanes, class T>
  auto flags(const rules::RmspropHyper<T>& h, std::int32_t, const Arrays* a) const {
    return std::make_tuple(h.maximize, h.centered, given(a, 4) && h.momentum > T(0));
  }
  template <class S, class Max, class Centered, class WithBuf>
  static auto arrays(Max, Centered, WithBuf) {
    return Uses<InOut<>, In<>, InOut<>, std::conditional_t<Centered::value, InOut<>, Unused>,
                std::conditional_t<WithBuf::value, InOut<>, Unused>>{};
  }
  // For 16-bit storage the rule rounds each intermediate result to S where torch's
  // single-tensor RMSprop does (optbowl/half.hpp).
  template <class S, class E, class Max, class Centered, class WithBuf, class T>
  void element(const E& e, Max, Centered, WithBuf, T& p, T g, T& v, T& avg, T& buf) const {
    rules::RmspropHyper<T> h = e.hyper();
    h.maximize = Max::value;
    h.centered = Centered::value;
    if constexpr (!WithBuf::value) h.momentum = T(0);
    rules::rmsprop<E::kScalarTail, typename Storage<S>::Round>(p, g, v, avg, buf, h);
  }
};

}  // namespace optbowl
