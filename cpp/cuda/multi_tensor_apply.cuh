// Multi-tensor apply on the device, as apex does it.
//
// One kernel launch updates up to kMaxTensors tensors and kMaxChunks chunks; the table of
// (pointers, length, hyper-parameters) per tensor and the (tensor slot, chunk) entries
// travel in the kernel arguments (__grid_constant__, so nothing is copied to local
// memory). The grid is as large as the device keeps resident at once (or the number of
// chunks, if smaller) and strides over the entries; a block walks its chunk of kChunkElems
// elements with a block-wide stride, and when every pointer of the chunk is aligned to
// kILP elements it loads and stores kILP elements at a time (16-byte accesses for float32).
//
// An Op names the per-element rule: K (pointer slots it uses: slot 0 param, slot 1 the
// read-only gradient, then state arrays), Hyper<M> (its scalars in math type M) and
//     template <class M> __device__ static void apply(M (&v)[K], const Hyper<M>& h)
// which calls the rule of optbowl/rules/. Half and bfloat16 storage is computed in float.
// A state slot whose pointer is null (an optional array the caller did not give, e.g.
// AMSGrad's maximum when no group uses it) is neither read nor written: the rule sees 0
// there and its write is dropped, so the rule must not need it (the bindings check that).
// A new optimizer on the device is one Op and one launch_by_dtype<Op>(...) call.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "launch.hpp"

namespace optbowl {
namespace cuda {

constexpr int kThreads = 512;
constexpr int kILP = 4;

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

template <class S, int N>
struct alignas(sizeof(S) * N) Pack {
  S v[N];
};

template <class Op, class S>
using ArgsOf = TensorListArgs<Op::K, typename Op::template Hyper<typename MathOf<S>::type>>;

// One block updates one chunk (entry of the launch's table).
template <class Op, class S>
__device__ __forceinline__ void update_chunk(const ArgsOf<Op, S>& args, int entry) {
  using M = typename MathOf<S>::type;
  constexpr int K = Op::K;
  const int slot = args.chunk_slot[entry];
  const std::int64_t begin = static_cast<std::int64_t>(args.chunk_index[entry]) * kChunkElems;
  const std::int64_t rest = args.sizes[slot] - begin;
  const int len = static_cast<int>(rest < kChunkElems ? rest : kChunkElems);
  const auto& h = args.hyper[slot];

  S* ptr[K];
  bool given[K];  // false: an optional slot left null (uniform over the block)
  bool packed = len % kILP == 0;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    given[k] = args.ptrs[k][slot] != nullptr;
    ptr[k] = given[k] ? static_cast<S*>(args.ptrs[k][slot]) + begin : nullptr;
    packed = packed && (!given[k] ||
                        reinterpret_cast<std::uintptr_t>(ptr[k]) % sizeof(Pack<S, kILP>) == 0);
  }

