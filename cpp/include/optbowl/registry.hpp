// The compiled rules: the one C++ list of what compiled code needs to know about each rule.
//
// One entry per rule (a struct below, listed in `Rules` at the end): the name of its step
// function in optbowl._core and optbowl._cuda; its Loop and Group types; the Group's
// hyper-parameters in the order a caller's group tuple holds them, as a table of (name,
// member pointer) from which the bindings unpack a tuple; the operand lists of the step
// call (name, written or read, may be None and which group needs it then); whether it
// takes a step count per tensor; the few arguments beyond those (e.g. a variant) with a
// hook that applies them; whether a CUDA kernel exists; and its methods in the bowl
// simulator with the setter that makes one from a row of hyper-parameters.
//
// The bindings (cpp/bindings/register_rules.cpp, cpp/cuda/bindings.cpp) and the bowl
// simulator (bowl::with_method) iterate this list; nothing else in the compiled code names
// a rule. The description of each rule for users (ranges, defaults, documentation, which
// Python layers have it) is the Python side's; optbowl._core.rules exposes this list's
// field and operand names so that a test can hold the two against each other.
//
// Plain C++ without Python: the hooks raise std::invalid_argument (ValueError in Python).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "optbowl/bowl.hpp"
#include "optbowl/loops/adadelta_loop.hpp"
#include "optbowl/loops/adagrad_loop.hpp"
#include "optbowl/loops/adam_loop.hpp"
#include "optbowl/loops/adamax_loop.hpp"
#include "optbowl/loops/asgd_loop.hpp"
#include "optbowl/loops/lion_loop.hpp"
#include "optbowl/loops/nadam_loop.hpp"
#include "optbowl/loops/quickprop_loop.hpp"
#include "optbowl/loops/radam_loop.hpp"
#include "optbowl/loops/rmsprop_loop.hpp"
#include "optbowl/loops/rprop_loop.hpp"
#include "optbowl/loops/sgd_loop.hpp"

namespace optbowl {
namespace registry {

// One hyper-parameter of a Group: its name and where it lives.
template <class G, class M>
struct Field {
  using type = M;
  const char* name;
  M G::* member;
};

template <class G, class M>
constexpr Field<G, M> field(const char* name, M G::* member) {
  return {name, member};
}

// One operand list of a step call. `needed_by`, for an optional list: a group that needs
// it makes None an error (`needed_message`); null: the rule's hook decides.
template <class G>
struct OperandSpec {
  const char* arg;    // the argument's name
  const char* label;  // the arrays' name in messages ("step_sizes[3]")
  bool written;
  bool optional;  // may be None
  bool (*needed_by)(const G&) = nullptr;
  const char* needed_message = nullptr;
};

// What an entry leaves out: no extra arguments, no hook, the parameters' dtype everywhere.
struct NoExtras {
  using Lead = std::tuple<>;
  using Trail = std::tuple<>;
  static constexpr std::array<const char*, 0> lead_names{};
  static constexpr std::array<const char*, 0> trail_names{};
  static Trail trail_defaults() { return {}; }
  using CudaLead = std::tuple<>;
  using CudaTrail = std::tuple<>;
  static constexpr std::array<const char*, 0> cuda_lead_names{};
  static constexpr std::array<const char*, 0> cuda_trail_names{};
  template <class Loop, class L, class T, std::size_t K>
  static void setup(Loop&, const L&, const T&, const std::array<bool, K>&) {}
  template <class Loop, class L, class T, std::size_t K>
  static void cuda_setup(Loop&, const L&, const T&, const std::array<bool, K>&) {}
  template <class Loop>
  static bool int8(const Loop&, std::size_t) {
    return false;
  }
  static constexpr bool counts_steps = false;  // a step count per tensor after the operands
  static constexpr bool device_steps = false;  // CUDA: the counts may come from device counters
  static constexpr const char* notes = "";     // the step function's documentation, after groups
  // Per-parameter scalar state (fields of the Group after its hyper-parameters, each
  // followed in the group table by the rest of it and a last flag, scalar_float64): one
  // value per group (the caller makes one group per run of tensors whose values agree),
  // read by hyper_of, and advanced past step t by the Group's after_step(t)
  // (optbowl._core.scalar_state_after).
  static constexpr std::tuple<> scalar_state{};
};

// ---- the entries ------------------------------------------------------------------------

struct RpropRule : NoExtras {
  static constexpr const char* name = "rprop";
  static constexpr const char* title = "Rprop";
  using Loop = RpropLoop;
  using Group = RpropGroup;
  static constexpr auto groups =
      std::make_tuple(field("eta_minus", &Group::eta_minus), field("eta_plus", &Group::eta_plus),
                      field("step_min", &Group::step_min), field("step_max", &Group::step_max),
                      field("maximize", &Group::maximize));
  static constexpr std::array<OperandSpec<Group>, 5> operands{{{"params", "params", true, false},
                                                               {"grads", "grads", false, false},
                                                               {"prevs", "prevs", true, false},
                                                               {"steps", "step_sizes", true, false},
                                                               {"updates", "updates", true, true}}};
  static constexpr bool cuda = true;
  static constexpr const char* notes = " compact_state: prevs are int8 sign codes (-1, 0, 1; 2 for NaN).";

