// The multi-tensor CPU loop of SGD (plain, momentum, Nesterov).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/element_loop.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/sgd.hpp"

namespace optbowl {

struct SgdGroup {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
  // Round each tensor's scalar tail as torch's fused=True kernel does (rules/sgd.hpp); else
  // every element as its body, and as torch's foreach and single-tensor paths.
  bool fused_tail = false;
};

template <class T>
struct LaneFields<rules::SgdHyper<T>> {
  using H = rules::SgdHyper<T>;
  static constexpr auto list = std::make_tuple(&H::neg_lr, &H::weight_decay, &H::momentum, &H::one_minus_dampening,
                                               &H::nesterov_momentum);
};

// Pointers per tensor: param, grad, momentum buffer (read and written only when momentum != 0).
struct SgdLoop : ElementLoop<SgdLoop, SgdGroup, rules::SgdHyper, 3, true> {
  static constexpr bool kAvx512Wide = true;  // on Zen 5, at every size (multi_tensor.hpp)
  static constexpr bool kHalfTail = true;  // torch's 16-bit scalar tail (multi_tensor.hpp)

  // For 16-bit storage, the scalars torch's single-tensor SGD hands to Tensor.add as its
  // alpha are rounded to the parameter's dtype; buf.mul_(momentum) takes momentum as a
  // float (optbowl/half.hpp). For float32 and float64 both are the plain conversion.
  template <class S>
  static rules::SgdHyper<compute_t<S>> hyper_of(const SgdGroup& G, double t) {
    using T = compute_t<S>;
    const T momentum = static_cast<T>(G.momentum);
    return {scalar_through_storage<S>(-G.lr),
            scalar_through_storage<S>(G.weight_decay),
            momentum,
            scalar_through_storage<S>(1.0 - G.dampening),
            scalar_through_storage<S>(G.momentum),
            G.nesterov,
            G.maximize,
            t == 1.0,
            momentum != T(0)};
  }

  // Every flag is a constant, and so are a weight decay of 0, momentum 0 (no buffer) and
  // a dampening of 0: the rule's tests for them fold away, and a sweep's lanes, which
  // agree on them, load none of them. (With a dampening of 0, fma(g, 1, y) is g + y,
  // rounded once, as with a loaded 1.) Nesterov, the first step and the dampening only
  // matter with momentum.
  // maximize, the weight decay, and the momentum as one of 9 cases: none (0), or with the
  // buffer, 1 + (nesterov | first step << 1 | undamped << 2).
  static constexpr std::size_t kKeyFlags = 3;
  template <class Lanes, class T>
  auto flags(const rules::SgdHyper<T>& h, std::int32_t, const Arrays* a) const {
    const bool with_buf = h.with_momentum && given(a, 2);
    const int momentum = with_buf ? 1 + (h.nesterov ? 1 : 0) + (h.first_step ? 2 : 0) +
                                        (h.one_minus_dampening == T(1) ? 4 : 0)
                                  : 0;
    return std::make_tuple(h.maximize, h.weight_decay != T(0), Choice<9>{momentum});
  }
  template <class S, class Max, class Decay, class Momentum>
  static auto arrays(Max, Decay, Momentum) {
    return Uses<InOut<>, In<>, std::conditional_t<(Momentum::value > 0), InOut<>, Unused>>{};
  }
  // For 16-bit storage the rule rounds each intermediate result to S where torch's
  // single-tensor SGD (one tensor operation each, rounded to the parameter's dtype) does
  // (optbowl/half.hpp).
  template <class S, class E, class Max, class Decay, class Momentum, class T>
  void element(const E& e, Max, Decay, Momentum, T& p, T g, T& buf) const {
    constexpr int m = Momentum::value - 1;  // -1: no buffer
    rules::SgdHyper<T> h = e.hyper();
    h.maximize = Max::value;
    h.with_momentum = m >= 0;
    h.nesterov = m >= 0 && (m & 1);
    h.first_step = m >= 0 && (m & 2);
    if constexpr (!Decay::value) h.weight_decay = T(0);
    if constexpr (m >= 0 && (m & 4)) h.one_minus_dampening = T(1);
    rules::sgd<E::kScalarTail, typename Storage<S>::Round>(p, g, buf, h);
  }

  // The last numel % (32 bytes / sizeof(T)) elements of each tensor of a fused_tail group
  // (multi_tensor.hpp splits the chunks).
  bool torch_tail(std::int32_t tensor) const { return groups[group_of[tensor]].fused_tail; }
  template <class T>
  auto tail_flags(const rules::SgdHyper<T>& h, std::int32_t, const Arrays* a) const {
    const std::false_type no;
    return std::make_tuple(no, no, Choice<2>{h.with_momentum && given(a, 2) ? 1 : 0});
  }
  template <class S, class E, class Max, class Decay, class Momentum, class T>
  void tail_element(const E& e, Max, Decay, Momentum, T& p, T g, T& buf) const {
    rules::SgdHyper<T> h = e.hyper();
    h.with_momentum = Momentum::value > 0;
    rules::sgd_tail(p, g, buf, h);
  }
};

}  // namespace optbowl
