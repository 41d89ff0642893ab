// Taking NumPy arrays into a TensorTable without copies, validating everything first.
//
// gather() checks every array of every operand list (type, dtype, shape, contiguity,
// alignment, writeability) and that no array it writes shares memory with another, and raises a
// TypeError/ValueError naming the argument before anything is written; then it claims the
// arrays' memory for the step (a RuntimeError if a step in another thread uses it now).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "optbowl/multi_tensor.hpp"

namespace optbowl {
namespace py = pybind11;

struct Operand {
  const char* name;  // the argument's name, as the caller knows it ("params", "grads", ...)
  py::handle list;   // a list or tuple of arrays; None for an unused slot
  bool writable;
  bool int8 = false;  // int8 arrays (compact state) instead of the parameters' dtype
};

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    s += std::to_string(a.shape(d));
    if (a.ndim() == 1 || d + 1 < a.ndim()) s += ",";
    if (d + 1 < a.ndim()) s += " ";
  }
  return s + ")";
}

inline std::string item_name(const char* name, std::size_t i) {
  return std::string(name) + "[" + std::to_string(i) + "]";
}

// float32 or float64 in native byte order, or throw TypeError; who() names the array
// (made only for the message: a step takes many arrays).
template <class Who>
DType dtype_of(const py::array& a, const Who& who) {
  const py::dtype dt = a.dtype();
  const char bo = dt.byteorder();
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  const bool native = bo != '<';
#else
  const bool native = bo != '>';
#endif
  const int num = dt.num();
  if (native && num == py::detail::npy_api::constants::NPY_FLOAT_) return DType::f32;
  if (native && num == py::detail::npy_api::constants::NPY_DOUBLE_) return DType::f64;
  throw py::type_error(who() + ": expected a float32 or float64 array in native byte order, got dtype " +
                       std::string(py::str(dt)));
}

inline DType dtype_of(const py::array& a, const std::string& who) {
  return dtype_of(a, [&who] { return who; });
}

inline const char* dtype_name(DType d) { return d == DType::f32 ? "float32" : "float64"; }