  // variant first; loss_increased (iRprop+'s revert) and compact_state last.
  using Lead = std::tuple<const std::string&>;
  using Trail = std::tuple<bool, bool>;
  static constexpr std::array<const char*, 1> lead_names{{"variant"}};
  static constexpr std::array<const char*, 2> trail_names{{"loss_increased", "compact_state"}};
  static Trail trail_defaults() { return {true, false}; }
  using CudaLead = std::tuple<int>;
  using CudaTrail = std::tuple<bool>;
  static constexpr std::array<const char*, 1> cuda_lead_names{{"variant"}};
  static constexpr std::array<const char*, 1> cuda_trail_names{{"loss_increased"}};

  static RpropVariant parse_variant(const std::string& v) {
    if (v == "irprop-") return RpropVariant::irprop_minus;
    if (v == "rprop-") return RpropVariant::rprop_minus;
    if (v == "rprop+") return RpropVariant::rprop_plus;
    if (v == "irprop+") return RpropVariant::irprop_plus;
    if (v == "backtrack") return RpropVariant::backtrack;
    throw std::invalid_argument(
        "variant: expected one of 'irprop-', 'rprop-', 'rprop+', 'irprop+', 'backtrack', got '" + v + "'");
  }
  static void setup(Loop& loop, const Lead& lead, const Trail& trail, const std::array<bool, 5>& given) {
    const std::string& variant = std::get<0>(lead);
    loop.variant = parse_variant(variant);
    loop.compact_state = std::get<1>(trail);
    loop.loss_increased = std::get<0>(trail);
    const bool plus = rprop_state_count(loop.variant) == 3;
    if (plus != given[4])
      throw std::invalid_argument(std::string("updates: variant '") + variant +
                                  (plus ? "' needs" : "' takes no") + " update arrays");
  }
  static void cuda_setup(Loop& loop, const CudaLead& lead, const CudaTrail& trail,
                         const std::array<bool, 5>& given) {
    const int variant = std::get<0>(lead);
    if (variant < 0 || variant > static_cast<int>(RpropVariant::backtrack))
      throw std::invalid_argument("variant: expected 0..4");
    loop.variant = static_cast<RpropVariant>(variant);
    loop.loss_increased = std::get<0>(trail);
    if ((rprop_state_count(loop.variant) == 3) != given[4])
      throw std::invalid_argument("updates: wrong for this variant");
  }
  static bool int8(const Loop& loop, std::size_t k) { return k == 2 && loop.compact_state; }

