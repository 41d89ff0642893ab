// The multi-tensor CPU loop of Adam, AdamW and AMSGrad.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/constant_flags.hpp"
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
    const bool decoupled = decoupled_weight_decay && weight_decay != 0.0;
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

// Pointers per tensor: param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (used with amsgrad).
struct AdamLoop {
  static constexpr std::size_t K = 5;
  static constexpr bool kAvx512InCache = true;  // square roots and divisions (multi_tensor.hpp)
  std::vector<AdamGroup> groups;
  std::vector<std::int32_t> group_of;  // tensor -> group
  std::vector<double> steps;           // tensor -> step count t (after this step's increment)

  // Bias corrections in double, as torch computes them, then rounded to the type the
  // rule computes in (float for 16-bit storage: torch's fused kernel takes opmath_t(x)).
  template <class S>
  rules::AdamHyper<compute_t<S>> hyper(std::int32_t tensor) const {
    return groups[group_of[tensor]].template at_step<compute_t<S>>(steps[tensor]);
  }

  template <class T>
  std::uint32_t lane_key(std::int32_t tensor) const {
    const rules::AdamHyper<T> h = hyper<T>(tensor);
    return (h.maximize ? 1u : 0u) | (h.decoupled ? 2u : 0u) | (groups[group_of[tensor]].amsgrad ? 4u : 0u);
  }

  template <class S>
  void apply(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin,
             std::int64_t end) const {
    run<S>(a, tensor, begin, end, hyper<S>(tensor), UniformHyper{});
  }

  // Each tensor's last numel % (32 bytes / sizeof(T)) elements: torch's fused kernel rounds
  // them in a scalar loop of its own (rules/adam.hpp), and so does apply_tail (multi_tensor.hpp
  // splits the chunks).
  bool torch_tail(std::int32_t) const { return true; }

  template <class T>
  void apply_tail(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin,
                  std::int64_t end) const {
    run_tail<T>(a, tensor, begin, end, hyper<T>(tensor), UniformHyper{});
  }

  // The tail's elements as run() steps the body's (the bowl sweep's lanes too).
  template <class T, class Hyper>
  void run_tail(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin, std::int64_t end,
                const rules::AdamHyper<T>& h, Hyper hyper) const {
    T* p = static_cast<T*>(a[0]);
    const T* g = static_cast<const T*>(a[1]);
    T* m = static_cast<T*>(a[2]);
    T* v = static_cast<T*>(a[3]);
    T* vmax = static_cast<T*>(a[4]);
    if (groups[group_of[tensor]].amsgrad)
      for (std::int64_t i = begin; i < end; ++i) rules::amsgrad_tail(p[i], g[i], m[i], v[i], vmax[i], hyper(h, i));
    else
      for (std::int64_t i = begin; i < end; ++i) rules::adam_tail(p[i], g[i], m[i], v[i], hyper(h, i));
  }

  // S: how the arrays are stored (float, double, bf16_t, half_t); the rule computes in
  // compute_t<S> and each stored value is rounded to S (optbowl/half.hpp), as torch's
  // fused kernel does for bfloat16 and float16.
  template <class S, class Hyper>
  void run(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin, std::int64_t end,
           const rules::AdamHyper<compute_t<S>>& h, Hyper hyper) const {
    using T = compute_t<S>;
    using St = Storage<S>;
    S* OPTBOWL_RESTRICT p = static_cast<S*>(a[0]);
    const S* OPTBOWL_RESTRICT g = static_cast<const S*>(a[1]);
    S* OPTBOWL_RESTRICT m = static_cast<S*>(a[2]);
    S* OPTBOWL_RESTRICT v = static_cast<S*>(a[3]);
    S* OPTBOWL_RESTRICT vmax = static_cast<S*>(a[4]);
    with_constant_flags(
        [&](auto maximize, auto decoupled, auto ams) {
          rules::AdamHyper<T> hc = h;
          hc.maximize = maximize;
          hc.decoupled = decoupled;
          if constexpr (decltype(ams)::value) {
            OPTBOWL_IVDEP
            for (std::int64_t i = begin; i < end; ++i) {
              T pi = St::load(p[i]), mi = St::load(m[i]), vi = St::load(v[i]), wi = St::load(vmax[i]);
              rules::amsgrad(pi, St::load(g[i]), mi, vi, wi, hyper(hc, i));
              p[i] = St::store(pi), m[i] = St::store(mi), v[i] = St::store(vi), vmax[i] = St::store(wi);
            }
          } else {
            OPTBOWL_IVDEP
            for (std::int64_t i = begin; i < end; ++i) {
              T pi = St::load(p[i]), mi = St::load(m[i]), vi = St::load(v[i]);
              rules::adam(pi, St::load(g[i]), mi, vi, hyper(hc, i));
              p[i] = St::store(pi), m[i] = St::store(mi), v[i] = St::store(vi);
            }
          }
        },
        h.maximize, h.decoupled, groups[group_of[tensor]].amsgrad);
  }
};

}  // namespace optbowl
