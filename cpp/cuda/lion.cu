// Lion on the device, calling the rule of optbowl/rules/lion.hpp.
#include "multi_tensor_apply.cuh"
#include "optbowl/loops/lion_loop.hpp"
#include "optbowl/rules/lion.hpp"

namespace optbowl {
namespace cuda {
namespace {

// Slots: param, grad, exp_avg.
struct LionOp {
  static constexpr int K = 3;
  static constexpr int kRequired = 3;
  static constexpr bool kSteps = false;
  template <class M>
  using Hyper = rules::LionHyper<M>;
  template <class M>
  __device__ static void apply(M (&v)[K], const Hyper<M>& h) {
    rules::lion(v[0], v[1], v[2], h);
  }
};

}  // namespace

template <>
LaunchStats launch<LionLoop>(const DeviceTable<LionLoop::K>& table, const LionLoop& loop,
                             const LaunchConfig& config) {
  return launch_by_dtype<LionOp>(table, hyper_of_loop(loop), config);
}

}  // namespace cuda
}  // namespace optbowl
