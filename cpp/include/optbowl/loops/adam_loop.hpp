// The multi-tensor CPU loop of Adam, AdamW and AMSGrad.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/constant_flags.hpp"
#include "optbowl/loops/element_loop.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/adam.hpp"

namespace optbowl {

struct AdamGroup {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad, maximize, decoupled_weight_decay;

  // The rule's scalars at step t (counting from 1): bias corrections in double, as torch
  // computes them, then rounded to T; host and device (a device step counter is read by
  // the CUDA kernels).
  template <class T>
  OPTBOWL_HD rules::AdamHyper<T> at_step(double t) const {
    const double step_size = lr / (1.0 - std::pow(beta1, t));
    const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, t));
    // AdamW even without weight decay (the factor is then 1): torch's fused kernel in its
    // AdamW mode squares the gradient, not its negation (rules/adam.hpp)
    const bool decoupled = decoupled_weight_decay;
    return {static_cast<T>(1.0 - beta1),
            static_cast<T>(beta2),
            static_cast<T>(1.0 - beta2),
            static_cast<T>(-step_size),
            static_cast<T>(bias_correction2_sqrt),
            static_cast<T>(eps),
            static_cast<T>(decoupled_weight_decay ? 0.0 : weight_decay),
            static_cast<T>(1.0 - lr * weight_decay),
            decoupled,
            maximize};
  }
};

template <class T>
struct LaneFields<rules::AdamHyper<T>> {
  using H = rules::AdamHyper<T>;
  static constexpr auto list =
      std::make_tuple(&H::one_minus_beta1, &H::beta2, &H::one_minus_beta2, &H::neg_step_size,
                      &H::bias_correction2_sqrt, &H::eps, &H::weight_decay, &H::decay_factor);
};

// Pointers per tensor: param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (used with amsgrad).
struct AdamLoop : ElementLoop<AdamLoop, AdamGroup, rules::AdamHyper, 5, true> {
  static constexpr bool kAvx512InCache = true;  // square roots and divisions (multi_tensor.hpp)

  // Bias corrections in double, as torch computes them, then rounded to the type the
  // rule computes in (float for 16-bit storage: torch's fused kernel takes opmath_t(x)).
  template <class S>
  static rules::AdamHyper<compute_t<S>> hyper_of(const AdamGroup& G, double t) {
    return G.template at_step<compute_t<S>>(t);
  }

  // maximize, decoupled weight decay, amsgrad (loops/element_loop.hpp).
  static constexpr std::size_t kKeyFlags = 3;
  template <class Lanes, class T>
  auto flags(const rules::AdamHyper<T>& h, std::int32_t tensor, const Arrays*) const {
    return std::make_tuple(h.maximize, h.decoupled, groups[group_of[tensor]].amsgrad);
  }
  template <class S, class Max, class Decoupled, class Ams>
  static auto arrays(Max, Decoupled, Ams) {
    return Uses<InOut<>, In<>, InOut<>, InOut<>, std::conditional_t<Ams::value, InOut<>, Unused>>{};
  }
  template <class S, class E, class Max, class Decoupled, class Ams, class T>
  void element(const E& e, Max, Decoupled, Ams, T& p, T g, T& m, T& v, T& vmax) const {
    rules::AdamHyper<T> h = e.hyper();
    h.maximize = Max::value;
    h.decoupled = Decoupled::value;
    if constexpr (Ams::value) rules::amsgrad(p, g, m, v, vmax, h);
    else rules::adam(p, g, m, v, h);
  }

  // Each tensor's last numel % (32 bytes / sizeof(T)) elements: torch's fused kernel rounds
  // them in a scalar loop of its own (rules/adam.hpp), and so does apply_tail (multi_tensor.hpp
  // splits the chunks).
  bool torch_tail(std::int32_t) const { return true; }
  template <class T>
  auto tail_flags(const rules::AdamHyper<T>&, std::int32_t tensor, const Arrays*) const {
    return std::make_tuple(std::false_type{}, std::false_type{}, groups[group_of[tensor]].amsgrad);
  }
  template <class S, class E, class Max, class Decoupled, class Ams, class T>
  void tail_element(const E& e, Max, Decoupled, Ams, T& p, T g, T& m, T& v, T& vmax) const {
    if constexpr (Ams::value) rules::amsgrad_tail(p, g, m, v, vmax, e.hyper());
    else rules::adam_tail(p, g, m, v, e.hyper());
  }
};

// The loop of Adam, AdamW and AMSGrad with 8-bit or bfloat16 state (loops/quantized_loop.hpp
// runs it): exp_avg (signed), exp_avg_sq and max_exp_avg_sq (unsigned; amsgrad only).
struct QuantizedAdamKind {
  using Group = AdamGroup;
  template <class T>
  using Hyper = rules::AdamHyper<T>;
  static constexpr std::size_t S = 3;
  static constexpr bool kSigned[S] = {true, false, false};

  template <class F>
  static void with_flags(const Group& g, const Hyper<float>& h, F&& f) {
    with_constant_flags(
        [&](auto maximize, auto decoupled, auto ams) {
          Hyper<float> hc = h;
          hc.maximize = maximize;
          hc.decoupled = decoupled;
          if constexpr (decltype(ams)::value)
            f(hc, std::integral_constant<std::size_t, 3>{},
              [](float& p, float grad, const Hyper<float>& hh, float& m, float& v, float& vmax) {
                rules::amsgrad(p, grad, m, v, vmax, hh);
              });
          else
            f(hc, std::integral_constant<std::size_t, 2>{},
              [](float& p, float grad, const Hyper<float>& hh, float& m, float& v) { rules::adam(p, grad, m, v, hh); });
        },
        h.maximize, h.decoupled, g.amsgrad);
  }
};

}  // namespace optbowl
