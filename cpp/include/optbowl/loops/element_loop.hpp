// The skeleton of every multi-tensor CPU loop: a template over the rule.
//
// What each loop had in common lives here once: the per-tensor group tables (groups,
// group_of and, for a rule that counts steps, steps), hyper<S>(tensor), lane_key<T>(tensor),
// apply<S>, and run<S, Hyper>: the arrays as restrict pointers, the flags as compile-time
// constants (loops/constant_flags.hpp), one OPTBOWL_IVDEP loop whose element loads the arrays
// it uses through Storage<S>, calls the rule once and stores back what the rule writes.
//
// A loop derives from ElementLoop<Loop, Group, Hyper, K, kCountsSteps> and says only what
// is its own:
//
//   template <class S> static Hyper<compute_t<S>> hyper_of(const Group&, double t);
//       the rule's scalars for one group, at step t (0 for a rule that counts no steps);
//   template <class Lanes, class T> auto flags(const Hyper<T>& h, int32_t tensor, const Arrays* a) const;
//       a tuple of the flags run() turns into constants: bools (each one compiled both
//       ways), std::bool_constant (already one way) or Choice<N> (N cases); `a` is the
//       call's pointers, or nullptr where lane_key asks (every array counts as given:
//       given(a, k)); Lanes: std::true_type when run() steps a bowl sweep's lanes;
//   static constexpr std::size_t kKeyFlags: the first kKeyFlags flags come from h, and
//       lane_key<T>() is them as one number (the configurations of one lane call agree on them);
//   template <class S, class... C> static Uses<U0, ..., UK-1> arrays(C...);
//       what the element does with each array for these flags: InOut<>, In<> or Unused
//       (neither loaded nor stored: the rule gets a zero of its own), InOut<X>/In<X> for an
//       array stored as X rather than S and handed to the rule as it is (sign codes, say);
//   template <class S, class E, class... C> void element(const E& e, C..., V&... x) const;
//       one element: e.hyper() is its hyper-parameters, e.revert(uniform) the lane's revert flag, x
//       the arrays' values (K of them, in order), in compute_t<S>.
//
// flags, kKeyFlags and arrays have defaults: maximize the only flag, and an element that
// reads and writes every array but the gradient (array 1, read only).
//
// A loop whose torch path rounds a tensor's tail elements apart also defines
// torch_tail, tail_flags (as flags, the ones the tail needs) and tail_element: apply_tail
// and run_tail step them in a scalar loop over the arrays as stored, as torch's kernel does.
//
// A loop whose rule torch runs as single-tensor ops, whose scalar loop rounds the last
// elements of a bfloat16 or float16 tensor apart (multi_tensor.hpp, kTorchHalfTail), sets
// kHalfTail = true: apply_half_tail steps those elements with the body's element, whose
// E::kScalarTail is then true (it becomes the rule's kScalarTail: rules::<rule><E::kScalarTail, R>).
// A loop whose torch kernel has a tail of another width, or other hyper-parameters there,
// also declares kHalfTailWidth and half_tail_hyper<S>(tensor).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"
#include "optbowl/loops/constant_flags.hpp"
#include "optbowl/loops/lanes.hpp"

namespace optbowl {

// What an element does with one array. X: how it is stored (void: as the loop's S).
struct Unused {};
template <class X = void>
struct In {};
template <class X = void>
struct InOut {};
template <class... U>
struct Uses {};

namespace detail {

// Array use U of a loop stored as S: the pointer type, the value the rule gets, and how it
// is loaded and stored. kRaw: the value is the stored type itself (the scalar tails).
template <class S, class U, bool kRaw = false>
struct ArrayUse;

template <class S, class X, bool kRead, bool kWrite, bool kRaw>
struct ArrayUseOf {
  using Stored = std::conditional_t<std::is_void<X>::value, S, X>;
  static constexpr bool kConvert = std::is_same<Stored, S>::value && !kRaw;
  using Value = std::conditional_t<kConvert, compute_t<S>, Stored>;
  using Ptr = std::conditional_t<kWrite, Stored*, const Stored*>;