  // The bowl: one method per variant, all on this loop.
  static constexpr std::array<const char*, 5> bowl_methods{
      {"irprop-", "rprop-", "rprop+", "irprop+", "backtrack"}};
  static void set_bowl(bowl::Method<Loop>& m, std::size_t method, const bowl::HyperRow& h) {
    static constexpr RpropVariant kVariants[] = {RpropVariant::irprop_minus, RpropVariant::rprop_minus,
                                                 RpropVariant::rprop_plus, RpropVariant::irprop_plus,
                                                 RpropVariant::backtrack};
    const RpropVariant variant = kVariants[method];
    bowl::reset(m);
    m.loop.variant = variant;
    m.loop.loss_increased = true;
    m.loop.compact_state = false;
    bowl::one_group(
        m.loop, Group{h.get("eta_minus"), h.get("eta_plus"), h.get("step_min"), h.get("step_max"), false});
    m.state_init = {0.0, h.get("lr"), 0.0};  // prev (or direction), step size, last update
    if (variant == RpropVariant::irprop_plus) {
      m.before_step = [](Loop& loop, std::int64_t t, double loss, double prev_loss) {
        loop.loss_increased = t > 1 && loss > prev_loss;
      };
      m.reads_loss = true;
      m.hook_per_lane = true;
    }
  }
};

struct AdagradRule : NoExtras {
  static constexpr const char* name = "adagrad";
  static constexpr const char* title = "AdaGrad";
  using Loop = AdagradLoop;
  using Group = AdagradGroup;
  static constexpr auto groups =
      std::make_tuple(field("lr", &Group::lr), field("lr_decay", &Group::lr_decay),
                      field("weight_decay", &Group::weight_decay), field("eps", &Group::eps),
                      field("maximize", &Group::maximize));
  static constexpr std::array<OperandSpec<Group>, 3> operands{
      {{"params", "params", true, false}, {"grads", "grads", false, false}, {"sums", "sums", true, false}}};
  static constexpr bool counts_steps = true;
  static constexpr bool device_steps = true;
  static constexpr bool cuda = true;

  static constexpr std::array<const char*, 1> bowl_methods{{"adagrad"}};
  static void set_bowl(bowl::Method<Loop>& m, std::size_t, const bowl::HyperRow& h) {
    bowl::reset(m);
    bowl::one_group(m.loop,
                    Group{h.get("lr"), h.get("lr_decay"), h.get("weight_decay"), h.get("eps"), false});
    m.loop.steps.assign(1, 0.0);
    m.state_init = {h.get("initial_accumulator_value")};  // sum of squares
    m.before_step = bowl::count_steps<Loop>;
    m.hook_per_lane = true;  // the decayed learning rate follows the step count
  }
};

struct SgdRule : NoExtras {
  static constexpr const char* name = "sgd";
  static constexpr const char* title = "SGD";
  using Loop = SgdLoop;
  using Group = SgdGroup;
  static constexpr auto groups =
      std::make_tuple(field("lr", &Group::lr), field("momentum", &Group::momentum),
                      field("dampening", &Group::dampening), field("weight_decay", &Group::weight_decay),
                      field("nesterov", &Group::nesterov), field("maximize", &Group::maximize));
  static constexpr std::array<OperandSpec<Group>, 3> operands{
      {{"params", "params", true, false},
       {"grads", "grads", false, false},
       {"momentum_buffers", "momentum_buffers", true, true, [](const Group& g) { return g.momentum != 0.0; },
        "momentum_buffers: momentum != 0 needs one buffer per parameter"}}};
  static constexpr bool counts_steps = true;
  static constexpr bool cuda = true;
  static constexpr const char* notes =
      " steps: t == 1 starts the momentum buffer. fused_tails: per group, whether each tensor's scalar tail "
      "is "
      "rounded as torch's fused=True kernel rounds it (default: none, every element as torch's foreach and "
      "single-tensor paths).";

  // fused_tails last (CPU only: torch's CUDA kernels have no scalar tail).
  using Trail = std::tuple<const std::vector<bool>&>;
  static constexpr std::array<const char*, 1> trail_names{{"fused_tails"}};
  static std::tuple<std::vector<bool>> trail_defaults() { return {std::vector<bool>{}}; }
  template <class L>
  static void setup(Loop& loop, const L&, const Trail& trail, const std::array<bool, 3>&) {
    const std::vector<bool>& fused_tails = std::get<0>(trail);
    if (!fused_tails.empty() && fused_tails.size() != loop.groups.size())
      throw std::invalid_argument("fused_tails: expected one flag per group");
    for (std::size_t k = 0; k < fused_tails.size(); ++k) loop.groups[k].fused_tail = fused_tails[k];
  }

