// Multi-tensor apply on the device, as apex does it.
//
// One kernel launch updates up to kMaxTensors tensors and kMaxChunks chunks; the table of
// (pointers, length, hyper-parameters) per tensor and the (tensor slot, chunk) entries
// travel in the kernel arguments (__grid_constant__, so nothing is copied to local memory;
// the argument block is 16-27 KB, which needs CUDA >= 12.1, toolkit and driver). The chunk
// length is sized to the device (launch.hpp), the grid is as large as the device keeps
// resident at once (or the number of chunks, if smaller) and strides over the entries; a
// block walks its chunk with a block-wide stride in 16-byte vectors (4 float32, 2 float64,
// 8 float16/bfloat16 per thread and pass) when every pointer of the tensor is 16-byte
// aligned, and element by element over the tail (and over unaligned tensors).
//
// Every load of a pass is issued before any arithmetic on it: the pointer slots an Op
// always has (kRequired) are loaded unconditionally, the optional ones under a flag that is
// uniform over the block. float32, float16 and bfloat16 kernels are bounded to 64
// registers so two 512-thread blocks fit an SM; float64 ones to one block per SM.
//
// An Op names the per-element rule: K (pointer slots it uses: slot 0 param, slot 1 the
// read-only gradient, then state arrays), kRequired (the leading slots that are never
// null), Hyper<M> (its scalars in math type M) and
//     template <class M> __device__ static void apply(M (&v)[K], const Hyper<M>& h)
// which calls the rule of optbowl/rules/. An Op whose scalars depend on the step count also
// has kSteps = true, Group (the loop's group struct) and
//     template <class M> __device__ static Hyper<M> at_step(const Group& g, double t)
// so that a device step counter can be read in the kernel (torch's fused optimizers keep
// their steps on the device). Half and bfloat16 storage is computed in float.
// A state slot whose pointer is null (an optional array the caller did not give, e.g.
// AMSGrad's maximum when no group uses it) is neither read nor written: the rule sees 0
// there and its write is dropped, so the rule must not need it (the bindings check that).
// A new optimizer on the device is one Op and one launch_by_dtype<Op>(...) call.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "launch.hpp"

namespace optbowl {
namespace cuda {

constexpr int kThreads = 512;
constexpr int kCachedDevices = 64;

// Elements of storage type S in one 16-byte vector.
template <class S>
constexpr int kVec = static_cast<int>(16 / sizeof(S));
// Blocks per SM the kernel must fit at kThreads threads: 2 (64 registers a thread) for
// 4- and 2-byte storage, 1 for float64.
template <class S>
constexpr int kMinBlocksPerSm = sizeof(S) >= 8 ? 1 : 2;

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(status) + ": " +
                             cudaGetErrorString(status));
}

// Storage type -> math type.
template <class S>
struct MathOf {
  using type = S;
};
template <>
struct MathOf<__half> {
  using type = float;
};
template <>
struct MathOf<__nv_bfloat16> {
  using type = float;
};

