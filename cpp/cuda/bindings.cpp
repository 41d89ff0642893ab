// optbowl._cuda: the optional CUDA module (private; the optbowl.cuda module wraps it).
//
// Arrays arrive as device pointers (integers) already validated by optbowl._device
// (dtype, shape, contiguity, one device, no shared memory); this module checks that the
// lists agree, runs the multi-tensor kernels on the given stream, and offers the few
// runtime calls the Python side needs: device count and versions, copies, a device buffer,
// stream ordering, and a DLPack reader. Linked against the static CUDA runtime: without a
// driver or a GPU, status() says why and nothing here raises at import.
//
// This file is host C++ only: the kernels (launch.hpp) and the runtime calls (runtime.hpp)
// are declared there, so the tests can build it against host stubs of both
// (cuda_stub.cpp) with the host compiler alone. The GIL is released only around a launch;
// every Python object is made with it held.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "launch.hpp"
#include "optbowl/registry.hpp"
#include "runtime.hpp"

namespace py = pybind11;

namespace optbowl {
namespace cuda {
namespace {

namespace reg = optbowl::registry;

DeviceDType parse_dtype(const std::string& name) {
  if (name == "float32") return DeviceDType::f32;
  if (name == "float64") return DeviceDType::f64;
  if (name == "float16") return DeviceDType::f16;
  if (name == "bfloat16") return DeviceDType::bf16;
  throw py::type_error("dtypes: expected float32, float64, float16 or bfloat16, got " + name);
}

// Build a table from K lists of pointers; a list k with optional[k] may be None (an unused
// slot: null pointers), the others are required.
template <std::size_t K>
DeviceTable<K> make_table(const std::array<std::pair<const char*, py::handle>, K>& lists,
                          const std::vector<std::int64_t>& sizes, const std::vector<std::string>& dtypes,
                          const std::array<bool, K>& optional) {
  const std::size_t n = sizes.size();
  if (dtypes.size() != n) throw py::value_error("dtypes: expected one dtype per tensor");
  DeviceTable<K> table;
  table.ptrs.assign(n, {});
  for (std::size_t k = 0; k < K; ++k) {
    if (lists[k].second.is_none()) {
      if (!optional[k])
        throw py::type_error(std::string(lists[k].first) +
                             ": expected a list of pointers, got None");
      continue;
    }
    const auto ptrs = lists[k].second.template cast<std::vector<std::uintptr_t>>();
    if (ptrs.size() != n)
      throw py::value_error(std::string(lists[k].first) + ": expected " + std::to_string(n) +
                            " pointers, got " + std::to_string(ptrs.size()));
    for (std::size_t i = 0; i < n; ++i) table.ptrs[i][k] = reinterpret_cast<void*>(ptrs[i]);
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (sizes[i] < 0) throw py::value_error("sizes: entries must be >= 0");
    table.sizes.push_back(sizes[i]);
    table.dtypes.push_back(parse_dtype(dtypes[i]));
  }
  return table;
}

std::vector<std::int32_t> group_index(const std::vector<std::int64_t>& group_sizes, std::size_t n) {
  std::vector<std::int32_t> of;
  for (std::size_t g = 0; g < group_sizes.size(); ++g)
    for (std::int64_t j = 0; j < group_sizes[g]; ++j) of.push_back(static_cast<std::int32_t>(g));
  if (of.size() != n) throw py::value_error("group_sizes: they do not add up to the tensor count");
  return of;
}

std::vector<double> steps_of(const std::vector<double>& steps, std::size_t n) {
  if (steps.size() != n) throw py::value_error("steps: expected one step count per tensor");
  return steps;
}

LaunchConfig config_of(int device, std::uintptr_t stream, std::uintptr_t found_inf,
                       std::uintptr_t grad_scale) {
  LaunchConfig c;
  c.device = device;
  c.stream = stream;
  c.found_inf = reinterpret_cast<const float*>(found_inf);
  c.grad_scale = reinterpret_cast<const float*>(grad_scale);
  return c;
}

// Device step counters (pointers and "float32"/"float64"), or None for the host counts.
template <std::size_t K>
void add_device_steps(DeviceTable<K>& table, const py::object& step_ptrs,
                      const py::object& step_dtypes) {
  if (step_ptrs.is_none() != step_dtypes.is_none())
    throw py::value_error("step_ptrs, step_dtypes: give both or neither");
  if (step_ptrs.is_none()) return;
  const auto ptrs = step_ptrs.cast<std::vector<std::uintptr_t>>();
  const auto dtypes = step_dtypes.cast<std::vector<std::string>>();
  if (ptrs.size() != table.size() || dtypes.size() != table.size())
    throw py::value_error("step_ptrs: expected one step counter per tensor");
  for (std::size_t i = 0; i < ptrs.size(); ++i) {
    if (ptrs[i] == 0) throw py::value_error("step_ptrs: null pointer");
    if (dtypes[i] != "float32" && dtypes[i] != "float64")
      throw py::type_error("step_dtypes: expected float32 or float64, got " + dtypes[i]);
    table.step_ptrs.push_back(reinterpret_cast<const void*>(ptrs[i]));
    table.step_is_f64.push_back(dtypes[i] == "float64" ? 1 : 0);
  }
}

// The launch itself, without the GIL; the result tuple is made after it is taken back.
template <class Launch>
py::tuple launched(Launch launch) {
  LaunchStats s;
  {
    py::gil_scoped_release release;
    s = launch();
  }
  return py::make_tuple(s.launches, s.chunks, s.chunk_elems, s.blocks);
}

// One step of `Rule` over device pointers, the arguments unpacked: the entry's hook, the
// lists a group needs, the table, then the launch without the GIL.
template <class Rule, class Lead, class Mid, class Trail>
py::tuple step(const Lead& lead, const std::array<py::handle, Rule::operands.size()>& lists,
               const std::vector<std::int64_t>& sizes, const std::vector<std::string>& dtypes, const Mid& mid,
               const std::vector<reg::GroupTuple<Rule>>& groups, const std::vector<std::int64_t>& group_sizes,
               const Trail& trail, int device, std::uintptr_t stream, std::uintptr_t found_inf,
               std::uintptr_t grad_scale, const py::object& step_ptrs, const py::object& step_dtypes) {
  constexpr std::size_t K = Rule::operands.size();
  typename Rule::Loop loop;
  loop.groups = reg::groups_from<Rule>(groups);
  std::array<bool, K> given{}, optional{};
  std::array<std::pair<const char*, py::handle>, K> named{};
  for (std::size_t k = 0; k < K; ++k) {
    given[k] = !lists[k].is_none();
    optional[k] = Rule::operands[k].optional;
    named[k] = {Rule::operands[k].arg, lists[k]};
  }
  Rule::cuda_setup(loop, lead, trail, given);
  reg::require_operands<Rule>(loop.groups, given);
  DeviceTable<K> table = make_table<K>(named, sizes, dtypes, optional);
  if constexpr (Rule::device_steps) add_device_steps(table, step_ptrs, step_dtypes);
  if constexpr (Rule::counts_steps) loop.steps = steps_of(std::get<0>(mid), table.size());
  loop.group_of = group_index(group_sizes, table.size());
  const LaunchConfig config = config_of(device, stream, found_inf, grad_scale);
  return launched([&] { return launch(table, loop, config); });
}

template <class Rule>
std::string doc() {
  std::string s =
      std::string("One ") + Rule::title + " step over device pointers; groups: " + reg::fields_str<Rule>();
  if (Rule::device_steps)
    s += "; with step_ptrs, each tensor's step count is read from its device counter (plus one) instead of "
         "steps";
  return s + "; returns (kernel launches, chunks, chunk length, blocks).";
}

template <std::size_t N, std::size_t... J>
auto args_of(const std::array<const char*, N>& names, std::index_sequence<J...>) {
  return std::make_tuple(py::arg(names[J])...);
}

template <std::size_t>
using AnyObject = py::object;  // a pointer list, or None

template <class Rule>
using Steps = std::conditional_t<Rule::counts_steps, std::tuple<const std::vector<double>&>, std::tuple<>>;

// optbowl._cuda.<rule>(lead..., operand lists..., sizes, dtypes, [steps,] groups,
// group_sizes, trail..., device, stream, found_inf=0, grad_scale=0[, step_ptrs=None,
// step_dtypes=None]): pointer lists as integers, any of them None where the entry allows.
template <class Rule, class... Lead, std::size_t... I, class... Mid, class... Trail>
void def_rule(py::module_& m, std::tuple<Lead...>*, std::index_sequence<I...>, std::tuple<Mid...>*,
              std::tuple<Trail...>*) {
  const auto steps_arg = [] {
    if constexpr (Rule::counts_steps)
      return std::make_tuple(py::arg("steps"));
    else
      return std::tuple<>{};
  }();
  const auto head =
      std::tuple_cat(args_of(Rule::cuda_lead_names, std::make_index_sequence<sizeof...(Lead)>{}),
                     std::make_tuple(py::arg(Rule::operands[I].arg)...),
                     std::make_tuple(py::arg("sizes"), py::arg("dtypes")), steps_arg,
                     std::make_tuple(py::arg("groups"), py::arg("group_sizes")),
                     args_of(Rule::cuda_trail_names, std::make_index_sequence<sizeof...(Trail)>{}),
                     std::make_tuple(py::arg("device"), py::arg("stream"), py::arg("found_inf") = 0,
                                     py::arg("grad_scale") = 0));
  const std::string text = doc<Rule>();
  using Groups = std::vector<reg::GroupTuple<Rule>>;
  using Sizes = std::vector<std::int64_t>;
  using Dtypes = std::vector<std::string>;
  if constexpr (Rule::device_steps) {
    auto f = [](Lead... lead, AnyObject<I>... lists, const Sizes& sizes, const Dtypes& dtypes, Mid... mid,
                const Groups& groups, const Sizes& group_sizes, Trail... trail, int device,
                std::uintptr_t stream, std::uintptr_t found_inf, std::uintptr_t grad_scale,
                py::object step_ptrs, py::object step_dtypes) {
      return step<Rule>(std::forward_as_tuple(lead...), {{py::handle(lists)...}}, sizes, dtypes,
                        std::forward_as_tuple(mid...), groups, group_sizes, std::forward_as_tuple(trail...),
                        device, stream, found_inf, grad_scale, step_ptrs, step_dtypes);
    };
    const auto args = std::tuple_cat(
        head, std::make_tuple(py::arg("step_ptrs") = py::none(), py::arg("step_dtypes") = py::none()));
    std::apply([&](const auto&... a) { m.def(Rule::name, f, a..., text.c_str()); }, args);
  } else {
    auto f = [](Lead... lead, AnyObject<I>... lists, const Sizes& sizes, const Dtypes& dtypes, Mid... mid,
                const Groups& groups, const Sizes& group_sizes, Trail... trail, int device,
                std::uintptr_t stream, std::uintptr_t found_inf, std::uintptr_t grad_scale) {
      return step<Rule>(std::forward_as_tuple(lead...), {{py::handle(lists)...}}, sizes, dtypes,
                        std::forward_as_tuple(mid...), groups, group_sizes, std::forward_as_tuple(trail...),
                        device, stream, found_inf, grad_scale, py::none(), py::none());
    };
    std::apply([&](const auto&... a) { m.def(Rule::name, f, a..., text.c_str()); }, head);
  }
}

// A plain device allocation; the Python side wraps it with __cuda_array_interface__.
class DeviceBuffer {
 public:
  DeviceBuffer(std::int64_t nbytes, int device) : nbytes_(nbytes), device_(device) {
    if (nbytes < 0) throw py::value_error("nbytes: must be >= 0");
    data_.reset(runtime::allocate(nbytes, device));
  }
  std::uintptr_t ptr() const { return reinterpret_cast<std::uintptr_t>(data_.get()); }
  std::int64_t nbytes() const { return nbytes_; }
  int device() const { return device_; }

