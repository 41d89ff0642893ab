// Taking NumPy arrays into a TensorTable without copies, validating everything first.
//
// gather() checks every array of every operand list (type, dtype, shape, memory layout,
// alignment, writeability) and that no array it writes shares memory with another, and raises a
// TypeError/ValueError naming the argument before anything is written. A call that takes more
// than one table (the row-sparse step), or a check of several calls at once (check_calls), collects
// every array's Extent and refuses an overlap among all of them (refuse_overlaps). Then a
// call claims its arrays' memory for its step (claim_extents: a RuntimeError if a step
// running now in another thread uses it and one of the two writes it).
//
// Layouts: an element-wise update needs no order, only that element i of every array of a
// row is the same element. An array whose elements fill its memory without gaps or overlaps
// (C- or F-ordered, or an axis permutation of such an array, e.g. a transposed view: torch's
// is_non_overlapping_and_dense) is stepped as the flat run over its memory, when the other
// arrays of its row have its strides (in elements; an axis of length 1 has no stride to
// match). A complex64/complex128 array is stepped as its real view (torch's view_as_real):
// two float32/float64 per element, in its memory order, with a complex gradient and state.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "optbowl/multi_tensor.hpp"

namespace optbowl {
namespace py = pybind11;

struct Operand {
  const char* name;  // the argument's name, as the caller knows it ("params", "grads", ...)
  py::handle list;   // a list or tuple of arrays; None for an unused slot
  bool writable;
  bool int8 = false;  // int8 arrays (compact state) instead of the parameters' dtype
  // The numbers the caller knows the entries by (entry i is name[at[i]]); null: 0, 1, ...
  const std::vector<std::size_t>* at = nullptr;
  // A state list that may be float32 beside a bfloat16/float16 parameter (state_dtype=
  // float32): every such list of the entry then float32, and the row's dtype bf16_f32 or
  // f16_f32 (multi_tensor.hpp, run_wide_range).
  bool f32_state = false;
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

// "name[i]"; a name with a "{}" gets the number there instead ("params[{}].grad").
inline std::string item_name(const char* name, std::size_t i) {
  std::string s(name);
  const std::size_t at = s.find("{}");
  if (at == std::string::npos) return s + "[" + std::to_string(i) + "]";
  return s.replace(at, 2, std::to_string(i));
}

// Whether h is a numpy.ma.MaskedArray, whose mask the kernels would ignore (a plain
// ndarray, the common case, is answered by one comparison of its type).
inline bool is_masked(py::handle h) {
  if (Py_TYPE(h.ptr()) == py::detail::npy_api::get().PyArray_Type_) return false;
  static PyObject* masked =  // kept to the end of the process, as NumPy's own types are
      py::object(py::module_::import("numpy.ma").attr("MaskedArray")).release().ptr();
  const int r = PyObject_IsInstance(h.ptr(), masked);
  if (r < 0) throw py::error_already_set();
  return r == 1;
}

// "1 array", "2 arrays".
inline std::string count_of(std::size_t n, const char* noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

// "expected a numpy.ndarray, got <type>", with where to go for a torch tensor.
inline std::string not_an_array(const std::string& who, py::handle h) {
  const py::handle type = py::type::handle_of(h);
  std::string msg = who + ": expected a numpy.ndarray, got " + std::string(py::str(type.attr("__name__")));
  const std::string module = py::str(py::getattr(type, "__module__", py::str("")));
  if (module.rfind("torch", 0) == 0)
    msg += " (a torch tensor: optbowl.torch's optimizers take tensors, the NumPy API takes "
           "ndarrays, e.g. t.numpy())";
  return msg;
}

inline std::string masked_message(const std::string& who) {
  return who + ": a numpy.ma.MaskedArray, whose mask optbowl would ignore (it updates every "
               "element); pass np.ma.getdata(a) to use every element, or a.filled(value)";
}

// NumPy's number of ml_dtypes.bfloat16 (a user-defined dtype, numbered when ml_dtypes is
// imported), or -1 where ml_dtypes is not installed. Looked up once, on the first array of
// a dtype NumPy does not know itself.
inline int bfloat16_num() {
  static const int num = [] {
    try {
      return py::dtype::from_args(py::module_::import("ml_dtypes").attr("bfloat16")).num();
    } catch (const py::error_already_set&) {
      return -1;
    }
  }();
  return num;
}

constexpr int kNpyHalf = 23;  // NPY_HALF

// float32, float64, float16 or bfloat16 (ml_dtypes.bfloat16) in native byte order, or
// throw TypeError; who() names the array (made only for the message: a step takes many
// arrays).
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
  if (native && num == kNpyHalf) return DType::f16;
  if (num >= 256 && num == bfloat16_num()) return DType::bf16;
  throw py::type_error(who() + ": expected a float32, float64, float16, bfloat16, complex64 or "
                       "complex128 array in native byte order, got dtype " + std::string(py::str(dt)));
}

inline DType dtype_of(const py::array& a, const std::string& who) {
  return dtype_of(a, [&who] { return who; });
}

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::bf16: return "bfloat16";
    case DType::f16: return "float16";
    case DType::bf16_f32: return "bfloat16 (float32 state)";
    case DType::f16_f32: return "float16 (float32 state)";
  }
  return "?";
}

