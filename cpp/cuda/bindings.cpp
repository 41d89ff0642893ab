// optbowl._cuda: the optional CUDA module (private; the optbowl.cuda module wraps it).
//
// Arrays arrive as device pointers (integers) already validated by optbowl._device
// (dtype, shape, contiguity, one device, no shared memory); this module checks that the
// lists agree, runs the multi-tensor kernels on the given stream, and offers the few
// runtime calls the Python side needs: device count, copies, a device buffer, and a
// DLPack reader. Linked against the static CUDA runtime: without a driver or a GPU,
// device_count() is 0 and status() says why; nothing here raises at import.
#include <cuda_runtime.h>
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

namespace py = pybind11;

namespace optbowl {
namespace cuda {
namespace {

using GroupTuple = std::tuple<double, double, double, double, bool>;
using SgdGroupTuple = std::tuple<double, double, double, double, bool, bool>;
using RmspropGroupTuple = std::tuple<double, double, double, double, double, bool, bool>;
using AdamGroupTuple = std::tuple<double, double, double, double, double, bool, bool, bool>;

void throw_on(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(status) + ": " +
                             cudaGetErrorString(status));
}

DeviceDType parse_dtype(const std::string& name) {
  if (name == "float32") return DeviceDType::f32;
  if (name == "float64") return DeviceDType::f64;
  if (name == "float16") return DeviceDType::f16;
  if (name == "bfloat16") return DeviceDType::bf16;
  throw py::type_error("dtypes: expected float32, float64, float16 or bfloat16, got " + name);
}

// Build a table from K lists of pointers; the lists from index `optional` on may be None
// (an unused slot: null pointers), the others are required.
template <std::size_t K>
DeviceTable<K> make_table(const std::array<std::pair<const char*, py::object>, K>& lists,
                          const std::vector<std::int64_t>& sizes,
                          const std::vector<std::string>& dtypes, std::size_t optional = K) {
  const std::size_t n = sizes.size();
  if (dtypes.size() != n) throw py::value_error("dtypes: expected one dtype per tensor");
  DeviceTable<K> table;
  table.ptrs.assign(n, {});
  for (std::size_t k = 0; k < K; ++k) {
    if (lists[k].second.is_none()) {
      if (k < optional)
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

// A group tuple of Python scalars -> the loop's group struct, field by field.
template <class Group, class... Fields>
std::vector<Group> groups_from(const std::vector<std::tuple<Fields...>>& groups) {
  std::vector<Group> out;
  for (const auto& g : groups)
    out.push_back(std::apply([](const Fields&... f) { return Group{f...}; }, g));
  return out;
}

// A ValueError when some group needs an optional list that was not given.
template <class Group, class Needs>
void require_list(const std::vector<Group>& groups, const py::object& list, Needs needs,
                  const char* message) {
  if (!list.is_none()) return;
  for (const auto& g : groups)
    if (needs(g)) throw py::value_error(message);
}

std::vector<double> steps_of(const std::vector<double>& steps, std::size_t n) {
  if (steps.size() != n) throw py::value_error("steps: expected one step count per tensor");
  return steps;
}

LaunchConfig config_of(int device, std::uintptr_t stream, std::uintptr_t found_inf) {
  LaunchConfig c;
  c.device = device;
  c.stream = stream;
  c.found_inf = reinterpret_cast<const float*>(found_inf);
  return c;
}

py::tuple stats_tuple(const LaunchStats& s) { return py::make_tuple(s.launches, s.chunks); }

// A plain device allocation; the Python side wraps it with __cuda_array_interface__.
class DeviceBuffer {
 public:
  DeviceBuffer(std::int64_t nbytes, int device) : nbytes_(nbytes), device_(device) {
    if (nbytes < 0) throw py::value_error("nbytes: must be >= 0");
    int previous = 0;
    throw_on(cudaGetDevice(&previous), "cudaGetDevice");
    throw_on(cudaSetDevice(device), "cudaSetDevice");
    void* p = nullptr;
    const cudaError_t status = cudaMalloc(&p, nbytes > 0 ? static_cast<std::size_t>(nbytes) : 1);
    cudaSetDevice(previous);
    throw_on(status, "cudaMalloc");
    data_.reset(p);
  }
  std::uintptr_t ptr() const { return reinterpret_cast<std::uintptr_t>(data_.get()); }
  std::int64_t nbytes() const { return nbytes_; }
  int device() const { return device_; }

 private:
  struct Free {
    void operator()(void* p) const { cudaFree(p); }
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
        int count = 0;
        const cudaError_t e = cudaGetDeviceCount(&count);
        if (e != cudaSuccess) {
          cudaGetLastError();  // clear it: a missing driver or device is not an error here
          return py::make_tuple(0, std::string(cudaGetErrorName(e)), std::string(cudaGetErrorString(e)));
        }
        return py::make_tuple(static_cast<int>(count), std::string(), std::string());
      },
      "(device count, error name, error message); count 0 with the runtime's reason when no "
      "device can be used.");
  m.def("runtime_version", [] {
    int v = 0;
    cudaRuntimeGetVersion(&v);
    return v;
  });
  m.def("driver_version", [] {
    int v = 0;
    if (cudaDriverGetVersion(&v) != cudaSuccess) cudaGetLastError();
    return v;
  });
  m.def(
      "device_name",
      [](int device) {
        cudaDeviceProp prop{};
        throw_on(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
        return std::string(prop.name);
      },
      py::arg("device"));

  m.def(
      "pointer_device",
      [](std::uintptr_t ptr) {
        cudaPointerAttributes attr{};
        throw_on(cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(ptr)),
                 "cudaPointerGetAttributes");
        if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
          throw py::value_error("the pointer is not CUDA device memory");
        return attr.device;
      },
      py::arg("ptr"), "CUDA device ordinal that owns a device pointer.");

  m.def(
      "rprop",
      [](int variant, py::object params, py::object grads, py::object prevs, py::object steps,
         py::object updates, const std::vector<std::int64_t>& sizes,
         const std::vector<std::string>& dtypes, const std::vector<GroupTuple>& groups,
         const std::vector<std::int64_t>& group_sizes, bool loss_increased, int device,
         std::uintptr_t stream, std::uintptr_t found_inf) {
        if (variant < 0 || variant > static_cast<int>(optbowl::RpropVariant::backtrack))
          throw py::value_error("variant: expected 0..4");
        optbowl::RpropLoop loop;
        loop.variant = static_cast<optbowl::RpropVariant>(variant);
        const bool plus = optbowl::rprop_state_count(loop.variant) == 3;
        if (plus == updates.is_none()) throw py::value_error("updates: wrong for this variant");
        const DeviceTable<5> table = make_table<5>(
            {{{"params", params}, {"grads", grads}, {"prevs", prevs}, {"steps", steps}, {"updates", updates}}},
            sizes, dtypes, 4);
        loop.groups = groups_from<optbowl::RpropGroup>(groups);
        loop.group_of = group_index(group_sizes, table.size());
        loop.loss_increased = loss_increased;
        py::gil_scoped_release release;
        return stats_tuple(rprop(table, loop, config_of(device, stream, found_inf)));
      },
      py::arg("variant"), py::arg("params"), py::arg("grads"), py::arg("prevs"), py::arg("steps"),
      py::arg("updates"), py::arg("sizes"), py::arg("dtypes"), py::arg("groups"),
      py::arg("group_sizes"), py::arg("loss_increased"), py::arg("device"), py::arg("stream"),
      py::arg("found_inf") = 0,
      "One Rprop step over device pointers; returns (kernel launches, chunks).");

  m.def(
      "adagrad",
      [](py::object params, py::object grads, py::object sums, const std::vector<std::int64_t>& sizes,
         const std::vector<std::string>& dtypes, const std::vector<double>& steps,
         const std::vector<GroupTuple>& groups, const std::vector<std::int64_t>& group_sizes,
         int device, std::uintptr_t stream, std::uintptr_t found_inf) {
        const DeviceTable<3> table = make_table<3>(
            {{{"params", params}, {"grads", grads}, {"sums", sums}}}, sizes, dtypes);
        optbowl::AdagradLoop loop;
        loop.steps = steps_of(steps, table.size());
        loop.groups = groups_from<optbowl::AdagradGroup>(groups);
        loop.group_of = group_index(group_sizes, table.size());
        py::gil_scoped_release release;
        return stats_tuple(adagrad(table, loop, config_of(device, stream, found_inf)));
      },
      py::arg("params"), py::arg("grads"), py::arg("sums"), py::arg("sizes"), py::arg("dtypes"),
      py::arg("steps"), py::arg("groups"), py::arg("group_sizes"), py::arg("device"),
      py::arg("stream"), py::arg("found_inf") = 0,
      "One AdaGrad step over device pointers; returns (kernel launches, chunks).");

  m.def(
      "sgd",
      [](py::object params, py::object grads, py::object momentum_buffers,
         const std::vector<std::int64_t>& sizes, const std::vector<std::string>& dtypes,
         const std::vector<double>& steps, const std::vector<SgdGroupTuple>& groups,
         const std::vector<std::int64_t>& group_sizes, int device, std::uintptr_t stream,
         std::uintptr_t found_inf) {
        optbowl::SgdLoop loop;
        loop.groups = groups_from<optbowl::SgdGroup>(groups);
        require_list(loop.groups, momentum_buffers, [](const auto& g) { return g.momentum != 0.0; },
                     "momentum_buffers: momentum != 0 needs one buffer per parameter");
        const DeviceTable<3> table = make_table<3>(
            {{{"params", params}, {"grads", grads}, {"momentum_buffers", momentum_buffers}}}, sizes,
            dtypes, 2);
        loop.steps = steps_of(steps, table.size());
        loop.group_of = group_index(group_sizes, table.size());
        py::gil_scoped_release release;
        return stats_tuple(sgd(table, loop, config_of(device, stream, found_inf)));
      },
      py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("sizes"),
      py::arg("dtypes"), py::arg("steps"), py::arg("groups"), py::arg("group_sizes"),
      py::arg("device"), py::arg("stream"), py::arg("found_inf") = 0,
      "One SGD step over device pointers; groups: (lr, momentum, dampening, weight_decay, "
      "nesterov, maximize); returns (kernel launches, chunks).");

  m.def(
      "rmsprop",
      [](py::object params, py::object grads, py::object square_avgs, py::object grad_avgs,
         py::object momentum_buffers, const std::vector<std::int64_t>& sizes,
         const std::vector<std::string>& dtypes, const std::vector<RmspropGroupTuple>& groups,
         const std::vector<std::int64_t>& group_sizes, int device, std::uintptr_t stream,
         std::uintptr_t found_inf) {
        optbowl::RmspropLoop loop;
        loop.groups = groups_from<optbowl::RmspropGroup>(groups);
        require_list(loop.groups, grad_avgs, [](const auto& g) { return g.centered; },
                     "grad_avgs: centered=True needs one array per parameter");
        require_list(loop.groups, momentum_buffers, [](const auto& g) { return g.momentum > 0.0; },
                     "momentum_buffers: momentum > 0 needs one buffer per parameter");
        const DeviceTable<5> table = make_table<5>({{{"params", params},
                                                     {"grads", grads},
                                                     {"square_avgs", square_avgs},
                                                     {"grad_avgs", grad_avgs},
                                                     {"momentum_buffers", momentum_buffers}}},
                                                   sizes, dtypes, 3);
        loop.group_of = group_index(group_sizes, table.size());
        py::gil_scoped_release release;
        return stats_tuple(rmsprop(table, loop, config_of(device, stream, found_inf)));
      },
      py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("grad_avgs"),
      py::arg("momentum_buffers"), py::arg("sizes"), py::arg("dtypes"), py::arg("groups"),
      py::arg("group_sizes"), py::arg("device"), py::arg("stream"), py::arg("found_inf") = 0,
      "One RMSprop step over device pointers; groups: (lr, alpha, eps, weight_decay, momentum, "
      "centered, maximize); returns (kernel launches, chunks).");

  m.def(
      "adam",
      [](py::object params, py::object grads, py::object exp_avgs, py::object exp_avg_sqs,
         py::object max_exp_avg_sqs, const std::vector<std::int64_t>& sizes,
         const std::vector<std::string>& dtypes, const std::vector<double>& steps,
         const std::vector<AdamGroupTuple>& groups, const std::vector<std::int64_t>& group_sizes,
         int device, std::uintptr_t stream, std::uintptr_t found_inf) {
        optbowl::AdamLoop loop;
        loop.groups = groups_from<optbowl::AdamGroup>(groups);
        require_list(loop.groups, max_exp_avg_sqs, [](const auto& g) { return g.amsgrad; },
                     "max_exp_avg_sqs: amsgrad=True needs one array per parameter");
        const DeviceTable<5> table = make_table<5>({{{"params", params},
                                                     {"grads", grads},
                                                     {"exp_avgs", exp_avgs},
                                                     {"exp_avg_sqs", exp_avg_sqs},
                                                     {"max_exp_avg_sqs", max_exp_avg_sqs}}},
                                                   sizes, dtypes, 4);
        loop.steps = steps_of(steps, table.size());
        loop.group_of = group_index(group_sizes, table.size());
        py::gil_scoped_release release;
        return stats_tuple(adam(table, loop, config_of(device, stream, found_inf)));
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
      py::arg("max_exp_avg_sqs"), py::arg("sizes"), py::arg("dtypes"), py::arg("steps"),
      py::arg("groups"), py::arg("group_sizes"), py::arg("device"), py::arg("stream"),
      py::arg("found_inf") = 0,
      "One Adam / AdamW / AMSGrad step over device pointers; groups: (lr, beta1, beta2, eps, "
      "weight_decay, amsgrad, maximize, decoupled_weight_decay); returns (kernel launches, "
      "chunks).");

  m.def(
      "plan", [](const std::vector<std::int64_t>& sizes) { return stats_tuple(plan(sizes)); },
      py::arg("sizes"),
      "(kernel launches, chunks) that one dtype's tensors of these lengths take (no launch).");

  m.def(
      "copy",
      [](std::uintptr_t dst, std::uintptr_t src, std::int64_t nbytes, int device, std::uintptr_t stream) {
        if (nbytes <= 0) return;
        py::gil_scoped_release release;
        int previous = 0;
        throw_on(cudaGetDevice(&previous), "cudaGetDevice");
        throw_on(cudaSetDevice(device), "cudaSetDevice");
        const auto s = reinterpret_cast<cudaStream_t>(stream);
        cudaError_t e = cudaMemcpyAsync(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src),
                                        static_cast<std::size_t>(nbytes), cudaMemcpyDefault, s);
        if (e == cudaSuccess) e = cudaStreamSynchronize(s);
        cudaSetDevice(previous);
        throw_on(e, "cudaMemcpyAsync");
      },
      py::arg("dst"), py::arg("src"), py::arg("nbytes"), py::arg("device"), py::arg("stream"),
      "Copy nbytes between host and device memory on a stream, and wait for it.");

  py::class_<DeviceBuffer>(m, "DeviceBuffer")
      .def(py::init<std::int64_t, int>(), py::arg("nbytes"), py::arg("device"))
      .def_property_readonly("ptr", &DeviceBuffer::ptr)
      .def_property_readonly("nbytes", &DeviceBuffer::nbytes)
      .def_property_readonly("device", &DeviceBuffer::device);

  m.def("dlpack_info", &dlpack_info, py::arg("capsule"),
        "Data pointer, device, shape, strides and dtype of a DLPack capsule (not consumed).");

  m.attr("chunk_size") = kChunkElems;
  m.attr("max_tensors") = kMaxTensors;
  m.attr("max_chunks") = kMaxChunks;
#ifdef OPTBOWL_CUDA_ARCHITECTURES
  m.attr("architectures") = OPTBOWL_CUDA_ARCHITECTURES;
#endif
}
