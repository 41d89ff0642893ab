// The multi-tensor CPU loop of a rule with low-precision state (quant.hpp): 8-bit blockwise
// codes with a float32 absmax per block, or bfloat16.
//
// Float32 parameters only. One pass per step: for every block of quant::kBlock elements,
// decode each state array into a float32 buffer, call the rule's own element loop over the
// block (its float loop's hyper-parameters, Group::at_step), then encode each buffer again
// (a fresh absmax per block). The bfloat16 loop does the same element by element. No
// formula is written here: a rule that keeps such state defines a Kind beside its float
// loop (loops/<rule>_loop.hpp) and QuantizedLoop<Kind> runs it.
//
// A Kind says: Group (the float loop's), Hyper<T> (the rule's), S (its state arrays),
// kSigned[S] (which of them take negative values), slots(group) (how many a group uses) and
// with_flags(group, h, f), which calls f(hc, block) with the flags of hc as compile-time
// constants (loops/constant_flags.hpp) and block(p, g, states, n, hc) the rule's loop over
// one block: the float loops' pattern, with each state array a restrict pointer of its own
// (a per-element call through the array of state pointers did not vectorise as well: a
// two-moment rule's 8-bit step took twice the time).
//
// A chunk of the multi-tensor run starts on a block boundary (chunks are multiples of
// kChunk, itself a multiple of kBlock) and covers whole blocks but the tensor's last one,
// so a block is never split between threads: the results do not depend on the thread
// count. The chunks are run whole (no split at the parameter's first cache line, as
// run_range does for the float loops), by runners of their own per ISA below.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/loops/constant_flags.hpp"
#include "optbowl/multi_tensor.hpp"
#include "optbowl/quant.hpp"

namespace optbowl {

// How a loop stores its state: 8-bit codes + absmax, or bfloat16 (rounded to nearest even,
// or stochastically with `seed`).
struct StateFormat {
  int bits = 8;  // 8 or 16
  bool stochastic = false;
  std::uint64_t seed = 0;
};

// Pointers per tensor: param, grad, then per state slot s: its codes (uint8 or bfloat16
// bits) at 2 + 2s and its absmax (float32, one per block; 8-bit only) at 3 + 2s.
template <class Kind>
struct QuantizedLoop {
  static constexpr std::size_t S = Kind::S;
  static constexpr std::size_t K = 2 + 2 * S;
  using Group = typename Kind::Group;
  std::vector<Group> groups;
  std::vector<std::int32_t> group_of;  // tensor -> group
  std::vector<double> steps;           // tensor -> step count t (after this step's increment)
  StateFormat format;

  template <class T>
  void apply(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin, std::int64_t end) const {
    static_assert(std::is_same<T, float>::value, "quantized state: float32 parameters only");
    const Group& group = groups[group_of[tensor]];
    const double t = steps[tensor];
    const auto h = group.template at_step<float>(t);
    if (format.bits == 8)
      run8(a, group, h, begin, end);
    else
      run16(a, group, h, tensor, t, begin, end);
  }

 private:
  template <class H>
  void run8(const std::array<void*, K>& a, const Group& group, const H& h, std::int64_t begin,
            std::int64_t end) const {
    float* OPTBOWL_RESTRICT p = static_cast<float*>(a[0]);
    const float* OPTBOWL_RESTRICT g = static_cast<const float*>(a[1]);
    const std::size_t used = Kind::slots(group);
    Kind::with_flags(group, h, [&](const H& hc, auto rule) {
      alignas(64) float buffer[S][quant::kBlock];
      float* s[S];
      for (std::size_t k = 0; k < S; ++k) s[k] = buffer[k];
      for (std::int64_t b = begin; b < end; b += quant::kBlock) {
        const std::int64_t n = std::min(quant::kBlock, end - b);
        const std::int64_t block = b / quant::kBlock;
        for (std::size_t k = 0; k < used; ++k) {
          const auto* codes = static_cast<const std::uint8_t*>(a[2 + 2 * k]) + b;
          const float absmax = static_cast<const float*>(a[3 + 2 * k])[block];
          if (Kind::kSigned[k])
            quant::decode_block<true>(codes, absmax, n, buffer[k]);
          else
            quant::decode_block<false>(codes, absmax, n, buffer[k]);
        }
        rule(p + b, g + b, s, n, hc);  // the rule's own loop over the block
        for (std::size_t k = 0; k < used; ++k) {
          auto* codes = static_cast<std::uint8_t*>(a[2 + 2 * k]) + b;
          float& absmax = static_cast<float*>(a[3 + 2 * k])[block];
          if (Kind::kSigned[k])
            quant::encode_block<true>(buffer[k], n, codes, absmax);
          else
            quant::encode_block<false>(buffer[k], n, codes, absmax);
        }
      }
    });
  }

