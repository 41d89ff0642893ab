// Low-precision optimizer state: the 8-bit blockwise code and bfloat16 rounding.
//
// 8-bit state (blockwise dynamic quantization, after Dettmers et al., "8-bit Optimizers via
// Block-wise Quantization", 2022). A state array of n float32 values is stored as n one-byte
// codes and one float32 absmax per block of kBlock consecutive elements (the last block may
// be shorter). Element i decodes to
//     value = decode(code[i]) * absmax[i / kBlock]
// where decode maps a code to a number in [-1, 1] (signed code) or [0, 1] (unsigned code).
// The codes are a floating-point grid anchored at 1.0: their float32 bit patterns are
// evenly spaced, 2^20 apart (3 mantissa bits), counting down from 1.0 (0x3F800000):
//     unsigned (sums of squares, second moments): code c = 1..255 is the float whose
//         bits are 0x3F800000 - (255 - c) * 2^20, from 1.0 down to 1.25 * 2^-32; c = 0 is 0.
//         Five exponent bits, three mantissa bits (E5M3): a relative step of at most 1/8,
//         a dynamic range of 2^32 within a block (2^16 after the rule's square root).
//     signed (first moments): bit 7 is the sign, bits 0-6 a magnitude m = 1..127 on
//         the same grid, 0x3F800000 - (127 - m) * 2^20 (1.0 down to 1.25 * 2^-16; E4M3);
//         m = 0 is a zero of that sign.
// Encoding a block: absmax = max |value| (a NaN in the block makes it NaN: the block then
// decodes as NaN), x = value * (1 / absmax) in float32 (x = 0 when absmax is 0), and the
// code nearest to x in the bit pattern, which within a binade is the nearest in value (ties
// away from zero); an |x| nearer (in its bit pattern) to the grid point below the smallest
// code than to the smallest code becomes 0. The element equal to absmax decodes exactly.
//
// Why this code and not bitsandbytes' dynamic tree: both are non-linear codes that keep
// small values (a per-block exponent range of 2^32 for the second moment, against the
// tree's 10^7), but the tree's encoding is a search over a sorted table, one element at a
// time, while this one is integer arithmetic on the float's bits (a subtraction, a shift,
// a clamp) and decoding the reverse: both vectorise in the same loop as the rule.
//
// 16-bit state: bfloat16 bit patterns (the high half of a float32). Rounding to nearest,
// ties to even; a NaN stays a (quiet) NaN. Stochastic rounding adds 16 random bits below
// the kept half and truncates (the result is the float's upper or lower neighbour, with
// probabilities by distance); the bits come from a counter-based hash of (seed, step,
// tensor, state, element), so a stream depends on neither the thread count nor the order
// in which the threads take the chunks.
#pragma once
#include <cstdint>
#include <cstring>
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(__CUDACC__)
#include <immintrin.h>
#endif

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"

