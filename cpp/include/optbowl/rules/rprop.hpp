// Rprop: resilient backpropagation, one element at a time.
//
// Five variants share the step-size adaptation
//     s = g * prev                      (rounded to T)
//     f = eta_plus if s > 0, eta_minus if s < 0, else 1 (NaN gives 1)
//     step = clamp(step * f, step_min, step_max)
// and differ in what happens on a sign change (s < 0):
//   irprop-   torch.optim.Rprop: the gradient is taken as 0 (no move, prev = 0).
//   rprop-    no special case: move by sign(g) * step, prev = g.
//   rprop+    Riedmiller & Braun (1993): undo the previous move, prev = 0.
//   irprop+   Igel & Huesken (2000): undo only if the loss went up, prev = 0.
// and backtrack, seed 004's slides 108-112, keeps a direction d instead of prev.
// Every variant takes R, the rounding of an intermediate result: Exact for float32 and
// float64; for a bfloat16 or float16 parameter the rounding to its dtype that torch's
// single-tensor Rprop applies to g * prev and step * f (each a tensor of that dtype).
//
// Compact state: prev (and backtrack's direction) may be stored as an std::int8_t sign
// code instead of a T: -1, 0, +1, or kPrevNaN for a NaN. Only the sign class of
// s = g * prev matters, and g * code has the same class as g * prev except where g * prev
// underflows to zero (|g * prev| below half the smallest subnormal, both non-zero): T
// storage then gives f = 1, the sign code the true sign. Every other input, inf and NaN
// included, gives the same f, so the same step, move and state. backtrack's direction is
// always -1, 0 or +1: there the code is exact.
#pragma once
#include <cstdint>

#include "optbowl/config.hpp"
#include "optbowl/math.hpp"

