// optbowl._core: the compiled core. One register_<concept>.cpp per concept.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace optbowl {
void register_runtime(py::module_& m);
void register_rprop(py::module_& m);
void register_adagrad(py::module_& m);
void register_sgd(py::module_& m);
void register_quickprop(py::module_& m);
void register_rmsprop(py::module_& m);
void register_adam(py::module_& m);
void register_sparse(py::module_& m);
void register_bowl(py::module_& m);
void register_step(py::module_& m);
void register_quantized(py::module_& m);
}  // namespace optbowl

PYBIND11_MODULE(_core, m) {
  m.doc() = "optbowl's compiled core (private; use the optbowl package)";
  optbowl::register_runtime(m);
  optbowl::register_rprop(m);
  optbowl::register_adagrad(m);
  optbowl::register_sgd(m);
  optbowl::register_quickprop(m);
  optbowl::register_rmsprop(m);
  optbowl::register_adam(m);
  optbowl::register_sparse(m);
  optbowl::register_bowl(m);
  optbowl::register_step(m);
  optbowl::register_quantized(m);
}
