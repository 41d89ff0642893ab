// The multi-tensor CPU loop of Rprop: per-group hyper-parameters, one rule per variant.
#pragma once
#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/element_loop.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/rprop.hpp"

namespace optbowl {

enum class RpropVariant : std::uint8_t { irprop_minus, rprop_minus, rprop_plus, irprop_plus, backtrack };

// Number of state arrays each variant keeps (after param and grad).
inline int rprop_state_count(RpropVariant v) {
  return (v == RpropVariant::rprop_plus || v == RpropVariant::irprop_plus) ? 3 : 2;
}

struct RpropGroup {
  double eta_minus, eta_plus, step_min, step_max;
  bool maximize;

  // For arrays stored as S: torch's single-tensor Rprop writes the factors into a tensor
  // of the parameter's dtype and clamps the step sizes there, so a bfloat16 or float16
  // parameter's etas and bounds are rounded to its dtype (for float32 and float64 this is
  // the plain conversion).
  template <class S>
  rules::RpropHyper<compute_t<S>> cast() const {
    return {scalar_through_storage<S>(eta_minus), scalar_through_storage<S>(eta_plus),
            scalar_through_storage<S>(step_min), scalar_through_storage<S>(step_max), maximize};
  }
};

template <class T>
struct LaneFields<rules::RpropHyper<T>> {
  using H = rules::RpropHyper<T>;
  static constexpr auto list = std::make_tuple(&H::eta_minus, &H::eta_plus, &H::step_min, &H::step_max);
};

// Pointers per tensor: param, grad, prev (direction for backtrack), step, update (+ only).
// With compact_state, prev/direction is an std::int8_t sign code (rules/rprop.hpp).
struct RpropLoop : ElementLoop<RpropLoop, RpropGroup, rules::RpropHyper, 5, false> {
  static constexpr bool kAvx512 = true;  // the int8 sign codes gain from AVX-512 (multi_tensor.hpp)
  RpropVariant variant = RpropVariant::irprop_minus;
  bool loss_increased = true;          // irprop+: undo moves on a sign change
  bool compact_state = false;          // prev as int8 sign codes

  // With the compact state, steps from memory prefetch in software (multi_tensor.hpp:
  // 0.90-0.97x the time); the float state, rprop+ and backtrack gained nothing.
  bool prefetches() const { return compact_state; }

  // Bytes per element of array k: the compact state's sign codes are one byte.
  template <class S>
  std::int64_t stream_bytes(std::size_t k) const {
    return k == 2 && compact_state ? 1 : static_cast<std::int64_t>(sizeof(S));
  }

  template <class S>
  static rules::RpropHyper<compute_t<S>> hyper_of(const RpropGroup& G, double) {
    return G.template cast<S>();
  }

  // maximize (from h), then iRprop+'s revert, the variant and the compact state as
  // constants: the loops vectorise (loops/constant_flags.hpp). The compact state is the
  // optimizers' option; lanes (the bowl sweep) always keep S.
  static constexpr std::size_t kKeyFlags = 1;
  template <class Lanes, class T>
  auto flags(const rules::RpropHyper<T>& h, std::int32_t, const Arrays*) const {
    const auto codes = [&] {
      if constexpr (Lanes::value) return std::false_type{};
      else return compact_state;
    }();
    return std::make_tuple(h.maximize, variant == RpropVariant::irprop_plus && loss_increased,
                           Choice<5>{static_cast<int>(variant)}, codes);
  }
  template <class S, class Max, class Revert, class Variant, class Codes>
  static auto arrays(Max, Revert, Variant, Codes) {
    constexpr auto v = static_cast<RpropVariant>(Variant::value);
    constexpr bool plus = v == RpropVariant::rprop_plus || v == RpropVariant::irprop_plus;
    using Prev = InOut<std::conditional_t<Codes::value, std::int8_t, void>>;
    return Uses<InOut<>, In<>, Prev, InOut<>, std::conditional_t<plus, InOut<>, Unused>>{};
  }
  // S: the parameters' storage (the rule computes in compute_t<S>, rounding to S where
  // torch's single-tensor Rprop rounds: optbowl/half.hpp); prev is compute_t<S>, or the
  // std::int8_t sign code.
  template <class S, class E, class Max, class Revert, class Variant, class Codes, class T, class P>
  void element(const E& e, Max, Revert, Variant, Codes, T& p, T g, P& prev, T& step, T& update) const {
    using R = typename Storage<S>::Round;
    constexpr auto v = static_cast<RpropVariant>(Variant::value);
    rules::RpropHyper<T> h = e.hyper();
    h.maximize = Max::value;
    if constexpr (v == RpropVariant::irprop_minus) rules::irprop_minus<R>(p, g, prev, step, h);
    else if constexpr (v == RpropVariant::rprop_minus) rules::rprop_minus<R>(p, g, prev, step, h);
    else if constexpr (v == RpropVariant::rprop_plus) rules::rprop_plus<R>(p, g, prev, step, update, true, h);
    else if constexpr (v == RpropVariant::irprop_plus)
      rules::rprop_plus<R>(p, g, prev, step, update, e.revert(Revert::value), h);
    else rules::backtrack<R>(p, g, prev, step, h);
  }
};

}  // namespace optbowl
