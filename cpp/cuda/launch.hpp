// Host-side interface of the CUDA kernels: plain C++, included by the bindings (host
// compiler), by the .cu files (nvcc) and by the host stub of the kernels (cuda_stub.cpp,
// which the tests build with the host compiler alone).
//
// A DeviceTable holds, per tensor, K device pointers (param, grad, state arrays, in the
// rule's order; null for an optional state array not given), the length and the storage
// dtype, and, for rules that count steps, optionally a device step counter per tensor. The
// hyper-parameters come from the same host structs the CPU loops use (the Loop types of
// optbowl/loops/), so a group's scalars are rounded to the math type in one place.
#pragma once
#include <array>
#include <cstdint>
#include <vector>


namespace optbowl {
namespace cuda {

// Storage types on the device; f16 and bf16 are computed in float32, as torch does.
enum class DeviceDType : std::uint8_t { f32 = 0, f64 = 1, f16 = 2, bf16 = 3 };

template <std::size_t K>
struct DeviceTable {
  std::vector<std::array<void*, K>> ptrs;
  std::vector<std::int64_t> sizes;
  std::vector<DeviceDType> dtypes;
  // Device step counters (one scalar per tensor, float32 or float64, the count *before*
  // this step: the kernels use count + 1), as torch's fused optimizers keep them; empty:
  // the loop's host step counts are used.
  std::vector<const void*> step_ptrs;
  std::vector<std::uint8_t> step_is_f64;

  std::size_t size() const { return sizes.size(); }
};

// Where and how to launch: device ordinal, stream handle (cudaStream_t as an integer,
// 0 = legacy default stream), and two optional device scalars as torch's fused optimizers
// take them from a GradScaler: found_inf (a float32 that, when non-zero, turns the whole
// step into a no-op) and grad_scale (a float32 by which every gradient is divided before
// the rule reads it; the unscaled gradient is written back, as torch's fused kernels do).
struct LaunchConfig {
  int device = 0;
  std::uintptr_t stream = 0;
  const float* found_inf = nullptr;
  const float* grad_scale = nullptr;
};

// Statistics of a launch plan, for tests and benchmarks: kernel launches, chunks, the
// chunk length of the last pass and the blocks of all launches together.
struct LaunchStats {
  std::int64_t launches = 0;
  std::int64_t chunks = 0;
  std::int64_t chunk_elems = 0;
  std::int64_t blocks = 0;
};

// One multi-tensor step of the rule whose CPU loop is Loop, on the device: defined once per
// rule with a kernel, as launch<ThatLoop> in cpp/cuda/<rule>.cu (the registry's entries
// with cuda = true: optbowl/registry.hpp), and for all of them in the host stub.
template <class Loop>
LaunchStats launch(const DeviceTable<Loop::K>& table, const Loop& loop, const LaunchConfig& config);

// ---- multi-tensor apply: the launch plan (as apex's multi_tensor_apply) -------------
// Every tensor is cut into chunks of `chunk` elements. A launch carries, in its kernel
// arguments, a table of at most kMaxTensors tensors (pointers, length, hyper-parameters)
// and of at most kMaxChunks (tensor slot, chunk) entries, which its blocks share out
// grid-stride; a tensor whose chunks do not fit continues as slot 0 of the next launch.
//
// The chunk length is sized to the device: the longest power of two in
// [kMinChunkElems, kMaxChunkElems] that still gives every resident block at least
// kChunksPerBlock chunks (else kMinChunkElems), so a 1 M-element tensor is 128 chunks
// rather than 16, and a 100 M one keeps long chunks. A chunk of kMinChunkElems (8,192)
// elements is 4 passes of a 512-thread block over 16-byte float32 vectors.
constexpr std::int64_t kMaxChunkElems = 65536;
constexpr std::int64_t kMinChunkElems = 8192;
constexpr std::int64_t kChunksPerBlock = 4;
constexpr int kMaxTensors = 110;
constexpr int kMaxChunks = 2048;

// The chunk length for these tensors on a device that keeps `resident` blocks of the
// kernel at once (resident <= 0: not sized to a device, kMaxChunkElems).
inline std::int64_t chunk_elems_for(const std::vector<std::int64_t>& sizes,
                                    const std::vector<int>& tensors, std::int64_t resident) {
  if (resident <= 0) return kMaxChunkElems;
  std::int64_t chunk = kMaxChunkElems;
  for (; chunk > kMinChunkElems; chunk /= 2) {
    std::int64_t chunks = 0;
    for (const int t : tensors) chunks += (sizes[t] + chunk - 1) / chunk;
    if (chunks >= kChunksPerBlock * resident) break;
  }
  return chunk;
}

// Walk `tensors` (indices into sizes) in chunks of `chunk` elements and call
//   put_tensor(slot, tensor)          a tensor takes a slot of the current launch
//   put_chunk(entry, slot, chunk)     entry of the current launch: that chunk of that slot
//   launch(entries)                   the current launch is full or the list is done
// Empty tensors take no slot.
template <class PutTensor, class PutChunk, class Launch>
void plan_launches(const std::vector<std::int64_t>& sizes, const std::vector<int>& tensors,
                   std::int64_t chunk, PutTensor put_tensor, PutChunk put_chunk, Launch launch) {
  int slot = 0;
  int entry = 0;
  for (const int t : tensors) {
    const std::int64_t n = sizes[t];
    if (n == 0) continue;
    put_tensor(slot, t);
    const std::int64_t chunks = (n + chunk - 1) / chunk;
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

// Blocks of one launch of `entries` chunks: one per chunk, at most the resident ones
// (which then stride over the entries); resident <= 0: one per chunk.
inline std::int64_t grid_for(std::int64_t entries, std::int64_t resident) {
  return resident > 0 && entries > resident ? resident : entries;
}

// The plan for one dtype's tensors on a device keeping `resident` blocks at once, without
// launching anything (testable without a GPU).
inline LaunchStats plan(const std::vector<std::int64_t>& sizes, std::int64_t resident) {
  std::vector<int> all(sizes.size());
  for (std::size_t i = 0; i < sizes.size(); ++i) all[i] = static_cast<int>(i);
  LaunchStats stats;
  stats.chunk_elems = chunk_elems_for(sizes, all, resident);
  plan_launches(
      sizes, all, stats.chunk_elems, [](int, int) {}, [](int, int, std::int32_t) {},
      [&](int entries) {
        ++stats.launches;
        stats.chunks += entries;
        stats.blocks += grid_for(entries, resident);
      });
  return stats;
}

}  // namespace cuda
}  // namespace optbowl
