// Loop-invariant flags as compile-time constants, so that the loops vectorise.
//
// A rule's hyper-parameters carry booleans (maximize, centered, ...). Read from a struct
// inside the element loop they stop GCC's vectoriser ("no vectype" for a bool load), so a
// loop hands each flag to with_constant_flags, which calls its body with one
// std::bool_constant per flag: the body (and the loop in it) is compiled once per
// combination, with the flags folded away. The rules themselves are unchanged.
//
// A flag may also be known at compile time already (a std::bool_constant: passed on as it
// is, one body instead of two), or one of N cases (Choice<N>: std::integral_constant<int, v>
// for its value v, one body per case).
#pragma once
#include <type_traits>

namespace optbowl {

// One of N cases, 0 <= value < N.
template <int N>
struct Choice {
  int value;
};

template <class F>
void with_constant_flags(F&& f) {
  f();
}

// f(c1, c2, ...) with ck = std::bool_constant<bk>.
template <class F, class... Rest>
void with_constant_flags(F&& f, bool first, Rest... rest) {
  if (first)
    with_constant_flags([&](auto... c) { f(std::true_type{}, c...); }, rest...);
  else
    with_constant_flags([&](auto... c) { f(std::false_type{}, c...); }, rest...);
}

template <class F, bool b, class... Rest>
void with_constant_flags(F&& f, std::bool_constant<b>, Rest... rest) {
  with_constant_flags([&](auto... c) { f(std::bool_constant<b>{}, c...); }, rest...);
}

template <int v, int N, class F, class... Rest>
void with_constant_choice(F& f, int value, Rest... rest) {
  if constexpr (v + 1 < N) {
    if (value != v) return with_constant_choice<v + 1, N>(f, value, rest...);
  }
  with_constant_flags([&](auto... c) { f(std::integral_constant<int, v>{}, c...); }, rest...);
}

template <class F, int N, class... Rest>
void with_constant_flags(F&& f, Choice<N> first, Rest... rest) {
  with_constant_choice<0, N>(f, first.value, rest...);
}

}  // namespace optbowl