  static OPTBOWL_HD Value load(Ptr x, std::int64_t i) {
    if constexpr (!kRead) return Value(0);
    else if constexpr (kConvert) return Storage<S>::load(x[i]);
    else return x[i];
  }
  static OPTBOWL_HD void store(Ptr x, std::int64_t i, Value v) {
    if constexpr (kWrite) {
      if constexpr (kConvert) x[i] = Storage<S>::store(v);
      else x[i] = v;
    }
  }
};

template <class S, bool kRaw>
struct ArrayUse<S, Unused, kRaw> : ArrayUseOf<S, void, false, false, kRaw> {};
template <class S, class X, bool kRaw>
struct ArrayUse<S, In<X>, kRaw> : ArrayUseOf<S, X, true, false, kRaw> {};
template <class S, class X, bool kRaw>
struct ArrayUse<S, InOut<X>, kRaw> : ArrayUseOf<S, X, true, true, kRaw> {};

// The element loop: each array a restrict pointer of its own (a call through an array of
// pointers vectorised less well: loops/quantized_loop.hpp), every load before the first
// store, f(i, values...) in between.
template <class S, class... U, class F>
void each_element(F& f, std::int64_t begin, std::int64_t end,
                  typename ArrayUse<S, U>::Ptr OPTBOWL_RESTRICT... x) {
  OPTBOWL_IVDEP
  for (std::int64_t i = begin; i < end; ++i) {
    [&](typename ArrayUse<S, U>::Value... v) {
      f(i, v...);
      (ArrayUse<S, U>::store(x, i, v), ...);
    }(ArrayUse<S, U>::load(x, i)...);
  }
}

// The same in a plain scalar loop over the arrays as stored (T), for a torch tail.
template <class T, class... U, class F>
void each_tail_element(F& f, std::int64_t begin, std::int64_t end, typename ArrayUse<T, U, true>::Ptr... x) {
  for (std::int64_t i = begin; i < end; ++i) {
    [&](typename ArrayUse<T, U, true>::Value... v) {
      f(i, v...);
      (ArrayUse<T, U, true>::store(x, i, v), ...);
    }(ArrayUse<T, U, true>::load(x, i)...);
  }
}

template <class S, bool kTail, class F, std::size_t K, class... U, std::size_t... k>
void each_element_of(F& f, const std::array<void*, K>& a, std::int64_t begin, std::int64_t end, Uses<U...>,
                     std::index_sequence<k...>) {
  static_assert(sizeof...(U) == K, "a loop's arrays(): one use per array");
  if constexpr (kTail)
    each_tail_element<S, U...>(f, begin, end, static_cast<typename ArrayUse<S, U, true>::Ptr>(a[k])...);
  else
    each_element<S, U...>(f, begin, end, static_cast<typename ArrayUse<S, U>::Ptr>(a[k])...);
}

// The tables the bindings fill: the groups, each tensor's group, and (for a rule that
// counts steps) each tensor's step count.
template <class Group, bool kCountsSteps>
struct GroupTables {
  std::vector<Group> groups;
  std::vector<std::int32_t> group_of;  // tensor -> group
  double step_of(std::int32_t) const { return 0.0; }
};

template <class Group>
struct GroupTables<Group, true> {
  std::vector<Group> groups;
  std::vector<std::int32_t> group_of;  // tensor -> group
  std::vector<double> steps;           // tensor -> step count t (after this step's increment)
  double step_of(std::int32_t tensor) const { return steps[tensor]; }
};

}  // namespace detail

// What an element is told besides its values: its hyper-parameters (h, or lane i's own)
// and its revert flag (LaneHyper::revert, loops/lanes.hpp).
template <class H, class Hyper, bool kScalarTail_ = false>
struct ElementHyper {
  // The element is one of a 16-bit tensor's last elements, which torch's single-tensor
  // ops round in a scalar loop (apply_half_tail).
  static constexpr bool kScalarTail = kScalarTail_;
  const H& h;
  const Hyper& lanes;
  std::int64_t i;
  H hyper() const { return lanes(h, i); }
  bool revert(bool uniform) const { return lanes.revert(i, uniform); }
};

template <class Loop, class Group, template <class> class Hyper, std::size_t kArrays, bool kCountsSteps>
struct ElementLoop : detail::GroupTables<Group, kCountsSteps> {
  static constexpr std::size_t K = kArrays;
  using Arrays = std::array<void*, K>;

  template <class S>
  Hyper<compute_t<S>> hyper(std::int32_t tensor) const {
    return Loop::template hyper_of<S>(this->groups[this->group_of[tensor]], this->step_of(tensor));
  }

  // The flags run() takes from h, as one number (loops/lanes.hpp).
  template <class T>
  std::uint32_t lane_key(std::int32_t tensor) const {
    const auto f = self().template flags<std::true_type>(hyper<T>(tensor), tensor, nullptr);
    return key_bits(f, std::make_index_sequence<Loop::kKeyFlags>{});
  }

  // The defaults, for a rule whose only flag is maximize and whose element reads and
  // writes every array but the gradient (a loop declares its own to change them).
  static constexpr std::size_t kKeyFlags = 1;
  template <class Lanes, class H>
  auto flags(const H& h, std::int32_t, const Arrays*) const {
    return std::make_tuple(h.maximize);
  }
  template <class S, class... C>
  static auto arrays(C...) {
    return in_out_but_grad(std::make_index_sequence<K - 2>{});
  }