// Refuse (TypeError naming the array) a 16-bit array where a call computes only in
// float32 and float64 (the row-sparse step's rows).
inline void refuse_half(DType d, const std::string& who) {
  if (d == DType::bf16 || d == DType::f16)
    throw py::type_error(who + ": expected a float32 or float64 array, got " + dtype_name(d) +
                         " (sparse gradients take float32 and float64 only)");
}

// Whether a is a complex64/complex128 array in native byte order, stepped as its real view
// (of dtype `*part`): the run of its memory holds 2 * a.size() float32/float64.
inline bool complex_parts(const py::array& a, DType* part) {
  const int num = a.dtype().num();
  if (num != py::detail::npy_api::constants::NPY_CFLOAT_ &&
      num != py::detail::npy_api::constants::NPY_CDOUBLE_)
    return false;
  const char bo = a.dtype().byteorder();
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  if (bo == '<') return false;
#else
  if (bo == '>') return false;
#endif
  *part = num == py::detail::npy_api::constants::NPY_CFLOAT_ ? DType::f32 : DType::f64;
  return true;
}

// Whether a's elements fill [a.data(), a.data() + a.nbytes()) with neither gaps nor overlaps:
// C- or F-ordered, or an axis permutation of such an array (a transposed view), as torch's
// is_non_overlapping_and_dense. Axes of length 1 may have any stride; negative strides
// (a reversed view) are refused, as torch has none.
inline bool is_dense(const py::array& a) {
  constexpr int kC = py::detail::npy_api::constants::NPY_ARRAY_C_CONTIGUOUS_;
  constexpr int kF = py::detail::npy_api::constants::NPY_ARRAY_F_CONTIGUOUS_;
  if (a.flags() & (kC | kF)) return true;
  std::vector<std::pair<py::ssize_t, py::ssize_t>> axes;  // (stride, length), length > 1
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    if (a.shape(d) == 0) return true;  // no element: nothing to step
    if (a.shape(d) > 1) axes.push_back({a.strides(d), a.shape(d)});
  }
  std::sort(axes.begin(), axes.end());
  py::ssize_t expected = a.itemsize();
  for (const auto& [stride, length] : axes) {
    if (stride != expected) return false;
    expected *= length;
  }
  return true;
}

