// optbowl._core.rprop: one multi-tensor Rprop step.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <tuple>
#include <vector>

#include "arrays.hpp"
#include "optbowl/loops/rprop_loop.hpp"

namespace optbowl {

RpropVariant parse_variant(const std::string& v) {
  if (v == "irprop-") return RpropVariant::irprop_minus;
  if (v == "rprop-") return RpropVariant::rprop_minus;
  if (v == "rprop+") return RpropVariant::rprop_plus;
  if (v == "irprop+") return RpropVariant::irprop_plus;
  if (v == "backtrack") return RpropVariant::backtrack;
  throw py::value_error("variant: expected one of 'irprop-', 'rprop-', 'rprop+', 'irprop+', "
                        "'backtrack', got '" + v + "'");
}

void register_rprop(py::module_& m) {
  m.def(
      "rprop",
      [](const std::string& variant, py::list params, py::list grads, py::list prevs, py::list steps,
         py::object updates,
         const std::vector<std::tuple<double, double, double, double, bool>>& groups,
         const std::vector<std::int64_t>& group_sizes, bool loss_increased, bool compact_state) {
        RpropLoop loop;
        loop.variant = parse_variant(variant);
        loop.compact_state = compact_state;
        const bool plus = rprop_state_count(loop.variant) == 3;
        if (plus == updates.is_none())
          throw py::value_error(std::string("updates: variant '") + variant +
                                (plus ? "' needs" : "' takes no") + " update arrays");
        const TensorTable<5> table = gather<5>({Operand{"params", params, true},
                                                Operand{"grads", grads, false},
                                                Operand{"prevs", prevs, true, compact_state},
                                                Operand{"step_sizes", steps, true},
                                                Operand{"updates", updates, true}});
        for (const auto& g : groups)
          loop.groups.push_back({std::get<0>(g), std::get<1>(g), std::get<2>(g), std::get<3>(g),
                                 std::get<4>(g)});
        loop.group_of = group_index(group_sizes, table.size());
        loop.loss_increased = loss_increased;
        py::gil_scoped_release release;
        for_each_element(loop, table);
      },
      py::arg("variant"), py::arg("params"), py::arg("grads"), py::arg("prevs"), py::arg("steps"),
      py::arg("updates"), py::arg("groups"), py::arg("group_sizes"), py::arg("loss_increased") = true,
      py::arg("compact_state") = false,
      "One Rprop step over lists of arrays, in place. groups: (eta_minus, eta_plus, step_min, "
      "step_max, maximize) per group; group_sizes: tensors per group, in order; "
      "compact_state: prevs are int8 sign codes (-1, 0, 1; 2 for NaN).");
}

}  // namespace optbowl
