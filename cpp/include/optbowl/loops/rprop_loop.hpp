// The multi-tensor CPU loop of Rprop: per-group hyper-parameters, one rule per variant.
#pragma once
#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/constant_flags.hpp"
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

// Pointers per tensor: param, grad, prev (direction for backtrack), step, update (+ only).
// With compact_state, prev/direction is an std::int8_t sign code (rules/rprop.hpp).
struct RpropLoop {
  static constexpr std::size_t K = 5;
  static constexpr bool kAvx512 = true;  // the int8 sign codes gain from AVX-512 (multi_tensor.hpp)
  RpropVariant variant = RpropVariant::irprop_minus;
  std::vector<RpropGroup> groups;
  std::vector<std::int32_t> group_of;  // tensor -> group
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
  rules::RpropHyper<compute_t<S>> hyper(std::int32_t tensor) const {
    return groups[group_of[tensor]].template cast<S>();
  }

  // The flags run() takes from h (loops/lanes.hpp).
  template <class T>
  std::uint32_t lane_key(std::int32_t tensor) const {
    return hyper<T>(tensor).maximize ? 1u : 0u;
  }

  template <class S>
  void apply(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin,
             std::int64_t end) const {
    run<S>(a, tensor, begin, end, hyper<S>(tensor), UniformHyper{});
  }

  template <class S, class Hyper>
  void run(const std::array<void*, K>& a, std::int32_t, std::int64_t begin, std::int64_t end,
           const rules::RpropHyper<compute_t<S>>& h, Hyper hyper) const {
    // Compact state is the optimizers' option; lanes (the bowl sweep) always keep S.
    if constexpr (std::is_same<Hyper, UniformHyper>::value) {
      if (compact_state) return run_stored<S, std::int8_t>(a, begin, end, h, hyper);
    }
    run_stored<S, S>(a, begin, end, h, hyper);
  }

  // S: the parameters' storage (the rule computes in compute_t<S>, rounding to S where
  // torch's single-tensor Rprop rounds: optbowl/half.hpp); P: how prev is stored (S, or
  // std::int8_t sign codes).
  template <class S, class P, class Hyper>
  void run_stored(const std::array<void*, K>& a, std::int64_t begin, std::int64_t end,
                  const rules::RpropHyper<compute_t<S>>& h, Hyper hyper) const {
    using T = compute_t<S>;
    using St = Storage<S>;
    using R = typename St::Round;
    constexpr bool kCodes = std::is_same<P, std::int8_t>::value;
    using PC = std::conditional_t<kCodes, std::int8_t, T>;  // prev as the rule takes it
    S* OPTBOWL_RESTRICT p = static_cast<S*>(a[0]);
    const S* OPTBOWL_RESTRICT g = static_cast<const S*>(a[1]);
    P* OPTBOWL_RESTRICT prev = static_cast<P*>(a[2]);
    S* OPTBOWL_RESTRICT step = static_cast<S*>(a[3]);
    S* OPTBOWL_RESTRICT update = static_cast<S*>(a[4]);
    const auto load_prev = [](P x) -> PC {
      if constexpr (kCodes) return x; else return St::load(x);
    };
    const auto store_prev = [](PC x) -> P {
      if constexpr (kCodes) return x; else return St::store(x);
    };
    // One element: load what the variant uses, run `rule` on it, store it back.
    const auto element = [&](std::int64_t i, auto&& rule) {
      T pi = St::load(p[i]), si = St::load(step[i]);
      PC qi = load_prev(prev[i]);
      rule(pi, St::load(g[i]), qi, si);
      p[i] = St::store(pi), step[i] = St::store(si), prev[i] = store_prev(qi);
    };
    // maximize and iRprop+'s revert as compile-time constants: the loops vectorise
    // (loops/constant_flags.hpp).
    with_constant_flags(
        [&](auto maximize, auto revert) {
          rules::RpropHyper<T> hc = h;
          hc.maximize = maximize;
          switch (variant) {
            case RpropVariant::irprop_minus:
              OPTBOWL_IVDEP
              for (std::int64_t i = begin; i < end; ++i)
                element(i, [&](T& pi, T gi, PC& qi, T& si) { rules::irprop_minus<R>(pi, gi, qi, si, hyper(hc, i)); });
              break;
            case RpropVariant::rprop_minus:
              OPTBOWL_IVDEP
              for (std::int64_t i = begin; i < end; ++i)
                element(i, [&](T& pi, T gi, PC& qi, T& si) { rules::rprop_minus<R>(pi, gi, qi, si, hyper(hc, i)); });
              break;
            case RpropVariant::rprop_plus:
              OPTBOWL_IVDEP
              for (std::int64_t i = begin; i < end; ++i) {
                T ui = St::load(update[i]);
                element(i, [&](T& pi, T gi, PC& qi, T& si) { rules::rprop_plus<R>(pi, gi, qi, si, ui, true, hyper(hc, i)); });
                update[i] = St::store(ui);
              }
              break;
            case RpropVariant::irprop_plus:
              OPTBOWL_IVDEP
              for (std::int64_t i = begin; i < end; ++i) {
                T ui = St::load(update[i]);
                element(i, [&](T& pi, T gi, PC& qi, T& si) {
                  rules::rprop_plus<R>(pi, gi, qi, si, ui, hyper.revert(i, bool(revert)), hyper(hc, i));
                });
                update[i] = St::store(ui);
              }
              break;
            case RpropVariant::backtrack:
              OPTBOWL_IVDEP
              for (std::int64_t i = begin; i < end; ++i)
                element(i, [&](T& pi, T gi, PC& qi, T& si) { rules::backtrack<R>(pi, gi, qi, si, hyper(hc, i)); });
              break;
          }
        },
        h.maximize, variant == RpropVariant::irprop_plus && loss_increased);
  }
};

}  // namespace optbowl
