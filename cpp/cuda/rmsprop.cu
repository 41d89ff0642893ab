// RMSprop (centered, momentum) on the device, calling the rule of optbowl/rules/rmsprop.hpp.
#include "multi_tensor_apply.cuh"
#include "optbowl/loops/rmsprop_loop.hpp"
#include "optbowl/rules/rmsprop.hpp"

namespace optbowl {
namespace cuda {
namespace {

// Slots: param, grad, square_avg, grad_avg (null when no group is centered), momentum
// buffer (null when no group uses momentum).
struct RmspropOp {
  static constexpr int K = 5;
  static constexpr int kRequired = 3;
  static constexpr bool kSteps = false;
  template <class M>
  using Hyper = rules::RmspropHyper<M>;
  template <class M>
  __device__ static void apply(M (&v)[K], const Hyper<M>& h) {
    rules::rmsprop(v[0], v[1], v[2], v[3], v[4], h);
  }
};

}  // namespace

template <>
LaunchStats launch<RmspropLoop>(const DeviceTable<RmspropLoop::K>& table, const RmspropLoop& loop,
                                const LaunchConfig& config) {
  return launch_by_dtype<RmspropOp>(table, hyper_of_loop(loop), config);
}

}  // namespace cuda
}  // namespace optbowl
