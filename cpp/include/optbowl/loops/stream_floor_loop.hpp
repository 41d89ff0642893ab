// The memory floor: a streaming loop that moves the same bytes as an optimizer step.
//
// An element-wise optimizer step is bandwidth-bound: per element it reads the parameter,
// the gradient and its state arrays and writes the parameter and the state back. This
// loop does the same traffic with almost no arithmetic, through the same chunking,
// threading and ISA dispatch (multi_tensor.hpp), so the ratio
//     time(rule) / time(floor over the same arrays)
// says how far a rule is from the hardware's limit. Per element, with R read-only arrays
// r_j and W arrays x_k that are read and written in place:
//     s = r_1 + ... + r_R,    x_k = x_k * scale + s * shift      (k = 1..W)
// With scale = 1 and shift = 0 (the defaults) finite values are left unchanged, so the
// floor can be timed repeatedly on live optimizer arrays.
#pragma once
#include <array>
#include <cstdint>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"

namespace optbowl {

// Pointers per tensor: the W in-place arrays, then the R read-only arrays.
template <std::size_t W, std::size_t R>
struct StreamFloorLoop {
  static_assert(W >= 1, "the floor writes at least one array");
  static constexpr std::size_t K = W + R;
  static constexpr bool kAvx512 = true;  // the widest loads and stores the CPU has
  double scale = 1.0;
  double shift = 0.0;

  // S: the arrays' storage; a 16-bit array is widened to float and rounded back, as the
  // rules' loops do (optbowl/half.hpp), so the floor moves the same bytes with the same
  // conversions.
  template <class S>
  void apply(const std::array<void*, K>& a, std::int32_t, std::int64_t begin, std::int64_t end) const {
    using T = compute_t<S>;
    using St = Storage<S>;
    std::array<S*, W> x{};
    std::array<const S*, R + 1> r{};  // R + 1: no zero-length array when R == 0
    for (std::size_t k = 0; k < W; ++k) x[k] = static_cast<S*>(a[k]);
    for (std::size_t j = 0; j < R; ++j) r[j] = static_cast<const S*>(a[W + j]);
    const T sc = static_cast<T>(scale);
    const T sh = static_cast<T>(shift);
    // Every array is a separate buffer (the bindings check it): no dependence between
    // iterations.
    OPTBOWL_IVDEP
    for (std::int64_t i = begin; i < end; ++i) {
      // Every load before the first store, as the rules' loops do: a store followed by a
      // load at the same offset modulo 4 KiB of another array stalls some CPUs.
      std::array<T, W> v;
      for (std::size_t k = 0; k < W; ++k) v[k] = St::load(x[k][i]);
      T s = T(0);
      for (std::size_t j = 0; j < R; ++j) s = s + St::load(r[j][i]);
      for (std::size_t k = 0; k < W; ++k) x[k][i] = St::store(v[k] * sc + s * sh);
    }
  }
};

}  // namespace optbowl
