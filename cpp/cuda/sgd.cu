// SGD (momentum, dampening, Nesterov, weight decay) on the device, calling the rule of
// optbowl/rules/sgd.hpp.
#include "multi_tensor_apply.cuh"
#include "optbowl/loops/sgd_loop.hpp"
#include "optbowl/rules/sgd.hpp"

namespace optbowl {
namespace cuda {
namespace {

// Slots: param, grad, momentum buffer (null when no group uses momentum).
struct SgdOp {
  static constexpr int K = 3;
  static constexpr int kRequired = 2;
  static constexpr bool kSteps = false;
  template <class M>
  using Hyper = rules::SgdHyper<M>;
  template <class M>
  __device__ static void apply(M (&v)[K], const Hyper<M>& h) {
    rules::sgd(v[0], v[1], v[2], h);
  }
};

}  // namespace

template <>
LaunchStats launch<SgdLoop>(const DeviceTable<SgdLoop::K>& table, const SgdLoop& loop,
                            const LaunchConfig& config) {
  return launch_by_dtype<SgdOp>(table, hyper_of_loop(loop), config);
}

}  // namespace cuda
}  // namespace optbowl