 private:
  struct Free {
    void operator()(void* p) const { runtime::release(p); }
  };
  std::unique_ptr<void, Free> data_;
  std::int64_t nbytes_;
  int device_;
};

// DLPack's ABI (dlpack.h v0.8, the unversioned "dltensor" capsule).
struct DLDevice {
  std::int32_t device_type;
  std::int32_t device_id;
};
struct DLDataType {
  std::uint8_t code;
  std::uint8_t bits;
  std::uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  std::int32_t ndim;
  DLDataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;
  std::uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor*);
};

py::dict dlpack_info(const py::capsule& capsule) {
  if (std::string(capsule.name() ? capsule.name() : "") != "dltensor")
    throw py::type_error("capsule: expected an unconsumed 'dltensor' DLPack capsule");
  const auto* managed = capsule.get_pointer<DLManagedTensor>();
  const DLTensor& t = managed->dl_tensor;
  py::list shape, strides;
  for (int d = 0; d < t.ndim; ++d) {
    shape.append(t.shape[d]);
    if (t.strides != nullptr) strides.append(t.strides[d]);
  }
  py::dict out;
  out["data"] = reinterpret_cast<std::uintptr_t>(t.data) + t.byte_offset;
  out["device_type"] = t.device.device_type;
  out["device_id"] = t.device.device_id;
  out["shape"] = py::tuple(shape);
  out["strides"] = t.strides != nullptr ? py::object(py::tuple(strides)) : py::object(py::none());
  out["code"] = t.dtype.code;
  out["bits"] = t.dtype.bits;
  out["lanes"] = t.dtype.lanes;
  return out;
}

}  // namespace
}  // namespace cuda
}  // namespace optbowl

