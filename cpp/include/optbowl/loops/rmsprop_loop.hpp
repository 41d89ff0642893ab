// The multi-tensor CPU loop of RMSprop.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/loops/constant_flags.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/rmsprop.hpp"

namespace optbowl {

struct RmspropGroup {
  double lr, alpha, eps, weight_decay, momentum;
  bool centered, maximize;

  template <class T>
  rules::RmspropHyper<T> cast() const {
    return {static_cast<T>(-lr),          static_cast<T>(alpha),
            static_cast<T>(1.0 - alpha),  static_cast<T>(eps),
            static_cast<T>(weight_decay), static_cast<T>(momentum),
            centered,                     maximize};
  }
};

// Pointers per tensor: param, grad, square_avg, grad_avg (used when centered), momentum
// buffer (used when momentum > 0).
struct RmspropLoop {
  static constexpr std::size_t K = 5;
  static constexpr bool kAvx512InCache = true;  // square roots and divisions (multi_tensor.hpp)
  std::vector<RmspropGroup> groups;
  std::vector<std::int32_t> group_of;  // tensor -> group

  template <class T>
  rules::RmspropHyper<T> hyper(std::int32_t tensor) const {
    return groups[group_of[tensor]].template cast<T>();
  }

  template <class T>
  std::uint32_t lane_key(std::int32_t tensor) const {
    const rules::RmspropHyper<T> h = hyper<T>(tensor);
    return (h.maximize ? 1u : 0u) | (h.centered ? 2u : 0u) | (h.momentum > T(0) ? 4u : 0u);
  }

  template <class T>
  void apply(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin,
             std::int64_t end) const {
    run<T>(a, tensor, begin, end, hyper<T>(tensor), UniformHyper{});
  }

  template <class T, class Hyper>
  void run(const std::array<void*, K>& a, std::int32_t, std::int64_t begin, std::int64_t end,
           const rules::RmspropHyper<T>& h, Hyper hyper) const {
    T* OPTBOWL_RESTRICT p = static_cast<T*>(a[0]);
    const T* OPTBOWL_RESTRICT g = static_cast<const T*>(a[1]);
    T* OPTBOWL_RESTRICT square_avg = static_cast<T*>(a[2]);
    T* OPTBOWL_RESTRICT grad_avg = static_cast<T*>(a[3]);
    T* OPTBOWL_RESTRICT buf = static_cast<T*>(a[4]);
    // grad_avg / buf are given (non-null) whenever a centered / momentum group needs them
    // (the binding checks); a scratch element stands in for an array not given, and the
    // momentum branch of the rule is folded away with it.
    with_constant_flags(
        [&](auto maximize, auto centered, auto with_buf) {
          rules::RmspropHyper<T> hc = h;
          hc.maximize = maximize;
          hc.centered = centered;
          T unused_avg = T(0), unused_buf = T(0);
          OPTBOWL_IVDEP
          for (std::int64_t i = begin; i < end; ++i) {
            T& avg = decltype(centered)::value ? grad_avg[i] : unused_avg;
            T& mb = decltype(with_buf)::value ? buf[i] : unused_buf;
            rules::RmspropHyper<T> he = hyper(hc, i);
            if constexpr (!decltype(with_buf)::value) he.momentum = T(0);
            rules::rmsprop(p[i], g[i], square_avg[i], avg, mb, he);
          }
        },
        h.maximize, h.centered, buf != nullptr && h.momentum > T(0));
  }
};

}  // namespace optbowl
