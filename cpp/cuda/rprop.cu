// Rprop on the device: one Op per variant, each calling the rule of optbowl/rules/rprop.hpp.
#include "multi_tensor_apply.cuh"
#include "optbowl/loops/rprop_loop.hpp"
#include "optbowl/rules/rprop.hpp"

namespace optbowl {
namespace cuda {
namespace {

template <class M>
struct RpropPlusHyper {
  rules::RpropHyper<M> rule;
  bool revert;
};

// Slots: param, grad, prev (direction for backtrack), step size [, update].
struct IrpropMinusOp {
  static constexpr int K = 4;
  static constexpr int kRequired = 4;
  static constexpr bool kSteps = false;
  template <class M>
  using Hyper = rules::RpropHyper<M>;
  template <class M>
  __device__ static void apply(M (&v)[K], const Hyper<M>& h) {
    rules::irprop_minus(v[0], v[1], v[2], v[3], h);
  }
};

struct RpropMinusOp {
  static constexpr int K = 4;
  static constexpr int kRequired = 4;
  static constexpr bool kSteps = false;
  template <class M>
  using Hyper = rules::RpropHyper<M>;
  template <class M>
  __device__ static void apply(M (&v)[K], const Hyper<M>& h) {
    rules::rprop_minus(v[0], v[1], v[2], v[3], h);
  }
};

struct BacktrackOp {
  static constexpr int K = 4;
  static constexpr int kRequired = 4;
  static constexpr bool kSteps = false;
  template <class M>
  using Hyper = rules::RpropHyper<M>;
  template <class M>
  __device__ static void apply(M (&v)[K], const Hyper<M>& h) {
    rules::backtrack(v[0], v[1], v[2], v[3], h);
  }
};

// rprop+ (revert always) and irprop+ (revert when the loss went up).
struct RpropPlusOp {
  static constexpr int K = 5;
  static constexpr int kRequired = 5;
  static constexpr bool kSteps = false;
  template <class M>
  using Hyper = RpropPlusHyper<M>;
  template <class M>
  __device__ static void apply(M (&v)[K], const Hyper<M>& h) {
    rules::rprop_plus(v[0], v[1], v[2], v[3], v[4], h.revert, h.rule);
  }
};

}  // namespace

template <>
LaunchStats launch<RpropLoop>(const DeviceTable<RpropLoop::K>& table, const RpropLoop& loop,
                              const LaunchConfig& config) {
  const auto rule_hyper = [&](auto tag, int t) {
    using M = typename decltype(tag)::type;
    return loop.groups[loop.group_of[t]].template cast<M>();
  };
  switch (loop.variant) {
    case RpropVariant::irprop_minus:
      return launch_by_dtype<IrpropMinusOp>(table, rule_hyper, config);
    case RpropVariant::rprop_minus:
      return launch_by_dtype<RpropMinusOp>(table, rule_hyper, config);
    case RpropVariant::backtrack:
      return launch_by_dtype<BacktrackOp>(table, rule_hyper, config);
    case RpropVariant::rprop_plus:
    case RpropVariant::irprop_plus: {
      const bool revert = loop.variant == RpropVariant::rprop_plus || loop.loss_increased;
      return launch_by_dtype<RpropPlusOp>(
          table,
          [&](auto tag, int t) {
            using M = typename decltype(tag)::type;
            return RpropPlusHyper<M>{rule_hyper(tag, t), revert};
          },
          config);
    }
  }
  throw std::invalid_argument("rprop: unknown variant");
}

}  // namespace cuda
}  // namespace optbowl
