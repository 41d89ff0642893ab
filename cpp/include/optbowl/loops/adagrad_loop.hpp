// The multi-tensor CPU loop of AdaGrad (dense gradients).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/constant_flags.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/adagrad.hpp"

namespace optbowl {

struct AdagradGroup {
  double lr, lr_decay, weight_decay, eps;
  bool maximize;

  // The rule's scalars at step t (counting from 1) for arrays stored as S, rounded to S
  // (torch's fused kernel takes scalar_t(x): a bfloat16 or float16 array's scalars are
  // rounded to its dtype, then computed with in float); host and device (a device step
  // counter is read by the CUDA kernels).
  template <class S>
  OPTBOWL_HD rules::AdagradHyper<compute_t<S>> at_step(double t) const {
    const double clr = rules::adagrad_clr(lr, lr_decay, t);
    return {-scalar_through_storage<S>(clr), scalar_through_storage<S>(weight_decay),
            scalar_through_storage<S>(eps), maximize};
  }
};

// Pointers per tensor: param, grad, sum.
struct AdagradLoop {
  static constexpr std::size_t K = 3;
  static constexpr bool kAvx512InCache = true;  // square roots and divisions (multi_tensor.hpp)
  std::vector<AdagradGroup> groups;
  std::vector<std::int32_t> group_of;  // tensor -> group
  std::vector<double> steps;           // tensor -> step count t (after this step's increment)

  template <class S>
  rules::AdagradHyper<compute_t<S>> hyper(std::int32_t tensor) const {
    return groups[group_of[tensor]].template at_step<S>(steps[tensor]);
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

  // S: the arrays' storage; the rule computes in compute_t<S> (optbowl/half.hpp).
  template <class S, class Hyper>
  void run(const std::array<void*, K>& a, std::int32_t, std::int64_t begin, std::int64_t end,
           const rules::AdagradHyper<compute_t<S>>& h, Hyper hyper) const {
    using T = compute_t<S>;
    using St = Storage<S>;
    S* OPTBOWL_RESTRICT p = static_cast<S*>(a[0]);
    const S* OPTBOWL_RESTRICT g = static_cast<const S*>(a[1]);
    S* OPTBOWL_RESTRICT sum = static_cast<S*>(a[2]);
    with_constant_flags(
        [&](auto maximize) {
          rules::AdagradHyper<T> hc = h;
          hc.maximize = maximize;
          OPTBOWL_IVDEP
          for (std::int64_t i = begin; i < end; ++i) {
            T pi = St::load(p[i]), si = St::load(sum[i]);
            rules::adagrad(pi, St::load(g[i]), si, hyper(hc, i));
            p[i] = St::store(pi), sum[i] = St::store(si);
          }
        },
        h.maximize);
  }
};

}  // namespace optbowl