// Whether dense arrays a and ref of one shape lay their elements out in the same order:
// the same strides in elements on every axis longer than 1.
inline bool same_layout(const py::array& a, const py::array& ref) {
  constexpr int kC = py::detail::npy_api::constants::NPY_ARRAY_C_CONTIGUOUS_;
  if (((a.flags() & kC) && (ref.flags() & kC)) || a.size() == 0) return true;  // no element: no order
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    if (a.shape(d) > 1 && a.strides(d) / a.itemsize() != ref.strides(d) / ref.itemsize()) return false;
  return true;
}

// "(16, 1)": an array's strides in elements.
inline std::string strides_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    s += std::to_string(a.strides(d) / a.itemsize());
    if (a.ndim() == 1 || d + 1 < a.ndim()) s += ",";
    if (d + 1 < a.ndim()) s += " ";
  }
  return s + ")";
}

// The memory of one array of a call, for the check that no written array shares memory
// with another array of the call.
struct Extent {
  std::uintptr_t begin, end;
  const char* name;    // as Operand::name
  const char* suffix;  // after the item's name (".values")
  std::size_t index;   // the item's number in its argument
  bool written;
};

// The extent is the memory the array's elements occupy, from its strides: from its lowest
// element's first byte to its highest element's last (for a dense array, nbytes from its
// data pointer, whatever the order of its axes).
inline void add_extent(std::vector<Extent>& extents, const py::array& a, const char* name, std::size_t index,
                       bool written, const char* suffix = "") {
  if (a.size() == 0) return;
  auto b = reinterpret_cast<std::intptr_t>(a.data());
  auto e = b + static_cast<std::intptr_t>(a.itemsize());
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    const auto reach = static_cast<std::intptr_t>(a.shape(d) - 1) * static_cast<std::intptr_t>(a.strides(d));
    (reach < 0 ? b : e) += reach;
  }
  extents.push_back({static_cast<std::uintptr_t>(b), static_cast<std::uintptr_t>(e), name, suffix, index, written});
}

// Refuse (ValueError naming both) an extent that overlaps another one when either is
// written. Two read-only arrays (the same gradient for two parameters) may share memory.
inline void refuse_overlaps(std::vector<Extent>& extents) {
  std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) { return a.begin < b.begin; });
  // Sorted by start, an extent overlaps an earlier one iff it starts before the farthest
  // end seen so far (among the written ones, for an extent that is only read).
  const Extent* far_any = nullptr;      // the farthest-reaching extent so far
  const Extent* far_written = nullptr;  // ... among the written ones
  for (const Extent& y : extents) {
    const Extent* x = y.written ? far_any : far_written;
    if (x != nullptr && y.begin < x->end)
      throw py::value_error(item_name(y.name, y.index) + y.suffix + " shares memory with " +
                            item_name(x->name, x->index) + x->suffix +
                            "; every array must be a separate buffer");
    if (far_any == nullptr || y.end > far_any->end) far_any = &y;
    if (y.written && (far_written == nullptr || y.end > far_written->end)) far_written = &y;
  }
}

// Claim the memory of a call's arrays, as refuse_overlaps left them (sorted by begin), for
// the call's step: held until the returned claim is destroyed; a std::runtime_error
// (RuntimeError) naming the first array that a step running now in another thread also
// uses, where one of the two writes it.
inline InFlightClaim claim_extents(const std::vector<Extent>& extents) {
  std::vector<ByteRange> ranges;
  ranges.reserve(extents.size());
  for (std::size_t i = 0; i < extents.size(); ++i)
    ranges.push_back({extents[i].begin, extents[i].end, static_cast<std::uint32_t>(i), 0, extents[i].written});
  return InFlightClaim::claim(std::move(ranges), [&extents](const ByteRange& r) {
    const Extent& e = extents[r.operand];
    return item_name(e.name, e.index) + e.suffix;
  });
}

