// Loop-invariant flags as compile-time constants, so that the loops vectorise.
//
// A rule's hyper-parameters carry booleans (maximize, centered, ...). Read from a struct
// inside the element loop they stop GCC's vectoriser ("no vectype" for a bool load), so a
// loop hands each flag to with_constant_flags, which calls its body with one
// std::bool_constant per flag: the body (and the loop in it) is compiled once per
// combination, with the flags folded away. The rules themselves are unchanged.
#pragma once
#include <type_traits>

namespace optbowl {

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

}  // namespace optbowl