PYBIND11_MODULE(_cuda, m) {
  using namespace optbowl::cuda;
  m.doc() = "optbowl's CUDA kernels (private; use optbowl.cuda)";

  m.def(
      "status",
      []() -> py::tuple {
        const runtime::Status s = runtime::status();
        return py::make_tuple(s.count, s.error_name, s.error_message);
      },
      "(device count, error name, error message); count 0 with the runtime's reason when no "
      "device can be used.");
  m.def("runtime_version", &runtime::runtime_version,
        "The CUDA runtime version this module links (e.g. 13000 for 13.0).");
  m.def("driver_version", &runtime::driver_version,
        "The CUDA version the installed driver supports (e.g. 12040), 0 without a driver.");
  m.def("device_name", &runtime::device_name, py::arg("device"));
  m.def("sm_count", &runtime::sm_count, py::arg("device"));
  m.def(
      "compute_capability",
      [](int device) {
        const std::vector<int> cc = runtime::compute_capability(device);
        return py::make_tuple(cc.at(0), cc.at(1));
      },
      py::arg("device"));
  m.def("kernel_image_problem", &runtime::kernel_image_problem, py::arg("device"),
        "An empty string when this build's kernels run on the device, else the runtime's "
        "error (e.g. no kernel image for its architecture).");
  m.def("pointer_device", &runtime::pointer_device, py::arg("ptr"),
        "CUDA device ordinal that owns a device pointer.");

  // The step function of every registry entry with a kernel (optbowl/registry.hpp).
  reg::Rules::each([&m](auto rule) {
    using Rule = decltype(rule);
    if constexpr (Rule::cuda)
      def_rule<Rule>(m, static_cast<typename Rule::CudaLead*>(nullptr),
                     std::make_index_sequence<Rule::operands.size()>{}, static_cast<Steps<Rule>*>(nullptr),
                     static_cast<typename Rule::CudaTrail*>(nullptr));
  });

  m.def(
      "plan",
      [](const std::vector<std::int64_t>& sizes, std::int64_t resident) {
        for (const std::int64_t n : sizes)
          if (n < 0) throw py::value_error("sizes: entries must be >= 0");
        const LaunchStats s = plan(sizes, resident);
        return py::make_tuple(s.launches, s.chunks, s.chunk_elems, s.blocks);
      },
      py::arg("sizes"), py::arg("resident") = 0,
      "(kernel launches, chunks, chunk length, blocks) that one dtype's tensors of these "
      "lengths take on a device keeping `resident` blocks at once (0: not sized to a device); "
      "nothing is launched.");

  m.def(
      "copy",
      [](std::uintptr_t dst, std::uintptr_t src, std::int64_t nbytes, int device, std::uintptr_t stream) {
        py::gil_scoped_release release;
        runtime::copy(dst, src, nbytes, device, stream);
      },
      py::arg("dst"), py::arg("src"), py::arg("nbytes"), py::arg("device"), py::arg("stream"),
      "Copy nbytes between host and device memory on a stream, and wait for it.");

  m.def(
      "wait_streams",
      [](std::uintptr_t consumer, const std::vector<std::uintptr_t>& producers, int device) {
        py::gil_scoped_release release;
        runtime::wait_streams(consumer, producers, device);
      },
      py::arg("consumer"), py::arg("producers"), py::arg("device"),
      "Order the work queued later on `consumer` after the work queued so far on each producer "
      "stream (events; the host does not wait).");

  py::class_<DeviceBuffer>(m, "DeviceBuffer")
      .def(py::init<std::int64_t, int>(), py::arg("nbytes"), py::arg("device"))
      .def_property_readonly("ptr", &DeviceBuffer::ptr)
      .def_property_readonly("nbytes", &DeviceBuffer::nbytes)
      .def_property_readonly("device", &DeviceBuffer::device);

  m.def("dlpack_info", &dlpack_info, py::arg("capsule"),
        "Data pointer, device, shape, strides and dtype of a DLPack capsule (not consumed).");

  m.attr("max_chunk_size") = kMaxChunkElems;
  m.attr("min_chunk_size") = kMinChunkElems;
  m.attr("max_tensors") = kMaxTensors;
  m.attr("max_chunks") = kMaxChunks;
  m.attr("threads_per_block") = 512;
#ifdef OPTBOWL_CUDA_ARCHITECTURES
  m.attr("architectures") = OPTBOWL_CUDA_ARCHITECTURES;
#endif
#ifdef OPTBOWL_CUDA_HOST_STUB
  m.attr("host_stub") = true;
#else
  m.attr("host_stub") = false;
#endif
}
