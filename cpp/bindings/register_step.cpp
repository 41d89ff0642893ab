// The optimizers' common step, in C: Optimizer.step hands it the optimizer and its call
// layout, and it does what the Python short path (optbowl/_optimizer.py, Optimizer._step)
// does, without running the interpreter's code for it.
//
// A step of a million-element array streams tens of megabytes, and by the time the next
// step starts every Python object it touches has left the caches: there, each line of
// Python on the step's path cost about a microsecond, 15-40 us a step in all (the size of a
// 1M-element step's memory floor is 60-150 us). This function reads the same objects from
// C, and touches few of them.
//
// It steps only when everything is as the last checked step left it; in every other case
// it returns False having changed nothing, and Optimizer.step goes down its Python path,
// which checks, converts, skips or raises as before:
//   - the gradients are a list or a tuple with one per parameter and no None, or one
//     ndarray for a lone parameter;
//   - every group's hyper-parameters are those remembered by its last check (the same
//     object, or of the same type and equal, as _checked_group_args compares them);
//   - every group's "params" list holds the parameters the optimizer knows (_params), in
//     order: a parameter swapped in param_groups goes through the Python path, which
//     checks it and takes it (Optimizer._sync_params);
//   - every parameter has a state with every state array (and "step");
//   - the compiled call accepts every array (it checks all before it writes any: a
//     TypeError or ValueError from it means nothing was written).
// Another thread inside a call on the optimizer (its lock taken) also sends the step to
// the Python path, which raises the error for it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <deque>
#include <string>
#include <vector>

#include "arrays.hpp"