  template <class H>
  void run16(const std::array<void*, K>& a, const Group& group, const H& h, std::int32_t tensor, double t,
             std::int64_t begin, std::int64_t end) const {
    float* OPTBOWL_RESTRICT p = static_cast<float*>(a[0]);
    const float* OPTBOWL_RESTRICT g = static_cast<const float*>(a[1]);
    const std::size_t used = Kind::slots(group);
    std::uint16_t* st[S] = {};
    std::uint64_t keys[S] = {};
    for (std::size_t k = 0; k < used; ++k) {
      st[k] = static_cast<std::uint16_t*>(a[2 + 2 * k]);
      keys[k] = quant::stream_key(format.seed, static_cast<std::uint64_t>(t), static_cast<std::uint64_t>(tensor), k);
    }
    Kind::with_flags(group, h, [&](const H& hc, auto rule) {
      // blocks of kBlock through a float buffer, as the 8-bit loop
      alignas(64) float buffer[S][quant::kBlock];
      float* s[S];
      for (std::size_t k = 0; k < S; ++k) s[k] = buffer[k];
      for (std::int64_t b = begin; b < end; b += quant::kBlock) {
        const std::int64_t n = std::min(quant::kBlock, end - b);
        for (std::size_t k = 0; k < used; ++k) {
          const std::uint16_t* OPTBOWL_RESTRICT in = st[k] + b;
          float* OPTBOWL_RESTRICT out = buffer[k];
          OPTBOWL_IVDEP
          for (std::int64_t i = 0; i < n; ++i) out[i] = quant::bf16_decode(in[i]);
        }
        rule(p + b, g + b, s, n, hc);  // the rule's own loop over the block
        for (std::size_t k = 0; k < used; ++k) {
          std::uint16_t* OPTBOWL_RESTRICT out = st[k] + b;
          const float* OPTBOWL_RESTRICT in = buffer[k];
          if (format.stochastic) {
            const std::uint64_t key = keys[k];
            OPTBOWL_IVDEP
            for (std::int64_t i = 0; i < n; ++i)
              out[i] = quant::bf16_stochastic(in[i], quant::random16(key, static_cast<std::uint64_t>(b + i)));
          } else {
            OPTBOWL_IVDEP
            for (std::int64_t i = 0; i < n; ++i) out[i] = quant::bf16_nearest(in[i]);
          }
        }
      }
    });
  }
};

// ------------------------------------------------------------------ the multi-tensor run
// As for_each_element (multi_tensor.hpp), but every chunk is handed to Loop::apply whole,
// so that it starts on a block boundary, and in float32 (the only dtype these loops take).
template <class Loop, std::size_t K>
using QuantizedRunner = void (*)(const Loop&, const TensorTable<K>&, const Chunk*, std::int64_t);

template <class Loop, std::size_t K>
OPTBOWL_TARGET_BASELINE void run_quantized_baseline(const Loop& loop, const TensorTable<K>& t, const Chunk* c,
                                                    std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) loop.template apply<float>(t.ptrs[c[i].tensor], c[i].tensor, c[i].begin, c[i].end);
}
#if OPTBOWL_X86_DISPATCH
template <class Loop, std::size_t K>
OPTBOWL_TARGET_AVX2 void run_quantized_avx2(const Loop& loop, const TensorTable<K>& t, const Chunk* c,
                                            std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) loop.template apply<float>(t.ptrs[c[i].tensor], c[i].tensor, c[i].begin, c[i].end);
}
template <class Loop, std::size_t K>
OPTBOWL_TARGET_AVX512 void run_quantized_avx512(const Loop& loop, const TensorTable<K>& t, const Chunk* c,
                                                std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) loop.template apply<float>(t.ptrs[c[i].tensor], c[i].tensor, c[i].begin, c[i].end);
}
#endif

// AVX-512 where the CPU has it: the byte codes' conversions and the bit arithmetic of the
// code take twice the lanes (as the int8 compact state of a sign-based rule, multi_tensor.hpp).
template <class Loop, std::size_t K>
QuantizedRunner<Loop, K> quantized_runner() {
#if OPTBOWL_X86_DISPATCH
  switch (isa_setting()) {
    case Isa::avx512: return &run_quantized_avx512<Loop, K>;
    case Isa::avx2: return &run_quantized_avx2<Loop, K>;
    default: break;
  }
#endif
  return &run_quantized_baseline<Loop, K>;
}

template <class Loop, std::size_t K>
void for_each_block(const Loop& loop, const TensorTable<K>& t) {
  const std::int64_t total = t.numel();
  if (total == 0) return;
  const QuantizedRunner<Loop, K> run = quantized_runner<Loop, K>();
  const int threads = max_threads();
  if (total < kParallelMin || threads <= 1) {
    for (std::size_t i = 0; i < t.size(); ++i) {
      if (t.sizes[i] == 0) continue;
      const Chunk whole{static_cast<std::int32_t>(i), 0, t.sizes[i]};
      run(loop, t, &whole, 1);
    }
    return;
  }
  static_assert(kChunk % quant::kBlock == 0, "chunks must start on block boundaries");
  const std::vector<Chunk> chunks = make_chunks(t, threads);
  const std::int64_t n = static_cast<std::int64_t>(chunks.size());
  const int helpers = static_cast<int>(std::min<std::int64_t>(threads - 1, n - 1));
  HelperPool::instance().run(n, helpers, [&](std::int64_t c) { run(loop, t, &chunks[c], 1); });
}

}  // namespace optbowl
