// The multi-tensor CPU loop of AdaGrad (dense gradients).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/element_loop.hpp"
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

template <class T>
struct LaneFields<rules::AdagradHyper<T>> {
  using H = rules::AdagradHyper<T>;
  static constexpr auto list = std::make_tuple(&H::neg_clr, &H::weight_decay, &H::eps);
};

// Pointers per tensor: param, grad, sum.
struct AdagradLoop : ElementLoop<AdagradLoop, AdagradGroup, rules::AdagradHyper, 3, true> {
  static constexpr bool kAvx512InCache = true;  // square roots and divisions (multi_tensor.hpp)

  template <class S>
  static rules::AdagradHyper<compute_t<S>> hyper_of(const AdagradGroup& G, double t) {
    return G.template at_step<S>(t);
  }

  // The flag maximize, every array but the gradient read and written: the defaults.
  template <class S, class E, class Max, class T>
  void element(const E& e, Max, T& p, T g, T& sum) const {
    rules::AdagradHyper<T> h = e.hyper();
    h.maximize = Max::value;
    rules::adagrad(p, g, sum, h);
  }
};

}  // namespace optbowl
