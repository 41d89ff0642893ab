// The multi-tensor CPU loop of QuickProp.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
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

  template <class S>
  rules::QuickpropHyper<compute_t<S>> hyper(std::int32_t tensor) const {
    using T = compute_t<S>;
    const QuickpropGroup& G = groups[group_of[tensor]];
    return {static_cast<T>(-G.lr), static_cast<T>(G.max_growth), G.maximize};
  }

  template <class T>
  std::uint32_t lane_key(std::int32_t tensor) const {
    return groups[group_of[tensor]].maximize ? 1u : 0u;
  }

  template <class S>
  void apply(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin,
             std::int64_t end) const {
    run<S>(a, tensor, begin, end, hyper<S>(tensor), UniformHyper{});
  }

  // S: the arrays' storage; the rule computes in compute_t<S>, each stored value rounded
  // to S (optbowl/half.hpp).
  template <class S, class Hyper>
  void run(const std::array<void*, K>& a, std::int32_t, std::int64_t begin, std::int64_t end,
           const rules::QuickpropHyper<compute_t<S>>& h, Hyper hyper) const {
    using T = compute_t<S>;
    using St = Storage<S>;
    S* OPTBOWL_RESTRICT p = static_cast<S*>(a[0]);
    const S* OPTBOWL_RESTRICT g = static_cast<const S*>(a[1]);
    S* OPTBOWL_RESTRICT prev_grad = static_cast<S*>(a[2]);
    S* OPTBOWL_RESTRICT prev_step = static_cast<S*>(a[3]);
    with_constant_flags(
        [&](auto maximize) {
          rules::QuickpropHyper<T> hc = h;
          hc.maximize = maximize;
          OPTBOWL_IVDEP
          for (std::int64_t i = begin; i < end; ++i) {
            T pi = St::load(p[i]), gi = St::load(prev_grad[i]), di = St::load(prev_step[i]);
            rules::quickprop(pi, St::load(g[i]), gi, di, hyper(hc, i));
            p[i] = St::store(pi), prev_grad[i] = St::store(gi), prev_step[i] = St::store(di);
          }
        },
        h.maximize);
  }
};

}  // namespace optbowl
