// The few CUDA runtime calls the bindings make, behind plain C++ declarations: runtime.cu
// implements them with the CUDA runtime, and the host stub (cuda_stub.cpp) with host
// memory, so that the bindings compile with the host compiler alone and the binding layer
// can be tested without a GPU, a driver or the CUDA toolkit. Errors are exceptions:
// std::invalid_argument (ValueError in Python) for a bad argument, std::runtime_error for
// what the runtime reports.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace optbowl {
namespace cuda {
namespace runtime {

// Device count, and when it is 0 the runtime's error (name and message; empty when none).
struct Status {
  int count = 0;
  std::string error_name;
  std::string error_message;
};
Status status();

int runtime_version();  // the CUDA runtime linked in (e.g. 13000)
int driver_version();   // the CUDA version the driver supports; 0 when there is no driver
std::string device_name(int device);
int sm_count(int device);
// (major, minor) compute capability of a device.
std::vector<int> compute_capability(int device);
// An empty string when this build's kernels can run on the device, else why not.
std::string kernel_image_problem(int device);

int pointer_device(std::uintptr_t ptr);
void copy(std::uintptr_t dst, std::uintptr_t src, std::int64_t nbytes, int device,
          std::uintptr_t stream);
void* allocate(std::int64_t nbytes, int device);
void release(void* ptr);
// Make the work queued later on `consumer` wait for the work queued so far on each of
// `producers` (an event recorded on each; no host synchronisation).
void wait_streams(std::uintptr_t consumer, const std::vector<std::uintptr_t>& producers,
                  int device);

}  // namespace runtime
}  // namespace cuda
}  // namespace optbowl
