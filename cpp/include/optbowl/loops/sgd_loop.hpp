// The multi-tensor CPU loop of SGD (plain, momentum, Nesterov).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/loops/constant_flags.hpp"
#include "optbowl/rules/sgd.hpp"

namespace optbowl {

struct SgdGroup {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
};

// Pointers per tensor: param, grad, momentum buffer (read and written only when momentum != 0).
struct SgdLoop {
  static constexpr std::size_t K = 3;
  std::vector<SgdGroup> groups;
  std::vector<std::int32_t> group_of;  // tensor -> group
  std::vector<double> steps;           // tensor -> step count t (after this step's increment)

  template <class T>
  rules::SgdHyper<T> hyper(std::int32_t tensor) const {
    const SgdGroup& G = groups[group_of[tensor]];
    return {static_cast<T>(-G.lr),        static_cast<T>(G.weight_decay),
            static_cast<T>(G.momentum),   static_cast<T>(1.0 - G.dampening),
            G.nesterov,                   G.maximize,
            steps[tensor] == 1.0};
  }

  template <class T>
  void apply(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin,
             std::int64_t end) const {
    const rules::SgdHyper<T> h = hyper<T>(tensor);
    T* OPTBOWL_RESTRICT p = static_cast<T*>(a[0]);
    const T* OPTBOWL_RESTRICT g = static_cast<const T*>(a[1]);
    T* OPTBOWL_RESTRICT buf = static_cast<T*>(a[2]);
    with_constant_flags(
        [&](auto maximize, auto with_buf) {
          rules::SgdHyper<T> hc = h;
          hc.maximize = maximize;
          if constexpr (decltype(with_buf)::value) {
            for (std::int64_t i = begin; i < end; ++i) rules::sgd(p[i], g[i], buf[i], hc);
          } else {  // no buffers given: momentum is 0 in every group
            hc.momentum = T(0);
            T unused = T(0);
            for (std::int64_t i = begin; i < end; ++i) rules::sgd(p[i], g[i], unused, hc);
          }
        },
        h.maximize, buf != nullptr);
  }
};

}  // namespace optbowl