  // torch.optim.SGD for "gd", "momentum" and "nesterov"; Newton is its plain step (momentum 0
  // as the Python side sends it) taken along A⁻¹g; the line searches set its lr each step.
  static constexpr std::array<const char*, 7> bowl_methods{
      {"gd", "momentum", "nesterov", "newton", "steepest", "cg", "polyak"}};
  static void set_bowl(bowl::Method<Loop>& m, std::size_t method, const bowl::HyperRow& h) {
    using bowl::Direction;
    static constexpr Direction kDirections[] = {Direction::gradient, Direction::gradient, Direction::gradient,
                                                Direction::newton,   Direction::steepest, Direction::cg,
                                                Direction::polyak};
    const Direction direction = kDirections[method];
    bowl::reset(m);
    bowl::one_group(m.loop, Group{h.get("lr"), h.get("momentum"), h.get("dampening"), h.get("weight_decay"),
                                  h.get("nesterov") != 0.0, false});
    m.loop.steps.assign(1, 0.0);
    m.state_init = {0.0};  // momentum buffer (set from the gradient on the first step)
    m.direction = direction;
    m.before_step = bowl::count_steps<Loop>;
    m.set_lr = [](Loop& loop, double lr) { loop.groups[0].lr = lr; };
    if (direction == Direction::polyak) {
      m.f_star = h.get("f_star");
      m.reads_loss = true;
    }
  }
};

struct QuickpropRule : NoExtras {
  static constexpr const char* name = "quickprop";
  static constexpr const char* title = "QuickProp";
  using Loop = QuickpropLoop;
  using Group = QuickpropGroup;
  static constexpr auto groups = std::make_tuple(
      field("lr", &Group::lr), field("max_growth", &Group::max_growth), field("maximize", &Group::maximize));
  static constexpr std::array<OperandSpec<Group>, 4> operands{{{"params", "params", true, false},
                                                               {"grads", "grads", false, false},
                                                               {"prev_grads", "prev_grads", true, false},
                                                               {"prev_steps", "prev_steps", true, false}}};
  static constexpr bool cuda = false;

  static constexpr std::array<const char*, 1> bowl_methods{{"quickprop"}};
  static void set_bowl(bowl::Method<Loop>& m, std::size_t, const bowl::HyperRow& h) {
    bowl::reset(m);
    bowl::one_group(m.loop, Group{h.get("lr"), h.get("max_growth"), false});
    m.state_init = {0.0, 0.0};  // previous gradient, previous step
  }
};

struct RmspropRule : NoExtras {
  static constexpr const char* name = "rmsprop";
  static constexpr const char* title = "RMSprop";
  using Loop = RmspropLoop;
  using Group = RmspropGroup;
  static constexpr auto groups =
      std::make_tuple(field("lr", &Group::lr), field("alpha", &Group::alpha), field("eps", &Group::eps),
                      field("weight_decay", &Group::weight_decay), field("momentum", &Group::momentum),
                      field("centered", &Group::centered), field("maximize", &Group::maximize));
  static constexpr std::array<OperandSpec<Group>, 5> operands{
      {{"params", "params", true, false},
       {"grads", "grads", false, false},
       {"square_avgs", "square_avgs", true, false},
       {"grad_avgs", "grad_avgs", true, true, [](const Group& g) { return g.centered; },
        "grad_avgs: centered=True needs one array per parameter"},
       {"momentum_buffers", "momentum_buffers", true, true, [](const Group& g) { return g.momentum > 0.0; },
        "momentum_buffers: momentum > 0 needs one buffer per parameter"}}};
  static constexpr bool cuda = true;
  static constexpr const char* notes =
      " grad_avgs / momentum_buffers may be None when no group is centered / uses momentum.";

