// The multi-tensor CPU loop of AdaGrad (dense gradients).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/rules/adagrad.hpp"

namespace optbowl {

struct AdagradGroup {
  double lr, lr_decay, weight_decay, eps;
  bool maximize;
};

// Pointers per tensor: param, grad, sum.
struct AdagradLoop {
  static constexpr std::size_t K = 3;
  std::vector<AdagradGroup> groups;
  std::vector<std::int32_t> group_of;  // tensor -> group
  std::vector<double> steps;           // tensor -> step count t (after this step's increment)

  template <class T>
  rules::AdagradHyper<T> hyper(std::int32_t tensor) const {
    const AdagradGroup& G = groups[group_of[tensor]];
    const double clr = rules::adagrad_clr(G.lr, G.lr_decay, steps[tensor]);
    return {static_cast<T>(-clr), static_cast<T>(G.weight_decay), static_cast<T>(G.eps), G.maximize};
  }

  template <class T>
  void apply(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin,
             std::int64_t end) const {
    const rules::AdagradHyper<T> h = hyper<T>(tensor);
    T* OPTBOWL_RESTRICT p = static_cast<T*>(a[0]);
    const T* OPTBOWL_RESTRICT g = static_cast<const T*>(a[1]);
    T* OPTBOWL_RESTRICT sum = static_cast<T*>(a[2]);
    for (std::int64_t i = begin; i < end; ++i) rules::adagrad(p[i], g[i], sum[i], h);
  }
};

}  // namespace optbowl