namespace optbowl {
namespace rules {

template <class T>
struct RpropHyper {
  T eta_minus;
  T eta_plus;
  T step_min;
  T step_max;
  bool maximize;
};

// The factor torch applies to the step size; f == eta_minus marks a sign change.
// Two selects one after the other rather than nested: the conditions exclude each other,
// and GCC tests s < 0 and not s > 0 for the inner select of the nested form, a third mask
// comparison. Without it irprop-'s AVX-512 loop takes 0.86x the time in L1 (AMD Zen 5).
// R rounds g * prev as torch's single-tensor Rprop does for a bfloat16 or float16
// parameter (its product is a tensor of the parameter's dtype); Exact for float32/float64.
template <class R = Exact, class T>
OPTBOWL_HD T rprop_factor(T g, T prev, const RpropHyper<T>& h) {
  const T s = R::round(g * prev);
  T f = T(1);
  f = s > T(0) ? h.eta_plus : f;
  f = s < T(0) ? h.eta_minus : f;
  return f;
}

// Compact state: the sign code of prev (see above); a NaN prev gives f = 1, as g * NaN does.
constexpr std::int8_t kPrevNaN = 2;

// The code is decoded to the value it stands for (kPrevNaN to a NaN) rather than testing
// for it after the factor: one select fewer after the product (the compact loop took
// 0.93-0.96x the time in L1 on AMD Zen 5).
template <class R = Exact, class T>
OPTBOWL_HD T rprop_factor(T g, std::int8_t prev_code, const RpropHyper<T>& h) {
  T prev = static_cast<T>(prev_code);
  prev = prev_code == kPrevNaN ? T(0) / T(0) : prev;
  return rprop_factor<R>(g, prev, h);
}

// Store x as prev: the value itself, or its sign code.
template <class T>
OPTBOWL_HD void store_prev(T& prev, T x) {
  prev = x;
}

template <class T>
OPTBOWL_HD void store_prev(std::int8_t& prev_code, T x) {
  prev_code = x != x ? kPrevNaN : static_cast<std::int8_t>((T(0) < x) - (x < T(0)));
}

// p - sign(g) * step, as torch's addcmul_(sign(g), step, value=-1) rounds it: p + (-1 or
// +1) * step is p -+ step exactly, and for a zero or NaN g it is p + (-0) * step, which is
// p - 0 * step. So the move is p minus step with g's sign, or minus 0 * step: a bit
// operation instead of sign()'s two selects and a multiply. A NaN step keeps its own sign
// through torch's product, so it keeps it here too (copysign takes the sign of the step
// itself then).
template <class T>
OPTBOWL_HD T rprop_move(T p, T g, T step) {
  const T signed_step = copysign_(step, step != step ? step : g);
  // The zero move first, then the signed step over it where g is non-zero: written as one
  // nested select, GCC spent two more mask operations on it (irprop-'s AVX-512 loop took
  // 1.11x the time in L1 on AMD Zen 5).
  T move = T(0) * step;
  move = (g > T(0) || g < T(0)) ? signed_step : move;
  return p - move;
}

// "irprop-": torch.optim.Rprop, bit for bit.
template <class R = Exact, class T, class P>
OPTBOWL_HD void irprop_minus(T& p, T grad, P& prev, T& step, const RpropHyper<T>& h) {
  T g = h.maximize ? flip_sign(grad) : grad;
  const T f = rprop_factor<R>(g, prev, h);
  step = clamp(R::round(step * f), h.step_min, h.step_max);
  g = (f == h.eta_minus) ? T(0) : g;
  p = rprop_move(p, g, step);
  store_prev(prev, g);
}

// "rprop-": the step adapts as above, but the move always follows the gradient.
template <class R = Exact, class T, class P>
OPTBOWL_HD void rprop_minus(T& p, T grad, P& prev, T& step, const RpropHyper<T>& h) {
  const T g = h.maximize ? flip_sign(grad) : grad;
  const T f = rprop_factor<R>(g, prev, h);
  step = clamp(R::round(step * f), h.step_min, h.step_max);
  p = rprop_move(p, g, step);
  store_prev(prev, g);
}

// "rprop+" (revert = true) and "irprop+" (revert = whether the loss went up).
// update holds the last change applied to p. On a sign change the step shrinks and,
// if revert, the last change is undone (the undo becomes the new update); without
// revert nothing moves and update = 0. In both cases prev = 0, so the next step
// moves along its gradient without adapting.
template <class R = Exact, class T, class P>
OPTBOWL_HD void rprop_plus(T& p, T grad, P& prev, T& step, T& update, bool revert,
                           const RpropHyper<T>& h) {
  const T g = h.maximize ? flip_sign(grad) : grad;
  const T f = rprop_factor<R>(g, prev, h);
  step = clamp(R::round(step * f), h.step_min, h.step_max);
  // Both cases computed, then one select each: the if/else took 1.05x the time in L1, the
  // compact state 1.15x (GCC, AVX-512, AMD Zen 5).
  const bool sign_change = f == h.eta_minus;
  const T undo = revert ? -update : T(0);
  const T delta = (-sign(g)) * step;
  const T moved = sign_change ? undo : delta;
  p = p + moved;
  update = moved;
  store_prev(prev, sign_change ? T(0) : g);
}

// "backtrack": direction d (0 until the first non-zero gradient).
//   d == 0, g != 0:  d = sign(g), step = clamp(step), p -= d * step
//   sign(g) == d:    step = min(step * eta_plus, step_max), p -= d * step
//   sign(g) == -d:   p += d * step (back to the previous location),
//                    step = max(step * eta_minus, step_min), p -= d * step
//   g == 0 or NaN:   nothing changes.
template <class R = Exact, class T, class P>
OPTBOWL_HD void backtrack(T& p, T grad, P& direction, T& step, const RpropHyper<T>& h) {
  const T sg = sign(h.maximize ? flip_sign(grad) : grad);
  const T d = static_cast<T>(direction);
  // Each case's result is computed and one is selected: no branches, so the loop
  // vectorises; every value is rounded exactly as the case alone would round it. The
  // selects run in a row, the cases above read backwards, the last winning: nested, they
  // took 1.1-1.2x the time in cache (GCC, AVX-512, AMD Zen 5).
  const T start_step = clamp(step, h.step_min, h.step_max);       // d == 0
  const T grown_step = min_(R::round(step * h.eta_plus), h.step_max);    // sg == d
  const T shrunk_step = max_(R::round(step * h.eta_minus), h.step_min);  // sg == -d
  const T start_p = p - sg * start_step;
  const T grown_p = p - d * grown_step;
  const T back_p = (p + d * step) - d * shrunk_step;
  const bool none = sg == T(0);
  const bool start = d == T(0);
  const bool same = sg == d;
  T new_p = same ? grown_p : back_p;
  T new_step = same ? grown_step : shrunk_step;
  new_p = start ? start_p : new_p;
  new_step = start ? start_step : new_step;
  p = none ? p : new_p;
  step = none ? step : new_step;
  store_prev(direction, (start & !none) ? sg : d);
}

}  // namespace rules
}  // namespace optbowl