template <std::size_t K>
TensorTable<K> gather(const std::array<Operand, K>& ops) {
  constexpr int kC = py::detail::npy_api::constants::NPY_ARRAY_C_CONTIGUOUS_;
  constexpr int kAligned = py::detail::npy_api::constants::NPY_ARRAY_ALIGNED_;
  constexpr int kWriteable = py::detail::npy_api::constants::NPY_ARRAY_WRITEABLE_;

  std::array<py::sequence, K> lists;
  std::size_t n = 0;
  for (std::size_t k = 0; k < K; ++k) {
    if (ops[k].list.is_none()) continue;
    if (!py::isinstance<py::list>(ops[k].list) && !py::isinstance<py::tuple>(ops[k].list))
      throw py::type_error(std::string(ops[k].name) + ": expected a list of arrays, got " +
                           std::string(py::str(py::type::handle_of(ops[k].list).attr("__name__"))));
    lists[k] = py::reinterpret_borrow<py::sequence>(ops[k].list);
    if (k == 0) {
      n = lists[k].size();
    } else if (lists[k].size() != n) {
      throw py::value_error(std::string(ops[k].name) + ": expected " + std::to_string(n) +
                            " arrays (one per entry of " + ops[0].name + "), got " +
                            std::to_string(lists[k].size()));
    }
  }

  TensorTable<K> table;
  table.ptrs.reserve(n);
  table.sizes.reserve(n);
  table.dtypes.reserve(n);
  std::vector<ByteRange> extents;
  extents.reserve(n * K);

  for (std::size_t i = 0; i < n; ++i) {
    std::array<void*, K> ptrs{};
    py::array ref;
    DType dt = DType::f32;
    for (std::size_t k = 0; k < K; ++k) {
      if (ops[k].list.is_none()) continue;
      py::handle h = lists[k][i];
      const auto who = [&ops, k, i] { return item_name(ops[k].name, i); };
      if (!py::isinstance<py::array>(h))
        throw py::type_error(who() + ": expected a numpy.ndarray, got " +
                             std::string(py::str(py::type::handle_of(h).attr("__name__"))));
      py::array a = py::reinterpret_borrow<py::array>(h);
      if (ops[k].int8 && a.dtype().num() != py::detail::npy_api::constants::NPY_BYTE_)
        throw py::type_error(who() + ": expected an int8 array (compact state), got dtype " +
                             std::string(py::str(a.dtype())));
      const DType d = ops[k].int8 ? dt : dtype_of(a, who);
      if (k == 0) {
        ref = a;
        dt = d;
      } else {
        if (d != dt)
          throw py::type_error(who() + ": dtype " + dtype_name(d) + " does not match " +
                               item_name(ops[0].name, i) + " (" + dtype_name(dt) + ")");
        bool same = a.ndim() == ref.ndim();
        for (py::ssize_t j = 0; same && j < a.ndim(); ++j) same = a.shape(j) == ref.shape(j);
        if (!same)
          throw py::value_error(who() + ": shape " + shape_str(a) + " does not match " +
                                item_name(ops[0].name, i) + " " + shape_str(ref));
      }
      const int flags = a.flags();
      if (!(flags & kC)) throw py::value_error(who() + ": must be C-contiguous");
      if (!(flags & kAligned)) throw py::value_error(who() + ": must be aligned to its dtype");
      if (ops[k].writable && !(flags & kWriteable)) throw py::value_error(who() + ": is read-only");
      ptrs[k] = const_cast<void*>(a.data());
      const auto nbytes = static_cast<std::uintptr_t>(a.nbytes());
      if (nbytes > 0) {
        const auto b = reinterpret_cast<std::uintptr_t>(a.data());
        extents.push_back({b, b + nbytes, static_cast<std::uint32_t>(k), static_cast<std::uint32_t>(i),
                           ops[k].writable});
      }
    }
    table.add(ptrs, static_cast<std::int64_t>(ref ? ref.size() : 0), dt);
  }

  std::sort(extents.begin(), extents.end(),
            [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
  // Sorted by start, an extent overlaps an earlier one iff it starts before the farthest
  // end seen so far. Only overlaps with an array that is written are refused: two
  // read-only operands (the same gradient for two parameters) may share memory.
  const auto written = [](const ByteRange& e) { return e.written; };
  const ByteRange* far_any = nullptr;      // the farthest-reaching extent so far
  const ByteRange* far_written = nullptr;  // ... among the written ones
  for (const ByteRange& y : extents) {
    const ByteRange* x = written(y) ? far_any : far_written;
    if (x != nullptr && y.begin < x->end)
      throw py::value_error(item_name(ops[y.operand].name, y.index) + " shares memory with " +
                            item_name(ops[x->operand].name, x->index) +
                            "; every array must be a separate buffer");
    if (far_any == nullptr || y.end > far_any->end) far_any = &y;
    if (written(y) && (far_written == nullptr || y.end > far_written->end)) far_written = &y;
  }
  // The step's arrays, claimed until it returns (TensorTable::claim): refused if a step in
  // another thread uses any of them now, and one of the two writes it.
  table.claim = InFlightClaim::claim(std::move(extents), [&ops](const ByteRange& e) {
    return item_name(ops[e.operand].name, e.index);
  });
  return table;
}

// Per-tensor group index from a list of group sizes, checked against the tensor count.
inline std::vector<std::int32_t> group_index(const std::vector<std::int64_t>& group_sizes,
                                             std::size_t n_tensors) {
  std::vector<std::int32_t> of;
  of.reserve(n_tensors);
  for (std::size_t g = 0; g < group_sizes.size(); ++g) {
    if (group_sizes[g] < 0) throw py::value_error("group_sizes: entries must be >= 0");
    for (std::int64_t j = 0; j < group_sizes[g]; ++j) of.push_back(static_cast<std::int32_t>(g));
  }
  if (of.size() != n_tensors)
    throw py::value_error("group_sizes: they add up to " + std::to_string(of.size()) +
                          " tensors, but " + std::to_string(n_tensors) + " were given");
  return of;
}

}  // namespace optbowl
