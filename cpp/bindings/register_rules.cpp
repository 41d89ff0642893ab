// optbowl._core.<rule>: one multi-tensor step of each compiled rule (optbowl/registry.hpp),
// and optbowl._core.rules, the registry's names.
//
// Every step function has the signature
//   <rule>([lead...,] operands..., [steps,] groups, group_sizes[, trail...])
// where the operands are lists of arrays (a list that may be None is any object), steps a
// step count per tensor (rules that count steps), groups a tuple of Python scalars per
// group unpacked through the entry's field table, and lead / trail the entry's few extra
// arguments. The call checks everything (the entry's hook, the lists a group needs, every
// array: arrays.hpp) before it writes anything, then runs the loop without the GIL.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "arrays.hpp"
#include "optbowl/registry.hpp"

namespace optbowl {
namespace {

namespace reg = registry;

// A required operand list must be a list; one that may be None is any object (checked by gather).
template <bool Optional>
using OperandArg = std::conditional_t<Optional, py::object, py::list>;

template <class Rule>
using Steps = std::conditional_t<Rule::counts_steps, std::tuple<const std::vector<double>&>, std::tuple<>>;

// One step of `Rule`, the arguments unpacked.
template <class Rule, class Lead, class Mid, class Trail>
void step(const Lead& lead, const std::array<py::handle, Rule::operands.size()>& lists, const Mid& mid,
          const std::vector<reg::GroupTuple<Rule>>& groups, const std::vector<std::int64_t>& group_sizes,
          const Trail& trail) {
  constexpr std::size_t K = Rule::operands.size();
  static_assert(K == Rule::Loop::K, "one operand list per pointer of the loop");
  typename Rule::Loop loop;
  loop.groups = reg::groups_from<Rule>(groups);
  std::array<bool, K> given{};
  for (std::size_t k = 0; k < K; ++k) given[k] = !lists[k].is_none();
  Rule::setup(loop, lead, trail, given);
  reg::require_operands<Rule>(loop.groups, given);
  std::array<Operand, K> ops{};
  for (std::size_t k = 0; k < K; ++k)
    ops[k] = Operand{Rule::operands[k].label, lists[k], Rule::operands[k].written, Rule::int8(loop, k), nullptr,
                     k >= 2};  // the state lists: float32 beside a 16-bit parameter too
  const TensorTable<K> table = gather<K>(ops);
  if constexpr (Rule::counts_steps) {
    const std::vector<double>& steps = std::get<0>(mid);
    if (steps.size() != table.size()) throw py::value_error("steps: expected one step count per tensor");
    loop.steps = steps;
  }
  loop.group_of = group_index(group_sizes, table.size());
  py::gil_scoped_release release;
  for_each_element(loop, table);
}

template <class Rule>
std::string doc() {
  std::string s = std::string("One ") + Rule::title + " step over lists of arrays, in place.";
  if (Rule::counts_steps) s += " steps: the step count t of each tensor (after this step).";
  s += " groups: " + reg::fields_str<Rule>() + " per group; group_sizes: tensors per group, in order.";
  return s + Rule::notes;
}

template <std::size_t N, std::size_t... J>
auto args_of(const std::array<const char*, N>& names, std::index_sequence<J...>) {
  return std::make_tuple(py::arg(names[J])...);
}

template <std::size_t N, class Defaults, std::size_t... J>
auto args_with_defaults(const std::array<const char*, N>& names, const Defaults& defaults,
                        std::index_sequence<J...>) {
  return std::make_tuple((py::arg(names[J]) = std::get<J>(defaults))...);
}

template <class Rule, class... Lead, std::size_t... I, class... Mid, class... Trail>
void def_rule(py::module_& m, std::tuple<Lead...>*, std::index_sequence<I...>, std::tuple<Mid...>*,
              std::tuple<Trail...>*) {
  auto f = [](Lead... lead, OperandArg<Rule::operands[I].optional>... lists, Mid... mid,
              const std::vector<reg::GroupTuple<Rule>>& groups, const std::vector<std::int64_t>& group_sizes,
              Trail... trail) {
    step<Rule>(std::forward_as_tuple(lead...), {{py::handle(lists)...}}, std::forward_as_tuple(mid...),
               groups, group_sizes, std::forward_as_tuple(trail...));
  };
  const auto steps_arg = [] {
    if constexpr (Rule::counts_steps)
      return std::make_tuple(py::arg("steps"));
    else
      return std::tuple<>{};
  }();
  const auto args = std::tuple_cat(args_of(Rule::lead_names, std::make_index_sequence<sizeof...(Lead)>{}),
                                   std::make_tuple(py::arg(Rule::operands[I].arg)...), steps_arg,
                                   std::make_tuple(py::arg("groups"), py::arg("group_sizes")),
                                   args_with_defaults(Rule::trail_names, Rule::trail_defaults(),
                                                      std::make_index_sequence<sizeof...(Trail)>{}));
  const std::string text = doc<Rule>();
  std::apply([&](const auto&... a) { m.def(Rule::name, f, a..., text.c_str()); }, args);
}

template <class Rule>
py::dict names_of() {
  py::dict d;
  std::vector<std::string> fields = reg::field_names<Rule>();
  fields.resize(fields.size() - reg::scalar_field_count<Rule>());
  d["groups"] = py::tuple(py::cast(fields));  // the hyper-parameters
  d["scalar_state"] = py::tuple(py::cast(reg::scalar_state_names<Rule>()));
  py::list operands, labels;
  for (const auto& op : Rule::operands) {
    operands.append(op.arg);
    labels.append(op.label);
  }
  d["operands"] = py::tuple(operands);
  d["labels"] = py::tuple(labels);
  d["cuda"] = Rule::cuda;
  return d;
}

}  // namespace

void register_rules(py::module_& m) {
  py::dict rules;
  reg::Rules::each([&](auto rule) {
    using Rule = decltype(rule);
    def_rule<Rule>(m, static_cast<typename Rule::Lead*>(nullptr),
                   std::make_index_sequence<Rule::operands.size()>{}, static_cast<Steps<Rule>*>(nullptr),
                   static_cast<typename Rule::Trail*>(nullptr));
    rules[Rule::name] = names_of<Rule>();
  });
  m.def(
      "scalar_state_after",
      [](const std::string& name, const py::tuple& group, double t) {
        py::tuple out;
        bool found = false;
        reg::Rules::each([&](auto rule) {
          using Rule = decltype(rule);
          if constexpr (reg::scalar_field_count<Rule>() != 0) {
            if (found || name != Rule::name) return;
            found = true;
            const auto values = group.cast<reg::GroupTuple<Rule>>();
            out = py::tuple(py::cast(reg::scalar_state_after<Rule>(reg::group_from<Rule>(values), t)));
          }
        });
        if (!found) throw py::value_error("name: no rule with scalar state is called '" + name + "'");
        return out;
      },
      py::arg("name"), py::arg("group"), py::arg("t"),
      "The scalar state of a rule that keeps one (its entry's scalar_state, e.g. NAdam's "
      "mu_product) after step t (counting from 1), from one group tuple of its step function (the "
      "state's values before the step among them): a tuple of floats in the entry's order, each "
      "exact in the state's dtype.");
  // rule name -> {"groups": the group tuple's hyper-parameter names, "scalar_state": the
  // names of its scalar state (fields of the group tuple after them, then scalar_float64),
  // "operands": the step function's list arguments, "labels": their names in messages (and
  // in optbowl.functional), "cuda": whether optbowl._cuda has it}.
  m.attr("rules") = rules;
}

}  // namespace optbowl
