// optbowl._core.adagrad: one multi-tensor AdaGrad step (dense gradients).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <tuple>
#include <vector>

#include "arrays.hpp"
#include "optbowl/loops/adagrad_loop.hpp"

namespace optbowl {

void register_adagrad(py::module_& m) {
  m.def(
      "adagrad",
      [](py::list params, py::list grads, py::list sums, const std::vector<double>& steps,
         const std::vector<std::tuple<double, double, double, double, bool>>& groups,
         const std::vector<std::int64_t>& group_sizes) {
        const TensorTable<3> table = gather<3>({Operand{"params", params, true},
                                                Operand{"grads", grads, false},
                                                Operand{"sums", sums, true}});
        AdagradLoop loop;
        if (steps.size() != table.size())
          throw py::value_error("steps: expected one step count per tensor");
        loop.steps = steps;
        for (const auto& g : groups)
          loop.groups.push_back({std::get<0>(g), std::get<1>(g), std::get<2>(g), std::get<3>(g),
                                 std::get<4>(g)});
        loop.group_of = group_index(group_sizes, table.size());
        py::gil_scoped_release release;
        for_each_element(loop, table);
      },
      py::arg("params"), py::arg("grads"), py::arg("sums"), py::arg("steps"), py::arg("groups"),
      py::arg("group_sizes"),
      "One AdaGrad step over lists of arrays, in place. steps: the step count t of each tensor "
      "(after this step); groups: (lr, lr_decay, weight_decay, eps, maximize) per group.");
}

}  // namespace optbowl
