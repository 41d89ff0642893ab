// optbowl._core.sgd: one multi-tensor SGD step (plain, momentum, Nesterov).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <tuple>
#include <vector>

#include "arrays.hpp"
#include "optbowl/loops/sgd_loop.hpp"

namespace optbowl {

void register_sgd(py::module_& m) {
  m.def(
      "sgd",
      [](py::list params, py::list grads, py::object momentum_buffers, const std::vector<double>& steps,
         const std::vector<std::tuple<double, double, double, double, bool, bool>>& groups,
         const std::vector<std::int64_t>& group_sizes, const std::vector<bool>& fused_tails) {
        SgdLoop loop;
        for (const auto& g : groups)
          loop.groups.push_back({std::get<0>(g), std::get<1>(g), std::get<2>(g), std::get<3>(g),
                                 std::get<4>(g), std::get<5>(g)});
        if (!fused_tails.empty() && fused_tails.size() != loop.groups.size())
          throw py::value_error("fused_tails: expected one flag per group");
        for (std::size_t k = 0; k < fused_tails.size(); ++k) loop.groups[k].fused_tail = fused_tails[k];
        bool uses_momentum = false;
        for (const auto& g : loop.groups) uses_momentum = uses_momentum || g.momentum != 0.0;
        if (uses_momentum && momentum_buffers.is_none())
          throw py::value_error("momentum_buffers: momentum != 0 needs one buffer per parameter");
        const TensorTable<3> table = gather<3>({Operand{"params", params, true},
                                                Operand{"grads", grads, false},
                                                Operand{"momentum_buffers", momentum_buffers, true}});
        if (steps.size() != table.size())
          throw py::value_error("steps: expected one step count per tensor");
        loop.steps = steps;
        loop.group_of = group_index(group_sizes, table.size());
        py::gil_scoped_release release;
        for_each_element(loop, table);
      },
      py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("steps"),
      py::arg("groups"), py::arg("group_sizes"), py::arg("fused_tails") = std::vector<bool>{},
      "One SGD step over lists of arrays, in place. steps: the step count t of each tensor "
      "(after this step; t == 1 starts the momentum buffer); groups: (lr, momentum, dampening, "
      "weight_decay, nesterov, maximize) per group; fused_tails: per group, whether each "
      "tensor's scalar tail is rounded as torch's fused=True kernel rounds it (default: none, "
      "every element as torch's foreach and single-tensor paths).");
}

}  // namespace optbowl