__device__ __forceinline__ float to_math(float x) { return x; }
__device__ __forceinline__ double to_math(double x) { return x; }
__device__ __forceinline__ float to_math(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_math(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void from_math(float& d, float x) { d = x; }
__device__ __forceinline__ void from_math(double& d, double x) { d = x; }
__device__ __forceinline__ void from_math(__half& d, float x) { d = __float2half_rn(x); }
__device__ __forceinline__ void from_math(__nv_bfloat16& d, float x) { d = __float2bfloat16_rn(x); }

template <int K, class Hyper>
struct TensorListArgs {
  void* ptrs[K][kMaxTensors];
  std::int64_t sizes[kMaxTensors];
  Hyper hyper[kMaxTensors];
  std::uint8_t chunk_slot[kMaxChunks];
  std::int32_t chunk_index[kMaxChunks];
};

// Per tensor, when the step count is read on the device: the group's scalars and the
// counter (the count before this step).
template <class Group>
struct DeviceStepHyper {
  Group group;
  const void* step;
  bool step_is_f64;
};

template <class Op, bool DeviceSteps>
struct HyperSlot {
  template <class M>
  using type = typename Op::template Hyper<M>;
};
template <class Op>
struct HyperSlot<Op, true> {
  template <class M>
  using type = DeviceStepHyper<typename Op::Group>;
};

template <class Op, class S, bool DeviceSteps>
using ArgsOf = TensorListArgs<
    Op::K, typename HyperSlot<Op, DeviceSteps>::template type<typename MathOf<S>::type>>;

template <class S>
struct alignas(16) Pack {
  S v[kVec<S>];
};

template <class S>
__device__ __forceinline__ Pack<S> load_pack(const S* p) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  Pack<S> r;
  std::memcpy(&r, &raw, sizeof(r));
  return r;
}
// The gradient: read through the non-coherent (read-only) path.
template <class S>
__device__ __forceinline__ Pack<S> load_pack_readonly(const S* p) {
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
  Pack<S> r;
  std::memcpy(&r, &raw, sizeof(r));
  return r;
}
template <class S>
__device__ __forceinline__ void store_pack(S* p, const Pack<S>& r) {
  uint4 raw;
  std::memcpy(&raw, &r, sizeof(r));
  *reinterpret_cast<uint4*>(p) = raw;
}

// The tensor's scalars: the host's, or, with device steps, computed from the counter.
template <class Op, class M, bool DeviceSteps, class Entry>
__device__ __forceinline__ typename Op::template Hyper<M> hyper_at(const Entry& e) {
  if constexpr (DeviceSteps) {
    const double count = e.step_is_f64 ? *static_cast<const double*>(e.step)
                                       : static_cast<double>(*static_cast<const float*>(e.step));
    return Op::template at_step<M>(e.group, count + 1.0);
  } else {
    return e;
  }
}

// A value the compiler must treat as unknown from here on: indices laundered so are
// re-read from the kernel's parameter bank (pointers, scalars) where they are used, not
// kept in registers across the pass (which, for the rules with five arrays, would spill).
__device__ __forceinline__ int opaque(int x) {
  asm volatile("" : "+r"(x));
  return x;
}

// One block updates one chunk (entry of the launch's table).
template <class Op, class S, bool DeviceSteps>
__device__ __forceinline__ void update_chunk(const ArgsOf<Op, S, DeviceSteps>& args, int entry,
                                             std::int64_t chunk_elems, const float* grad_scale) {
  using M = typename MathOf<S>::type;
  constexpr int K = Op::K;
  constexpr int N = kVec<S>;
  const int slot = args.chunk_slot[entry];
  const std::int64_t begin = static_cast<std::int64_t>(args.chunk_index[entry]) * chunk_elems;
  const std::int64_t rest = args.sizes[slot] - begin;
  const int len = static_cast<int>(rest < chunk_elems ? rest : chunk_elems);
  const bool unscale = grad_scale != nullptr;

  bool given[K];  // false: an optional slot left null (uniform over the block)
  bool aligned = true;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const auto base = reinterpret_cast<std::uintptr_t>(args.ptrs[k][slot]);
    given[k] = k < Op::kRequired || base != 0;
    aligned = aligned && (!given[k] || base % 16 == 0);
  }
  // Slot k is stored back: the state and the parameter, and the gradient when unscaled.
  const auto stores = [&](int k) { return given[k] && (k != 1 || unscale); };
  // Element i of the chunk in array k of tensor slot s.
  const auto at = [&](int k, int s, int i) { return static_cast<S*>(args.ptrs[k][s]) + begin + i; };
  // The scalars: with device steps computed once (they read the counter); otherwise read
  // from the parameter bank in each pass.
  [[maybe_unused]] const auto h_steps = [&] {
    if constexpr (DeviceSteps) return hyper_at<Op, M, true>(args.hyper[slot]);
    else return 0;
  }();
  const auto hyper = [&](int s) {
    if constexpr (DeviceSteps) return h_steps;
    else return hyper_at<Op, M, false>(args.hyper[s]);
  };

  const int vector_end = aligned ? len - len % N : 0;
  for (int i = threadIdx.x * N; i < vector_end; i += kThreads * N) {
    // Every load of the pass first, then the arithmetic, then the stores.
    const int s = opaque(slot);
    Pack<S> r[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (k == 1)
        r[k] = load_pack_readonly(at(k, s, i));
      else if (given[k])
        r[k] = load_pack(at(k, s, i));
    }
    const auto h = hyper(s);
    const M scale = unscale ? static_cast<M>(*grad_scale) : M(1);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      M v[K];
#pragma unroll
      for (int k = 0; k < K; ++k) v[k] = given[k] ? to_math(r[k].v[j]) : M(0);
      if (unscale) v[1] = v[1] / scale;
      Op::apply(v, h);
#pragma unroll
      for (int k = 0; k < K; ++k)
        if (stores(k)) from_math(r[k].v[j], v[k]);
    }
    const int t = opaque(slot);
#pragma unroll
    for (int k = 0; k < K; ++k)
      if (stores(k)) store_pack(at(k, t, i), r[k]);
  }
  const auto h = hyper(slot);
  const M scale = unscale ? static_cast<M>(*grad_scale) : M(1);
  for (int i = vector_end + static_cast<int>(threadIdx.x); i < len; i += kThreads) {
    M v[K];
#pragma unroll
    for (int k = 0; k < K; ++k) v[k] = given[k] ? to_math(*at(k, slot, i)) : M(0);
    if (unscale) v[1] = v[1] / scale;
    Op::apply(v, h);
#pragma unroll
    for (int k = 0; k < K; ++k)
      if (stores(k)) from_math(*at(k, slot, i), v[k]);
  }
}