namespace optbowl {
namespace quant {

constexpr std::int64_t kBlock = 256;           // elements per absmax
constexpr std::uint32_t kOne = 0x3F800000u;    // the bits of 1.0f
constexpr int kShift = 20;                     // 3 mantissa bits kept
constexpr std::uint32_t kHalf = (1u << (kShift - 1)) - 1u;  // rounding offset: ties away from zero

inline std::int64_t blocks_of(std::int64_t n) { return (n + kBlock - 1) / kBlock; }


// Magnitude code (0..top) of |x| on the grid anchored at 1.0 (top = 255 unsigned, 127 signed).
template <std::uint32_t Top>
OPTBOWL_HD std::uint32_t magnitude_code(std::uint32_t abs_bits) {
  const std::uint32_t u = abs_bits < kOne ? abs_bits : kOne;  // a NaN or |x| > 1 -> 1
  const std::int32_t below = static_cast<std::int32_t>((kOne - u + kHalf) >> kShift);  // grid steps below 1.0
  const std::int32_t c = static_cast<std::int32_t>(Top) - below;
  return static_cast<std::uint32_t>(c > 0 ? c : 0);
}

// kOne - ((Top - m) << kShift), written as a shift and an add (m <= Top: no wrap-around).
template <std::uint32_t Top>
OPTBOWL_HD float magnitude_value(std::uint32_t m) {
  constexpr std::uint32_t kBase = kOne - (Top << kShift);
  return m == 0u ? 0.0f : bits_float((m << kShift) + kBase);
}

// x in [0, 1] -> unsigned code.
OPTBOWL_HD std::uint8_t encode_unsigned(float x) {
  return static_cast<std::uint8_t>(magnitude_code<255u>(float_bits(x) & 0x7FFFFFFFu));
}

OPTBOWL_HD float decode_unsigned(std::uint8_t c) { return magnitude_value<255u>(c); }

// x in [-1, 1] -> sign bit and magnitude code.
OPTBOWL_HD std::uint8_t encode_signed(float x) {
  const std::uint32_t u = float_bits(x);
  return static_cast<std::uint8_t>(((u >> 24) & 0x80u) | magnitude_code<127u>(u & 0x7FFFFFFFu));
}

OPTBOWL_HD float decode_signed(std::uint8_t c) {
  const float m = magnitude_value<127u>(c & 0x7Fu);
  return bits_float(float_bits(m) | (static_cast<std::uint32_t>(c & 0x80u) << 24));
}

template <bool Signed>
OPTBOWL_HD std::uint8_t encode(float x) {
  if constexpr (Signed)
    return encode_signed(x);
  else
    return encode_unsigned(x);
}

template <bool Signed>
OPTBOWL_HD float decode(std::uint8_t c) {
  if constexpr (Signed)
    return decode_signed(c);
  else
    return decode_unsigned(c);
}

// The bits of max(|a|, |v|), a the bits of a magnitude: the bit patterns of |v| order as
// the values do, and a NaN's lie above every other (so a NaN wins).
OPTBOWL_HD std::uint32_t max_magnitude_bits(std::uint32_t a, float v) {
  const std::uint32_t u = float_bits(v) & 0x7FFFFFFFu;
  return u > a ? u : a;
}

// max |v[i]| over n values, NaN if any is NaN.
inline float block_absmax(const float* OPTBOWL_RESTRICT v, std::int64_t n) {
  std::uint32_t m = 0;
  for (std::int64_t i = 0; i < n; ++i) m = max_magnitude_bits(m, v[i]);
  return bits_float(m);
}

// The scale that takes a block's values into [-1, 1].
inline float inverse_of(float absmax) { return absmax > 0.0f ? 1.0f / absmax : 0.0f; }

// codes[i] = encode(v[i] * inv), i < n (N: an integer, or an integral_constant).
template <bool Signed, class N>
inline void encode_scaled(const float* OPTBOWL_RESTRICT v, N n, float inv, std::uint8_t* OPTBOWL_RESTRICT codes) {
  const std::int64_t count = n;
  OPTBOWL_IVDEP
  for (std::int64_t i = 0; i < count; ++i) codes[i] = encode<Signed>(v[i] * inv);
}

template <bool Signed, class N>
inline void decode_scaled(const std::uint8_t* OPTBOWL_RESTRICT codes, N n, float absmax, float* OPTBOWL_RESTRICT v) {
  const std::int64_t count = n;
  OPTBOWL_IVDEP
  for (std::int64_t i = 0; i < count; ++i) v[i] = decode<Signed>(codes[i]) * absmax;
}

// ------------------------------------------------------------ AVX-512 decode and encode
// The same codes, 16 elements to a vector, for the loops compiled for AVX-512
// (loops/quantized_loop.hpp): written with intrinsics because GCC vectorises a loop with
// byte and float32 elements at 64 elements a vector, widening and narrowing through 16-bit
// steps and shuffles, which took longer than the rule itself (bench/README.md).
//   decode: the byte widened (vpmovzxbd), shifted into the exponent and mantissa field,
//       the grid's base added where the magnitude is not 0 (zero-masking), the sign or'd in,
//       times absmax.
//   encode: the code is floor((min(|x| bits, 1.0's bits) + C) / 2^20) with
//       C = Top * 2^20 - 1.0's bits + 2^19, the scalar code's Top - ((1.0's bits - u + kHalf)
//       >> 20) rewritten with -floor(a / m) = floor((m - 1 - a) / m); a negative result is
//       code 0 (unsigned saturation in the packs); four vectors are packed to 64 bytes
//       (vpackusdw, vpackuswb, one vpermd to restore the order).
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(__CUDACC__)
#define OPTBOWL_QUANT_AVX512 1
#define OPTBOWL_QUANT_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi,bmi2,popcnt,f16c,prefer-vector-width=512")))

template <bool Signed>
OPTBOWL_QUANT_TARGET_AVX512 inline __m512 decode16(const std::uint8_t* codes, __m512 scale) {
  const __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
  constexpr std::uint32_t top = Signed ? 127u : 255u;
  const __m512i base = _mm512_set1_epi32(static_cast<int>(kOne - (top << kShift)));
  if constexpr (Signed) {
    const __mmask16 nonzero = _mm512_test_epi32_mask(c, _mm512_set1_epi32(0x7F));
    const __m512i m = _mm512_and_si512(_mm512_slli_epi32(c, kShift), _mm512_set1_epi32(0x7F << kShift));
    const __m512i bits = _mm512_maskz_add_epi32(nonzero, m, base);
    const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
    return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_ternarylogic_epi32(bits, _mm512_slli_epi32(c, 24), sign, 0xF8)),
                         scale);  // bits | (c << 24 & sign)
  } else {
    const __mmask16 nonzero = _mm512_test_epi32_mask(c, c);
    const __m512i bits = _mm512_maskz_add_epi32(nonzero, _mm512_slli_epi32(c, kShift), base);
    return _mm512_mul_ps(_mm512_castsi512_ps(bits), scale);
  }
}

