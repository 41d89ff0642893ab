// runtime.hpp over the CUDA runtime (the static cudart the module links).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "runtime.hpp"

namespace optbowl {
namespace cuda {
namespace runtime {
namespace {

void throw_on(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(status) + ": " +
                             cudaGetErrorString(status));
}

// Switches to a device for a scope, and back.
class OnDevice {
 public:
  explicit OnDevice(int device) {
    throw_on(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) throw_on(cudaSetDevice(device), "cudaSetDevice");
    switched_ = previous_ != device;
  }
  ~OnDevice() {
    if (switched_) cudaSetDevice(previous_);
  }
  OnDevice(const OnDevice&) = delete;
  OnDevice& operator=(const OnDevice&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

// A kernel of this build's image, to ask whether the image loads on a device.
__global__ void probe_kernel() {}

}  // namespace

Status status() {
  Status s;
  const cudaError_t e = cudaGetDeviceCount(&s.count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear it: a missing driver or device is not an error here
    s.count = 0;
    s.error_name = cudaGetErrorName(e);
    s.error_message = cudaGetErrorString(e);
  }
  return s;
}

int runtime_version() {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) cudaGetLastError();
  return v;
}

int driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) cudaGetLastError();
  return v;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  throw_on(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  return prop.name;
}

int sm_count(int device) {
  int sms = 0;
  throw_on(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
           "cudaDeviceGetAttribute");
  return sms;
}

std::vector<int> compute_capability(int device) {
  int major = 0, minor = 0;
  throw_on(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
           "cudaDeviceGetAttribute");
  throw_on(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device),
           "cudaDeviceGetAttribute");
  return {major, minor};
}

std::string kernel_image_problem(int device) {
  OnDevice on(device);
  cudaFuncAttributes attr{};
  const cudaError_t e = cudaFuncGetAttributes(&attr, probe_kernel);
  if (e == cudaSuccess) return {};
  cudaGetLastError();
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

int pointer_device(std::uintptr_t ptr) {
  cudaPointerAttributes attr{};
  throw_on(cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(ptr)),
           "cudaPointerGetAttributes");
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
    throw std::invalid_argument("the pointer is not CUDA device memory");
  return attr.device;
}

void copy(std::uintptr_t dst, std::uintptr_t src, std::int64_t nbytes, int device,
          std::uintptr_t stream) {
  if (nbytes <= 0) return;
  OnDevice on(device);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  cudaError_t e = cudaMemcpyAsync(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src),
                                  static_cast<std::size_t>(nbytes), cudaMemcpyDefault, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  throw_on(e, "cudaMemcpyAsync");
}

void* allocate(std::int64_t nbytes, int device) {
  OnDevice on(device);
  void* p = nullptr;
  throw_on(cudaMalloc(&p, nbytes > 0 ? static_cast<std::size_t>(nbytes) : 1), "cudaMalloc");
  return p;
}

void release(void* ptr) { cudaFree(ptr); }

void wait_streams(std::uintptr_t consumer, const std::vector<std::uintptr_t>& producers,
                  int device) {
  if (producers.empty()) return;
  OnDevice on(device);
  for (const std::uintptr_t producer : producers) {
    if (producer == consumer) continue;
    cudaEvent_t event = nullptr;
    throw_on(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreate");
    cudaError_t e = cudaEventRecord(event, reinterpret_cast<cudaStream_t>(producer));
    if (e == cudaSuccess) e = cudaStreamWaitEvent(reinterpret_cast<cudaStream_t>(consumer), event, 0);
    cudaEventDestroy(event);  // released once the wait is satisfied
    throw_on(e, "cudaStreamWaitEvent");
  }
}

}  // namespace runtime
}  // namespace cuda
}  // namespace optbowl
