// The multi-tensor CPU loop of SGD (plain, momentum, Nesterov).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/constant_flags.hpp"
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

// Pointers per tensor: param, grad, momentum buffer (read and written only when momentum != 0).
struct SgdLoop {
  static constexpr std::size_t K = 3;
  static constexpr bool kAvx512Wide = true;  // on Zen 5, at every size (multi_tensor.hpp)
  std::vector<SgdGroup> groups;
  std::vector<std::int32_t> group_of;  // tensor -> group
  std::vector<double> steps;           // tensor -> step count t (after this step's increment)

  // For 16-bit storage, the scalars torch's single-tensor SGD hands to Tensor.add as its
  // alpha are rounded to the parameter's dtype; buf.mul_(momentum) takes momentum as a
  // float (optbowl/half.hpp). For float32 and float64 both are the plain conversion.
  template <class S>
  rules::SgdHyper<compute_t<S>> hyper(std::int32_t tensor) const {
    using T = compute_t<S>;
    const SgdGroup& G = groups[group_of[tensor]];
    const T momentum = static_cast<T>(G.momentum);
    return {scalar_through_storage<S>(-G.lr),
            scalar_through_storage<S>(G.weight_decay),
            momentum,
            scalar_through_storage<S>(1.0 - G.dampening),
            scalar_through_storage<S>(G.momentum),
            G.nesterov,
            G.maximize,
            steps[tensor] == 1.0,
            momentum != T(0)};
  }

  template <class T>
  std::uint32_t lane_key(std::int32_t tensor) const {
    const rules::SgdHyper<T> h = hyper<T>(tensor);
    return (h.maximize ? 1u : 0u) | (h.nesterov ? 2u : 0u) | (h.first_step ? 4u : 0u) |
           (h.weight_decay != T(0) ? 8u : 0u) | (h.with_momentum ? 16u : 0u) |
           (h.one_minus_dampening == T(1) ? 32u : 0u);
  }

  template <class S>
  void apply(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin,
             std::int64_t end) const {
    run<S>(a, tensor, begin, end, hyper<S>(tensor), UniformHyper{});
  }

  // The last numel % (32 bytes / sizeof(T)) elements of each tensor of a fused_tail group
  // (multi_tensor.hpp splits the chunks).
  bool torch_tail(std::int32_t tensor) const { return groups[group_of[tensor]].fused_tail; }

  template <class T>
  void apply_tail(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin,
                  std::int64_t end) const {
    run_tail<T>(a, tensor, begin, end, hyper<T>(tensor), UniformHyper{});
  }

  // The tail's elements as run() steps the body's (the bowl sweep's lanes too).
  template <class T, class Hyper>
  void run_tail(const std::array<void*, K>& a, std::int32_t, std::int64_t begin, std::int64_t end,
                const rules::SgdHyper<T>& h, Hyper hyper) const {
    T* p = static_cast<T*>(a[0]);
    const T* g = static_cast<const T*>(a[1]);
    T* buf = static_cast<T*>(a[2]);
    const bool with_buf = h.with_momentum && buf != nullptr;
    T unused = T(0);
    for (std::int64_t i = begin; i < end; ++i) {
      rules::SgdHyper<T> he = hyper(h, i);
      he.with_momentum = with_buf;
      rules::sgd_tail(p[i], g[i], with_buf ? buf[i] : unused, he);
    }
  }

  // S: the arrays' storage; the rule computes in compute_t<S> and, for 16-bit storage,
  // rounds each intermediate result to S where torch's single-tensor SGD (one tensor
  // operation each, rounded to the parameter's dtype) does (optbowl/half.hpp).
  template <class S, class Hyper>
  void run(const std::array<void*, K>& a, std::int32_t, std::int64_t begin, std::int64_t end,
           const rules::SgdHyper<compute_t<S>>& h, Hyper hyper) const {
    using T = compute_t<S>;
    using St = Storage<S>;
    using R = typename St::Round;
    S* OPTBOWL_RESTRICT p = static_cast<S*>(a[0]);
    const S* OPTBOWL_RESTRICT g = static_cast<const S*>(a[1]);
    S* OPTBOWL_RESTRICT buf = static_cast<S*>(a[2]);
    // Every flag is a constant, and so are a weight decay of 0, momentum 0 (no buffer) and
    // a dampening of 0: the rule's tests for them fold away, and a sweep's lanes, which
    // agree on them, load none of them. (With a dampening of 0, fma(g, 1, y) is g + y,
    // rounded once, as with a loaded 1.) Nesterov, the first step and the dampening only
    // matter with momentum.
    auto body = [&](auto maximize, auto decay, auto with_buf, auto nesterov, auto first_step, auto undamped) {
      rules::SgdHyper<T> hc = h;
      hc.maximize = maximize;
      hc.nesterov = nesterov;
      hc.first_step = first_step;
      hc.with_momentum = with_buf;
      auto at = [&](std::int64_t i) {
        rules::SgdHyper<T> he = hyper(hc, i);
        if constexpr (!decltype(decay)::value) he.weight_decay = T(0);
        if constexpr (decltype(undamped)::value) he.one_minus_dampening = T(1);
        return he;
      };
      if constexpr (decltype(with_buf)::value) {
        OPTBOWL_IVDEP
        for (std::int64_t i = begin; i < end; ++i) {
          T pi = St::load(p[i]), bi = St::load(buf[i]);
          rules::sgd<false, R>(pi, St::load(g[i]), bi, at(i));
          p[i] = St::store(pi), buf[i] = St::store(bi);
        }
      } else {
        T unused = T(0);
        OPTBOWL_IVDEP
        for (std::int64_t i = begin; i < end; ++i) {
          T pi = St::load(p[i]);
          rules::sgd<false, R>(pi, St::load(g[i]), unused, at(i));
          p[i] = St::store(pi);
        }
      }
    };
    with_constant_flags(
        [&](auto maximize, auto decay) {
          const std::false_type no;
          if (h.with_momentum && buf != nullptr)
            with_constant_flags([&](auto... c) { body(maximize, decay, std::true_type{}, c...); }, h.nesterov,
                                h.first_step, h.one_minus_dampening == T(1));
          else
            body(maximize, decay, no, no, no, no);
        },
        h.maximize, h.weight_decay != T(0));
  }
};

}  // namespace optbowl
