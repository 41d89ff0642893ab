// Adam, AdamW (decoupled weight decay) and AMSGrad on the device, calling the rules of
// optbowl/rules/adam.hpp.
#include "multi_tensor_apply.cuh"
#include "optbowl/loops/adam_loop.hpp"
#include "optbowl/rules/adam.hpp"

namespace optbowl {
namespace cuda {
namespace {

template <class M>
struct AdamDeviceHyper {
  rules::AdamHyper<M> rule;
  bool amsgrad;  // per group, as the CPU loop decides
};

// Slots: param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (null when no group uses amsgrad).
struct AdamOp {
  static constexpr int K = 5;
  static constexpr int kRequired = 4;
  static constexpr bool kSteps = true;
  using Group = AdamGroup;
  template <class M>
  using Hyper = AdamDeviceHyper<M>;
  template <class M>
  __device__ static Hyper<M> at_step(const Group& g, double t) {
    return {g.template at_step<M>(t), g.amsgrad};
  }
  template <class M>
  __device__ static void apply(M (&v)[K], const Hyper<M>& h) {
    if (h.amsgrad)
      rules::amsgrad(v[0], v[1], v[2], v[3], v[4], h.rule);
    else
      rules::adam(v[0], v[1], v[2], v[3], h.rule);
  }
};

}  // namespace

template <>
LaunchStats launch<AdamLoop>(const DeviceTable<AdamLoop::K>& table, const AdamLoop& loop,
                             const LaunchConfig& config) {
  const auto rule_hyper = hyper_of_loop(loop);
  return launch_by_dtype<AdamOp>(
      table,
      [&](auto tag, int t) {
        using M = typename decltype(tag)::type;
        return AdamDeviceHyper<M>{rule_hyper(tag, t), loop.groups[loop.group_of[t]].amsgrad};
      },
      config, [&](int t) { return loop.groups[loop.group_of[t]]; });
}

}  // namespace cuda
}  // namespace optbowl