// Check the arrays of K operand lists of one call (type, dtype, shape, memory layout,
// alignment, writeability; every list as long as the first, each entry of the first's
// dtype, shape and strides), add their extents, and call row(ptrs, size, dtype) once per
// entry, size counting the real numbers of a complex entry (twice its elements).
template <class Row>
void check_operands(const Operand* ops, std::size_t K, std::vector<Extent>& extents, Row&& row) {
  constexpr int kAligned = py::detail::npy_api::constants::NPY_ARRAY_ALIGNED_;
  constexpr int kWriteable = py::detail::npy_api::constants::NPY_ARRAY_WRITEABLE_;

  std::vector<py::sequence> lists(K);
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
      throw py::value_error(std::string(ops[k].name) + ": expected " + count_of(n, "array") +
                            " (one per entry of " + ops[0].name + "), got " +
                            std::to_string(lists[k].size()));
    }
  }
  for (std::size_t k = 0; k < K; ++k)
    if (ops[k].at != nullptr && !ops[k].list.is_none() && ops[k].at->size() < n)
      throw std::logic_error("check_operands: fewer numbers than arrays");
  extents.reserve(extents.size() + n * K);

  std::vector<void*> ptrs(K);
  for (std::size_t i = 0; i < n; ++i) {
    py::array ref;
    DType dt = DType::f32;
    bool ref_complex = false;
    int wide = -1;                   // the entry's f32_state lists: -1 none yet, 1 float32, 0 dt
    std::size_t first_state = K;     // the first of them, for messages
    std::size_t int8_list = K;       // an int8 (compact) list of the entry
    for (std::size_t k = 0; k < K; ++k) {
      ptrs[k] = nullptr;
      if (ops[k].list.is_none()) continue;
      const std::size_t number = ops[k].at != nullptr ? (*ops[k].at)[i] : i;
      py::handle h = lists[k][i];
      const auto who = [&ops, k, number] { return item_name(ops[k].name, number); };
      if (!py::isinstance<py::array>(h)) throw py::type_error(not_an_array(who(), h));
      if (is_masked(h)) throw py::type_error(masked_message(who()));
      py::array a = py::reinterpret_borrow<py::array>(h);
      if (ops[k].int8 && a.dtype().num() != py::detail::npy_api::constants::NPY_BYTE_)
        throw py::type_error(who() + ": expected an int8 array (compact state), got dtype " +
                             std::string(py::str(a.dtype())));
      DType d = dt;
      const bool cplx = !ops[k].int8 && complex_parts(a, &d);
      if (!ops[k].int8 && !cplx) d = dtype_of(a, who);
      if (k == 0) {
        ref = a;
        dt = d;
        ref_complex = cplx;
      } else {
        const std::size_t ref_number = ops[0].at != nullptr ? (*ops[0].at)[i] : i;
        if (ops[k].int8 && ref_complex)
          throw py::type_error(who() + ": an int8 (compact) state cannot hold the state of " +
                               item_name(ops[0].name, ref_number) + ", which is complex");
        if (!ops[k].int8 && cplx != ref_complex)
          throw py::type_error(who() + ": dtype " + std::string(py::str(a.dtype())) + " does not match " +
                               item_name(ops[0].name, ref_number) + " (" + std::string(py::str(ref.dtype())) +
                               ")");
        const bool half_param = dt == DType::bf16 || dt == DType::f16;
        if (ops[k].int8) int8_list = k;
        if (ops[k].f32_state && !ops[k].int8 && half_param && (d == DType::f32 || d == dt)) {
          const int is_wide = d == DType::f32 ? 1 : 0;
          if (wide >= 0 && wide != is_wide) {
            const std::size_t first_number = ops[first_state].at != nullptr ? (*ops[first_state].at)[i] : i;
            throw py::type_error(who() + ": dtype " + dtype_name(d) + " differs from " +
                                 item_name(ops[first_state].name, first_number) + "'s (" +
                                 dtype_name(wide == 1 ? DType::f32 : dt) + "); the state of a " +
                                 dtype_name(dt) + " parameter is all " + dtype_name(dt) +
                                 ", or all float32 (state_dtype=float32)");
          }
          if (wide < 0) first_state = k;
          wide = is_wide;
        } else if (d != dt) {
          std::string msg = who() + ": dtype " + dtype_name(d) + " does not match " +
                            item_name(ops[0].name, ref_number) + " (" + dtype_name(dt) + ")";
          if (ops[k].f32_state && half_param)
            msg += "; the state of a " + std::string(dtype_name(dt)) + " parameter is " + dtype_name(dt) +
                   ", or float32 (state_dtype=float32)";
          throw py::type_error(msg);
        }
        bool same = a.ndim() == ref.ndim();
        for (py::ssize_t j = 0; same && j < a.ndim(); ++j) same = a.shape(j) == ref.shape(j);
        if (!same)
          throw py::value_error(who() + ": shape " + shape_str(a) + " does not match " +
                                item_name(ops[0].name, ref_number) + " " + shape_str(ref));
      }
      const int flags = a.flags();
      if (!is_dense(a))
        throw py::value_error(who() + ": must be contiguous in some order of its axes (C- or F-ordered, "
                                      "or an axis permutation of such an array, e.g. a transposed view), "
                                      "got strides " + strides_str(a) + " (in elements) for shape " + shape_str(a));
      if (k > 0 && !same_layout(a, ref)) {
        const std::size_t ref_number = ops[0].at != nullptr ? (*ops[0].at)[i] : i;
        throw py::value_error(who() + ": strides " + strides_str(a) + " (in elements) differ from " +
                              item_name(ops[0].name, ref_number) + "'s " + strides_str(ref) +
                              "; it must have the parameter's memory layout (as np.empty_like or "
                              "torch.empty_like make it)");
      }
      if (!(flags & kAligned)) throw py::value_error(who() + ": must be aligned to its dtype");
      if (ops[k].writable && !(flags & kWriteable)) throw py::value_error(who() + ": is read-only");
      ptrs[k] = const_cast<void*>(a.data());
      add_extent(extents, a, ops[k].name, number, ops[k].writable);
    }
    if (wide == 1) {
      if (int8_list < K) {
        const std::size_t number = ops[int8_list].at != nullptr ? (*ops[int8_list].at)[i] : i;
        throw py::type_error(item_name(ops[int8_list].name, number) +
                             ": an int8 (compact) state cannot be combined with float32 state "
                             "(state_dtype=float32)");
      }
      dt = dt == DType::bf16 ? DType::bf16_f32 : DType::f16_f32;
    }
    row(ptrs.data(), static_cast<std::int64_t>(ref ? ref.size() * (ref_complex ? 2 : 1) : 0), dt);
  }
}

// The arrays of one call as a TensorTable, every array checked (check_operands) and no
// written array sharing memory with another, its memory claimed (claim_extents). With
// `extents`, the overlap check and the claim are left to the caller, who adds the extents
// of the call's other arrays and calls refuse_overlaps and claim_extents.
template <std::size_t K>
TensorTable<K> gather(const std::array<Operand, K>& ops, std::vector<Extent>* extents = nullptr) {
  TensorTable<K> table;
  std::vector<Extent> own;
  std::vector<Extent>& ex = extents != nullptr ? *extents : own;
  check_operands(ops.data(), K, ex, [&table](void* const* ptrs, std::int64_t size, DType dt) {
    std::array<void*, K> p;
    std::copy(ptrs, ptrs + K, p.begin());
    table.add(p, size, dt);
  });
  if (extents == nullptr) {
    refuse_overlaps(own);
    table.claim = claim_extents(own);
  }
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
    throw py::value_error("group_sizes: they add up to " + count_of(of.size(), "tensor") +
                          ", but " + std::to_string(n_tensors) + (n_tensors == 1 ? " was" : " were") +
                          " given");
  return of;
}

}  // namespace optbowl
