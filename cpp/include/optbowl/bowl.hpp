// The quadratic-bowl simulator: the optimizers' own loops on f(x) = ½xᵀAx − bᵀx + c.
//
// Every step computes the gradient g = Ax − b (accumulated in double, rounded to the
// parameter dtype), optionally turns it into Newton's direction A⁻¹g, and hands it to the
// very Loop struct the optimizer classes run (optbowl/loops/*.hpp), through Loop::apply on
// one tensor. No update formula is written here: the simulator only drives the loops.
//
// A method is a Method<Loop>: the loop set up for one group and one tensor, the initial
// value of each of its state arrays, the direction it is fed (gradient or Newton), and an
// optional hook run before every step (step counters, "did the loss go up"). The list of
// methods the simulator knows is with_method() below: the single place to plug in a loop.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "optbowl/loops/adagrad_loop.hpp"
#include "optbowl/loops/adam_loop.hpp"
#include "optbowl/loops/quickprop_loop.hpp"
#include "optbowl/loops/rmsprop_loop.hpp"
#include "optbowl/loops/rprop_loop.hpp"
#include "optbowl/loops/sgd_loop.hpp"
#include "optbowl/multi_tensor.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace optbowl {
namespace bowl {

// f(x) = ½xᵀAx − bᵀx + c with A (n×n, row-major) and b (n).
struct Problem {
  const double* A;
  const double* b;
  double c;
  std::int64_t n;
};

// The hyper-parameters of one configuration, by name.
struct HyperRow {
  const std::vector<std::string>* names;
  const double* values;

