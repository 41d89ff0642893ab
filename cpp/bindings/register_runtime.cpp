// Threads and build facts.
#include <pybind11/pybind11.h>

#include "optbowl/multi_tensor.hpp"

namespace optbowl {
namespace py = pybind11;

void register_runtime(py::module_& m) {
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 0) throw py::value_error("n: must be >= 0 (0 restores the default), got " + std::to_string(n));
        thread_setting() = n;
      },
      py::arg("n"));
  m.def("get_num_threads", [] { return max_threads(); });
  m.def("has_openmp", [] {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
  });
  m.attr("chunk_size") = kChunk;
  m.attr("parallel_min") = kParallelMin;
}

}  // namespace optbowl