  static constexpr std::array<const char*, 1> bowl_methods{{"rmsprop"}};
  static void set_bowl(bowl::Method<Loop>& m, std::size_t, const bowl::HyperRow& h) {
    bowl::reset(m);
    bowl::one_group(m.loop, Group{h.get("lr"), h.get("alpha"), h.get("eps"), h.get("weight_decay"),
                                  h.get("momentum"), h.get("centered") != 0.0, false});
    m.state_init = {0.0, 0.0, 0.0};  // square_avg, grad_avg, momentum buffer
  }
};

struct AdamRule : NoExtras {
  static constexpr const char* name = "adam";
  static constexpr const char* title = "Adam / AdamW / AMSGrad";
  using Loop = AdamLoop;
  using Group = AdamGroup;
  static constexpr auto groups =
      std::make_tuple(field("lr", &Group::lr), field("beta1", &Group::beta1), field("beta2", &Group::beta2),
                      field("eps", &Group::eps), field("weight_decay", &Group::weight_decay),
                      field("amsgrad", &Group::amsgrad), field("maximize", &Group::maximize),
                      field("decoupled_weight_decay", &Group::decoupled_weight_decay));
  static constexpr std::array<OperandSpec<Group>, 5> operands{
      {{"params", "params", true, false},
       {"grads", "grads", false, false},
       {"exp_avgs", "exp_avgs", true, false},
       {"exp_avg_sqs", "exp_avg_sqs", true, false},
       {"max_exp_avg_sqs", "max_exp_avg_sqs", true, true, [](const Group& g) { return g.amsgrad; },
        "max_exp_avg_sqs: amsgrad=True needs one array per parameter"}}};
  static constexpr bool counts_steps = true;
  static constexpr bool device_steps = true;
  static constexpr bool cuda = true;

  static constexpr std::array<const char*, 1> bowl_methods{{"adam"}};
  static void set_bowl(bowl::Method<Loop>& m, std::size_t, const bowl::HyperRow& h) {
    bowl::reset(m);
    bowl::one_group(m.loop,
                    Group{h.get("lr"), h.get("beta1"), h.get("beta2"), h.get("eps"), h.get("weight_decay"),
                          h.get("amsgrad") != 0.0, false, h.get("decoupled_weight_decay") != 0.0});
    m.loop.steps.assign(1, 0.0);
    m.state_init = {0.0, 0.0, 0.0};  // exp_avg, exp_avg_sq, max_exp_avg_sq
    m.before_step = bowl::count_steps<Loop>;
    m.hook_per_lane = true;  // the bias corrections follow the step count
  }
};

// ---- the list -----------------------------------------------------------------------------

template <class... R>
struct List {
  // f(Rule{}) for every entry, in order.
  template <class F>
  static void each(F&& f) {
    (f(R{}), ...);
  }
};

struct LionRule : NoExtras {
  static constexpr const char* name = "lion";
  static constexpr const char* title = "Lion";
  using Loop = LionLoop;
  using Group = LionGroup;
  static constexpr auto groups =
      std::make_tuple(field("lr", &Group::lr), field("beta1", &Group::beta1), field("beta2", &Group::beta2),
                      field("weight_decay", &Group::weight_decay), field("maximize", &Group::maximize));
  static constexpr std::array<OperandSpec<Group>, 3> operands{{{"params", "params", true, false},
                                                               {"grads", "grads", false, false},
                                                               {"exp_avgs", "exp_avgs", true, false}}};
  static constexpr bool cuda = true;

  static constexpr std::array<const char*, 1> bowl_methods{{"lion"}};
  static void set_bowl(bowl::Method<Loop>& m, std::size_t, const bowl::HyperRow& h) {
    bowl::reset(m);
    bowl::one_group(m.loop, Group{h.get("lr"), h.get("beta1"), h.get("beta2"), h.get("weight_decay"), false});
    m.state_init = {0.0};  // exp_avg
  }
};

struct AdamaxRule : NoExtras {
  static constexpr const char* name = "adamax";
  static constexpr const char* title = "Adamax";
  using Loop = AdamaxLoop;
  using Group = AdamaxGroup;
  static constexpr auto groups =
      std::make_tuple(field("lr", &Group::lr), field("beta1", &Group::beta1), field("beta2", &Group::beta2),
                      field("eps", &Group::eps), field("weight_decay", &Group::weight_decay),
                      field("maximize", &Group::maximize));
  static constexpr std::array<OperandSpec<Group>, 4> operands{{{"params", "params", true, false},
                                                               {"grads", "grads", false, false},
                                                               {"exp_avgs", "exp_avgs", true, false},
                                                               {"exp_infs", "exp_infs", true, false}}};
  static constexpr bool counts_steps = true;
  static constexpr bool cuda = false;