  double get(const char* name) const {
    for (std::size_t k = 0; k < names->size(); ++k)
      if ((*names)[k] == name) return values[k];
    throw std::invalid_argument(std::string("hyper: missing hyper-parameter '") + name + "'");
  }
};

enum class Direction : std::uint8_t { gradient, newton };

template <class LoopT>
struct Method {
  using Loop = LoopT;
  static constexpr std::size_t kStates = Loop::K - 2;  // pointers after param and grad
  Loop loop;
  std::array<double, kStates> state_init{};  // initial value of every state array
  Direction direction = Direction::gradient;
  // Run before step t (t = 1, 2, ...) with the loss at the current point and at the
  // point before it (NaN at t = 1).
  void (*before_step)(Loop&, std::int64_t t, double loss, double prev_loss) = nullptr;
  bool reads_loss = false;  // before_step uses the losses (else they are not computed)
};

// ---------------------------------------------------------------------------------------
// SimMethods: the methods of the simulator, built from one row of hyper-parameters.
// Each make_* sets up the optimizer's Loop for one group and one tensor.

inline Method<RpropLoop> make_rprop(RpropVariant variant, const HyperRow& h) {
  Method<RpropLoop> m;
  m.loop.variant = variant;
  m.loop.groups.push_back({h.get("eta_minus"), h.get("eta_plus"), h.get("step_min"), h.get("step_max"), false});
  m.loop.group_of = {0};
  m.state_init = {0.0, h.get("lr"), 0.0};  // prev (or direction), step size, last update
  if (variant == RpropVariant::irprop_plus) {
    m.before_step = [](RpropLoop& loop, std::int64_t t, double loss, double prev_loss) {
      loop.loss_increased = t > 1 && loss > prev_loss;
    };
    m.reads_loss = true;
  }
  return m;
}

// The optimizers whose loop keeps a step count (bias corrections, torch's first momentum
// buffer) are told it before every step.
template <class Loop>
void count_steps(Loop& loop, std::int64_t t, double, double) {
  loop.steps[0] = static_cast<double>(t);
}

inline Method<AdagradLoop> make_adagrad(const HyperRow& h) {
  Method<AdagradLoop> m;
  m.loop.groups.push_back({h.get("lr"), h.get("lr_decay"), h.get("weight_decay"), h.get("eps"), false});
  m.loop.group_of = {0};
  m.loop.steps = {0.0};
  m.state_init = {h.get("initial_accumulator_value")};  // sum of squares
  m.before_step = count_steps<AdagradLoop>;
  return m;
}

// torch.optim.SGD for "gd", "momentum" and "nesterov"; Newton is its plain step (momentum 0
// as the Python side sends it) taken along A⁻¹g.
inline Method<SgdLoop> make_sgd(Direction direction, const HyperRow& h) {
  Method<SgdLoop> m;
  m.loop.groups.push_back(
      {h.get("lr"), h.get("momentum"), h.get("dampening"), h.get("weight_decay"), h.get("nesterov") != 0.0, false});
  m.loop.group_of = {0};
  m.loop.steps = {0.0};
  m.state_init = {0.0};  // momentum buffer (set from the gradient on the first step)
  m.direction = direction;
  m.before_step = count_steps<SgdLoop>;
  return m;
}

inline Method<QuickpropLoop> make_quickprop(const HyperRow& h) {
  Method<QuickpropLoop> m;
  m.loop.groups.push_back({h.get("lr"), h.get("max_growth"), false});
  m.loop.group_of = {0};
  m.state_init = {0.0, 0.0};  // previous gradient, previous step
  return m;
}

inline Method<RmspropLoop> make_rmsprop(const HyperRow& h) {
  Method<RmspropLoop> m;
  m.loop.groups.push_back({h.get("lr"), h.get("alpha"), h.get("eps"), h.get("weight_decay"), h.get("momentum"),
                           h.get("centered") != 0.0, false});
  m.loop.group_of = {0};
  m.state_init = {0.0, 0.0, 0.0};  // square_avg, grad_avg, momentum buffer
  return m;
}

inline Method<AdamLoop> make_adam(const HyperRow& h) {
  Method<AdamLoop> m;
  m.loop.groups.push_back({h.get("lr"), h.get("beta1"), h.get("beta2"), h.get("eps"), h.get("weight_decay"),
                           h.get("amsgrad") != 0.0, false, h.get("decoupled_weight_decay") != 0.0});
  m.loop.group_of = {0};
  m.loop.steps = {0.0};
  m.state_init = {0.0, 0.0, 0.0};  // exp_avg, exp_avg_sq, max_exp_avg_sq
  m.before_step = count_steps<AdamLoop>;
  return m;
}

// Method names the simulator runs.
inline std::vector<std::string> compiled_methods() {
  return {"irprop-", "rprop-",   "rprop+",   "irprop+", "backtrack", "adagrad", "gd",
          "momentum", "nesterov", "newton", "quickprop", "rmsprop", "adam"};
}

// The integration point: `use` is called with a factory HyperRow -> Method<Loop> for the
// named method. The hyper-parameter names are those the Python side sends (bowl.py, _RULES);
// booleans travel as 0 or 1.
template <class Use>
void with_method(const std::string& name, Use&& use) {
  if (name == "irprop-") return use([](const HyperRow& h) { return make_rprop(RpropVariant::irprop_minus, h); });
  if (name == "rprop-") return use([](const HyperRow& h) { return make_rprop(RpropVariant::rprop_minus, h); });
  if (name == "rprop+") return use([](const HyperRow& h) { return make_rprop(RpropVariant::rprop_plus, h); });
  if (name == "irprop+") return use([](const HyperRow& h) { return make_rprop(RpropVariant::irprop_plus, h); });
  if (name == "backtrack") return use([](const HyperRow& h) { return make_rprop(RpropVariant::backtrack, h); });
  if (name == "adagrad") return use([](const HyperRow& h) { return make_adagrad(h); });
  if (name == "gd" || name == "momentum" || name == "nesterov")
    return use([](const HyperRow& h) { return make_sgd(Direction::gradient, h); });
  if (name == "newton") return use([](const HyperRow& h) { return make_sgd(Direction::newton, h); });
  if (name == "quickprop") return use([](const HyperRow& h) { return make_quickprop(h); });
  if (name == "rmsprop") return use([](const HyperRow& h) { return make_rmsprop(h); });
  if (name == "adam") return use([](const HyperRow& h) { return make_adam(h); });
  throw std::invalid_argument("method: unknown bowl method '" + name + "'");
}
// ---------------------------------------------------------------------------------------

// LU factorisation with partial pivoting of A, for Newton's direction A⁻¹g.
class LU {
 public:
  LU() = default;
  LU(const double* A, std::int64_t n) : n_(n), lu_(A, A + n * n), piv_(static_cast<std::size_t>(n)) {
    for (std::int64_t k = 0; k < n; ++k) {
      std::int64_t p = k;
      for (std::int64_t i = k + 1; i < n; ++i)
        if (std::fabs(at(i, k)) > std::fabs(at(p, k))) p = i;
      if (at(p, k) == 0.0) throw std::invalid_argument("A: singular, Newton's direction A⁻¹g does not exist");
      piv_[k] = p;
      if (p != k)
        for (std::int64_t j = 0; j < n; ++j) std::swap(at(k, j), at(p, j));
      for (std::int64_t i = k + 1; i < n; ++i) {
        at(i, k) /= at(k, k);
        for (std::int64_t j = k + 1; j < n; ++j) at(i, j) -= at(i, k) * at(k, j);
      }
    }
  }
  // y = A⁻¹y, in place.
  void solve(double* y) const {
    for (std::int64_t k = 0; k < n_; ++k)
      if (piv_[k] != k) std::swap(y[k], y[piv_[k]]);
    for (std::int64_t i = 0; i < n_; ++i)
      for (std::int64_t j = 0; j < i; ++j) y[i] -= at(i, j) * y[j];
    for (std::int64_t i = n_ - 1; i >= 0; --i) {
      for (std::int64_t j = i + 1; j < n_; ++j) y[i] -= at(i, j) * y[j];
      y[i] /= at(i, i);
    }
  }

