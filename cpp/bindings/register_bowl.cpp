// optbowl._core.bowl_run / bowl_sweep: the quadratic-bowl simulator on the optimizers' loops.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "optbowl/registry.hpp"

namespace optbowl {
namespace py = pybind11;

namespace {

using Doubles = py::array_t<double, py::array::c_style | py::array::forcecast>;

bowl::Problem problem(const Doubles& A, const Doubles& b, double c) {
  if (A.ndim() != 2 || A.shape(0) != A.shape(1)) throw py::value_error("A: expected a square matrix");
  const std::int64_t n = A.shape(0);
  if (b.ndim() != 1 || b.shape(0) != n)
    throw py::value_error("b: expected a vector of length " + std::to_string(n));
  return {A.data(), b.data(), c, n};
}

void check_vector(const Doubles& v, const char* name, std::int64_t n) {
  if (v.ndim() != 1 || v.shape(0) != n)
    throw py::value_error(std::string(name) + ": expected a vector of length " + std::to_string(n));
}

template <class F>
void with_dtype(const std::string& dtype, F&& f) {
  if (dtype == "float32") return f(float{});
  if (dtype == "float64") return f(double{});
  throw py::value_error("dtype: expected 'float32' or 'float64', got '" + dtype + "'");
}

// Newton's factorisation when the method takes Newton's direction, else null.
template <class M>
std::unique_ptr<bowl::LU> factor_if_newton(const M& method, const bowl::Problem& P) {
  if (method.direction != bowl::Direction::newton) return nullptr;
  return std::make_unique<bowl::LU>(P.A, P.n);
}

}  // namespace

void register_bowl(py::module_& m) {
  m.def("bowl_methods", &bowl::compiled_methods, "Names of the methods compiled into the bowl simulator.");

  m.def(
      "bowl_run",
      [](const std::string& method, const Doubles& A, const Doubles& b, double c, const Doubles& x0,
         std::int64_t steps, const std::vector<std::string>& names, const Doubles& hyper,
         const std::string& dtype, const py::object& noise, double sigma) {
        const bowl::Problem P = problem(A, b, c);
        check_vector(x0, "x0", P.n);
        if (steps < 0) throw py::value_error("steps: must be >= 0");
        // Gradient noise: standard normal draws, one row of n per step, scaled by sigma.
        Doubles xi;
        bowl::Noise gradient_noise;
        if (!noise.is_none()) {
          xi = noise.cast<Doubles>();
          if (xi.ndim() != 2 || xi.shape(0) != steps || xi.shape(1) != P.n)
            throw py::value_error("noise: expected draws of shape (steps, n)");
          if (!(sigma >= 0.0) || !std::isfinite(sigma)) throw py::value_error("noise: sigma must be finite and >= 0");
          gradient_noise = {xi.data(), sigma};
        }
        if (hyper.ndim() != 1 || hyper.shape(0) != static_cast<py::ssize_t>(names.size()))
          throw py::value_error("hyper: expected one value per name");
        py::tuple out;
        bowl::with_method(method, [&](auto make) {
          const auto proto = make(bowl::HyperRow{&names, hyper.data()});
          const auto lu = factor_if_newton(proto, P);
          with_dtype(dtype, [&](auto tag) {
            using T = decltype(tag);
            py::array_t<T> xs({steps + 1, P.n});
            py::array_t<double> f(steps + 1), grad_norm(steps + 1);
            bowl::Record<T> rec{xs.mutable_data(), f.mutable_data(), grad_norm.mutable_data()};
            {
              py::gil_scoped_release release;
              bowl::simulate<T>(P, lu.get(), proto, x0.data(), x0.data(), steps, steps, rec, gradient_noise);
            }
            out = py::make_tuple(xs, f, grad_norm);
          });
        });
        return out;
      },
      py::arg("method"), py::arg("A"), py::arg("b"), py::arg("c"), py::arg("x0"), py::arg("steps"),
      py::arg("names"), py::arg("hyper"), py::arg("dtype"), py::arg("noise") = py::none(),
      py::arg("sigma") = 0.0,
      "Run one method on the bowl ½xᵀAx − bᵀx + c; returns (x (steps+1, n), f, |grad|). "
      "noise: standard normal draws (steps, n), added times sigma to every gradient.");

  m.def(
      "bowl_sweep",
      [](const std::string& method, const Doubles& A, const Doubles& b, const Doubles& x0, const Doubles& xstar,
         std::int64_t steps, const std::vector<std::string>& names, const Doubles& table,
         const std::string& dtype) {
        const bowl::Problem P = problem(A, b, 0.0);
        check_vector(x0, "x0", P.n);
        check_vector(xstar, "xstar", P.n);
        if (steps < 1) throw py::value_error("steps: must be >= 1");
        if (table.ndim() != 2 || table.shape(1) != static_cast<py::ssize_t>(names.size()))
          throw py::value_error("table: expected one column per name");
        const std::int64_t rows = table.shape(0);
        py::array_t<double> err_mid(rows), err_end(rows);
        py::array_t<bool> diverged(rows);
        double err_start = 0;
        bowl::with_method(method, [&](auto make) {
          std::unique_ptr<bowl::LU> lu;
          if (rows > 0) lu = factor_if_newton(make(bowl::HyperRow{&names, table.data()}), P);
          with_dtype(dtype, [&](auto tag) {
            using T = decltype(tag);
            py::gil_scoped_release release;
            bowl::sweep<T>(P, lu.get(), make, names, table.data(), rows, x0.data(), xstar.data(), steps,
                           err_mid.mutable_data(), err_end.mutable_data(), diverged.mutable_data(), err_start);
          });
        });
        return py::make_tuple(err_start, err_mid, err_end, diverged);
      },
      py::arg("method"), py::arg("A"), py::arg("b"), py::arg("x0"), py::arg("xstar"), py::arg("steps"),
      py::arg("names"), py::arg("table"), py::arg("dtype"),
      "Run many configurations (rows of `table`) of one method, OpenMP over the rows; returns "
      "(|x0 − x*|, error after steps // 2 steps, error at the end, diverged).");
}

}  // namespace optbowl