  static constexpr std::array<const char*, 1> bowl_methods{{"adamax"}};
  static void set_bowl(bowl::Method<Loop>& m, std::size_t, const bowl::HyperRow& h) {
    bowl::reset(m);
    bowl::one_group(m.loop,
                    Group{h.get("lr"), h.get("beta1"), h.get("beta2"), h.get("eps"), h.get("weight_decay"), false});
    m.loop.steps.assign(1, 0.0);
    m.state_init = {0.0, 0.0};  // exp_avg, exp_inf
    m.before_step = bowl::count_steps<Loop>;
    m.hook_per_lane = true;  // the bias correction follows the step count
  }
};

struct AdadeltaRule : NoExtras {
  static constexpr const char* name = "adadelta";
  static constexpr const char* title = "Adadelta";
  using Loop = AdadeltaLoop;
  using Group = AdadeltaGroup;
  static constexpr auto groups =
      std::make_tuple(field("lr", &Group::lr), field("rho", &Group::rho), field("eps", &Group::eps),
                      field("weight_decay", &Group::weight_decay), field("maximize", &Group::maximize));
  static constexpr std::array<OperandSpec<Group>, 4> operands{{{"params", "params", true, false},
                                                               {"grads", "grads", false, false},
                                                               {"square_avgs", "square_avgs", true, false},
                                                               {"acc_deltas", "acc_deltas", true, false}}};
  static constexpr bool cuda = false;

  static constexpr std::array<const char*, 1> bowl_methods{{"adadelta"}};
  static void set_bowl(bowl::Method<Loop>& m, std::size_t, const bowl::HyperRow& h) {
    bowl::reset(m);
    bowl::one_group(m.loop, Group{h.get("lr"), h.get("rho"), h.get("eps"), h.get("weight_decay"), false});
    m.state_init = {0.0, 0.0};  // square_avg, acc_delta
  }
};

struct RadamRule : NoExtras {
  static constexpr const char* name = "radam";
  static constexpr const char* title = "RAdam";
  using Loop = RadamLoop;
  using Group = RadamGroup;
  static constexpr auto groups =
      std::make_tuple(field("lr", &Group::lr), field("beta1", &Group::beta1), field("beta2", &Group::beta2),
                      field("eps", &Group::eps), field("weight_decay", &Group::weight_decay),
                      field("decoupled_weight_decay", &Group::decoupled_weight_decay),
                      field("maximize", &Group::maximize));
  static constexpr std::array<OperandSpec<Group>, 4> operands{{{"params", "params", true, false},
                                                               {"grads", "grads", false, false},
                                                               {"exp_avgs", "exp_avgs", true, false},
                                                               {"exp_avg_sqs", "exp_avg_sqs", true, false}}};
  static constexpr bool counts_steps = true;
  static constexpr bool cuda = false;

  static constexpr std::array<const char*, 1> bowl_methods{{"radam"}};
  static void set_bowl(bowl::Method<Loop>& m, std::size_t, const bowl::HyperRow& h) {
    bowl::reset(m);
    bowl::one_group(m.loop, Group{h.get("lr"), h.get("beta1"), h.get("beta2"), h.get("eps"), h.get("weight_decay"),
                                  h.get("decoupled_weight_decay") != 0.0, false});
    m.loop.steps.assign(1, 0.0);
    m.state_init = {0.0, 0.0};  // exp_avg, exp_avg_sq
    m.before_step = bowl::count_steps<Loop>;
    m.hook_per_lane = true;  // the bias corrections and r_t follow the step count
  }
};

// NAdam: mu_product is per-parameter scalar state (NoExtras::scalar_state).
struct NadamRule : NoExtras {
  static constexpr const char* name = "nadam";
  static constexpr const char* title = "NAdam";
  using Loop = NadamLoop;
  using Group = NadamGroup;
  static constexpr auto groups =
      std::make_tuple(field("lr", &Group::lr), field("beta1", &Group::beta1), field("beta2", &Group::beta2),
                      field("eps", &Group::eps), field("weight_decay", &Group::weight_decay),
                      field("momentum_decay", &Group::momentum_decay),
                      field("decoupled_weight_decay", &Group::decoupled_weight_decay),
                      field("maximize", &Group::maximize), field("mu_product", &Group::mu_product),
                      field("scalar_float64", &Group::scalar_float64));
  static constexpr auto scalar_state = std::make_tuple(field("mu_product", &Group::mu_product));
  static constexpr std::array<OperandSpec<Group>, 4> operands{{{"params", "params", true, false},
                                                               {"grads", "grads", false, false},
                                                               {"exp_avgs", "exp_avgs", true, false},
                                                               {"exp_avg_sqs", "exp_avg_sqs", true, false}}};
  static constexpr bool counts_steps = true;
  static constexpr bool cuda = false;

