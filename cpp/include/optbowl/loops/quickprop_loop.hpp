// The multi-tensor CPU loop of QuickProp.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/loops/constant_flags.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/quickprop.hpp"

namespace optbowl {

struct QuickpropGroup {
  double lr, max_growth;
  bool maximize;
};

// Pointers per tensor: param, grad, previous gradient, previous step.
struct QuickpropLoop {
  static constexpr std::size_t K = 4;
  static constexpr bool kAvx512 = true;  // its selects gain on Intel (multi_tensor.hpp)
  std::vector<QuickpropGroup> groups;
  std::vector<std::int32_t> group_of;  // tensor -> group

  template <class T>
  rules::QuickpropHyper<T> hyper(std::int32_t tensor) const {
    const QuickpropGroup& G = groups[group_of[tensor]];
    return {static_cast<T>(-G.lr), static_cast<T>(G.max_growth), G.maximize};
  }

  template <class T>
  std::uint32_t lane_key(std::int32_t tensor) const {
    return groups[group_of[tensor]].maximize ? 1u : 0u;
  }

  template <class T>
  void apply(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin,
             std::int64_t end) const {
    run<T>(a, tensor, begin, end, hyper<T>(tensor), UniformHyper{});
  }

  template <class T, class Hyper>
  void run(const std::array<void*, K>& a, std::int32_t, std::int64_t begin, std::int64_t end,
           const rules::QuickpropHyper<T>& h, Hyper hyper) const {
    T* OPTBOWL_RESTRICT p = static_cast<T*>(a[0]);
    const T* OPTBOWL_RESTRICT g = static_cast<const T*>(a[1]);
    T* OPTBOWL_RESTRICT prev_grad = static_cast<T*>(a[2]);
    T* OPTBOWL_RESTRICT prev_step = static_cast<T*>(a[3]);
    with_constant_flags(
        [&](auto maximize) {
          rules::QuickpropHyper<T> hc = h;
          hc.maximize = maximize;
          OPTBOWL_IVDEP
          for (std::int64_t i = begin; i < end; ++i)
            rules::quickprop(p[i], g[i], prev_grad[i], prev_step[i], hyper(hc, i));
        },
        h.maximize);
  }
};

}  // namespace optbowl
