// 16-bit floating-point storage: bfloat16 and IEEE half (float16).
//
// A parameter of a 16-bit dtype is stored in 16 bits and computed in float32, as torch's
// CPU kernels do: every element is widened to float on load (exact), the per-element rule
// runs in float, and every stored result is rounded to the 16-bit format, to nearest with
// ties to even (RNE), as torch rounds it. Storage<S> says, for a storage type S, what the
// rules compute in (`compute`), how an element is loaded and stored, and how a value of the
// computation is rounded to S and widened back (`round`), for the rules that round an
// intermediate result as torch's per-operation kernels do (rules take the rounding as a
// template argument, `Exact` for float32/float64).
//
// The conversions are bit operations on integers: the compiler vectorises them with the
// ISA of the runner it is inlined into (multi_tensor.hpp: AVX-512, AVX2 or the baseline),
// and every ISA gives the same bits. float16 uses the compiler's _Float16 where it has one
// (F16C's vcvtps2ph/vcvtph2ps in the AVX2 and AVX-512 runners), else the same RNE in
// integer operations.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "optbowl/config.hpp"

namespace optbowl {

// The bits of a bfloat16 / float16 value. Distinct types, so that the loops' storage
// dispatch tells them apart.
struct bf16_t {
  std::uint16_t bits;
};
struct half_t {
  std::uint16_t bits;
};

OPTBOWL_HD std::uint32_t float_bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

OPTBOWL_HD float bits_float(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// bfloat16 -> float: exact, the 16 bits above 16 zero bits.
OPTBOWL_HD float widen(bf16_t x) { return bits_float(static_cast<std::uint32_t>(x.bits) << 16); }

// float -> bfloat16, to nearest, ties to even, in a 32-bit lane: the bfloat16's bits are
// the upper 16 bits of the result (the lower 16 are left over from the rounding). A NaN
// stays a NaN of the same sign, made quiet. In 32-bit lanes to the end, so that a vector
// loop narrows to 16 bits once, where it stores (AVX-512's vpmovdw), and a rounding whose
// result is widened straight back (Storage<bf16_t>::Round) clears the lower half instead;
// the NaN test is a float comparison (one mask-register compare in AVX-512).
OPTBOWL_HD std::uint32_t bf16_rounded_bits(float x) {
  const std::uint32_t u = float_bits(x);
  const std::uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  const bool is_nan = x != x;  // NOLINT(misc-redundant-expression): true for a NaN only
  return is_nan ? (u | 0x400000u) : rounded;
}

// float -> bfloat16, to nearest, ties to even; a NaN stays a NaN of the same sign (quiet).
OPTBOWL_HD bf16_t narrow_bf16(float x) {
  return bf16_t{static_cast<std::uint16_t>(bf16_rounded_bits(x) >> 16)};
}

// widen(narrow_bf16(x)), without leaving 32-bit lanes.
OPTBOWL_HD float round_bf16(float x) { return bits_float(bf16_rounded_bits(x) & 0xffff0000u); }

#if (defined(__FLT16_MAX__) && !defined(__CUDACC__) && (defined(__x86_64__) || defined(__aarch64__)))
#define OPTBOWL_HAS_FLOAT16 1
#else
#define OPTBOWL_HAS_FLOAT16 0
#endif

// float16 -> float: exact.
OPTBOWL_HD float widen(half_t x) {
#if OPTBOWL_HAS_FLOAT16
  _Float16 h;
  std::memcpy(&h, &x.bits, sizeof h);
  return static_cast<float>(h);
#else
  const std::uint32_t sign = static_cast<std::uint32_t>(x.bits & 0x8000u) << 16;
  const std::uint32_t exp = (x.bits >> 10) & 0x1fu;
  const std::uint32_t man = x.bits & 0x3ffu;
  if (exp == 0x1fu) return bits_float(sign | 0x7f800000u | (man << 13));  // inf, NaN
  if (exp != 0) return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
  // zero or subnormal: man * 2^-24, exact in float
  const float v = static_cast<float>(man) * 5.9604644775390625e-8f;
  return bits_float(float_bits(v) | sign);
#endif
}

// float -> float16, to nearest, ties to even; overflow to inf; a NaN stays a NaN.
OPTBOWL_HD half_t narrow_half(float x) {
#if OPTBOWL_HAS_FLOAT16
  const _Float16 h = static_cast<_Float16>(x);
  half_t out;
  std::memcpy(&out.bits, &h, sizeof h);
  return out;
#else
  const std::uint32_t u = float_bits(x);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t a = u & 0x7fffffffu;
  std::uint32_t r;
  if (a > 0x7f800000u) {
    r = 0x7e00u | ((a >> 13) & 0x3ffu);  // quiet NaN, top payload bits kept
  } else if (a >= 0x477ff000u) {
    r = 0x7c00u;  // rounds to inf (65520 and above), inf itself
  } else if (a >= 0x38800000u) {  // normal in float16 (>= 2^-14)
    const std::uint32_t biased = a - 0x38000000u;  // exponent rebased from 127 to 15
    r = (biased + 0xfffu + ((biased >> 13) & 1u)) >> 13;
  } else {
    // subnormal or zero in float16: round |x| * 2^24 to an integer, ties to even; the
    // product is exact and the addition of 2^23 rounds it to nearest-even in float.
    const float v = bits_float(a) * 16777216.0f;
    r = static_cast<std::uint32_t>(static_cast<std::int32_t>((v + 8388608.0f) - 8388608.0f));
  }
  return half_t{static_cast<std::uint16_t>(sign | r)};
#endif
}

// Rounding of an intermediate result: none.
struct Exact {
  template <class T>
  static OPTBOWL_HD T round(T x) {
    return x;
  }
};

template <class S>
struct Storage {  // float32, float64: stored as computed
  using compute = S;
  using Round = Exact;
  static OPTBOWL_HD compute load(S x) { return x; }
  static OPTBOWL_HD S store(compute x) { return x; }
  static constexpr bool narrow = false;
};

template <>
struct Storage<bf16_t> {
  using compute = float;
  struct Round {
    static OPTBOWL_HD float round(float x) { return round_bf16(x); }
  };
  static OPTBOWL_HD float load(bf16_t x) { return widen(x); }
  static OPTBOWL_HD bf16_t store(float x) { return narrow_bf16(x); }
  static constexpr bool narrow = true;
};

template <>
struct Storage<half_t> {
  using compute = float;
  struct Round {
    static OPTBOWL_HD float round(float x) { return widen(narrow_half(x)); }
  };
  static OPTBOWL_HD float load(half_t x) { return widen(x); }
  static OPTBOWL_HD half_t store(float x) { return narrow_half(x); }
  static constexpr bool narrow = true;
};

template <class S>
using compute_t = typename Storage<S>::compute;

// A hyper-parameter (a double) as the kernels take it for storage S: rounded to the
// compute type, or, where torch's kernel rounds it to the parameter's dtype first
// (`scalar_t(x)`), through S.
template <class S>
OPTBOWL_HD compute_t<S> scalar_as_compute(double x) {
  return static_cast<compute_t<S>>(x);
}

template <class S>
OPTBOWL_HD compute_t<S> scalar_through_storage(double x) {
  if constexpr (Storage<S>::narrow)
    return Storage<S>::Round::round(static_cast<float>(x));
  else
    return static_cast<S>(x);
}

}  // namespace optbowl