 private:
  double& at(std::int64_t i, std::int64_t j) { return lu_[i * n_ + j]; }
  double at(std::int64_t i, std::int64_t j) const { return lu_[i * n_ + j]; }
  std::int64_t n_ = 0;
  std::vector<double> lu_;
  std::vector<std::int64_t> piv_;
};

// Optional per-step record of a run: x (steps+1, n), f and |g| (steps+1).
template <class T>
struct Record {
  T* x = nullptr;
  double* f = nullptr;
  double* grad_norm = nullptr;
};

// Errors |x − x*| at the start, after `mid` steps and at the end; diverged when the end
// error is not below the start error, or the iterate left the finite numbers.
struct Summary {
  double err_start = 0, err_mid = 0, err_end = 0;
  bool diverged = false;
};

// residual = Ax − b (double accumulation, in order); returns |Ax − b|². With `f`, also
// *f = ½xᵀAx − bᵀx + c.
template <class T>
double evaluate(const Problem& P, const T* x, double* residual, double* f) {
  const std::int64_t n = P.n;
  double quad = 0, lin = 0, norm2 = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    double acc = 0;
    const double* row = P.A + i * n;
    for (std::int64_t j = 0; j < n; ++j) acc += row[j] * static_cast<double>(x[j]);
    if (f) {
      quad += static_cast<double>(x[i]) * acc;
      lin += P.b[i] * static_cast<double>(x[i]);
    }
    residual[i] = acc - P.b[i];
    norm2 += residual[i] * residual[i];
  }
  if (f) *f = 0.5 * quad - lin + P.c;
  return norm2;
}

template <class T>
double distance(const T* x, const double* xstar, std::int64_t n) {
  double s = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - xstar[i];
    s += d * d;
  }
  return std::sqrt(s);
}

// Run `steps` steps of `method` from x0 (`newton` must be A's factorisation when the method
// takes Newton's direction). With a record, every iterate is written; without,
// a run stops early once the iterate is no longer finite (it has diverged).
template <class T, class M>
Summary simulate(const Problem& P, const LU* newton, M method, const double* x0, const double* xstar,
                 std::int64_t steps, std::int64_t mid, const Record<T>& rec) {
  using Loop = typename M::Loop;
  const std::int64_t n = P.n;
  std::vector<T> x(x0, x0 + n), g(static_cast<std::size_t>(n));
  std::vector<std::vector<T>> states;
  std::array<void*, Loop::K> ptrs{};
  ptrs[0] = x.data();
  ptrs[1] = g.data();
  for (std::size_t k = 0; k < M::kStates; ++k) {
    states.emplace_back(static_cast<std::size_t>(n), static_cast<T>(method.state_init[k]));
    ptrs[k + 2] = states.back().data();
  }
  std::vector<double> residual(static_cast<std::size_t>(n));
  Summary s;
  s.err_start = distance(x.data(), xstar, n);
  // The loss is computed when it is recorded or the method reads it (iRprop+).
  const bool need_loss = rec.x != nullptr || method.reads_loss;
  double loss = 0, prev_loss = std::numeric_limits<double>::quiet_NaN();
  for (std::int64_t t = 0;; ++t) {
    const double norm2 = evaluate(P, x.data(), residual.data(), need_loss ? &loss : nullptr);
    if (rec.x) {
      std::copy(x.begin(), x.end(), rec.x + t * n);
      rec.f[t] = loss;
      rec.grad_norm[t] = std::sqrt(norm2);
    }
    if (t == mid) s.err_mid = distance(x.data(), xstar, n);
    if (t == steps) break;
    if (!rec.x && !(std::isfinite(norm2) && std::isfinite(loss))) {
      s.diverged = true;
      s.err_end = std::numeric_limits<double>::infinity();
      if (t < mid) s.err_mid = s.err_end;
      return s;
    }
    if (method.direction == Direction::newton) newton->solve(residual.data());
    for (std::int64_t i = 0; i < n; ++i) g[i] = static_cast<T>(residual[i]);
    if (method.before_step) method.before_step(method.loop, t + 1, loss, prev_loss);
    method.loop.template apply<T>(ptrs, 0, 0, n);
    prev_loss = loss;
  }
  s.err_end = distance(x.data(), xstar, n);
  s.diverged = !(s.err_end <= s.err_start);
  return s;
}

// Many configurations of one method, each from x0 for `steps` steps, OpenMP over the
// configurations. rows x cols hyper-parameters, row-major.
template <class T, class Factory>
void sweep(const Problem& P, const LU* newton, Factory make, const std::vector<std::string>& names,
           const double* table, std::int64_t rows, const double* x0, const double* xstar, std::int64_t steps,
           double* err_mid, double* err_end, bool* diverged, double& err_start) {
  using M = decltype(make(HyperRow{&names, table}));
  std::vector<M> methods;
  methods.reserve(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) methods.push_back(make(HyperRow{&names, table + r * names.size()}));
  err_start = distance(x0, xstar, P.n);
  const std::int64_t mid = steps / 2;
  const int threads = max_threads();
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic) num_threads(threads)
#endif
  for (std::int64_t r = 0; r < rows; ++r) {
    const Summary s = simulate<T>(P, newton, methods[r], x0, xstar, steps, mid, Record<T>{});
    err_mid[r] = s.err_mid;
    err_end[r] = s.err_end;
    diverged[r] = s.diverged;
  }
  (void)threads;
}

}  // namespace bowl
}  // namespace optbowl
