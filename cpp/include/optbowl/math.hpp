// Small math helpers usable on host and device.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"

namespace optbowl {

// sign(x) as torch computes it: +1, -1, or +0 for zero and NaN (two selects: no
// integer round trip in the vectorised loops).
template <class T>
OPTBOWL_HD T sign(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
}

template <class T>
OPTBOWL_HD T min_(T a, T b) {
  return b < a ? b : a;
}

template <class T>
OPTBOWL_HD T max_(T a, T b) {
  return a < b ? b : a;
}

// clamp as torch's clamp_(min, max) does: max first, then min (hi wins if lo > hi).
// A NaN stays NaN. Each select is the operand order of x86's maxps/minps, so each
// compiles to one instruction.
template <class T>
OPTBOWL_HD T clamp(T x, T lo, T hi) {
  const T y = lo > x ? lo : x;
  return hi < y ? hi : y;
}

// maximize's negation of the gradient, as torch negates it. flip_sign(x) flips the sign
// bit, a NaN's too, as torch's neg() does (a kernel of its own in the single-tensor and
// foreach paths, an xor with the sign bit in its vectorised code). It is an integer xor
// because the compiler folds a floating-point negation into the fused multiply-add that
// follows it (fnmadd), which leaves a NaN's sign as it was; GCC keeps the xor. Where
// torch's own compiler folded its negation so (some of its fused kernels: the rules say
// where), negate_keeping_nan(x) gives that result: -x, a NaN unchanged.
template <class T>
OPTBOWL_HD T flip_sign(T x) {
  using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  Bits u;
  std::memcpy(&u, &x, sizeof u);
  u ^= Bits(1) << (8 * sizeof(T) - 1);
  std::memcpy(&x, &u, sizeof u);
  return x;
}

template <class T>
OPTBOWL_HD T negate_keeping_nan(T x) {
  return x != x ? x : -x;
}

template <class T>
OPTBOWL_HD T fma_(T a, T b, T c) {
#if defined(__CUDA_ARCH__)
  return ::fma(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// x * y, rounded as T's product rounds it, without the slow path for subnormal numbers.
// x86 CPUs take a float32 product with a subnormal operand or result through microcode
// (on an Intel Xeon 40x the time of a normal one with AVX2, 20x with AVX-512); conversions
// between float and double take no such path. So a float32 product is taken in double,
// where it is exact and never subnormal, and rounded once to float: the float product bit
// for bit, subnormal results included. The barrier keeps the compiler from folding it back
// into the float product it equals. Only GCC >= 12 has one; elsewhere, and for double and
// on the GPU (subnormals at full speed), this is the plain product.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && __GNUC__ >= 12
#define OPTBOWL_FLOAT_PRODUCT_IN_DOUBLE 1
#else
#define OPTBOWL_FLOAT_PRODUCT_IN_DOUBLE 0
#endif

template <class T>
OPTBOWL_HD T product_past_subnormals(T x, T y) {
#if OPTBOWL_FLOAT_PRODUCT_IN_DOUBLE
  if constexpr (std::is_same<T, float>::value)
    return static_cast<float>(__builtin_assoc_barrier(static_cast<double>(x)) * static_cast<double>(y));
#endif
  return x * y;
}

// x with the sign of y (a NaN's sign included): one bitwise operation on vectors.
template <class T>
OPTBOWL_HD T copysign_(T x, T y) {
#if defined(__CUDA_ARCH__)
  return ::copysign(x, y);
#else
  return std::copysign(x, y);
#endif
}

template <class T>
OPTBOWL_HD T sqrt_(T x) {
#if defined(__CUDA_ARCH__)
  return ::sqrt(x);
#else
  return std::sqrt(x);
#endif
}

// torch's lerp(start, end, weight), rounded as its CPU kernels round it:
// start + weight * (end - start) for |weight| < 0.5, else end - (end - start) * (1 - weight),
// each as one fused multiply-add.
template <class T>
OPTBOWL_HD T torch_lerp(T start, T end, T weight) {
  const T diff = end - start;
  return (weight < T(0) ? -weight : weight) < T(0.5) ? fma_(weight, diff, start) : fma_(weight - T(1), diff, end);
}

// torch's a.add(b, alpha=alpha) for two tensors: fma(b, alpha, a) in its vectorised body
// (for a 16-bit parameter too: float32 arithmetic, one rounding). kScalarTail: as its scalar
// tail rounds it for a 16-bit parameter (c10::BFloat16 / c10::Half arithmetic: the product
// rounded to the dtype, then the sum): the last numel % (vector bytes / 2) elements of each
// run torch's element-wise loop steps (numel % 32 with torch's AVX-512 kernels, checked for
// every rule here against torch 2.13; a tensor past torch's grain size, 32768 elements, is
// split into one run per thread). For float32 and float64 torch's build contracts the tail
// into the same fma, so kScalarTail changes nothing there.
template <bool kScalarTail, class R, class T>
OPTBOWL_HD T torch_add_scaled(T a, T b, T alpha) {
  if constexpr (kScalarTail && !std::is_same<R, Exact>::value)
    return R::round(a + R::round(alpha * b));
  else
    return R::round(fma_(b, alpha, a));
}

}  // namespace optbowl
