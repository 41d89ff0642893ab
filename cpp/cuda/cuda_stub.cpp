// Host stubs of the CUDA kernels and runtime calls (launch.hpp, runtime.hpp), for testing
// the binding layer (bindings.cpp) without a GPU, a driver or the CUDA toolkit: built with
// the host compiler alone (tests/test_cuda_stub_bindings.py), it makes a module `_cuda`
// whose "device memory" is host memory. The launchers walk the same launch plan as the
// kernels (chunk length sized to a pretend device of kStubResident blocks) and run each
// chunk through the CPU loop of the same rule, with found_inf, grad_scale and device step
// counters honoured as the kernels honour them; float16/bfloat16 are not emulated.
//
// The pretend device is set by environment variables read at each call, so that the
// Python side's diagnostics can be tested: OPTBOWL_CUDA_STUB_DRIVER (the CUDA version the
// "driver" supports, default 13000; 0: no driver), OPTBOWL_CUDA_STUB_DEVICES (default 1)
// and OPTBOWL_CUDA_STUB_CC (compute capability as major*10+minor, default 90).
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "launch.hpp"
#include "optbowl/registry.hpp"
#include "runtime.hpp"

namespace optbowl {
namespace cuda {
namespace {

constexpr int kStubRuntime = 13000;
constexpr std::int64_t kStubResident = 8;  // 4 SMs x 2 blocks

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

template <class T, std::size_t K, class Loop>
void run_chunks(const DeviceTable<K>& table, const std::vector<int>& tensors, const Loop& loop,
                const LaunchConfig& config, LaunchStats& stats) {
  const std::int64_t chunk = chunk_elems_for(table.sizes, tensors, kStubResident);
  stats.chunk_elems = chunk;
  const bool skip = config.found_inf != nullptr && *config.found_inf != 0.0f;
  std::vector<int> slot_tensor(kMaxTensors, -1);
  std::vector<std::pair<int, std::int32_t>> entries(kMaxChunks);
  plan_launches(
      table.sizes, tensors, chunk, [&](int slot, int t) { slot_tensor[slot] = t; },
      [&](int entry, int slot, std::int32_t c) { entries[entry] = {slot, c}; },
      [&](int n) {
        ++stats.launches;
        stats.chunks += n;
        stats.blocks += grid_for(n, kStubResident);
        if (skip) return;
        for (int e = 0; e < n; ++e) {
          const int t = slot_tensor[entries[e].first];
          const std::int64_t begin = entries[e].second * chunk;
          const std::int64_t end = std::min(begin + chunk, table.sizes[t]);
          std::array<void*, Loop::K> ptrs{};
          for (std::size_t k = 0; k < Loop::K; ++k) ptrs[k] = table.ptrs[t][k];
          if (config.grad_scale != nullptr) {  // unscaled in place, as the kernels do
            T* g = static_cast<T*>(ptrs[1]);
            const T scale = static_cast<T>(*config.grad_scale);
            for (std::int64_t i = begin; i < end; ++i) g[i] = g[i] / scale;
          }
          loop.template apply<T>(ptrs, t, begin, end);
        }
      });
}

template <std::size_t K, class Loop>
LaunchStats run_by_dtype(const DeviceTable<K>& table, const Loop& loop, const LaunchConfig& config) {
  if (config.device < 0 || config.device >= env_int("OPTBOWL_CUDA_STUB_DEVICES", 1))
    throw std::runtime_error("cudaSetDevice: cudaErrorInvalidDevice: invalid device ordinal");
  LaunchStats stats;
  for (const DeviceDType d : {DeviceDType::f32, DeviceDType::f64, DeviceDType::f16, DeviceDType::bf16}) {
    std::vector<int> tensors;
    for (std::size_t t = 0; t < table.size(); ++t)
      if (table.dtypes[t] == d) tensors.push_back(static_cast<int>(t));
    if (tensors.empty()) continue;
    if (d == DeviceDType::f32)
      run_chunks<float>(table, tensors, loop, config, stats);
    else if (d == DeviceDType::f64)
      run_chunks<double>(table, tensors, loop, config, stats);
    else
      throw std::invalid_argument("dtypes: the host stub computes float32 and float64 only");
  }
  return stats;
}

// A loop whose step counts come from the table's device counters (count + 1), if it has them.
template <std::size_t K, class Loop>
Loop with_device_steps(const DeviceTable<K>& table, Loop loop) {
  if (table.step_ptrs.empty()) return loop;
  if (table.step_ptrs.size() != table.size())
    throw std::invalid_argument("step_ptrs: expected one step counter per tensor");
  for (std::size_t t = 0; t < table.size(); ++t)
    loop.steps[t] = (table.step_is_f64[t] ? *static_cast<const double*>(table.step_ptrs[t])
                                          : static_cast<double>(*static_cast<const float*>(table.step_ptrs[t]))) +
                    1.0;
  return loop;
}

template <class Loop, class = void>
struct CountsSteps : std::false_type {};
template <class Loop>
struct CountsSteps<Loop, std::void_t<decltype(std::declval<Loop&>().steps)>> : std::true_type {};

template <std::size_t K>
void no_device_steps(const DeviceTable<K>& table) {
  if (!table.step_ptrs.empty()) throw std::invalid_argument("step_ptrs: this rule counts no steps");
}

}  // namespace

// Every registry entry's launcher: its CPU loop run chunk by chunk, with the device step
// counters where the loop counts steps.
template <class Loop>
LaunchStats launch(const DeviceTable<Loop::K>& table, const Loop& loop, const LaunchConfig& config) {
  if constexpr (CountsSteps<Loop>::value) return run_by_dtype(table, with_device_steps(table, loop), config);
  no_device_steps(table);
  return run_by_dtype(table, loop, config);
}

namespace {
// The launchers of the bindings' rules, instantiated here (their only definition).
template <class... R>
constexpr auto launchers(registry::List<R...>*) {
  return std::make_tuple(&launch<typename R::Loop>...);
}
[[maybe_unused]] const auto kLaunchers = launchers(static_cast<registry::Rules*>(nullptr));
}  // namespace

namespace runtime {

Status status() {
  Status s;
  const int driver = driver_version();
  if (driver < kStubRuntime / 1000 * 1000) {
    s.error_name = "cudaErrorInsufficientDriver";
    s.error_message = "CUDA driver version is insufficient for CUDA runtime version";
  } else if (env_int("OPTBOWL_CUDA_STUB_DEVICES", 1) <= 0) {
    s.error_name = "cudaErrorNoDevice";
    s.error_message = "no CUDA-capable device is detected";
  } else {
    s.count = env_int("OPTBOWL_CUDA_STUB_DEVICES", 1);
  }
  return s;
}

int runtime_version() { return kStubRuntime; }
int driver_version() { return env_int("OPTBOWL_CUDA_STUB_DRIVER", 13000); }

namespace {
void check_device(int device) {
  if (device < 0 || device >= status().count)
    throw std::runtime_error("cudaGetDeviceProperties: cudaErrorInvalidDevice: invalid device ordinal");
}
}  // namespace

std::string device_name(int device) {
  check_device(device);
  return "optbowl host stub";
}
int sm_count(int device) {
  check_device(device);
  return 4;
}
std::vector<int> compute_capability(int device) {
  check_device(device);
  const int cc = env_int("OPTBOWL_CUDA_STUB_CC", 90);
  return {cc / 10, cc % 10};
}
std::string kernel_image_problem(int device) {
  const std::vector<int> cc = compute_capability(device);
  if (cc[0] < 8)
    return "cudaErrorNoKernelImageForDevice: no kernel image is available for execution on the "
           "device";
  return {};
}
int pointer_device(std::uintptr_t ptr) {
  if (ptr == 0) throw std::invalid_argument("the pointer is not CUDA device memory");
  return 0;
}
void copy(std::uintptr_t dst, std::uintptr_t src, std::int64_t nbytes, int, std::uintptr_t) {
  if (nbytes > 0)
    std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src),
                 static_cast<std::size_t>(nbytes));
}
void* allocate(std::int64_t nbytes, int device) {
  check_device(device);
  void* p = std::calloc(static_cast<std::size_t>(nbytes > 0 ? nbytes : 1), 1);
  if (p == nullptr) throw std::runtime_error("cudaMalloc: cudaErrorMemoryAllocation: out of memory");
  return p;
}
void release(void* ptr) { std::free(ptr); }
void wait_streams(std::uintptr_t, const std::vector<std::uintptr_t>&, int device) {
  check_device(device);
}

}  // namespace runtime
}  // namespace cuda
}  // namespace optbowl