  if (packed) {
    for (int i = threadIdx.x * kILP; i < len; i += kThreads * kILP) {
      Pack<S, kILP> r[K];
#pragma unroll
      for (int k = 0; k < K; ++k)
        if (given[k]) r[k] = *reinterpret_cast<const Pack<S, kILP>*>(ptr[k] + i);
#pragma unroll
      for (int j = 0; j < kILP; ++j) {
        M v[K];
#pragma unroll
        for (int k = 0; k < K; ++k) v[k] = given[k] ? to_math(r[k].v[j]) : M(0);
        Op::apply(v, h);
#pragma unroll
        for (int k = 0; k < K; ++k)
          if (k != 1 && given[k]) from_math(r[k].v[j], v[k]);
      }
#pragma unroll
      for (int k = 0; k < K; ++k)
        if (k != 1 && given[k]) *reinterpret_cast<Pack<S, kILP>*>(ptr[k] + i) = r[k];
    }
  } else {
    for (int i = threadIdx.x; i < len; i += kThreads) {
      M v[K];
#pragma unroll
      for (int k = 0; k < K; ++k) v[k] = given[k] ? to_math(ptr[k][i]) : M(0);
      Op::apply(v, h);
#pragma unroll
      for (int k = 0; k < K; ++k)
        if (k != 1 && given[k]) from_math(ptr[k][i], v[k]);
    }
  }
}

template <class Op, class S>
__global__ void __launch_bounds__(kThreads)
    multi_tensor_kernel(const __grid_constant__ ArgsOf<Op, S> args, int entries, const float* found_inf) {
  if (found_inf != nullptr && *found_inf != 0.0f) return;
  for (int entry = blockIdx.x; entry < entries; entry += gridDim.x) {
    update_chunk<Op, S>(args, entry);
  }
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

template <class Op, class S, std::size_t KT, class HyperOf>
void launch_multi_tensor(const DeviceTable<KT>& table, const std::vector<int>& tensors,
                         const HyperOf& hyper_of, const LaunchConfig& config, LaunchStats& stats) {
  static_assert(Op::K <= static_cast<int>(KT), "the table has fewer pointer slots than the Op uses");
  using M = typename MathOf<S>::type;
  using Args = ArgsOf<Op, S>;
  static_assert(sizeof(Args) <= 32764, "kernel arguments exceed the 32 KiB limit");
  auto args = std::make_unique<Args>();
  const auto stream = reinterpret_cast<cudaStream_t>(config.stream);
  int sms = 0;
  int per_sm = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, config.device),
        "cudaDeviceGetAttribute");
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, multi_tensor_kernel<Op, S>, kThreads, 0),
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  const int resident = sms * (per_sm > 0 ? per_sm : 1);
  plan_launches(
      table.sizes, tensors,
      [&](int slot, int t) {
        for (int k = 0; k < Op::K; ++k) args->ptrs[k][slot] = table.ptrs[t][k];
        args->sizes[slot] = table.sizes[t];
        args->hyper[slot] = hyper_of(MathTag<M>{}, t);
      },
      [&](int entry, int slot, std::int32_t chunk) {
        args->chunk_slot[entry] = static_cast<std::uint8_t>(slot);
        args->chunk_index[entry] = chunk;
      },
      [&](int entries) {
        const int grid = entries < resident ? entries : resident;
        multi_tensor_kernel<Op, S><<<grid, kThreads, 0, stream>>>(*args, entries, config.found_inf);
        check(cudaGetLastError(), "multi_tensor_kernel launch");
        ++stats.launches;
        stats.chunks += entries;
      });
}

// Launch Op over every tensor of the table, one pass per storage type present.
template <class Op, std::size_t KT, class HyperOf>
LaunchStats launch_by_dtype(const DeviceTable<KT>& table, const HyperOf& hyper_of,
                            const LaunchConfig& config) {
  int previous = 0;
  check(cudaGetDevice(&previous), "cudaGetDevice");
  check(cudaSetDevice(config.device), "cudaSetDevice");
  LaunchStats stats;
  try {
    for (const DeviceDType d : {DeviceDType::f32, DeviceDType::f64, DeviceDType::f16, DeviceDType::bf16}) {
      std::vector<int> tensors;
      for (std::size_t t = 0; t < table.size(); ++t)
        if (table.dtypes[t] == d) tensors.push_back(static_cast<int>(t));
      if (tensors.empty()) continue;
      switch (d) {
        case DeviceDType::f32:
          launch_multi_tensor<Op, float>(table, tensors, hyper_of, config, stats);
          break;
        case DeviceDType::f64:
          launch_multi_tensor<Op, double>(table, tensors, hyper_of, config, stats);
          break;
        case DeviceDType::f16:
          launch_multi_tensor<Op, __half>(table, tensors, hyper_of, config, stats);
          break;
        case DeviceDType::bf16:
          launch_multi_tensor<Op, __nv_bfloat16>(table, tensors, hyper_of, config, stats);
          break;
      }
    }
  } catch (...) {
    cudaSetDevice(previous);
    throw;
  }
  check(cudaSetDevice(previous), "cudaSetDevice");
  return stats;
}

}  // namespace cuda
}  // namespace optbowl
