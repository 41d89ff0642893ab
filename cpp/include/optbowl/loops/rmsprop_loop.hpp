// The multi-tensor CPU loop of RMSprop.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/constant_flags.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/rmsprop.hpp"

namespace optbowl {

struct RmspropGroup {
  double lr, alpha, eps, weight_decay, momentum;
  bool centered, maximize;

  // For arrays stored as S. torch's single-tensor RMSprop hands the weight decay, and with
  // momentum -lr, to Tensor.add as its alpha, which rounds it to the parameter's dtype;
  // the other scalars (mul_, addcmul_, addcdiv_'s value) it takes as floats. For float32
  // and float64 every one is the plain conversion.
  template <class S>
  rules::RmspropHyper<compute_t<S>> cast() const {
    using T = compute_t<S>;
    return {momentum > 0.0 ? scalar_through_storage<S>(-lr) : static_cast<T>(-lr),
            static_cast<T>(alpha),
            static_cast<T>(1.0 - alpha),
            static_cast<T>(eps),
            scalar_through_storage<S>(weight_decay),
            static_cast<T>(momentum),
            centered,
            maximize};
  }
};

// Pointers per tensor: param, grad, square_avg, grad_avg (used when centered), momentum
// buffer (used when momentum > 0).
struct RmspropLoop {
  static constexpr std::size_t K = 5;
  static constexpr bool kAvx512InCache = true;  // square roots and divisions (multi_tensor.hpp)
  std::vector<RmspropGroup> groups;
  std::vector<std::int32_t> group_of;  // tensor -> group

  template <class S>
  rules::RmspropHyper<compute_t<S>> hyper(std::int32_t tensor) const {
    return groups[group_of[tensor]].template cast<S>();
  }

  template <class T>
  std::uint32_t lane_key(std::int32_t tensor) const {
    const rules::RmspropHyper<T> h = hyper<T>(tensor);
    return (h.maximize ? 1u : 0u) | (h.centered ? 2u : 0u) | (h.momentum > T(0) ? 4u : 0u);
  }

  template <class S>
  void apply(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin,
             std::int64_t end) const {
    run<S>(a, tensor, begin, end, hyper<S>(tensor), UniformHyper{});
  }

  // S: the arrays' storage; the rule computes in compute_t<S> and, for 16-bit storage,
  // rounds each intermediate result to S where torch's single-tensor RMSprop does
  // (optbowl/half.hpp).
  template <class S, class Hyper>
  void run(const std::array<void*, K>& a, std::int32_t, std::int64_t begin, std::int64_t end,
           const rules::RmspropHyper<compute_t<S>>& h, Hyper hyper) const {
    using T = compute_t<S>;
    using St = Storage<S>;
    using R = typename St::Round;
    S* OPTBOWL_RESTRICT p = static_cast<S*>(a[0]);
    const S* OPTBOWL_RESTRICT g = static_cast<const S*>(a[1]);
    S* OPTBOWL_RESTRICT square_avg = static_cast<S*>(a[2]);
    S* OPTBOWL_RESTRICT grad_avg = static_cast<S*>(a[3]);
    S* OPTBOWL_RESTRICT buf = static_cast<S*>(a[4]);
    // grad_avg / buf are given (non-null) whenever a centered / momentum group needs them
    // (the binding checks); a scratch element stands in for an array not given, and the
    // momentum branch of the rule is folded away with it.
    with_constant_flags(
        [&](auto maximize, auto centered, auto with_buf) {
          rules::RmspropHyper<T> hc = h;
          hc.maximize = maximize;
          hc.centered = centered;
          OPTBOWL_IVDEP
          for (std::int64_t i = begin; i < end; ++i) {
            T pi = St::load(p[i]), vi = St::load(square_avg[i]), avg = T(0), mb = T(0);
            if constexpr (decltype(centered)::value) avg = St::load(grad_avg[i]);
            if constexpr (decltype(with_buf)::value) mb = St::load(buf[i]);
            rules::RmspropHyper<T> he = hyper(hc, i);
            if constexpr (!decltype(with_buf)::value) he.momentum = T(0);
            rules::rmsprop<R>(pi, St::load(g[i]), vi, avg, mb, he);
            p[i] = St::store(pi), square_avg[i] = St::store(vi);
            if constexpr (decltype(centered)::value) grad_avg[i] = St::store(avg);
            if constexpr (decltype(with_buf)::value) buf[i] = St::store(mb);
          }
        },
        h.maximize, h.centered, buf != nullptr && h.momentum > T(0));
  }
};

}  // namespace optbowl