  static constexpr std::array<const char*, 1> bowl_methods{{"nadam"}};
  static void set_bowl(bowl::Method<Loop>& m, std::size_t, const bowl::HyperRow& h) {
    bowl::reset(m);
    bowl::one_group(m.loop, Group{h.get("lr"), h.get("beta1"), h.get("beta2"), h.get("eps"),
                                  h.get("weight_decay"), h.get("momentum_decay"),
                                  h.get("decoupled_weight_decay") != 0.0, false, 1.0, false});
    m.loop.steps.assign(1, 0.0);
    m.state_init = {0.0, 0.0};  // exp_avg, exp_avg_sq
    m.before_step = bowl::count_steps_and_advance<Loop>;
    m.hook_per_lane = true;  // mu_product and the bias correction follow the step count
  }
};

// ASGD: eta and mu are per-parameter scalar state (NoExtras::scalar_state).
struct AsgdRule : NoExtras {
  static constexpr const char* name = "asgd";
  static constexpr const char* title = "ASGD";
  using Loop = AsgdLoop;
  using Group = AsgdGroup;
  static constexpr auto groups =
      std::make_tuple(field("lr", &Group::lr), field("lambd", &Group::lambd), field("alpha", &Group::alpha),
                      field("t0", &Group::t0), field("weight_decay", &Group::weight_decay),
                      field("maximize", &Group::maximize), field("eta", &Group::eta), field("mu", &Group::mu),
                      field("scalar_float64", &Group::scalar_float64));
  static constexpr auto scalar_state = std::make_tuple(field("eta", &Group::eta), field("mu", &Group::mu));
  static constexpr std::array<OperandSpec<Group>, 3> operands{
      {{"params", "params", true, false}, {"grads", "grads", false, false}, {"axs", "axs", true, false}}};
  static constexpr bool counts_steps = true;
  static constexpr bool cuda = false;

