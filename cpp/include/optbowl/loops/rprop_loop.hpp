// The multi-tensor CPU loop of Rprop: per-group hyper-parameters, one rule per variant.
#pragma once
#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "optbowl/config.hpp"
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

  template <class T>
  rules::RpropHyper<T> cast() const {
    return {static_cast<T>(eta_minus), static_cast<T>(eta_plus), static_cast<T>(step_min),
            static_cast<T>(step_max), maximize};
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
  template <class T>
  std::int64_t stream_bytes(std::size_t k) const {
    return k == 2 && compact_state ? 1 : static_cast<std::int64_t>(sizeof(T));
  }

  template <class T>
  rules::RpropHyper<T> hyper(std::int32_t tensor) const {
    return groups[group_of[tensor]].template cast<T>();
  }

  // The flags run() takes from h (loops/lanes.hpp).
  template <class T>
  std::uint32_t lane_key(std::int32_t tensor) const {
    return hyper<T>(tensor).maximize ? 1u : 0u;
  }

  template <class T>
  void apply(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin,
             std::int64_t end) const {
    run<T>(a, tensor, begin, end, hyper<T>(tensor), UniformHyper{});
  }

  template <class T, class Hyper>
  void run(const std::array<void*, K>& a, std::int32_t, std::int64_t begin, std::int64_t end,
           const rules::RpropHyper<T>& h, Hyper hyper) const {
    // Compact state is the optimizers' option; lanes (the bowl sweep) always keep T.
    if constexpr (std::is_same<Hyper, UniformHyper>::value) {
      if (compact_state) return run_stored<T, std::int8_t>(a, begin, end, h, hyper);
    }
    run_stored<T, T>(a, begin, end, h, hyper);
  }

  // T: the parameters' dtype; P: how prev is stored (T, or std::int8_t sign codes).
  template <class T, class P, class Hyper>
  void run_stored(const std::array<void*, K>& a, std::int64_t begin, std::int64_t end,
                  const rules::RpropHyper<T>& h, Hyper hyper) const {
    T* OPTBOWL_RESTRICT p = static_cast<T*>(a[0]);
    const T* OPTBOWL_RESTRICT g = static_cast<const T*>(a[1]);
    P* OPTBOWL_RESTRICT prev = static_cast<P*>(a[2]);
    T* OPTBOWL_RESTRICT step = static_cast<T*>(a[3]);
    T* OPTBOWL_RESTRICT update = static_cast<T*>(a[4]);
    // maximize and iRprop+'s revert as compile-time constants: the loops vectorise
    // (loops/constant_flags.hpp).
    with_constant_flags(
        [&](auto maximize, auto revert) {
          rules::RpropHyper<T> hc = h;
          hc.maximize = maximize;
          switch (variant) {
            case RpropVariant::irprop_minus:
              OPTBOWL_IVDEP
              for (std::int64_t i = begin; i < end; ++i) rules::irprop_minus(p[i], g[i], prev[i], step[i], hyper(hc, i));
              break;
            case RpropVariant::rprop_minus:
              OPTBOWL_IVDEP
              for (std::int64_t i = begin; i < end; ++i) rules::rprop_minus(p[i], g[i], prev[i], step[i], hyper(hc, i));
              break;
            case RpropVariant::rprop_plus:
              OPTBOWL_IVDEP
              for (std::int64_t i = begin; i < end; ++i)
                rules::rprop_plus(p[i], g[i], prev[i], step[i], update[i], true, hyper(hc, i));
              break;
            case RpropVariant::irprop_plus:
              OPTBOWL_IVDEP
              for (std::int64_t i = begin; i < end; ++i)
                rules::rprop_plus(p[i], g[i], prev[i], step[i], update[i], hyper.revert(i, bool(revert)),
                                  hyper(hc, i));
              break;
            case RpropVariant::backtrack:
              OPTBOWL_IVDEP
              for (std::int64_t i = begin; i < end; ++i) rules::backtrack(p[i], g[i], prev[i], step[i], hyper(hc, i));
              break;
          }
        },
        h.maximize, variant == RpropVariant::irprop_plus && loss_increased);
  }
};

}  // namespace optbowl
