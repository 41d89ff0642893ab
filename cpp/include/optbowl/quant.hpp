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

template <std::uint32_t Top>
OPTBOWL_HD float magnitude_value(std::uint32_t m) {
  return m == 0u ? 0.0f : bits_float(kOne - ((Top - m) << kShift));
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

// max |v[i]| over n values, NaN if any is NaN: the bit patterns of |v| order as the values
// do, and a NaN's lie above every other.
inline float block_absmax(const float* OPTBOWL_RESTRICT v, std::int64_t n) {
  std::uint32_t m = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint32_t a = float_bits(v[i]) & 0x7FFFFFFFu;
    m = a > m ? a : m;
  }
  return bits_float(m);
}

// The scale that takes a block's values into [-1, 1].
inline float inverse_of(float absmax) { return absmax > 0.0f ? 1.0f / absmax : 0.0f; }

// One block: codes and absmax of v[0..n).
template <bool Signed>
inline void encode_block(const float* OPTBOWL_RESTRICT v, std::int64_t n, std::uint8_t* OPTBOWL_RESTRICT codes,
                         float& absmax) {
  const float a = block_absmax(v, n);
  absmax = a;
  const float inv = inverse_of(a);
  OPTBOWL_IVDEP
  for (std::int64_t i = 0; i < n; ++i) codes[i] = encode<Signed>(v[i] * inv);
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
