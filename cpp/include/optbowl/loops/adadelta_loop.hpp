// The multi-tensor CPU loop of Adadelta.
#pragma once
#include <cstdint>
#include <tuple>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/element_loop.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/adadelta.hpp"

namespace optbowl {

struct AdadeltaGroup {
  double lr, rho, eps, weight_decay;
  bool maximize;

  // For arrays stored as S: rho and 1 - rho (a multiplication's scalar, addcmul's value;
  // 1 - rho computed in double) stay in the compute type; eps (an added scalar),
  // weight_decay and -lr (adds' alphas) are rounded to a 16-bit parameter's dtype first.
  template <class S>
  rules::AdadeltaHyper<compute_t<S>> cast() const {
    using T = compute_t<S>;
    return {static_cast<T>(rho),
            static_cast<T>(1.0 - rho),
            scalar_through_storage<S>(eps),
            scalar_through_storage<S>(weight_decay),
            scalar_through_storage<S>(-lr),
            maximize};
  }
};

template <class T>
struct LaneFields<rules::AdadeltaHyper<T>> {
  using H = rules::AdadeltaHyper<T>;
  static constexpr auto list =
      std::make_tuple(&H::rho, &H::one_minus_rho, &H::eps, &H::weight_decay, &H::neg_lr);
};

// Pointers per tensor: param, grad, square_avg, acc_delta.
struct AdadeltaLoop : ElementLoop<AdadeltaLoop, AdadeltaGroup, rules::AdadeltaHyper, 4, false> {
  static constexpr bool kAvx512InCache = true;  // square roots and a division (multi_tensor.hpp)
  static constexpr bool kHalfTail = true;  // torch's 16-bit scalar tail (multi_tensor.hpp)

  template <class S>
  static rules::AdadeltaHyper<compute_t<S>> hyper_of(const AdadeltaGroup& G, double) {
    return G.template cast<S>();
  }

  // maximize (every array read and written but the gradient).
  static constexpr std::size_t kKeyFlags = 1;
  template <class Lanes, class T>
  auto flags(const rules::AdadeltaHyper<T>& h, std::int32_t, const Arrays*) const {
    return std::make_tuple(h.maximize);
  }
  template <class S, class Max>
  static auto arrays(Max) {
    return Uses<InOut<>, In<>, InOut<>, InOut<>>{};
  }
  template <class S, class E, class Max, class T>
  void element(const E& e, Max, T& p, T g, T& v, T& u) const {
    rules::AdadeltaHyper<T> h = e.hyper();
    h.maximize = Max::value;
    rules::adadelta<E::kScalarTail, typename Storage<S>::Round>(p, g, v, u, h);
  }
};

}  // namespace optbowl
