// The multi-tensor CPU loop of AdaGrad (dense gradients).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/loops/constant_flags.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/adagrad.hpp"

namespace optbowl {

struct AdagradGroup {
  double lr, lr_decay, weight_decay, eps;
  bool maximize;

  // The rule's scalars at step t (counting from 1), rounded to T; host and device (a
  // device step counter is read by the CUDA kernels).
  template <class T>
  OPTBOWL_HD rules::AdagradHyper<T> at_step(double t) const {
    const double clr = rules::adagrad_clr(lr, lr_decay, t);
    return {static_cast<T>(-clr), static_cast<T>(weight_decay), static_cast<T>(eps), maximize};
  }
};

// Pointers per tensor: param, grad, sum.
struct AdagradLoop {
  static constexpr std::size_t K = 3;
  static constexpr bool kAvx512InCache = true;  // square roots and divisions (multi_tensor.hpp)
  std::vector<AdagradGroup> groups;
  std::vector<std::int32_t> group_of;  // tensor -> group
  std::vector<double> steps;           // tensor -> step count t (after this step's increment)

  template <class T>
  rules::AdagradHyper<T> hyper(std::int32_t tensor) const {
    return groups[group_of[tensor]].template at_step<T>(steps[tensor]);
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
           const rules::AdagradHyper<T>& h, Hyper hyper) const {
    T* OPTBOWL_RESTRICT p = static_cast<T*>(a[0]);
    const T* OPTBOWL_RESTRICT g = static_cast<const T*>(a[1]);
    T* OPTBOWL_RESTRICT sum = static_cast<T*>(a[2]);
    with_constant_flags(
        [&](auto maximize) {
          rules::AdagradHyper<T> hc = h;
          hc.maximize = maximize;
          OPTBOWL_IVDEP
          for (std::int64_t i = begin; i < end; ++i) rules::adagrad(p[i], g[i], sum[i], hyper(hc, i));
        },
        h.maximize);
  }
};

}  // namespace optbowl
