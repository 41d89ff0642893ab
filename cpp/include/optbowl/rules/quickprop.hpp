// QuickProp (Fahlman, 1988), seed 004's slides 118-119, one element at a time.
//
// Each element fits a parabola through its last two gradients (a secant estimate of the
// second derivative) and jumps to its minimum:
//     r     = g / (g_prev - g)
//     delta = r * delta_prev                 (p <- p + delta)
// with these cases, in order:
//   delta_prev == 0 (first step, or no move last time):  delta = -lr * g   (gradient step)
//   g == 0 (a stationary point):                          delta = 0
//   g, g_prev of the same sign and |g| >= |g_prev|
//   (the slope did not flatten: the secant parabola has no minimum ahead, g == g_prev
//   included):                                            delta = max_growth * delta_prev
//   otherwise:  r is clamped to [-max_growth, max_growth], so |delta| <= max_growth * |delta_prev|.
// g is -grad when maximizing. NaN gradients give NaN moves (nothing hides them).
// The steps shrink geometrically as an element settles, into subnormal numbers: the
// product with delta_prev avoids the CPU's slow path for them (math.hpp), same bits.
#pragma once
#include "optbowl/config.hpp"
#include "optbowl/math.hpp"

namespace optbowl {
namespace rules {

template <class T>
struct QuickpropHyper {
  T neg_lr;      // -lr, rounded to T
  T max_growth;  // mu > 0
  bool maximize;
};

template <class T>
OPTBOWL_HD void quickprop(T& p, T grad, T& prev_grad, T& prev_step, const QuickpropHyper<T>& h) {
  const T g = h.maximize ? flip_sign(grad) : grad;
  const T g_prev = prev_grad;
  const T d_prev = prev_step;
  // Every case is computed and the last select wins (the cases above, read backwards):
  // with nested if/else GCC's AVX-512 loop built each case's mask and its complement and
  // took twice the time. steeper: sign(g) == sign(g_prev), |g| >= |g_prev| and g_prev != 0,
  // as g >= g_prev with both multiplied by g_prev's sign (exact); false for a NaN g or
  // g_prev. `&`, not `&&`: no branch for the vectoriser to convert.
  const T s = copysign_(T(1), g_prev);
  const bool steeper = (g_prev != T(0)) & (g * s >= g_prev * s);
  const T factor = steeper ? h.max_growth : clamp(g / (g_prev - g), -h.max_growth, h.max_growth);
  const T moved = product_past_subnormals(factor, d_prev);
  const T kept = g == T(0) ? T(0) : moved;
  const T delta = d_prev == T(0) ? h.neg_lr * g : kept;
  p = p + delta;
  prev_grad = g;
  prev_step = delta;
}

}  // namespace rules
}  // namespace optbowl
