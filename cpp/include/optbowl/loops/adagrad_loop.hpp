// The multi-tensor CPU loop of AdaGrad (dense gradients).
#pragma once
#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/constant_flags.hpp"
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

  // torch's fused kernel steps a bfloat16 or float16 tensor's last numel % 16 elements in a
  // scalar loop that takes the hyper-parameters in float32, not rounded to the tensor's
  // dtype as its vector body does; the arithmetic is the body's (found by testing against
  // torch 2.13, every size 1..130, with and without weight decay and lr_decay).
  static constexpr bool kHalfTail = true;
  static constexpr std::int64_t kHalfTailWidth = 16;
  template <class S>
  rules::AdagradHyper<compute_t<S>> half_tail_hyper(std::int32_t tensor) const {
    return hyper<compute_t<S>>(tensor);
  }

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

// The loop of AdaGrad with 8-bit or bfloat16 state (loops/quantized_loop.hpp runs it).
// One unsigned state (the sum of squares).
struct QuantizedAdagradKind {
  using Group = AdagradGroup;
  template <class T>
  using Hyper = rules::AdagradHyper<T>;
  static constexpr std::size_t S = 1;
  static constexpr bool kSigned[S] = {false};

  template <class F>
  static void with_flags(const Group&, const Hyper<float>& h, F&& f) {
    with_constant_flags(
        [&](auto maximize) {
          Hyper<float> hc = h;
          hc.maximize = maximize;
          f(hc, std::integral_constant<std::size_t, 1>{},
            [](float& p, float g, const Hyper<float>& hh, float& sum) { rules::adagrad(p, g, sum, hh); });
        },
        h.maximize);
  }
};

}  // namespace optbowl
