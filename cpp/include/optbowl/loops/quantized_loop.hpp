// The multi-tensor CPU loop of a rule with low-precision state (quant.hpp): 8-bit blockwise
// codes with a float32 absmax per block, or bfloat16.
//
// Float32 parameters only. One pass per step. 8-bit: for every block of quant::kBlock
// elements, decode each state array into a float32 buffer of one block (old absmax), run
// the rule over the block (its float loop's hyper-parameters, Group::at_step) keeping the
// largest magnitude of each new state array in the same loop, then encode each buffer with
// the block's new absmax. bfloat16: one loop, decode, rule and rounding element by element.
// No formula is written here: a rule that keeps such state defines a Kind beside its float
// loop (loops/<rule>_loop.hpp) and QuantizedLoop<Kind> runs it.
//
// A Kind says: Group (the float loop's), Hyper<T> (the rule's), S (its state arrays at
// most), kSigned[S] (which of them take negative values) and with_flags(group, h, f), which
// calls f(hc, used, element) with the flags of hc as compile-time constants
// (loops/constant_flags.hpp), `used` the number of state arrays the group steps (a
// std::integral_constant, the first `used` of the S) and element(p, g, hc, s...) the
// rule on one element, its state values s... as float references.
//
// Measured (bench/README.md, "8-bit and bfloat16 state"): the rule's loop is bound by its
// divisions and square roots, the codes by integer work. A separate absmax pass, a block's
// trip count unknown to the compiler, and GCC's own byte loops (64 lanes a vector, widened
// and narrowed through 16-bit steps and shuffles) made decoding and encoding cost more than
// the rule; on AVX-512 they are quant.hpp's vector code (apply<float, true>, from the
// AVX-512 runner). The rule's loop reads and writes float32 only: with a byte load in it,
// GCC vectorised it 64 elements at a time too and spilled the rule's registers.
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
#include <type_traits>
#include <utility>
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
  using Block = std::integral_constant<std::int64_t, quant::kBlock>;
  std::vector<Group> groups;
  std::vector<std::int32_t> group_of;  // tensor -> group
  std::vector<double> steps;           // tensor -> step count t (after this step's increment)
  StateFormat format;

  template <class T, bool Avx512 = false>
  void apply(const std::array<void*, K>& a, std::int32_t tensor, std::int64_t begin, std::int64_t end) const {
    static_assert(std::is_same<T, float>::value, "quantized state: float32 parameters only");
    const Group& group = groups[group_of[tensor]];
    const double t = steps[tensor];
    const auto h = group.template at_step<float>(t);
    if (format.bits == 8)
      run8<Avx512>(a, group, h, begin, end);
    else
      run16(a, group, h, tensor, t, begin, end);
  }

 private:
  // One block of n elements (Block: a whole one, its trip count a constant) from b on:
  // decode into `buffer`, the rule's loop over it (and the new absmax), encode.
  template <bool Avx512, class N, class H, class E, std::size_t... I>
  static void block8(N n, float* OPTBOWL_RESTRICT p, const float* OPTBOWL_RESTRICT g, const std::array<void*, K>& a,
                     std::int64_t b, float (&buffer)[S][quant::kBlock], const H& h, const E& element,
                     std::index_sequence<I...>) {
    const std::int64_t block = b / quant::kBlock;
    std::uint8_t* const codes[] = {static_cast<std::uint8_t*>(a[2 + 2 * I]) + b...};
    float* const absmax[] = {static_cast<float*>(a[3 + 2 * I]) + block...};
    const float scale[] = {*absmax[I]...};
    std::uint32_t top[] = {(static_cast<void>(I), 0u)...};  // the largest |new value|'s bits
    const std::int64_t count = n;
#if OPTBOWL_QUANT_AVX512
    if constexpr (Avx512)
      (quant::decode_scaled_avx512<Kind::kSigned[I]>(codes[I], n, scale[I], buffer[I]), ...);
    else
#endif
      (quant::decode_scaled<Kind::kSigned[I]>(codes[I], n, scale[I], buffer[I]), ...);
    float* const buf[] = {buffer[I]...};
    OPTBOWL_IVDEP
    for (std::int64_t i = 0; i < count; ++i) {
      float s[] = {buf[I][i]...};
      element(p[i], g[i], h, s[I]...);
      ((buf[I][i] = s[I]), ...);
      ((top[I] = quant::max_magnitude_bits(top[I], s[I])), ...);
    }
    ((*absmax[I] = bits_float(top[I])), ...);
#if OPTBOWL_QUANT_AVX512
    if constexpr (Avx512)
      (quant::encode_scaled_avx512<Kind::kSigned[I]>(buffer[I], n, quant::inverse_of(bits_float(top[I])), codes[I]), ...);
    else
#endif
      (quant::encode_scaled<Kind::kSigned[I]>(buffer[I], n, quant::inverse_of(bits_float(top[I])), codes[I]), ...);
  }

  template <bool Avx512, class H>
  void run8(const std::array<void*, K>& a, const Group& group, const H& h, std::int64_t begin,
            std::int64_t end) const {
    float* OPTBOWL_RESTRICT p = static_cast<float*>(a[0]);
    const float* OPTBOWL_RESTRICT g = static_cast<const float*>(a[1]);
    Kind::with_flags(group, h, [&](const H& hc, auto used, const auto& element) {
      constexpr std::size_t U = decltype(used)::value;
      static_assert(U >= 1 && U <= S, "a Kind steps 1 to S state arrays");
      alignas(64) float buffer[S][quant::kBlock];
      const std::int64_t whole = begin + (end - begin) / quant::kBlock * quant::kBlock;
      for (std::int64_t b = begin; b < whole; b += quant::kBlock)
        block8<Avx512>(Block{}, p + b, g + b, a, b, buffer, hc, element, std::make_index_sequence<U>{});
      if (whole < end)
        block8<Avx512>(end - whole, p + whole, g + whole, a, whole, buffer, hc, element, std::make_index_sequence<U>{});
    });
  }

  // Elements [begin, end): decode, the rule, round (Stochastic: with the random bits of
  // element i of each array's stream).
  template <bool Stochastic, class H, class E, std::size_t... I>
  static void span16(float* OPTBOWL_RESTRICT p, const float* OPTBOWL_RESTRICT g, const std::array<void*, K>& a,
                     const std::uint64_t* keys, std::int64_t begin, std::int64_t end, const H& h, const E& element,
                     std::index_sequence<I...>) {
    std::uint16_t* const st[] = {static_cast<std::uint16_t*>(a[2 + 2 * I])...};
    const std::uint64_t key[] = {keys[I]...};
    OPTBOWL_IVDEP
    for (std::int64_t i = begin; i < end; ++i) {
      float s[] = {quant::bf16_decode(st[I][i])...};
      element(p[i], g[i], h, s[I]...);
      if constexpr (Stochastic)
        ((st[I][i] = quant::bf16_stochastic(s[I], quant::random16(key[I], static_cast<std::uint64_t>(i)))), ...);
      else
        ((st[I][i] = quant::bf16_nearest(s[I])), ...);
    }
  }

  template <class H>
  void run16(const std::array<void*, K>& a, const Group& group, const H& h, std::int32_t tensor, double t,
             std::int64_t begin, std::int64_t end) const {
    float* OPTBOWL_RESTRICT p = static_cast<float*>(a[0]);
    const float* OPTBOWL_RESTRICT g = static_cast<const float*>(a[1]);
    Kind::with_flags(group, h, [&](const H& hc, auto used, const auto& element) {
      constexpr std::size_t U = decltype(used)::value;
      static_assert(U >= 1 && U <= S, "a Kind steps 1 to S state arrays");
      std::uint64_t keys[S] = {};
      if (format.stochastic) {
        for (std::size_t k = 0; k < U; ++k)
          keys[k] = quant::stream_key(format.seed, static_cast<std::uint64_t>(t), static_cast<std::uint64_t>(tensor), k);
        span16<true>(p, g, a, keys, begin, end, hc, element, std::make_index_sequence<U>{});
      } else {
        span16<false>(p, g, a, keys, begin, end, hc, element, std::make_index_sequence<U>{});
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
  for (std::int64_t i = 0; i < n; ++i)
    loop.template apply<float, OPTBOWL_QUANT_AVX512 != 0>(t.ptrs[c[i].tensor], c[i].tensor, c[i].begin, c[i].end);
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
