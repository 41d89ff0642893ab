// The multi-tensor CPU loop of QuickProp.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/element_loop.hpp"
#include "optbowl/loops/lanes.hpp"
#include "optbowl/rules/quickprop.hpp"

namespace optbowl {

struct QuickpropGroup {
  double lr, max_growth;
  bool maximize;
};

template <class T>
struct LaneFields<rules::QuickpropHyper<T>> {
  using H = rules::QuickpropHyper<T>;
  static constexpr auto list = std::make_tuple(&H::neg_lr, &H::max_growth);
};

// Pointers per tensor: param, grad, previous gradient, previous step.
struct QuickpropLoop : ElementLoop<QuickpropLoop, QuickpropGroup, rules::QuickpropHyper, 4, false> {
  static constexpr bool kAvx512 = true;  // its selects gain on Intel (multi_tensor.hpp)

  template <class S>
  static rules::QuickpropHyper<compute_t<S>> hyper_of(const QuickpropGroup& G, double) {
    using T = compute_t<S>;
    return {static_cast<T>(-G.lr), static_cast<T>(G.max_growth), G.maximize};
  }

  // The flag maximize, every array but the gradient read and written: the defaults.
  template <class S, class E, class Max, class T>
  void element(const E& e, Max, T& p, T g, T& prev_grad, T& prev_step) const {
    rules::QuickpropHyper<T> h = e.hyper();
    h.maximize = Max::value;
    rules::quickprop(p, g, prev_grad, prev_step, h);
  }
};

}  // namespace optbowl
