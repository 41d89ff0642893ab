// optbowl._core.rmsprop: one multi-tensor RMSprop step.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <tuple>
#include <vector>

#include "arrays.hpp"
#include "optbowl/loops/rmsprop_loop.hpp"

namespace optbowl {

void register_rmsprop(py::module_& m) {
  m.def(
      "rmsprop",
      [](py::list params, py::list grads, py::list square_avgs, py::object grad_avgs,
         py::object momentum_buffers,
         const std::vector<std::tuple<double, double, double, double, double, bool, bool>>& groups,
         const std::vector<std::int64_t>& group_sizes) {
        RmspropLoop loop;
        bool centered = false, momentum = false;
        for (const auto& g : groups) {
          loop.groups.push_back({std::get<0>(g), std::get<1>(g), std::get<2>(g), std::get<3>(g),
                                 std::get<4>(g), std::get<5>(g), std::get<6>(g)});
          centered = centered || std::get<5>(g);
          momentum = momentum || std::get<4>(g) > 0.0;
        }
        if (centered && grad_avgs.is_none())
          throw py::value_error("grad_avgs: centered=True needs one array per parameter");
        if (momentum && momentum_buffers.is_none())
          throw py::value_error("momentum_buffers: momentum > 0 needs one buffer per parameter");
        const TensorTable<5> table = gather<5>({Operand{"params", params, true},
                                                Operand{"grads", grads, false},
                                                Operand{"square_avgs", square_avgs, true},
                                                Operand{"grad_avgs", grad_avgs, true},
                                                Operand{"momentum_buffers", momentum_buffers, true}});
        loop.group_of = group_index(group_sizes, table.size());
        py::gil_scoped_release release;
        for_each_element(loop, table);
      },
      py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("grad_avgs"),
      py::arg("momentum_buffers"), py::arg("groups"), py::arg("group_sizes"),
      "One RMSprop step over lists of arrays, in place. groups: (lr, alpha, eps, weight_decay, "
      "momentum, centered, maximize) per group; grad_avgs / momentum_buffers may be None when no "
      "group is centered / uses momentum.");
}

}  // namespace optbowl
