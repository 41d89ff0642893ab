// The multi-tensor CPU loop of ASGD.
#pragma once
#include <cstdint>
#include <tuple>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/element_loop.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/asgd.hpp"

namespace optbowl {

struct AsgdGroup {
  double lr, lambd, alpha, t0, weight_decay;
  bool maximize;
  // The scalar state of the group's tensors before this step (one value each for the
  // group: the caller groups tensors by them), exactly as stored, and whether it is stored
  // as float64 (else float32).
  double eta, mu;
  bool scalar_float64;

  // The scalar state after step t (t counts from 1): eta and mu recomputed from lr, lambd,
  // alpha, t0 and t in double, rounded to the state's dtype.
  void after_step(double t) {
    const double e = rules::asgd_eta(lr, lambd, alpha, t);
    const double m = rules::asgd_mu(t0, t);
    eta = scalar_float64 ? e : through_float(e);
    mu = scalar_float64 ? m : through_float(m);
  }

  // x rounded to float32. Through a volatile: GCC 12's SLP vectoriser pairs two adjacent
  // double -> float -> double round trips (eta's and mu's) and drops the conversions.
  static double through_float(double x) {
    volatile float f = static_cast<float>(x);
    return f;
  }

  // For arrays stored as S: the decay factor 1 - lambd * eta (in double) and mu stay in the
  // compute type (a multiplication's scalar); weight_decay and -eta (adds' alphas) are
  // rounded to a 16-bit parameter's dtype first.
  template <class S>
  rules::AsgdHyper<compute_t<S>> cast() const {
    using T = compute_t<S>;
    return {scalar_through_storage<S>(weight_decay),
            static_cast<T>(rules::asgd_decay_factor(lambd, eta)),
            scalar_through_storage<S>(-eta),
            static_cast<T>(mu),
            mu != 1.0,
            maximize};
  }
};

template <class T>
struct LaneFields<rules::AsgdHyper<T>> {
  using H = rules::AsgdHyper<T>;
  static constexpr auto list = std::make_tuple(&H::weight_decay, &H::decay_factor, &H::neg_eta, &H::mu);
};

// Pointers per tensor: param, grad, ax.
struct AsgdLoop : ElementLoop<AsgdLoop, AsgdGroup, rules::AsgdHyper, 3, true> {
  static constexpr bool kAvx512Half = true;  // its 16-bit steps run AVX-512 (multi_tensor.hpp)
  static constexpr bool kHalfTail = true;  // torch's 16-bit scalar tail (multi_tensor.hpp)
  template <class S>
  static rules::AsgdHyper<compute_t<S>> hyper_of(const AsgdGroup& G, double) {
    return G.template cast<S>();
  }

  // maximize is the only flag: whether ax averages (mu != 1, mu as stored) is read from
  // each element's own mu, which differs between the lanes of a bowl sweep (their t0).
  template <class S, class E, class Max, class T>
  void element(const E& e, Max, T& p, T g, T& ax) const {
    rules::AsgdHyper<T> h = e.hyper();
    h.maximize = Max::value;
    h.average = h.mu != T(1);
    rules::asgd<E::kScalarTail, typename Storage<S>::Round>(p, g, ax, h);
  }
};

}  // namespace optbowl
