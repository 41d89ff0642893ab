// optbowl._core.adam: one multi-tensor Adam / AdamW / AMSGrad step.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <tuple>
#include <vector>

#include "arrays.hpp"
#include "optbowl/loops/adam_loop.hpp"

namespace optbowl {

void register_adam(py::module_& m) {
  m.def(
      "adam",
      [](py::list params, py::list grads, py::list exp_avgs, py::list exp_avg_sqs,
         py::object max_exp_avg_sqs, const std::vector<double>& steps,
         const std::vector<std::tuple<double, double, double, double, double, bool, bool, bool>>& groups,
         const std::vector<std::int64_t>& group_sizes) {
        AdamLoop loop;
        bool amsgrad = false;
        for (const auto& g : groups) {
          loop.groups.push_back({std::get<0>(g), std::get<1>(g), std::get<2>(g), std::get<3>(g),
                                 std::get<4>(g), std::get<5>(g), std::get<6>(g), std::get<7>(g)});
          amsgrad = amsgrad || std::get<5>(g);
        }
        if (amsgrad && max_exp_avg_sqs.is_none())
          throw py::value_error("max_exp_avg_sqs: amsgrad=True needs one array per parameter");
        const TensorTable<5> table = gather<5>({Operand{"params", params, true},
                                                Operand{"grads", grads, false},
                                                Operand{"exp_avgs", exp_avgs, true},
                                                Operand{"exp_avg_sqs", exp_avg_sqs, true},
                                                Operand{"max_exp_avg_sqs", max_exp_avg_sqs, true}});
        if (steps.size() != table.size())
          throw py::value_error("steps: expected one step count per tensor");
        loop.steps = steps;
        loop.group_of = group_index(group_sizes, table.size());
        py::gil_scoped_release release;
        for_each_element(loop, table);
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
      py::arg("max_exp_avg_sqs"), py::arg("steps"), py::arg("groups"), py::arg("group_sizes"),
      "One Adam step over lists of arrays, in place. steps: the step count t of each tensor (after "
      "this step); groups: (lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, "
      "decoupled_weight_decay) per group.");
}

}  // namespace optbowl