// The codes of 16 values x = v * inv as 32-bit integers (unsigned: negative for code 0).
template <bool Signed>
OPTBOWL_QUANT_TARGET_AVX512 inline __m512i code16(const float* v, __m512 inv) {
  constexpr std::uint32_t top = Signed ? 127u : 255u;
  constexpr std::int32_t c0 = static_cast<std::int32_t>((top << kShift) + (1u << (kShift - 1)) - kOne);
  const __m512i x = _mm512_castps_si512(_mm512_mul_ps(_mm512_loadu_ps(v), inv));
  const __m512i u = _mm512_min_epu32(_mm512_and_si512(x, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(static_cast<int>(kOne)));
  const __m512i c = _mm512_srai_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(c0)), kShift);
  if constexpr (Signed)
    return _mm512_ternarylogic_epi32(_mm512_max_epi32(c, _mm512_setzero_si512()), _mm512_srli_epi32(x, 24),
                                     _mm512_set1_epi32(0x80), 0xF8);  // c | (x >> 24 & 0x80)
  else
    return c;
}

// v[i] = decode(codes[i]) * absmax, i < n.
template <bool Signed>
OPTBOWL_QUANT_TARGET_AVX512 inline void decode_scaled_avx512(const std::uint8_t* OPTBOWL_RESTRICT codes, std::int64_t n,
                                                             float absmax, float* OPTBOWL_RESTRICT v) {
  const __m512 scale = _mm512_set1_ps(absmax);
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(v + i, decode16<Signed>(codes + i, scale));
  for (; i < n; ++i) v[i] = decode<Signed>(codes[i]) * absmax;
}

// codes[i] = encode(v[i] * inv), i < n.
template <bool Signed>
OPTBOWL_QUANT_TARGET_AVX512 inline void encode_scaled_avx512(const float* OPTBOWL_RESTRICT v, std::int64_t n, float inv,
                                                             std::uint8_t* OPTBOWL_RESTRICT codes) {
  const __m512 scale = _mm512_set1_ps(inv);
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  std::int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i w0 = _mm512_packus_epi32(code16<Signed>(v + i, scale), code16<Signed>(v + i + 16, scale));
    const __m512i w1 = _mm512_packus_epi32(code16<Signed>(v + i + 32, scale), code16<Signed>(v + i + 48, scale));
    _mm512_storeu_si512(codes + i, _mm512_permutexvar_epi32(order, _mm512_packus_epi16(w0, w1)));
  }
  for (; i < n; ++i) codes[i] = encode<Signed>(v[i] * inv);
}
#else
#define OPTBOWL_QUANT_AVX512 0
#endif

// One block: codes and absmax of v[0..n).
template <bool Signed>
inline void encode_block(const float* OPTBOWL_RESTRICT v, std::int64_t n, std::uint8_t* OPTBOWL_RESTRICT codes,
                         float& absmax) {
  const float a = block_absmax(v, n);
  absmax = a;
  encode_scaled<Signed>(v, n, inverse_of(a), codes);
}

template <bool Signed>
inline void decode_block(const std::uint8_t* OPTBOWL_RESTRICT codes, float absmax, std::int64_t n,
                         float* OPTBOWL_RESTRICT v) {
  OPTBOWL_IVDEP
  for (std::int64_t i = 0; i < n; ++i) v[i] = decode<Signed>(codes[i]) * absmax;
}

// ------------------------------------------------------------------------------ bfloat16
// The state's bfloat16 bits, with half.hpp's conversions (nearest, ties to even).
OPTBOWL_HD float bf16_decode(std::uint16_t h) { return widen(bf16_t{h}); }

OPTBOWL_HD std::uint16_t bf16_nearest(float f) { return narrow_bf16(f).bits; }

// r: 16 random bits (the low half of r).
OPTBOWL_HD std::uint16_t bf16_stochastic(float f, std::uint32_t r) {
  const std::uint32_t u = float_bits(f);
  const bool nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
  const bool inf = (u & 0x7FFFFFFFu) == 0x7F800000u;
  const std::uint32_t rounded = (u + (r & 0xFFFFu)) >> 16;
  return static_cast<std::uint16_t>(nan ? ((u >> 16) | 0x40u) : (inf ? (u >> 16) : rounded));
}

// A 64-bit finaliser (MurmurHash3's fmix64): the random bits of stochastic rounding.
OPTBOWL_HD std::uint64_t mix64(std::uint64_t z) {
  z ^= z >> 33;
  z *= 0xff51afd7ed558ccdULL;
  z ^= z >> 33;
  z *= 0xc4ceb9fe1a85ec53ULL;
  z ^= z >> 33;
  return z;
}

// The key of one state array's stream at one step: element i draws
// mix64(key + i * 0x9E3779B97F4A7C15) and uses its bits 16-31.
inline std::uint64_t stream_key(std::uint64_t seed, std::uint64_t step, std::uint64_t tensor, std::uint64_t slot) {
  return mix64(mix64(mix64(seed ^ 0x5851F42D4C957F2DULL) + step) + ((tensor << 8) | slot));
}

OPTBOWL_HD std::uint32_t random16(std::uint64_t key, std::uint64_t i) {
  return static_cast<std::uint32_t>(mix64(key + i * 0x9E3779B97F4A7C15ULL) >> 16) & 0xFFFFu;
}

}  // namespace quant
}  // namespace optbowl