  static constexpr std::array<const char*, 1> bowl_methods{{"asgd"}};
  static void set_bowl(bowl::Method<Loop>& m, std::size_t, const bowl::HyperRow& h) {
    bowl::reset(m);
    const double lr = h.get("lr");
    bowl::one_group(m.loop, Group{lr, h.get("lambd"), h.get("alpha"), h.get("t0"), h.get("weight_decay"), false,
                                  static_cast<double>(static_cast<float>(lr)), 1.0, false});
    m.loop.steps.assign(1, 0.0);
    m.state_init = {0.0};  // ax
    m.before_step = bowl::count_steps_and_advance<Loop>;
    m.hook_per_lane = true;  // eta and mu follow the step count
  }
};

using Rules = List<RpropRule, AdagradRule, SgdRule, QuickpropRule, RmspropRule, AdamRule, LionRule, AdamaxRule,
                   AdadeltaRule,
                   RadamRule, NadamRule, AsgdRule>;

// ---- working with an entry ------------------------------------------------------------------

// The Python scalars of one group, as the bindings receive them: std::tuple<double, ..., bool>.
template <class Fields>
struct TupleOf;
template <class... F>
struct TupleOf<std::tuple<F...>> {
  using type = std::tuple<typename F::type...>;
};
template <class Rule>
using GroupTuple = typename TupleOf<std::remove_const_t<decltype(Rule::groups)>>::type;

template <class Rule, std::size_t... I>
typename Rule::Group group_from(const GroupTuple<Rule>& t, std::index_sequence<I...>) {
  typename Rule::Group g{};
  ((g.*(std::get<I>(Rule::groups).member) = std::get<I>(t)), ...);
  return g;
}

// A group tuple -> the entry's Group, field by field through its table.
template <class Rule>
typename Rule::Group group_from(const GroupTuple<Rule>& t) {
  return group_from<Rule>(t, std::make_index_sequence<std::tuple_size<GroupTuple<Rule>>::value>{});
}

template <class Rule>
std::vector<typename Rule::Group> groups_from(const std::vector<GroupTuple<Rule>>& tuples) {
  std::vector<typename Rule::Group> out;
  out.reserve(tuples.size());
  for (const auto& t : tuples) out.push_back(group_from<Rule>(t));
  return out;
}

// The names of the hyper-parameters of a group tuple, in order.
template <class Rule>
std::vector<std::string> field_names() {
  std::vector<std::string> names;
  std::apply([&names](const auto&... f) { (names.push_back(f.name), ...); }, Rule::groups);
  return names;
}

// "(lr, beta1, ...)".
template <class Rule>
std::string fields_str() {
  std::string s = "(";
  for (const std::string& n : field_names<Rule>()) s += (s.size() > 1 ? ", " : "") + n;
  return s + ")";
}

// The names of an entry's scalar state, in order (empty for most rules).
template <class Rule>
std::vector<std::string> scalar_state_names() {
  std::vector<std::string> names;
  std::apply([&names](const auto&... f) { (names.push_back(f.name), ...); }, Rule::scalar_state);
  return names;
}

// How many trailing fields of the group table are scalar state and its dtype flag.
template <class Rule>
constexpr std::size_t scalar_field_count() {
  constexpr std::size_t n = std::tuple_size<std::remove_const_t<decltype(Rule::scalar_state)>>::value;
  return n == 0 ? 0 : n + 1;
}

// A group's scalar state after step t (Group::after_step), as doubles that the state's
// dtype holds exactly.
template <class Rule>
std::vector<double> scalar_state_after(typename Rule::Group g, double t) {
  g.after_step(t);
  std::vector<double> out;
  std::apply([&](const auto&... f) { (out.push_back(static_cast<double>(g.*(f.member))), ...); },
             Rule::scalar_state);
  return out;
}

// A ValueError (std::invalid_argument) when an optional operand list is None but a group needs it.
template <class Rule, std::size_t K>
void require_operands(const std::vector<typename Rule::Group>& groups, const std::array<bool, K>& given) {
  for (std::size_t k = 0; k < K; ++k) {
    const auto& op = Rule::operands[k];
    if (given[k] || op.needed_by == nullptr) continue;
    for (const auto& g : groups)
      if (op.needed_by(g)) throw std::invalid_argument(op.needed_message);
  }
}

}  // namespace registry

namespace bowl {

// Method names the simulator runs: every entry's bowl methods, in the list's order.
inline std::vector<std::string> compiled_methods() {
  std::vector<std::string> names;
  registry::Rules::each([&names](auto rule) {
    for (const char* n : decltype(rule)::bowl_methods) names.push_back(n);
  });
  return names;
}

// The integration point: `use` is called with the named method's Maker (make(row) returns
// a Method<Loop>, make(m, row) sets m). The hyper-parameter names are those the Python
// side sends; booleans travel as 0 or 1. One maker type per loop (the entry's method is a
// value), so that each loop's simulator is compiled once.
template <class Use>
void with_method(const std::string& name, Use&& use) {
  bool found = false;
  registry::Rules::each([&](auto rule) {
    using Rule = decltype(rule);
    using Loop = typename Rule::Loop;
    if (found) return;
    for (std::size_t k = 0; k < Rule::bowl_methods.size(); ++k)
      if (name == Rule::bowl_methods[k]) {
        found = true;
        use(maker<Loop>([k](Method<Loop>& m, const HyperRow& h) { Rule::set_bowl(m, k, h); }));
        return;
      }
  });
  if (!found) throw std::invalid_argument("method: unknown bowl method '" + name + "'");
}

}  // namespace bowl
}  // namespace optbowl