  template <class S>
  void apply(const Arrays& a, std::int32_t tensor, std::int64_t begin, std::int64_t end) const {
    run<S>(a, tensor, begin, end, hyper<S>(tensor), UniformHyper{});
  }

  // S: how the arrays are stored (float, double, bf16_t, half_t); the rule computes in
  // compute_t<S>, each stored value rounded to S (optbowl/half.hpp).
  template <class S, class Lanes>
  void run(const Arrays& a, std::int32_t tensor, std::int64_t begin, std::int64_t end, const Hyper<compute_t<S>>& h,
           Lanes lanes) const {
    using IsLanes = std::bool_constant<!std::is_same<Lanes, UniformHyper>::value>;
    step_range<S, false>(a, begin, end, h, lanes, self().template flags<IsLanes>(h, tensor, &a));
  }

  // Elements [begin, end) of a 16-bit tensor's tail as torch's scalar loop rounds them (a
  // Loop with kHalfTail; multi_tensor.hpp): the body's element with E::kScalarTail, and the
  // hyper-parameters of half_tail_hyper.
  template <class S>
  void apply_half_tail(const Arrays& a, std::int32_t tensor, std::int64_t begin, std::int64_t end) const {
    const Hyper<compute_t<S>> h = self().template half_tail_hyper<S>(tensor);
    step_range<S, false, true>(a, begin, end, h, UniformHyper{},
                               self().template flags<std::false_type>(h, tensor, &a));
  }

  // A 16-bit tail's hyper-parameters: the body's (a Loop whose torch kernel takes them
  // otherwise there says so).
  template <class S>
  Hyper<compute_t<S>> half_tail_hyper(std::int32_t tensor) const {
    return hyper<S>(tensor);
  }

  template <class T>
  void apply_tail(const Arrays& a, std::int32_t tensor, std::int64_t begin, std::int64_t end) const {
    run_tail<T>(a, tensor, begin, end, hyper<T>(tensor), UniformHyper{});
  }

  // The tail's elements as run() steps the body's (the bowl sweep's lanes too).
  template <class T, class Lanes>
  void run_tail(const Arrays& a, std::int32_t tensor, std::int64_t begin, std::int64_t end, const Hyper<T>& h,
                Lanes lanes) const {
    step_range<T, true>(a, begin, end, h, lanes, self().tail_flags(h, tensor, &a));
  }

 protected:
  // Whether array k is given (every array, where lane_key asks).
  static bool given(const Arrays* a, std::size_t k) { return a == nullptr || (*a)[k] != nullptr; }

 private:
  template <std::size_t... k>
  static auto in_out_but_grad(std::index_sequence<k...>) {
    return Uses<InOut<>, In<>, std::conditional_t<k == k, InOut<>, Unused>...>{};
  }

  const Loop& self() const { return static_cast<const Loop&>(*this); }

  // The flags as one number: each bool a binary digit, each Choice<N> a digit in base N.
  template <class Flags, std::size_t... k>
  static std::uint32_t key_bits(const Flags& f, std::index_sequence<k...>) {
    std::uint32_t key = 0;
    ((key = key * key_base(std::get<k>(f)) + key_digit(std::get<k>(f))), ...);
    return key;
  }
  static std::uint32_t key_base(bool) { return 2; }
  static std::uint32_t key_digit(bool b) { return b ? 1u : 0u; }
  template <int N>
  static std::uint32_t key_base(Choice<N>) { return N; }
  template <int N>
  static std::uint32_t key_digit(Choice<N> c) { return static_cast<std::uint32_t>(c.value); }

  template <class S, bool kTail, bool kScalarTail = false, class H, class Lanes, class Flags>
  void step_range(const Arrays& a, std::int64_t begin, std::int64_t end, const H& h, const Lanes& lanes,
             const Flags& flags) const {
    std::apply(
        [&](auto... flag) {
          with_constant_flags(
              [&](auto... c) {
                auto f = [&](std::int64_t i, auto&... x) {
                  const ElementHyper<H, Lanes, kScalarTail> e{h, lanes, i};
                  if constexpr (kTail) self().template tail_element<S>(e, c..., x...);
                  else self().template element<S>(e, c..., x...);
                };
                detail::each_element_of<S, kTail>(f, a, begin, end, Loop::template arrays<S>(c...),
                                                  std::make_index_sequence<K>{});
              },
              flag...);
        },
        flags);
  }
};

}  // namespace optbowl