namespace optbowl {
namespace py = pybind11;

namespace {

struct Interned {
  PyObject *busy, *params, *param_groups, *checked_groups, *state, *group_sizes, *step, *acquire,
      *release, *group_params;
};
Interned names;
PyObject* ndarray_type = nullptr;
PyObject* one_int = nullptr;
PyObject* one_float = nullptr;

// The layout tuple Optimizer._short_call() makes (see its docstring).
enum LayoutItem { kFn, kBefore, kColumns, kTakesSteps, kOptions, kStateNames, kKeys, kLayoutSize };
constexpr Py_ssize_t kMaxStates = 3;  // state arrays of a parameter, at most (a Loop's K - 2)

// A new reference to obj's attribute `name` if it is of exactly the type `check` accepts.
template <class Check>
py::object attr_of(PyObject* obj, PyObject* name, Check check) {
  PyObject* v = PyObject_GetAttr(obj, name);
  if (v == nullptr) throw py::error_already_set();
  py::object out = py::reinterpret_steal<py::object>(v);
  return check(v) ? out : py::object();
}

// Every group's tuple for the compiled call, as remembered by its last check; an empty
// object when a group is new or changed since.
py::object remembered_group_args(PyObject* opt, PyObject* keys) {
  py::object groups = attr_of(opt, names.param_groups, [](PyObject* v) { return PyList_CheckExact(v); });
  py::object checked = attr_of(opt, names.checked_groups, [](PyObject* v) { return PyDict_CheckExact(v); });
  if (!groups || !checked) return py::object();
  const Py_ssize_t n_groups = PyList_GET_SIZE(groups.ptr());
  const Py_ssize_t n_keys = PyTuple_GET_SIZE(keys);
  py::list out(n_groups);
  for (Py_ssize_t i = 0; i < n_groups; ++i) {
    if (PyList_GET_SIZE(groups.ptr()) != n_groups) return py::object();  // changed by an __eq__
    const py::object group_held = py::reinterpret_borrow<py::object>(PyList_GET_ITEM(groups.ptr(), i));
    PyObject* group = group_held.ptr();
    if (!PyDict_CheckExact(group)) return py::object();
    py::object id = py::reinterpret_steal<py::object>(PyLong_FromVoidPtr(group));
    if (!id) throw py::error_already_set();
    PyObject* found = PyDict_GetItemWithError(checked.ptr(), id.ptr());  // borrowed
    if (found == nullptr) {
      if (PyErr_Occurred()) throw py::error_already_set();
      return py::object();
    }
    // held: an __eq__ below runs Python code, which may change the dicts
    const py::object held = py::reinterpret_borrow<py::object>(found);
    PyObject* seen = held.ptr();
    // (group, values, their types, args): see Optimizer._checked_group_args
    if (!PyTuple_CheckExact(seen) || PyTuple_GET_SIZE(seen) != 4 || PyTuple_GET_ITEM(seen, 0) != group)
      return py::object();
    PyObject* values = PyTuple_GET_ITEM(seen, 1);
    PyObject* types = PyTuple_GET_ITEM(seen, 2);
    if (!PyTuple_CheckExact(values) || PyTuple_GET_SIZE(values) != n_keys || !PyTuple_CheckExact(types) ||
        PyTuple_GET_SIZE(types) != n_keys)
      return py::object();
    for (Py_ssize_t j = 0; j < n_keys; ++j) {
      PyObject* value = PyDict_GetItemWithError(group, PyTuple_GET_ITEM(keys, j));  // borrowed
      if (value == nullptr) {
        if (PyErr_Occurred()) throw py::error_already_set();
        value = Py_None;  // group.get(key)
      }
      PyObject* was = PyTuple_GET_ITEM(values, j);
      if (value == was) continue;
      if (reinterpret_cast<PyObject*>(Py_TYPE(value)) != PyTuple_GET_ITEM(types, j)) return py::object();
      const py::object value_held = py::reinterpret_borrow<py::object>(value);
      const int equal = PyObject_RichCompareBool(was, value, Py_EQ);
      if (equal < 0) PyErr_Clear();  // e.g. arrays compared element-wise: the Python path decides
      if (equal != 1) return py::object();
    }
    PyObject* args = PyTuple_GET_ITEM(seen, 3);
    Py_INCREF(args);
    PyList_SET_ITEM(out.ptr(), i, args);
  }
  return std::move(out);
}

// Whether the groups' "params" lists hold exactly `params` (the optimizer's list), in order.
// Nothing here runs Python code: the borrowed items stay valid.
bool params_are_the_groups(PyObject* opt, PyObject* params) {
  py::object groups = attr_of(opt, names.param_groups, [](PyObject* v) { return PyList_CheckExact(v); });
  if (!groups) return false;
  const Py_ssize_t n = PyList_GET_SIZE(params);
  Py_ssize_t at = 0;
  for (Py_ssize_t g = 0; g < PyList_GET_SIZE(groups.ptr()); ++g) {
    PyObject* group = PyList_GET_ITEM(groups.ptr(), g);
    if (!PyDict_CheckExact(group)) return false;
    PyObject* arrays = PyDict_GetItemWithError(group, names.group_params);  // borrowed
    if (arrays == nullptr) {
      if (PyErr_Occurred()) throw py::error_already_set();
      return false;
    }
    if (!PyList_CheckExact(arrays)) return false;
    const Py_ssize_t m = PyList_GET_SIZE(arrays);
    if (m > n - at) return false;
    for (Py_ssize_t j = 0; j < m; ++j)
      if (PyList_GET_ITEM(arrays, j) != PyList_GET_ITEM(params, at + j)) return false;
    at += m;
  }
  return at == n;
}

// Python's `st[key]` for a dict, or an empty object if it has no such key.
PyObject* item_of(PyObject* dict, PyObject* key) {
  PyObject* v = PyDict_GetItemWithError(dict, key);  // borrowed
  if (v == nullptr && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

bool step_under_lock(PyObject* opt, PyObject* layout, PyObject* grads) {
  py::object given;
  if (PyList_CheckExact(grads)) {
    given = py::reinterpret_borrow<py::object>(grads);
  } else if (PyTuple_CheckExact(grads)) {
    given = py::reinterpret_steal<py::object>(PySequence_List(grads));
    if (!given) throw py::error_already_set();
  } else if (reinterpret_cast<PyObject*>(Py_TYPE(grads)) == ndarray_type) {
    given = py::list(1);
    Py_INCREF(grads);
    PyList_SET_ITEM(given.ptr(), 0, grads);
  } else {
    return false;
  }
  py::object params = attr_of(opt, names.params, [](PyObject* v) { return PyList_CheckExact(v); });
  if (!params) return false;
  const Py_ssize_t n = PyList_GET_SIZE(params.ptr());
  if (PyList_GET_SIZE(given.ptr()) != n) return false;
  // a None (skip that parameter) goes to the Python path before any call that would refuse it
  for (Py_ssize_t i = 0; i < n; ++i)
    if (PyList_GET_ITEM(given.ptr(), i) == Py_None) return false;

  py::object group_args = remembered_group_args(opt, PyTuple_GET_ITEM(layout, kKeys));
  if (!group_args) return false;
  if (!params_are_the_groups(opt, params.ptr())) return false;

  py::object state = attr_of(opt, names.state, [](PyObject* v) { return PyDict_CheckExact(v); });
  if (!state) return false;
  PyObject* state_names = PyTuple_GET_ITEM(layout, kStateNames);
  const Py_ssize_t n_names = PyTuple_GET_SIZE(state_names);
  const Py_ssize_t n_columns = PyLong_AsSsize_t(PyTuple_GET_ITEM(layout, kColumns));
  const bool takes_steps = PyTuple_GET_ITEM(layout, kTakesSteps) == Py_True;

  py::list states(n);
  py::list columns[kMaxStates];
  for (Py_ssize_t k = 0; k < n_names; ++k) columns[k] = py::list(n);
  py::object steps = takes_steps ? py::object(py::list(n)) : py::object(py::none());
  for (Py_ssize_t i = 0; i < n; ++i) {
    py::object index = py::reinterpret_steal<py::object>(PyLong_FromSsize_t(i));
    if (!index) throw py::error_already_set();
    PyObject* st = item_of(state.ptr(), index.ptr());
    if (st == nullptr || !PyDict_CheckExact(st)) return false;  // no state yet
    Py_INCREF(st);
    PyList_SET_ITEM(states.ptr(), i, st);
    for (Py_ssize_t k = 0; k < n_names; ++k) {
      PyObject* a = item_of(st, PyTuple_GET_ITEM(state_names, k));
      if (a == nullptr) return false;  // the Python path raises the KeyError
      Py_INCREF(a);
      PyList_SET_ITEM(columns[k].ptr(), i, a);
    }
    if (takes_steps) {
      const py::object count = py::reinterpret_borrow<py::object>(item_of(st, names.step));
      if (!count) return false;
      PyObject* next = PyNumber_Add(count.ptr(), one_float);  // st["step"] + 1.0
      if (next == nullptr) {
        PyErr_Clear();
        return false;
      }
      PyList_SET_ITEM(steps.ptr(), i, next);
    }
  }

  py::object group_sizes = attr_of(opt, names.group_sizes, [](PyObject*) { return true; });
  PyObject* before = PyTuple_GET_ITEM(layout, kBefore);
  const Py_ssize_t n_before = PyTuple_GET_SIZE(before);
  const Py_ssize_t n_args = n_before + 2 + n_columns + (takes_steps ? 1 : 0) + 2;
  py::tuple args(n_args);
  Py_ssize_t at = 0;
  auto put = [&](PyObject* v) {
    Py_INCREF(v);
    PyTuple_SET_ITEM(args.ptr(), at++, v);
  };
  for (Py_ssize_t j = 0; j < n_before; ++j) put(PyTuple_GET_ITEM(before, j));
  put(params.ptr());
  put(given.ptr());
  for (Py_ssize_t k = 0; k < n_columns; ++k) put(k < n_names ? columns[k].ptr() : Py_None);
  if (takes_steps) put(steps.ptr());
  put(group_args.ptr());
  put(group_sizes.ptr());
  PyObject* options = PyTuple_GET_ITEM(layout, kOptions);
  PyObject* done = PyObject_Call(PyTuple_GET_ITEM(layout, kFn), args.ptr(),
                                 PyDict_GET_SIZE(options) ? options : nullptr);
  if (done == nullptr) {
    // refused before anything was written: the Python path converts, skips or raises
    if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError)) {
      PyErr_Clear();
      return false;
    }
    throw py::error_already_set();
  }
  Py_DECREF(done);
  for (Py_ssize_t i = 0; i < n; ++i) {  // st["step"] += 1
    PyObject* st = PyList_GET_ITEM(states.ptr(), i);
    const py::object count = py::reinterpret_borrow<py::object>(item_of(st, names.step));
    if (!count) throw py::key_error("step");
    py::object next = py::reinterpret_steal<py::object>(PyNumber_InPlaceAdd(count.ptr(), one_int));
    if (!next || PyDict_SetItem(st, names.step, next.ptr()) < 0) throw py::error_already_set();
  }
  return true;
}

bool short_step(PyObject* opt, PyObject* layout, PyObject* grads) {
  if (!PyTuple_CheckExact(layout) || PyTuple_GET_SIZE(layout) != kLayoutSize ||
      !PyTuple_CheckExact(PyTuple_GET_ITEM(layout, kBefore)) ||
      !PyLong_CheckExact(PyTuple_GET_ITEM(layout, kColumns)) ||
      !PyDict_CheckExact(PyTuple_GET_ITEM(layout, kOptions)) ||
      !PyTuple_CheckExact(PyTuple_GET_ITEM(layout, kStateNames)) ||
      !PyTuple_CheckExact(PyTuple_GET_ITEM(layout, kKeys)) ||
      PyTuple_GET_SIZE(PyTuple_GET_ITEM(layout, kStateNames)) > kMaxStates ||
      PyLong_AsSsize_t(PyTuple_GET_ITEM(layout, kColumns)) <
          PyTuple_GET_SIZE(PyTuple_GET_ITEM(layout, kStateNames)))
    throw py::type_error("short_step: layout is not a tuple made by Optimizer._short_call");
  py::object lock = py::reinterpret_steal<py::object>(PyObject_GetAttr(opt, names.busy));
  if (!lock) throw py::error_already_set();
  PyObject* acquire_args[2] = {lock.ptr(), Py_False};  // lock.acquire(False)
  py::object got = py::reinterpret_steal<py::object>(PyObject_VectorcallMethod(
      names.acquire, acquire_args, 2, nullptr));
  if (!got) throw py::error_already_set();
  if (got.ptr() != Py_True) return false;  // busy: the Python path raises
  struct Release {
    PyObject* lock;
    ~Release() {
      PyObject *type, *value, *trace;
      PyErr_Fetch(&type, &value, &trace);  // an error in flight survives the release
      PyObject* r = PyObject_VectorcallMethod(names.release, &lock, 1,
                                              nullptr);
      if (r == nullptr) PyErr_WriteUnraisable(lock);
      Py_XDECREF(r);
      PyErr_Restore(type, value, trace);
    }
  } release{lock.ptr()};
  return step_under_lock(opt, layout, grads);
}

PyObject* short_step_py(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3) {
    PyErr_SetString(PyExc_TypeError, "short_step: expected (optimizer, layout, grads)");
    return nullptr;
  }
  try {
    return PyBool_FromLong(short_step(args[0], args[1], args[2]) ? 1 : 0);
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const py::builtin_exception& e) {
    e.set_error();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

PyMethodDef short_step_def = {
    "short_step", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(short_step_py)),
    METH_FASTCALL,
    "short_step(optimizer, layout, grads) -> bool\n\n"
    "Optimizer.step's common case in C: True if it stepped, False if it changed nothing\n"
    "and the Python path must take the step (private)."};

// add_one(counters): 1 added to each of a list of one-element float32/float64 arrays (the
// step counters of optbowl.torch's optimizers, as NumPy views of their tensors): one call
// instead of torch._foreach_add_, which cost 1.4 us per counter. Every item is checked
// before any is written.
void add_one(const py::list& counters) {
  const std::size_t n = counters.size();
  std::vector<py::array> arrays;
  arrays.reserve(n);
  for (std::size_t k = 0; k < n; ++k) {
    py::handle item = counters[k];
    auto name = [k] { return "counters[" + std::to_string(k) + "]"; };
    if (!py::isinstance<py::array>(item))
      throw py::type_error(name() + ": expected an ndarray, got " +
                           std::string(py::str(py::type::handle_of(item).attr("__name__"))));
    py::array a = py::reinterpret_borrow<py::array>(item);
    if (!py::isinstance<py::array_t<float, 0>>(item) && !py::isinstance<py::array_t<double, 0>>(item))
      throw py::type_error(name() + ": expected float32 or float64, got " + std::string(py::str(a.dtype())));
    if (a.size() != 1)
      throw py::value_error(name() + ": expected one element, got " + std::to_string(a.size()));
    if (!a.writeable()) throw py::value_error(name() + ": is read-only");
    arrays.push_back(std::move(a));
  }
  for (py::array& a : arrays) {
    if (a.dtype().itemsize() == 4)
      *static_cast<float*>(a.mutable_data()) += 1.0f;
    else
      *static_cast<double*>(a.mutable_data()) += 1.0;
  }
}

// check_calls(calls): the arrays of several compiled calls checked as each call checks its
// own (check_operands: type, dtype, shape, contiguity, alignment, writeability), and no
// written array sharing memory with any array of any of the calls; a TypeError/ValueError
// naming the array, before any of the calls runs. A step that needs several calls
// (optbowl.torch's param groups of different state layouts) checks them all first, so
// that a refused call never follows one that has written. calls: a list of
// (numbers, operands): numbers the entries' numbers in messages (None: 0, 1, ...),
// operands a list of (name, list of arrays or None, writable), the call's parameters first.
// A name with "{}" gets the number there ("params[{}].grad").
void check_calls(const py::list& calls) {
  std::deque<std::string> names;  // stable addresses for Operand::name
  std::vector<std::vector<std::size_t>> numbers(calls.size());
  std::vector<Extent> extents;
  for (std::size_t c = 0; c < calls.size(); ++c) {
    const auto call = calls[c].cast<py::tuple>();
    if (call.size() != 2) throw py::type_error("calls[" + std::to_string(c) + "]: expected (numbers, operands)");
    const bool numbered = !call[0].is_none();
    if (numbered) numbers[c] = call[0].cast<std::vector<std::size_t>>();
    std::vector<Operand> operands;
    for (py::handle item : call[1].cast<py::sequence>()) {
      const auto op = item.cast<py::tuple>();
      if (op.size() != 3)
        throw py::type_error("calls[" + std::to_string(c) + "]: an operand is (name, arrays, writable)");
      names.push_back(op[0].cast<std::string>());
      operands.push_back(Operand{names.back().c_str(), op[1], op[2].cast<bool>(), false,
                                 numbered ? &numbers[c] : nullptr, operands.size() >= 2});
    }
    if (operands.empty()) continue;
    if (numbered && !operands[0].list.is_none() && numbers[c].size() != py::len(operands[0].list))
      throw py::value_error("calls[" + std::to_string(c) + "]: expected one number per array");
    check_operands(operands.data(), operands.size(), extents, [](void* const*, std::int64_t, DType) {});
  }
  refuse_overlaps(extents);
}

PyObject* intern(const char* s) {
  PyObject* v = PyUnicode_InternFromString(s);
  if (v == nullptr) throw py::error_already_set();
  return v;  // kept for the life of the process
}

}  // namespace

void register_step(py::module_& m) {
  names = {intern("_busy"),       intern("_params"), intern("param_groups"),
           intern("_checked_groups"), intern("state"), intern("_group_sizes"),
           intern("step"),        intern("acquire"), intern("release"),
           intern("params")};
  ndarray_type = py::object(py::module_::import("numpy").attr("ndarray")).release().ptr();
  one_int = PyLong_FromLong(1);
  one_float = PyFloat_FromDouble(1.0);
  PyObject* fn = PyCFunction_NewEx(&short_step_def, nullptr, m.attr("__name__").ptr());
  if (fn == nullptr) throw py::error_already_set();
  m.add_object("short_step", py::reinterpret_steal<py::object>(fn));
  m.def("check_calls", &check_calls, py::arg("calls"),
        "Check the arrays of several compiled calls before any runs (private).");
  m.def("add_one", &add_one, py::arg("counters"),
        "Add 1 in place to every one-element float32/float64 array of the list (private).");
}

}  // namespace optbowl