template <class Op, class S, bool DeviceSteps>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm<S>)
    multi_tensor_kernel(const __grid_constant__ ArgsOf<Op, S, DeviceSteps> args, int entries,
                        std::int64_t chunk_elems, const float* found_inf, const float* grad_scale) {
  if (found_inf != nullptr && *found_inf != 0.0f) return;
  for (int entry = blockIdx.x; entry < entries; entry += gridDim.x) {
    update_chunk<Op, S, DeviceSteps>(args, entry, chunk_elems, grad_scale);
  }
}

// Device queries, asked once per device (and per kernel) and kept.
inline int sm_count(int device) {
  static std::atomic<int> cache[kCachedDevices] = {};
  const bool cached = device >= 0 && device < kCachedDevices;
  if (cached) {
    const int known = cache[device].load(std::memory_order_relaxed);
    if (known > 0) return known;
  }
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
        "cudaDeviceGetAttribute");
  if (cached) cache[device].store(sms, std::memory_order_relaxed);
  return sms;
}

template <class Op, class S, bool DeviceSteps>
int blocks_per_sm(int device) {
  static std::atomic<int> cache[kCachedDevices] = {};
  const bool cached = device >= 0 && device < kCachedDevices;
  if (cached) {
    const int known = cache[device].load(std::memory_order_relaxed);
    if (known > 0) return known;
  }
  int per_sm = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
            &per_sm, multi_tensor_kernel<Op, S, DeviceSteps>, kThreads, 0),
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  if (per_sm < 1) per_sm = 1;
  if (cached) cache[device].store(per_sm, std::memory_order_relaxed);
  return per_sm;
}

// Launch Op over the tensors of one storage type S. hyper_of(tag, tensor) returns the
// tensor's Hyper<M>, where decltype(tag)::type is M.
template <class M>
struct MathTag {
  using type = M;
};

// hyper_of for a host loop that rounds its own scalars: loop.hyper<M>(tensor).
template <class Loop>
auto hyper_of_loop(const Loop& loop) {
  return [&loop](auto tag, int t) {
    using M = typename decltype(tag)::type;
    return loop.template hyper<M>(t);
  };
}

