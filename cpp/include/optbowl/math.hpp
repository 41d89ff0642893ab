// Small math helpers usable on host and device.
#pragma once
#include <cmath>

#include "optbowl/config.hpp"

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

template <class T>
OPTBOWL_HD T fma_(T a, T b, T c) {
#if defined(__CUDA_ARCH__)
  return ::fma(a, b, c);
#else
  return std::fma(a, b, c);
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

}  // namespace optbowl
