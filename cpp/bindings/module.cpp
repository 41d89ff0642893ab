// optbowl._core: the compiled core. One register_<concept>.cpp per concept; the step
// functions of the compiled rules come from their registry (register_rules.cpp).
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace optbowl {
void register_runtime(py::module_& m);
void register_rules(py::module_& m);
void register_sparse(py::module_& m);
void register_bowl(py::module_& m);
void register_step(py::module_& m);
void register_quantized(py::module_& m);
}  // namespace optbowl

PYBIND11_MODULE(_core, m) {
  m.doc() = "optbowl's compiled core (private; use the optbowl package)";
  optbowl::register_runtime(m);
  optbowl::register_rules(m);
  optbowl::register_sparse(m);
  optbowl::register_bowl(m);
  optbowl::register_step(m);
  optbowl::register_quantized(m);
}