template <class Op, class S, bool DeviceSteps, std::size_t KT, class HyperOf, class GroupOf>
void launch_multi_tensor(const DeviceTable<KT>& table, const std::vector<int>& tensors,
                         const HyperOf& hyper_of, const GroupOf& group_of,
                         const LaunchConfig& config, LaunchStats& stats) {
  static_assert(Op::K <= static_cast<int>(KT), "the table has fewer pointer slots than the Op uses");
  using M = typename MathOf<S>::type;
  using Args = ArgsOf<Op, S, DeviceSteps>;
  static_assert(sizeof(Args) <= 32764, "kernel arguments exceed the 32 KiB limit");
  auto args = std::make_unique<Args>();
  const auto stream = reinterpret_cast<cudaStream_t>(config.stream);
  const std::int64_t resident =
      static_cast<std::int64_t>(sm_count(config.device)) * blocks_per_sm<Op, S, DeviceSteps>(config.device);
  const std::int64_t chunk = chunk_elems_for(table.sizes, tensors, resident);
  stats.chunk_elems = chunk;
  plan_launches(
      table.sizes, tensors, chunk,
      [&](int slot, int t) {
        for (int k = 0; k < Op::K; ++k) args->ptrs[k][slot] = table.ptrs[t][k];
        args->sizes[slot] = table.sizes[t];
        if constexpr (DeviceSteps)
          args->hyper[slot] = {group_of(t), table.step_ptrs[t], table.step_is_f64[t] != 0};
        else
          args->hyper[slot] = hyper_of(MathTag<M>{}, t);
      },
      [&](int entry, int slot, std::int32_t c) {
        args->chunk_slot[entry] = static_cast<std::uint8_t>(slot);
        args->chunk_index[entry] = c;
      },
      [&](int entries) {
        const std::int64_t grid = grid_for(entries, resident);
        multi_tensor_kernel<Op, S, DeviceSteps><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(
            *args, entries, chunk, config.found_inf, config.grad_scale);
        check(cudaGetLastError(), "multi_tensor_kernel launch");
        ++stats.launches;
        stats.chunks += entries;
        stats.blocks += grid;
      });
}

template <class Op, bool DeviceSteps, class S, std::size_t KT, class HyperOf, class GroupOf>
void launch_steps(const DeviceTable<KT>& table, const std::vector<int>& tensors,
                  const HyperOf& hyper_of, const GroupOf& group_of, const LaunchConfig& config,
                  LaunchStats& stats) {
  launch_multi_tensor<Op, S, DeviceSteps>(table, tensors, hyper_of, group_of, config, stats);
}

// Launch Op over every tensor of the table, one pass per storage type present. An Op with
// kSteps reads the table's device step counters when it has them (group_of(t): the loop's
// group struct of tensor t).
template <class Op, std::size_t KT, class HyperOf, class GroupOf>
LaunchStats launch_by_dtype(const DeviceTable<KT>& table, const HyperOf& hyper_of,
                            const LaunchConfig& config, const GroupOf& group_of) {
  const bool device_steps = !table.step_ptrs.empty();
  if (device_steps && table.step_ptrs.size() != table.size())
    throw std::invalid_argument("step_ptrs: expected one step counter per tensor");
  if constexpr (!Op::kSteps) {
    if (device_steps) throw std::invalid_argument("step_ptrs: this rule counts no steps");
  }
  int previous = 0;
  check(cudaGetDevice(&previous), "cudaGetDevice");
  if (previous != config.device) check(cudaSetDevice(config.device), "cudaSetDevice");
  LaunchStats stats;
  try {
    for (const DeviceDType d : {DeviceDType::f32, DeviceDType::f64, DeviceDType::f16, DeviceDType::bf16}) {
      std::vector<int> tensors;
      for (std::size_t t = 0; t < table.size(); ++t)
        if (table.dtypes[t] == d) tensors.push_back(static_cast<int>(t));
      if (tensors.empty()) continue;
      const auto run = [&](auto storage) {
        using S = decltype(storage);
        if constexpr (Op::kSteps) {
          if (device_steps) {
            launch_steps<Op, true, S>(table, tensors, hyper_of, group_of, config, stats);
            return;
          }
        }
        launch_steps<Op, false, S>(table, tensors, hyper_of, group_of, config, stats);
      };
      switch (d) {
        case DeviceDType::f32:
          run(float{});
          break;
        case DeviceDType::f64:
          run(double{});
          break;
        case DeviceDType::f16:
          run(__half{});
          break;
        case DeviceDType::bf16:
          run(__nv_bfloat16{});
          break;
      }
    }
  } catch (...) {
    if (previous != config.device) cudaSetDevice(previous);
    throw;
  }
  if (previous != config.device) check(cudaSetDevice(previous), "cudaSetDevice");
  return stats;
}

// For Ops without step counts: no group structs.
struct NoGroup {
  int operator()(int) const { return 0; }
};

template <class Op, std::size_t KT, class HyperOf>
LaunchStats launch_by_dtype(const DeviceTable<KT>& table, const HyperOf& hyper_of,
                            const LaunchConfig& config) {
  return launch_by_dtype<Op>(table, hyper_of, config, NoGroup{});
}

}  // namespace cuda
}  // namespace optbowl
