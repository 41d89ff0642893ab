// Host-side interface of the CUDA kernels: plain C++, included by the bindings (host
// compiler) and by the .cu files (nvcc).
//
// A DeviceTable holds, per tensor, K device pointers (param, grad, state arrays, in the
// rule's order; null for an optional state array not given), the length and the storage
// dtype. The hyper-parameters come from the same host structs the CPU loops use (RpropLoop,
// AdagradLoop, SgdLoop, RmspropLoop, AdamLoop), so a group's scalars are rounded to the math
// type in one place.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "optbowl/loops/adagrad_loop.hpp"
#include "optbowl/loops/adam_loop.hpp"
#include "optbowl/loops/rmsprop_loop.hpp"
#include "optbowl/loops/rprop_loop.hpp"
#include "optbowl/loops/sgd_loop.hpp"

namespace optbowl {
namespace cuda {

// Storage types on the device; f16 and bf16 are computed in float32, as torch does.
enum class DeviceDType : std::uint8_t { f32 = 0, f64 = 1, f16 = 2, bf16 = 3 };

template <std::size_t K>
struct DeviceTable {
  std::vector<std::array<void*, K>> ptrs;
  std::vector<std::int64_t> sizes;
  std::vector<DeviceDType> dtypes;

  std::size_t size() const { return sizes.size(); }
};

// Where and how to launch: device ordinal, stream handle (cudaStream_t as an integer,
// 0 = legacy default stream), and an optional device flag (a float32 that, when non-zero,
// turns the whole step into a no-op, as torch's fused optimizers use found_inf).
struct LaunchConfig {
  int device = 0;
  std::uintptr_t stream = 0;
  const float* found_inf = nullptr;
};

// Statistics of a launch plan, for tests and benchmarks: kernel launches and chunks.
struct LaunchStats {
  std::int64_t launches = 0;
  std::int64_t chunks = 0;
};

LaunchStats rprop(const DeviceTable<5>& table, const RpropLoop& loop, const LaunchConfig& config);
LaunchStats adagrad(const DeviceTable<3>& table, const AdagradLoop& loop, const LaunchConfig& config);
LaunchStats sgd(const DeviceTable<3>& table, const SgdLoop& loop, const LaunchConfig& config);
LaunchStats rmsprop(const DeviceTable<5>& table, const RmspropLoop& loop, const LaunchConfig& config);
LaunchStats adam(const DeviceTable<5>& table, const AdamLoop& loop, const LaunchConfig& config);

// ---- multi-tensor apply: the launch plan (as apex's multi_tensor_apply) -------------
// Every tensor is cut into chunks of kChunkElems elements. A launch carries, in its kernel
// arguments, a table of at most kMaxTensors tensors (pointers, length, hyper-parameters)
// and of at most kMaxChunks (tensor slot, chunk) entries, which its blocks share out
// grid-stride; a tensor whose chunks do not fit continues as slot 0 of the next launch.
constexpr std::int64_t kChunkElems = 65536;
constexpr int kMaxTensors = 110;
constexpr int kMaxChunks = 1024;

// Walk `tensors` (indices into sizes) and call
//   put_tensor(slot, tensor)          a tensor takes a slot of the current launch
//   put_chunk(entry, slot, chunk)     entry of the current launch: that chunk of that slot
//   launch(entries)                   the current launch is full or the list is done
// Empty tensors take no slot.
template <class PutTensor, class PutChunk, class Launch>
void plan_launches(const std::vector<std::int64_t>& sizes, const std::vector<int>& tensors,
                   PutTensor put_tensor, PutChunk put_chunk, Launch launch) {
  int slot = 0;
  int entry = 0;
  for (const int t : tensors) {
    const std::int64_t n = sizes[t];
    if (n == 0) continue;
    put_tensor(slot, t);
    const std::int64_t chunks = (n + kChunkElems - 1) / kChunkElems;
    for (std::int64_t c = 0; c < chunks; ++c) {
      put_chunk(entry, slot, static_cast<std::int32_t>(c));
      if (++entry == kMaxChunks) {
        launch(entry);
        entry = 0;
        if (c + 1 < chunks) {  // the rest of this tensor continues in slot 0
          put_tensor(0, t);
          slot = 0;
        } else {
          slot = -1;
        }
      }
    }
    if (++slot == kMaxTensors) {
      if (entry > 0) launch(entry);
      entry = 0;
      slot = 0;
    }
  }
  if (entry > 0) launch(entry);
}

// The plan for one dtype's tensors, without launching anything (testable without a GPU).
inline LaunchStats plan(const std::vector<std::int64_t>& sizes) {
  std::vector<int> all(sizes.size());
  for (std::size_t i = 0; i < sizes.size(); ++i) all[i] = static_cast<int>(i);
  LaunchStats stats;
  plan_launches(
      sizes, all, [](int, int) {}, [](int, int, std::int32_t) {},
      [&](int entries) {
        ++stats.launches;
        stats.chunks += entries;
      });
  return stats;
}

}  // namespace cuda
}  // namespace optbowl
