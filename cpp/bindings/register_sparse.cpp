// optbowl._core.sparse_adagrad: AdaGrad on row-sparse gradients (SparseRows).
//
// For every parameter (a 2-D array) the gradient is given as row indices and one row of
// values per index. Duplicate indices are summed first (torch's coalesce), then every
// touched row runs the same per-element rule as dense AdaGrad (rules/adagrad.hpp) through
// the same loop: each touched row becomes one entry of the tensor table.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "arrays.hpp"
#include "optbowl/loops/adagrad_loop.hpp"

namespace optbowl {

namespace {

// The rows of one parameter's gradient with duplicates summed, in ascending row order.
template <class T>
struct CoalescedRows {
  std::vector<std::int64_t> rows;
  std::vector<T> values;  // rows.size() * cols
};

template <class T>
CoalescedRows<T> coalesce(const std::int64_t* index, const T* values, std::int64_t n, std::int64_t cols) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  for (std::int64_t k = 0; k < n; ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(),
                   [index](std::int64_t a, std::int64_t b) { return index[a] < index[b]; });
  CoalescedRows<T> out;
  for (std::int64_t k : order) {
    const T* src = values + k * cols;
    if (out.rows.empty() || out.rows.back() != index[k]) {
      out.rows.push_back(index[k]);
      out.values.insert(out.values.end(), src, src + cols);
    } else {
      T* dst = out.values.data() + (out.values.size() - static_cast<std::size_t>(cols));
      for (std::int64_t j = 0; j < cols; ++j) dst[j] += src[j];
    }
  }
  return out;
}

}  // namespace

