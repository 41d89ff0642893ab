// Where a loop's element takes its hyper-parameters from: one struct for the whole range
// (the optimizers), or one configuration per element (the bowl sweep's lanes).
//
// Every Loop's run<T>(pointers, tensor, begin, end, h, hyper) calls its rule on element i
// with hyper(h, i). UniformHyper returns h itself, so the optimizers' loops compile exactly as
// if h were written in. LaneHyper returns h with the numeric fields of element i's own
// configuration, read from one array per field: the bowl sweep lays out many
// configurations of one method side by side (element i = configuration i) and steps them
// all in one vectorised call. The rule and the loop are the same code in both cases.
//
// What stays uniform: the booleans a loop turns into compile-time constants
// (loops/constant_flags.hpp) come from h, so a lane call only takes configurations that
// agree on them; each Loop's lane_key() says which ones it reads.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <tuple>
#include <utility>

namespace optbowl {

// The numeric fields of each rule's hyper-parameter struct: what may differ between lanes.
// A rule's loop header specialises it: a static constexpr tuple `list` of member pointers.
template <class H>
struct LaneFields;

template <class H>
constexpr std::size_t lane_field_count() {
  return std::tuple_size<decltype(LaneFields<H>::list)>::value;
}

constexpr std::size_t kMaxLaneFields = 10;

// The optimizers: every element uses h.
struct UniformHyper {
  template <class H>
  const H& operator()(const H& h, std::int64_t) const {
    return h;
  }
  // A rule's "the loss went up" (it reverts its last move), one value for the whole range.
  bool revert(std::int64_t, bool uniform) const { return uniform; }
};

// The bowl sweep: element i is configuration i. values[k][i] is numeric field k of
// LaneFields<H>::list for configuration i; reverts[i] is the revert flag for it.
template <class T>
struct LaneHyper {
  std::array<const T*, kMaxLaneFields> values{};
  const std::uint8_t* reverts = nullptr;

  template <class H>
  H operator()(H h, std::int64_t i) const {
    set(h, i, std::make_index_sequence<lane_field_count<H>()>{});
    return h;
  }
  bool revert(std::int64_t i, bool) const { return reverts[i] != 0; }

 private:
  // Compile-time field numbers: each values[k] is then a loop-invariant pointer.
  template <class H, std::size_t... k>
  void set(H& h, std::int64_t i, std::index_sequence<k...>) const {
    static_assert(sizeof...(k) <= kMaxLaneFields, "LaneHyper: raise kMaxLaneFields");
    ((h.*std::get<k>(LaneFields<H>::list) = values[k][i]), ...);
  }
};

// Scatter h's numeric fields into lane `lane` of the arrays `values` (field k at
// values[k * stride + lane]).
template <class T, class H>
void store_lane(const H& h, T* values, std::int64_t stride, std::int64_t lane) {
  std::apply([&](auto... field) {
    std::int64_t k = 0;
    ((values[(k++) * stride + lane] = h.*field), ...);
  }, LaneFields<H>::list);
}

}  // namespace optbowl
