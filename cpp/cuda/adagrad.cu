// Dense AdaGrad on the device, calling the rule of optbowl/rules/adagrad.hpp.
#include "multi_tensor_apply.cuh"
#include "optbowl/loops/adagrad_loop.hpp"
#include "optbowl/rules/adagrad.hpp"

namespace optbowl {
namespace cuda {
namespace {

// Slots: param, grad, sum of squares.
struct AdagradOp {
  static constexpr int K = 3;
  static constexpr int kRequired = 3;
  static constexpr bool kSteps = true;
  using Group = AdagradGroup;
  template <class M>
  using Hyper = rules::AdagradHyper<M>;
  template <class M>
  __device__ static Hyper<M> at_step(const Group& g, double t) {
    return g.template at_step<M>(t);
  }
  template <class M>
  __device__ static void apply(M (&v)[K], const Hyper<M>& h) {
    rules::adagrad(v[0], v[1], v[2], h);
  }
};

}  // namespace

template <>
LaunchStats launch<AdagradLoop>(const DeviceTable<AdagradLoop::K>& table, const AdagradLoop& loop,
                                const LaunchConfig& config) {
  return launch_by_dtype<AdagradOp>(table, hyper_of_loop(loop), config,
                                    [&](int t) { return loop.groups[loop.group_of[t]]; });
}

}  // namespace cuda
}  // namespace optbowl