void register_sparse(py::module_& m) {
  m.def(
      "sparse_adagrad",
      [](py::list params, py::list grads, py::list sums, py::list indices, const std::vector<double>& steps,
         const std::vector<std::tuple<double, double, double, double, bool>>& groups,
         const std::vector<std::int64_t>& group_sizes) {
        const std::size_t n = params.size();
        if (grads.size() != n || sums.size() != n || indices.size() != n)
          throw py::value_error("grads, sums, indices: expected one entry per parameter");
        if (steps.size() != n) throw py::value_error("steps: expected one step count per tensor");
        const std::vector<std::int32_t> group_of = group_index(group_sizes, n);

        // Dense entries (indices[i] is None) are validated by gather with their grads; sparse
        // entries with params and sums only, their rows below. One overlap check sees every
        // array of the call, the gradients' values and indices too: a dense gradient, a sum or
        // a sparse gradient's values that share memory with any array the call writes are
        // refused. Nothing is written before everything has been checked.
        py::list dense_p, dense_g, dense_s, sparse_p, sparse_s;
        std::vector<std::size_t> dense_at, sparse_at;
        for (std::size_t i = 0; i < n; ++i) {
          if (indices[i].is_none()) {
            dense_p.append(params[i]);
            dense_g.append(grads[i]);
            dense_s.append(sums[i]);
            dense_at.push_back(i);
          } else {
            sparse_p.append(params[i]);
            sparse_s.append(sums[i]);
            sparse_at.push_back(i);
          }
        }
        std::vector<Extent> extents;
        const TensorTable<3> dense = gather<3>({Operand{"params", dense_p, true, false, &dense_at},
                                                Operand{"grads", dense_g, false, false, &dense_at},
                                                Operand{"sums", dense_s, true, false, &dense_at}},
                                               &extents);
        const TensorTable<2> rows_of = gather<2>({Operand{"params", sparse_p, true, false, &sparse_at},
                                                  Operand{"sums", sparse_s, true, false, &sparse_at}},
                                                 &extents);
        for (std::size_t j = 0; j < rows_of.size(); ++j) refuse_half(rows_of.dtypes[j], item_name("params", sparse_at[j]));
        std::vector<py::array> index_arrays, value_arrays;
        for (std::size_t j = 0; j < sparse_at.size(); ++j) {
          const std::size_t i = sparse_at[j];
          py::array p = py::reinterpret_borrow<py::array>(params[i]);
          const std::string pname = item_name("params", i);
          if (p.ndim() != 2) throw py::value_error(pname + ": row-sparse gradients need a 2-D parameter");
          // rows are runs of the parameter (and of its sum, which has its strides)
          if (!(p.flags() & py::detail::npy_api::constants::NPY_ARRAY_C_CONTIGUOUS_))
            throw py::value_error(pname + ": row-sparse gradients need a C-ordered parameter (each row a "
                                          "run of memory), got strides " + strides_str(p) + " (in elements)");
          DType part;
          if (complex_parts(p, &part))
            throw py::type_error(pname + ": row-sparse gradients do not take a complex parameter (dtype " +
                                 std::string(py::str(p.dtype())) + ")");
          const std::string iname = item_name("indices", i), vname = item_name("grads", i) + ".values";
          if (!py::isinstance<py::array_t<std::int64_t>>(indices[i]))
            throw py::type_error(iname + ": expected an int64 numpy.ndarray");
          py::array idx = py::reinterpret_borrow<py::array>(indices[i]);
          if (idx.ndim() != 1) throw py::value_error(iname + ": must be 1-D");
          if (!(idx.flags() & py::detail::npy_api::constants::NPY_ARRAY_C_CONTIGUOUS_))
            throw py::value_error(iname + ": must be C-contiguous");
          if (!py::isinstance<py::array>(grads[i])) throw py::type_error(vname + ": expected a numpy.ndarray");
          if (is_masked(grads[i])) throw py::type_error(masked_message(vname));
          py::array val = py::reinterpret_borrow<py::array>(grads[i]);
          if (dtype_of(val, vname) != rows_of.dtypes[j])
            throw py::type_error(vname + ": dtype does not match " + pname);
          if (val.ndim() != 2 || val.shape(0) != idx.shape(0) || val.shape(1) != p.shape(1))
            throw py::value_error(vname + ": expected shape (" + std::to_string(idx.shape(0)) + ", " +
                                  std::to_string(p.shape(1)) + "), got " + shape_str(val));
          if (!(val.flags() & py::detail::npy_api::constants::NPY_ARRAY_C_CONTIGUOUS_))
            throw py::value_error(vname + ": must be C-contiguous");
          const auto* ix = static_cast<const std::int64_t*>(idx.data());
          for (py::ssize_t k = 0; k < idx.shape(0); ++k)
            if (ix[k] < 0 || ix[k] >= p.shape(0))
              throw py::value_error(iname + ": row index " + std::to_string(ix[k]) + " is out of range for " +
                                    pname + " with " + count_of(static_cast<std::size_t>(p.shape(0)), "row"));
          add_extent(extents, val, "grads", i, false, ".values");
          add_extent(extents, idx, "indices", i, false);
          index_arrays.push_back(idx);
          value_arrays.push_back(val);
        }
        refuse_overlaps(extents);
        const InFlightClaim claim = claim_extents(extents);  // held until the step returns

        AdagradLoop loop;
        for (const auto& g : groups)
          loop.groups.push_back({std::get<0>(g), std::get<1>(g), std::get<2>(g), std::get<3>(g),
                                 std::get<4>(g)});
        TensorTable<3> table;  // dense tensors whole, then one entry per touched row
        for (std::size_t j = 0; j < dense.size(); ++j) {
          table.add(dense.ptrs[j], dense.sizes[j], dense.dtypes[j]);
          loop.steps.push_back(steps[dense_at[j]]);
          loop.group_of.push_back(group_of[dense_at[j]]);
        }
        std::vector<CoalescedRows<float>> rows32(sparse_at.size());
        std::vector<CoalescedRows<double>> rows64(sparse_at.size());
        for (std::size_t j = 0; j < sparse_at.size(); ++j) {
          const std::size_t i = sparse_at[j];
          const std::int64_t cols = py::reinterpret_borrow<py::array>(params[i]).shape(1);
          const auto* ix = static_cast<const std::int64_t*>(index_arrays[j].data());
          const std::int64_t nnz = index_arrays[j].shape(0);
          auto add_rows = [&](auto& co, auto* p, auto* s) {
            for (std::size_t r = 0; r < co.rows.size(); ++r) {
              table.add({static_cast<void*>(p + co.rows[r] * cols),
                         static_cast<void*>(co.values.data() + r * cols),
                         static_cast<void*>(s + co.rows[r] * cols)},
                        cols, rows_of.dtypes[j]);
              loop.steps.push_back(steps[i]);
              loop.group_of.push_back(group_of[i]);
            }
          };
          if (rows_of.dtypes[j] == DType::f32) {
            rows32[j] = coalesce(ix, static_cast<const float*>(value_arrays[j].data()), nnz, cols);
            add_rows(rows32[j], static_cast<float*>(rows_of.ptrs[j][0]), static_cast<float*>(rows_of.ptrs[j][1]));
          } else {
            rows64[j] = coalesce(ix, static_cast<const double*>(value_arrays[j].data()), nnz, cols);
            add_rows(rows64[j], static_cast<double*>(rows_of.ptrs[j][0]), static_cast<double*>(rows_of.ptrs[j][1]));
          }
        }
        py::gil_scoped_release release;
        for_each_element(loop, table);
      },
      py::arg("params"), py::arg("grads"), py::arg("sums"), py::arg("indices"), py::arg("steps"),
      py::arg("groups"), py::arg("group_sizes"),
      "One AdaGrad step with dense and row-sparse gradients, in place. Where indices[i] is None, "
      "grads[i] is a dense gradient; otherwise grads[i] holds one row of values per entry of "
      "indices[i] (duplicate rows summed first) and only those rows of params[i] change. groups: "
      "(lr, lr_decay, weight_decay, eps, maximize) per group.");
}

}  // namespace optbowl
