// optbowl._core.quickprop: one multi-tensor QuickProp step.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <tuple>
#include <vector>

#include "arrays.hpp"
#include "optbowl/loops/quickprop_loop.hpp"

namespace optbowl {

void register_quickprop(py::module_& m) {
  m.def(
      "quickprop",
      [](py::list params, py::list grads, py::list prev_grads, py::list prev_steps,
         const std::vector<std::tuple<double, double, bool>>& groups,
         const std::vector<std::int64_t>& group_sizes) {
        const TensorTable<4> table = gather<4>({Operand{"params", params, true},
                                                Operand{"grads", grads, false},
                                                Operand{"prev_grads", prev_grads, true},
                                                Operand{"prev_steps", prev_steps, true}});
        QuickpropLoop loop;
        for (const auto& g : groups) loop.groups.push_back({std::get<0>(g), std::get<1>(g), std::get<2>(g)});
        loop.group_of = group_index(group_sizes, table.size());
        py::gil_scoped_release release;
        for_each_element(loop, table);
      },
      py::arg("params"), py::arg("grads"), py::arg("prev_grads"), py::arg("prev_steps"),
      py::arg("groups"), py::arg("group_sizes"),
      "One QuickProp step over lists of arrays, in place. groups: (lr, max_growth, maximize) per "
      "group.");
}

}  // namespace optbowl
