// The quadratic-bowl simulator: the optimizers' own loops on f(x) = ½xᵀAx − bᵀx + c.
//
// Every step computes the gradient g = Ax − b (accumulated in double, rounded to the
// parameter dtype), optionally turns it into Newton's direction A⁻¹g, and hands it to the
// very Loop struct the optimizer classes run (optbowl/loops/*.hpp), through Loop::apply on
// one tensor. No update formula is written here: the simulator only drives the loops.
//
// A method is a Method<Loop>: the loop set up for one group and one tensor, the initial
// value of each of its state arrays, the direction it is fed (gradient or Newton), and an
// optional hook run before every step (step counters, "did the loss go up"). The methods
// the simulator knows are the compiled rules' (optbowl/registry.hpp: each entry names its
// methods and sets one up; bowl::with_method and bowl::compiled_methods iterate them).
//
// simulate() runs one configuration and can record it; sweep() runs many of one method
// side by side as SIMD lanes (simulate_lanes: one Loop::run per coordinate over all the
// configurations, each with its own hyper-parameters through loops/lanes.hpp), with
// exactly the arithmetic of lone runs, in blocks spread over the threads.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "optbowl/loops/lanes.hpp"
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

// Where the names a maker asked for were found, by the address of the literal it passed:
// one per thread of a sweep, so that its rows look each name up by a string compare once.
struct ColumnMemo {
  std::array<const char*, 16> name{};
  std::array<std::size_t, 16> column{};
  std::size_t size = 0;
};

// The hyper-parameters of one configuration, by name.
struct HyperRow {
  const std::vector<std::string>* names;
  const double* values;
  ColumnMemo* memo = nullptr;

  double get(const char* name) const {
    if (memo)
      for (std::size_t k = 0; k < memo->size; ++k)
        if (memo->name[k] == name) return values[memo->column[k]];
    for (std::size_t k = 0; k < names->size(); ++k)
      if ((*names)[k] == name) {
        if (memo && memo->size < memo->name.size()) {
          memo->name[memo->size] = name;
          memo->column[memo->size++] = k;
        }
        return values[k];
      }
    throw std::invalid_argument(std::string("hyper: missing hyper-parameter '") + name + "'");
  }
};

// What the loop is fed, and how its learning rate is set. gradient and newton: g = Ax − b
// or A⁻¹g, at the configured learning rate. The others are not element-wise rules: each
// step they compute one scalar from the whole vector (and CG a direction), then hand the
// loop (a plain gradient step, x −= lr·g, whose Method sets set_lr) the direction with lr
// set to that scalar:
//   steepest: exact line search along g, lr = gᵀg / gᵀAg;
//   cg:       conjugate gradient (Fletcher–Reeves), d = g + (|g|²/|g_prev|²)·d_prev,
//             lr = gᵀd / dᵀAd, the loop fed d;
//   polyak:   Polyak's step with known f*, lr = (f(x) − f*) / |g|².
enum class Direction : std::uint8_t { gradient, newton, steepest, cg, polyak };

inline bool is_line_search(Direction d) {
  return d == Direction::steepest || d == Direction::cg || d == Direction::polyak;
}

template <class Loop, class = void>
struct HasLossIncreased : std::false_type {};
template <class Loop>
struct HasLossIncreased<Loop, std::void_t<decltype(std::declval<Loop&>().loss_increased)>> : std::true_type {
};

template <class LoopT>
struct Method {
  using Loop = LoopT;
  static constexpr std::size_t kStates = Loop::K - 2;  // pointers after param and grad
  Loop loop;
  std::array<double, kStates> state_init{};  // initial value of every state array
  Direction direction = Direction::gradient;
  double f_star = 0.0;  // Polyak's step: the minimum value of f
  // Run before step t (t = 1, 2, ...) with the loss at the current point and at the
  // point before it (NaN at t = 1).
  void (*before_step)(Loop&, std::int64_t t, double loss, double prev_loss) = nullptr;
  bool reads_loss = false;  // before_step uses the losses (else they are not computed)
  // before_step changes what differs between configurations of a sweep (the loop's
  // hyper-parameters beyond the step count, or a loop's loss_increased flag), not only
  // the step count.
  bool hook_per_lane = false;
  // The line searches' learning rate (Direction::steepest, cg, polyak): sets it on the loop.
  void (*set_lr)(Loop&, double lr) = nullptr;

  // A loop's "the loss went up" (its loss_increased member, where it has one), as a sweep
  // lane's flag (loops/lanes.hpp).
  std::uint8_t lane_revert() const {
    if constexpr (HasLossIncreased<Loop>::value) return loop.loss_increased ? 1 : 0;
    return 0;
  }
};

// A sweep's blocks: at most kMaxLanes configurations, and their arrays (lanes x n
// coordinates each) together about kBlockBytes, so that they stay in a core's cache.
constexpr std::int64_t kMaxLanes = 512;
constexpr std::int64_t kBlockBytes = 512 * 1024;

// ---------------------------------------------------------------------------------------
// Setting up a method from one row of hyper-parameters: a registry entry's set_bowl sets
// every field of a Method (reset, then the optimizer's Loop for one group and one tensor),
// reusing the Method's vectors, so that a sweep fills one Method per thread without
// allocating.

template <class Loop>
void reset(Method<Loop>& m) {
  m.state_init = {};
  m.direction = Direction::gradient;
  m.before_step = nullptr;
  m.reads_loss = false;
  m.hook_per_lane = false;
  m.set_lr = nullptr;
}

template <class Loop, class Group>
void one_group(Loop& loop, const Group& group) {
  loop.groups.assign(1, group);
  loop.group_of.assign(1, 0);
}

// The optimizers whose loop keeps a step count (bias corrections, torch's first momentum
// buffer) are told it before every step.
template <class Loop>
void count_steps(Loop& loop, std::int64_t t, double, double) {
  loop.steps[0] = static_cast<double>(t);
}

// The same for a loop whose group holds per-parameter scalar state (registry.hpp's
// scalar_state): before step t > 1 the state is advanced past step t - 1, as an optimizer
// stores it after each step.
template <class Loop>
void count_steps_and_advance(Loop& loop, std::int64_t t, double, double) {
  loop.steps[0] = static_cast<double>(t);
  if (t > 1) loop.groups[0].after_step(static_cast<double>(t - 1));
}

// A method's factory: make(row) returns a new Method, make(m, row) sets an existing one.
template <class M, class Set>
struct Maker {
  using Method = M;
  Set set;
  M operator()(const HyperRow& h) const {
    M m;
    set(m, h);
    return m;
  }
  void operator()(M& m, const HyperRow& h) const { set(m, h); }
};

template <class Loop, class Set>
Maker<Method<Loop>, Set> maker(Set set) {
  return {set};
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
  // y = A⁻¹y in place, for `lanes` right-hand sides side by side (y[i * lanes + c] is
  // entry i of the c-th); each is solved with the same operations in the same order.
  void solve(double* y, std::int64_t lanes = 1) const {
    const std::int64_t L = lanes;
    for (std::int64_t k = 0; k < n_; ++k)
      if (piv_[k] != k)
        for (std::int64_t c = 0; c < L; ++c) std::swap(y[k * L + c], y[piv_[k] * L + c]);
    for (std::int64_t i = 0; i < n_; ++i)
      for (std::int64_t j = 0; j < i; ++j) {
        const double a = at(i, j);
        for (std::int64_t c = 0; c < L; ++c) y[i * L + c] -= a * y[j * L + c];
      }
    for (std::int64_t i = n_ - 1; i >= 0; --i) {
      for (std::int64_t j = i + 1; j < n_; ++j) {
        const double a = at(i, j);
        for (std::int64_t c = 0; c < L; ++c) y[i * L + c] -= a * y[j * L + c];
      }
      const double d = at(i, i);
      for (std::int64_t c = 0; c < L; ++c) y[i * L + c] /= d;
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

// Several configurations side by side ("lanes"): x[j * lanes + c] is coordinate j of
// configuration c, and so for every array of a run. Each lane's arithmetic is exactly
// what it would be alone (lanes = 1), in the same order; lanes only let the compiler
// vectorise across configurations.

// N lanes of doubles (D) and floats (F) as one value: N = 1 is a plain double. Wider ones
// are values of GCC's (and Clang's) vector extension, whose + and * are the lane-wise IEEE
// operations; N should be the register width of the ISA they are compiled for: 8 for
// AVX-512, 4 for AVX2, 2 for SSE2 (wider ones go through memory). Written out like this,
// the lanes cannot be vectorised the wrong way: GCC, left to plain loops over 8 lanes,
// vectorised the loop over j instead, with an in-order reduction per lane, 8x slower.
template <int N>
struct Vecs;
template <>
struct Vecs<1> {
  typedef double D;
  typedef float F;
};
#if defined(__GNUC__) || defined(__clang__)
#define OPTBOWL_VECTOR_EXTENSIONS 1
template <>
struct Vecs<8> {
  typedef double D __attribute__((vector_size(64)));
  typedef float F __attribute__((vector_size(32)));
};
template <>
struct Vecs<4> {
  typedef double D __attribute__((vector_size(32)));
  typedef float F __attribute__((vector_size(16)));
};
template <>
struct Vecs<2> {
  typedef double D __attribute__((vector_size(16)));
  typedef float F __attribute__((vector_size(8)));
};
#endif

// N lanes of x (double or float) as doubles, and N doubles stored as R. (By reference: a
// vector passed or returned by value would take an ABI that depends on the ISA that a
// non-inlined copy was compiled for.)
template <int N, class T>
inline void load_lanes(typename Vecs<N>::D& v, const T* p) {
  if constexpr (N == 1) {
    v = static_cast<double>(*p);
  } else if constexpr (std::is_same_v<T, double>) {
    std::memcpy(&v, p, sizeof v);
  } else {
    typename Vecs<N>::F w;
    std::memcpy(&w, p, sizeof w);
    v = __builtin_convertvector(w, typename Vecs<N>::D);
  }
}

template <int N, class R>
inline void store_lanes(R* p, const typename Vecs<N>::D& v) {
  if constexpr (N == 1) {
    *p = static_cast<R>(v);
  } else if constexpr (std::is_same_v<R, double>) {
    std::memcpy(p, &v, sizeof v);
  } else {
    const typename Vecs<N>::F w = __builtin_convertvector(v, typename Vecs<N>::F);
    std::memcpy(p, &w, sizeof w);
  }
}

// residual = Ax − b (accumulated in double over j in order, stored as R: double, or the
// parameters' dtype when it is the gradient itself) and norm2 = Σ rᵢ·0 (0 while every
// rᵢ is finite, else NaN: whether the lane has left the finite numbers, with no square
// to overflow while x is still finite; norms are taken by scaled_norm) for the V * N
// lanes from c0; with `f`, also f = ½xᵀAx − bᵀx + c. Rows go RB at a time (then 2, then 1):
// the RB x V accumulators stay in registers while j runs, each load of x_j serves RB rows
// and each a_ij V vectors. Each lane's arithmetic, and its order, is that of a lone run
// (one lane: evaluate_tile<1, 1, 4>).
template <int N, int V, int RB, class T, class R>
void evaluate_tile(const Problem& P, const T* x, std::int64_t lanes, std::int64_t c0, R* residual,
                   double* norm2, double* f) {
  using D = typename Vecs<N>::D;
  const std::int64_t n = P.n, L = lanes;
  D nrm[V], quad[V], lin[V];
  for (int v = 0; v < V; ++v) nrm[v] = quad[v] = lin[v] = D{};
  auto rows = [&](auto rb, std::int64_t i0) {
    constexpr int B = decltype(rb)::value;
    D acc[B][V];
    for (int k = 0; k < B; ++k)
      for (int v = 0; v < V; ++v) acc[k][v] = D{};
    for (std::int64_t j = 0; j < n; ++j) {
      const T* xj = x + j * L + c0;
      D xv[V];
      for (int v = 0; v < V; ++v) load_lanes<N>(xv[v], xj + N * v);
      for (int k = 0; k < B; ++k) {
        const double a = P.A[(i0 + k) * n + j];
        for (int v = 0; v < V; ++v) acc[k][v] += a * xv[v];
      }
    }
    for (int k = 0; k < B; ++k) {
      const std::int64_t i = i0 + k;
      const double bi = P.b[i];
      const T* xi = x + i * L + c0;
      R* r = residual + i * L + c0;
      for (int v = 0; v < V; ++v) {
        if (f) {
          D xiv;
          load_lanes<N>(xiv, xi + N * v);
          quad[v] += xiv * acc[k][v];
          lin[v] += bi * xiv;
        }
        const D res = acc[k][v] - bi;
        store_lanes<N>(r + N * v, res);
        nrm[v] += res * 0.0;
      }
    }
  };
  std::int64_t i = 0;
  for (; i + RB <= n; i += RB) rows(std::integral_constant<int, RB>{}, i);
  if constexpr (RB > 2)
    for (; i + 2 <= n; i += 2) rows(std::integral_constant<int, 2>{}, i);
  for (; i < n; ++i) rows(std::integral_constant<int, 1>{}, i);
  for (int v = 0; v < V; ++v) {
    std::memcpy(norm2 + c0 + N * v, &nrm[v], sizeof nrm[v]);
    if (f) {
      const D fv = 0.5 * quad[v] - lin[v] + P.c;
      std::memcpy(f + c0 + N * v, &fv, sizeof fv);
    }
  }
}

// evaluate_tile<N, V, RB> over lanes c .. while N * V of them are left; returns the next c.
template <int N, int V, int RB, class T, class R>
std::int64_t evaluate_tiles(const Problem& P, const T* x, std::int64_t lanes, std::int64_t c, R* residual,
                            double* norm2, double* f) {
  for (; c + N * V <= lanes; c += N * V) evaluate_tile<N, V, RB>(P, x, lanes, c, residual, norm2, f);
  return c;
}

// evaluate_tile over every lane. With vector extensions: tiles sized to the registers of
// the loops' ISA (AVX-512: 32 zmm, 6 rows x 4 vectors of 8 lanes as accumulators, then 8
// rows x 1; AVX2: 16 ymm, 6 rows x 2 vectors of 4; else 16 xmm, 2 rows x 4 vectors of 2),
// then single lanes. Measured on n = 100 and 128 lanes, one thread of an AMD EPYC (Zen 5),
// in G multiply-adds/s: AVX-512 46-58 (4 rows: 44; this core's unfused peak is about 65);
// AVX2 21-26. Plain loops over 32-lane tiles ran at 13 with AVX2 (spilled), and over
// 8-lane tiles at 4-6 on either ISA.
template <class T, class R>
void evaluate(const Problem& P, const T* x, std::int64_t lanes, R* residual, double* norm2, double* f) {
  std::int64_t c = 0;
#ifdef OPTBOWL_VECTOR_EXTENSIONS
  switch (isa_setting()) {
    case Isa::avx512:
      c = evaluate_tiles<8, 4, 6>(P, x, lanes, c, residual, norm2, f);
      c = evaluate_tiles<8, 1, 8>(P, x, lanes, c, residual, norm2, f);
      break;
    case Isa::avx2: c = evaluate_tiles<4, 2, 6>(P, x, lanes, c, residual, norm2, f); break;
    default: c = evaluate_tiles<2, 4, 2>(P, x, lanes, c, residual, norm2, f); break;
  }
#endif
  evaluate_tiles<1, 1, 4>(P, x, lanes, c, residual, norm2, f);
}

// Rows i .. i + RB − 1 of evaluate for a diagonal A, in O(1) per lane and row: residual
// r = a_ii x_i − b_i (row k at r + k·lanes) and r·0 added to norm2 (and, with f,
// the terms of f added to quad and lin), for each lane row after row as evaluate adds
// them. A dense row sums a_ii x_i and zeros, which is +0 + a_ii x_i whenever every x_j is
// finite. Once some x_j is not, the dense sum and this one may differ (NaN against inf),
// but both give a non-finite norm2, which is all a sweep reads of that step before it
// marks the lane diverged. Two rows at a time read and write norm2 half as often.
template <int RB, class T, class R>
void evaluate_diagonal_rows(const Problem& P, std::int64_t i, const T* OPTBOWL_RESTRICT xi,
                            std::int64_t lanes, R* OPTBOWL_RESTRICT r, double* OPTBOWL_RESTRICT norm2,
                            bool f, double* OPTBOWL_RESTRICT quad, double* OPTBOWL_RESTRICT lin) {
  const std::int64_t L = lanes;
  double a[RB], bi[RB];
  for (int k = 0; k < RB; ++k) {
    a[k] = P.A[(i + k) * P.n + i + k];
    bi[k] = P.b[i + k];
  }
  OPTBOWL_IVDEP
  for (std::int64_t c = 0; c < L; ++c) {
    double nrm = norm2[c];
    for (int k = 0; k < RB; ++k) {
      const double xv = static_cast<double>(xi[k * L + c]);
      const double acc = 0.0 + a[k] * xv;
      if (f) {
        quad[c] += xv * acc;
        lin[c] += bi[k] * xv;
      }
      const double res = acc - bi[k];
      r[k * L + c] = static_cast<R>(res);
      nrm += res * 0.0;
    }
    norm2[c] = nrm;
  }
}

// evaluate for a diagonal A, in O(n) per lane (evaluate_diagonal_rows over every row).
template <class T, class R>
void evaluate_diagonal(const Problem& P, const T* x, std::int64_t lanes, R* residual, double* norm2,
                       double* f, double* quad, double* lin) {
  const std::int64_t n = P.n, L = lanes;
  for (std::int64_t c = 0; c < L; ++c) norm2[c] = 0.0;
  if (f)
    for (std::int64_t c = 0; c < L; ++c) quad[c] = lin[c] = 0.0;
  std::int64_t i = 0;
  for (; i + 2 <= n; i += 2)
    evaluate_diagonal_rows<2>(P, i, x + i * L, L, residual + i * L, norm2, f != nullptr, quad, lin);
  if (i < n) evaluate_diagonal_rows<1>(P, i, x + i * L, L, residual + i * L, norm2, f != nullptr, quad, lin);
  if (f)
    for (std::int64_t c = 0; c < L; ++c) f[c] = 0.5 * quad[c] - lin[c] + P.c;
}

inline bool is_diagonal(const Problem& P) {
  for (std::int64_t i = 0; i < P.n; ++i)
    for (std::int64_t j = 0; j < P.n; ++j)
      if (i != j && P.A[i * P.n + j] != 0.0) return false;
  return true;
}

// |x − x*| of every lane, scaled by the largest |xᵢ − x*ᵢ| so that no square underflows
// or overflows: the norm is right from the smallest subnormal to the largest double
// (NaN if a difference is NaN, ∞ if one is infinite).
template <class T>
void distance(const T* x, const double* xstar, std::int64_t n, std::int64_t lanes, double* out) {
  const std::int64_t L = lanes;
  std::vector<double> scale(static_cast<std::size_t>(L), 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t c = 0; c < L; ++c) {
      const double d = std::fabs(static_cast<double>(x[i * L + c]) - xstar[i]);
      if (!(d <= scale[c]) && !std::isnan(scale[c])) scale[c] = d;  // a NaN stays
    }
  for (std::int64_t c = 0; c < L; ++c) out[c] = 0.0;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t c = 0; c < L; ++c) {
      const double d = (static_cast<double>(x[i * L + c]) - xstar[i]) / scale[c];
      out[c] += d * d;
    }
  for (std::int64_t c = 0; c < L; ++c) {
    const double s = scale[c];
    out[c] = (s == 0.0 || !std::isfinite(s)) ? s : s * std::sqrt(out[c]);
  }
}

// |v| for a vector of doubles, scaled as distance() is.
inline double scaled_norm(const double* v, std::int64_t n) {
  const std::vector<double> origin(static_cast<std::size_t>(n), 0.0);
  double out = 0;
  distance(v, origin.data(), n, 1, &out);
  return out;
}

// The largest |u[i]| and |v[i]| (the scales of the two forms below); false if either is 0.
inline bool max_abs(const double* u, const double* v, std::int64_t n, double& su, double& sv) {
  su = sv = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    su = std::max(su, std::fabs(u[i]));
    sv = std::max(sv, std::fabs(v[i]));
  }
  return su != 0.0 && sv != 0.0;
}

// uᵀAv for the bowl's A, each vector scaled by its largest entry first (the scales are
// returned through su, sv: uᵀAv = su·sv·(the result)), so that line searches neither
// underflow nor overflow while x is finite.
inline double scaled_form(const Problem& P, const double* u, const double* v, double& su, double& sv) {
  const std::int64_t n = P.n;
  if (!max_abs(u, v, n, su, sv)) return 0.0;
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    double row = 0.0;
    for (std::int64_t j = 0; j < n; ++j) row += P.A[i * n + j] * (v[j] / sv);
    sum += (u[i] / su) * row;
  }
  return sum;
}

// uᵀv, scaled alike.
inline double scaled_dot(const double* u, const double* v, std::int64_t n, double& su, double& sv) {
  if (!max_abs(u, v, n, su, sv)) return 0.0;
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) sum += (u[i] / su) * (v[i] / sv);
  return sum;
}

template <class T>
double distance(const T* x, const double* xstar, std::int64_t n) {
  double d = 0;
  distance(x, xstar, n, 1, &d);
  return d;
}

// Gradient noise of a run: the gradient of step t (t = 0, 1, ...) gets sigma·xi[t·n + i]
// added to coordinate i (xi: standard normal draws, steps × n). Null: no noise.
struct Noise {
  const double* xi = nullptr;
  double sigma = 0.0;
};

// The learning rate of a line-search method (Direction::steepest, cg, polyak) at this
// step, and for cg the direction in `dir` (its previous value on entry; prev_norm is
// |g_prev|, 0 at the first step). g is the (noisy) gradient, loss f(x).
inline double line_search_lr(const Problem& P, Direction direction, double f_star, const double* g, double loss,
                             std::vector<double>& dir, double& prev_norm) {
  const std::int64_t n = P.n;
  double su = 0, sv = 0;
  if (direction == Direction::steepest) {
    const double form = scaled_form(P, g, g, su, sv);
    const double dot = scaled_dot(g, g, n, su, sv);
    return form > 0.0 ? dot / form : 0.0;  // g = 0, or g in the null space of A: stay
  }
  const double norm = scaled_norm(g, n);
  if (direction == Direction::polyak) {
    if (!(norm > 0.0)) return 0.0;
    return std::max(loss - f_star, 0.0) / norm / norm;
  }
  // cg: Fletcher–Reeves (on a quadratic with exact line searches the same as
  // Hestenes–Stiefel and Polak–Ribière).
  const double beta = prev_norm > 0.0 ? (norm / prev_norm) * (norm / prev_norm) : 0.0;
  for (std::int64_t i = 0; i < n; ++i) dir[i] = g[i] + beta * dir[i];
  prev_norm = norm;
  double sd = 0;
  const double form = scaled_form(P, dir.data(), dir.data(), sd, sv);
  const double dot = scaled_dot(g, dir.data(), n, su, sv);
  return form > 0.0 ? (su / sd) * dot / form : 0.0;
}

// Run `steps` steps of `method` from x0 (`newton` must be A's factorisation when the method
// takes Newton's direction). With a record, every iterate is written; without,
// a run stops early once the iterate is no longer finite (it has diverged).
template <class T, class M>
Summary simulate(const Problem& P, const LU* newton, M method, const double* x0, const double* xstar,
                 std::int64_t steps, std::int64_t mid, const Record<T>& rec, const Noise& noise = {}) {
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
  std::vector<double> cg_dir(method.direction == Direction::cg ? static_cast<std::size_t>(n) : 0, 0.0);
  double cg_prev_norm = 0.0;
  Summary s;
  s.err_start = distance(x.data(), xstar, n);
  // The loss is computed when it is recorded or the method reads it (a loss_increased hook, Polyak).
  const bool need_loss = rec.x != nullptr || method.reads_loss;
  double loss = 0, prev_loss = std::numeric_limits<double>::quiet_NaN();
  for (std::int64_t t = 0;; ++t) {
    double nonfinite = 0;  // 0 while Ax − b is finite (evaluate's norm2)
    evaluate(P, x.data(), 1, residual.data(), &nonfinite, need_loss ? &loss : nullptr);
    if (rec.x) {
      std::copy(x.begin(), x.end(), rec.x + t * n);
      rec.f[t] = loss;
      rec.grad_norm[t] = scaled_norm(residual.data(), n);
    }
    if (t == mid) s.err_mid = distance(x.data(), xstar, n);
    if (t == steps) break;
    if (!rec.x && !(std::isfinite(nonfinite) && std::isfinite(loss))) {
      s.diverged = true;
      s.err_end = std::numeric_limits<double>::infinity();
      if (t < mid) s.err_mid = s.err_end;
      return s;
    }
    if (noise.xi)
      for (std::int64_t i = 0; i < n; ++i) residual[i] += noise.sigma * noise.xi[t * n + i];
    if (method.direction == Direction::newton) newton->solve(residual.data());
    {
      if (method.set_lr != nullptr && is_line_search(method.direction)) {
        method.set_lr(method.loop, line_search_lr(P, method.direction, method.f_star, residual.data(), loss,
                                                  cg_dir, cg_prev_norm));
        if (method.direction == Direction::cg) std::copy(cg_dir.begin(), cg_dir.end(), residual.begin());
      }
    }
    for (std::int64_t i = 0; i < n; ++i) g[i] = static_cast<T>(residual[i]);
    if (method.before_step) method.before_step(method.loop, t + 1, loss, prev_loss);
    apply_with_torch_tail<T>(method.loop, ptrs, n);  // as an optimizer's step, tail included
    prev_loss = loss;
  }
  s.err_end = distance(x.data(), xstar, n);
  s.diverged = !(s.err_end <= s.err_start);
  return s;
}

// Whether simulate_lanes takes each step in one pass over the coordinates: with a diagonal
// A, for a method that reads neither the loss nor Newton's direction.
template <class M>
bool steps_in_one_pass(const M& method, bool diagonal) {
  return diagonal && method.direction != Direction::newton && !method.reads_loss;
}

// A block's arrays in one allocation, each on cache lines of its own and at a different
// offset within a 4 KiB page: their lengths are often multiples of 4 KiB, and a load whose
// address agrees with an older store's in the low 12 bits only may wait for it (4K
// aliasing). reserve() every array, allocate(), then get() each.
class Arena {
 public:
  template <class U>
  std::size_t reserve(std::size_t count) {
    const std::size_t k = offsets_.size(), page = 4096;
    const std::size_t start = (total_ + page - 1) / page * page + (k * 7 * 64) % page;
    offsets_.push_back(start);
    total_ = start + count * sizeof(U);
    return k;
  }
  // Uninitialised: every array is written before it is read.
  void allocate() { storage_.reset(new double[(total_ + 2 * 64) / sizeof(double)]); }
  template <class U>
  U* get(std::size_t k) {
    const std::uintptr_t p = reinterpret_cast<std::uintptr_t>(storage_.get());
    return reinterpret_cast<U*>((p + 63) / 64 * 64 + offsets_[k]);
  }

 private:
  std::vector<std::size_t> offsets_;
  std::size_t total_ = 0;
  std::unique_ptr<double[]> storage_;
};

// 0 when every a[c] (and b[c], with b) is finite, else NaN: x * 0 is 0 for a finite x and
// NaN for inf or NaN, and the sum is 0 exactly when every term is, in any order (so it may
// be vectorised).
inline double zero_if_finite(const double* a, const double* b, std::int64_t n) {
  double sum = 0.0;
  if (b) {
#ifdef _OPENMP
#pragma omp simd reduction(+ : sum)
#endif
    for (std::int64_t c = 0; c < n; ++c) sum += a[c] * 0.0 + b[c] * 0.0;
  } else {
#ifdef _OPENMP
#pragma omp simd reduction(+ : sum)
#endif
    for (std::int64_t c = 0; c < n; ++c) sum += a[c] * 0.0;
  }
  return sum;
}

// One block of configurations of one method run side by side, as lanes (see evaluate):
// each step computes every lane's gradient, then makes one call per coordinate of the
// method's Loop::run over all lanes, with every lane's own hyper-parameters
// (loops/lanes.hpp). The configurations of a block agree on the flags the loop takes as
// constants (Loop::lane_key). values_in[k * lanes + c] is numeric field k of
// configuration c and state_init[k * lanes + c] the initial value of its state array k.
// methods[0] is the first configuration's Method; when its hook changes what differs
// between lanes (hook_per_lane), methods holds one per lane and the fields are rewritten
// before every step. Every lane computes exactly what simulate() computes for it alone; a
// lane whose iterate stops being finite is marked diverged, as simulate() stops there, and
// its later values are ignored. With `diagonal` (A is), the gradient is
// evaluate_diagonal's, which gives the same bits. The hot parts (the gradient, Newton's
// solve, the loop calls) run through with_loop_isa, each compiled on its own for the
// loops' ISA; the block's arrays are laid out by an Arena.
template <class T, class M>
void simulate_lanes(const Problem& P, bool diagonal, const LU* newton, M* methods, std::int64_t lanes,
                    const T* values_in, const double* state_init, const double* x0, const double* xstar,
                    std::int64_t steps, std::int64_t mid, double err_start, double* err_mid, double* err_end,
                    bool* diverged) {
  using Loop = typename M::Loop;
  using H = decltype(methods[0].loop.template hyper<T>(0));
  constexpr std::size_t fields = lane_field_count<H>();
  const std::int64_t n = P.n, L = lanes;
  const std::size_t nl = static_cast<std::size_t>(n * L), l = static_cast<std::size_t>(L);
  M& first = methods[0];
  const bool newton_step = first.direction == Direction::newton;
  const bool need_loss = first.reads_loss;
  // With a diagonal A, coordinate j's gradient needs only x_j. When the method reads
  // neither the loss nor Newton's direction, a step is then one pass over the coordinates:
  // the gradient of coordinates j and j + 1 is computed into two rows just before the loop
  // steps them, while x_j and x_j+1 are still in cache. The lanes that pass finds not
  // finite are marked after it, as diverged at that step.
  const bool one_pass = steps_in_one_pass(first, diagonal);
  Arena arena;
  const std::size_t ax = arena.reserve<T>(nl), ag = arena.reserve<T>(one_pass ? 2 * l : nl);
  const std::size_t as = arena.reserve<T>(nl * M::kStates);
  const std::size_t ar = arena.reserve<double>(newton_step ? nl : 0), an = arena.reserve<double>(l);
  const std::size_t al = arena.reserve<double>(2 * l);
  const std::size_t aq = arena.reserve<double>(diagonal && need_loss ? 2 * l : 0);
  // The numeric hyper-parameters, field k at values[k * vs]: a stride of whole cache lines
  // plus 7, so that the fields too start at different offsets within a page.
  const std::size_t line = 64 / sizeof(T), vs = (l + line - 1) / line * line + 7 * line;
  const std::size_t av = arena.reserve<T>(fields * vs);
  arena.allocate();
  T* const values = arena.get<T>(av);
  for (std::size_t k = 0; k < fields; ++k)
    std::copy(values_in + k * l, values_in + (k + 1) * l, values + k * vs);
  T* const x = arena.get<T>(ax);
  T* const g = arena.get<T>(ag);
  double* const residual = arena.get<double>(ar);
  double* const norm2 = arena.get<double>(an);
  double* loss = arena.get<double>(al);
  double* prev_loss = loss + l;
  double* const quad = arena.get<double>(aq);
  double* const lin = quad + (diagonal && need_loss ? l : 0);
  for (std::int64_t j = 0; j < n; ++j) std::fill(x + j * L, x + (j + 1) * L, static_cast<T>(x0[j]));
  std::array<void*, Loop::K> ptrs{};
  std::array<T*, M::kStates> states{};
  for (std::size_t k = 0; k < M::kStates; ++k) {  // every coordinate's row is the same
    states[k] = arena.get<T>(as) + k * nl;
    for (std::int64_t c = 0; c < L; ++c) states[k][c] = static_cast<T>(state_init[k * l + c]);
    for (std::int64_t j = 1; j < n; ++j) std::copy(states[k], states[k] + L, states[k] + j * L);
  }
  std::fill(loss, loss + l, 0.0);
  std::fill(prev_loss, prev_loss + l, std::numeric_limits<double>::quiet_NaN());
  std::vector<double> dist(l);
  std::vector<std::uint8_t> reverts(l, first.lane_revert()), alive(l, 1);
  LaneHyper<T> lane_hyper;
  for (std::size_t k = 0; k < fields; ++k) lane_hyper.values[k] = values + k * vs;
  lane_hyper.reverts = reverts.data();
  std::int64_t live = L;
  // Lanes whose |Ax − b|² (or loss) at step t is not finite: as simulate(), which stops
  // there. True when none is left; else the diverged lanes run on, their values unused.
  auto all_diverged = [&](std::int64_t t, const double* f) {
    double any_nonfinite = 0.0;
    with_loop_isa([&] { any_nonfinite = zero_if_finite(norm2, f, L); });
    if (any_nonfinite != 0.0)
      for (std::int64_t c = 0; c < L; ++c)
        if (alive[c] && !(std::isfinite(norm2[c]) && std::isfinite(loss[c]))) {
          alive[c] = 0;
          --live;
          diverged[c] = true;
          err_end[c] = std::numeric_limits<double>::infinity();
          if (t < mid) err_mid[c] = err_end[c];
        }
    return live == 0;
  };
  auto record_mid = [&] {
    with_loop_isa([&] { distance(x, xstar, n, L, dist.data()); });
    for (std::int64_t c = 0; c < L; ++c)
      if (alive[c]) err_mid[c] = dist[c];
  };
  // Before step t + 1. The hook counts steps (the same for every lane) and, for some
  // methods, changes what differs between lanes: their hyper-parameters (bias
  // corrections, decayed learning rates) or a loop's "the loss went up"; those run it on
  // every lane.
  auto run_hook = [&](std::int64_t t) {
    if (first.before_step) {
      const std::int64_t hooked = first.hook_per_lane ? L : 1;
      for (std::int64_t c = 0; c < hooked; ++c)
        methods[c].before_step(methods[c].loop, t + 1, loss[c], prev_loss[c]);
    }
    if (first.hook_per_lane)
      for (std::int64_t c = 0; c < L; ++c) {
        store_lane(methods[c].loop.template hyper<T>(0), values, static_cast<std::int64_t>(vs), c);
        reverts[c] = methods[c].lane_revert();
      }
  };
  // The loop's step of coordinate j of every lane, fed the gradient row gj.
  auto step_coordinate = [&](const H& h, std::int64_t j, T* gj) {
    ptrs[0] = x + j * L;
    ptrs[1] = gj;
    for (std::size_t k = 0; k < M::kStates; ++k) ptrs[k + 2] = states[k] + j * L;
    using FirstLoop = std::decay_t<decltype(first.loop)>;
    if constexpr (has_torch_tail<FirstLoop>::value)  // coordinate j of an optimizer's tail
      if (j >= torch_tail_begin<T>(n) && first.loop.torch_tail(0))
        return first.loop.template run_tail<T>(ptrs, 0, 0, L, h, lane_hyper);
    first.loop.template run<T>(ptrs, 0, 0, L, h, lane_hyper);
  };
  for (std::int64_t t = 0;; ++t) {
    double* const f = need_loss ? loss : nullptr;
    // Newton's solve needs the residual in double; else the gradient, rounded to T, goes
    // straight into g. (In one pass, it is computed in the pass.)
    if (!one_pass)
      with_loop_isa([&] {
        auto gradient = [&](auto* out) {
          if (diagonal)
            evaluate_diagonal(P, x, L, out, norm2, f, quad, lin);
          else
            evaluate(P, x, L, out, norm2, f);
        };
        if (newton_step)
          gradient(residual);
        else
          gradient(g);
      });
    if (t == mid) record_mid();
    if (t == steps) break;
    if (!one_pass && all_diverged(t, f)) return;
    if (newton_step) {
      with_loop_isa([&] { newton->solve(residual, L); });
      for (std::size_t e = 0; e < nl; ++e) g[e] = static_cast<T>(residual[e]);
    }
    run_hook(t);
    const H h = first.loop.template hyper<T>(0);
    // The loop over coordinates is written once, so that each loop is compiled into it once.
    with_loop_isa([&] {
      if (one_pass) std::fill(norm2, norm2 + L, 0.0);
      for (std::int64_t j = 0; j < n; j += 2) {
        const std::int64_t rows = std::min<std::int64_t>(2, n - j);
        T* gj = g + j * L;
        if (one_pass) {  // two rows of the gradient, then their two steps
          gj = g;
          if (rows == 2)
            evaluate_diagonal_rows<2>(P, j, x + j * L, L, g, norm2, false, nullptr, nullptr);
          else
            evaluate_diagonal_rows<1>(P, j, x + j * L, L, g, norm2, false, nullptr, nullptr);
        }
        for (std::int64_t k = 0; k < rows; ++k) step_coordinate(h, j + k, gj + k * L);
      }
    });
    if (one_pass && all_diverged(t, nullptr)) return;
    if (need_loss) std::swap(prev_loss, loss);
  }
  with_loop_isa([&] { distance(x, xstar, n, L, dist.data()); });
  for (std::int64_t c = 0; c < L; ++c)
    if (alive[c]) {
      err_end[c] = dist[c];
      diverged[c] = !(dist[c] <= err_start);
    }
}

// body(i) for i in [0, n) on `threads` threads (the caller and the steps' helper pool,
// multi_tensor.hpp), handed out one at a time; the first exception a body throws is
// rethrown once the loop is over. (Not OpenMP: GCC's OpenMP runtime cannot be used in a
// child forked after its threads ran, and it kept threads of its own besides the pool's.)
template <class Body>
void parallel_for(std::int64_t n, int threads, Body&& body) {
  std::exception_ptr failed;
  std::mutex failed_mutex;
  auto task = [&](std::int64_t i) {
    try {
      body(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(failed_mutex);
      if (!failed) failed = std::current_exception();
    }
  };
  const int helpers = static_cast<int>(std::min<std::int64_t>(threads - 1, n - 1));
  if (helpers <= 0) {
    for (std::int64_t i = 0; i < n; ++i) task(i);
  } else {
    HelperPool::instance().run(n, helpers, task);
  }
  if (failed) std::rethrow_exception(failed);
}

// The indices of `key` in the order of their keys, equal keys in index order, by a counting
// sort: a loop's lane key is a few flag bits (Loop::lane_key, below 64). With
// std::stable_sort, the part of a 4096-configuration sweep between the set-up and the
// blocks took 16-17 us.
inline std::vector<std::int64_t> stable_order(const std::vector<std::uint32_t>& key) {
  const std::size_t n = key.size();
  const std::uint32_t top = n ? *std::max_element(key.begin(), key.end()) : 0;
  if (top >= 1024) throw std::logic_error("sweep: a lane key above 1023 (lane keys are flag bits)");
  std::vector<std::size_t> start(top + 2, 0);  // then start[k]: where key k's indices go
  std::vector<std::int64_t> order(n);
  for (std::size_t r = 0; r < n; ++r) ++start[key[r] + 1];
  for (std::uint32_t k = 0; k <= top; ++k) start[k + 1] += start[k];
  for (std::size_t r = 0; r < n; ++r) order[start[key[r]]++] = static_cast<std::int64_t>(r);
  return order;
}

// Many configurations of one method, each from x0 for `steps` steps: rows x cols
// hyper-parameters, row-major. Configurations that agree on the loop's constant flags
// are cut into blocks of lanes (simulate_lanes), and the threads run the blocks.
template <class T, class Maker>
void sweep(const Problem& P, const LU* newton, const Maker& make, const std::vector<std::string>& names,
           const double* table, std::int64_t rows, const double* x0, const double* xstar, std::int64_t steps,
           double* err_mid, double* err_end, bool* diverged, double& err_start) {
  using M = typename Maker::Method;
  using H = decltype(std::declval<M&>().loop.template hyper<T>(0));
  constexpr std::size_t fields = lane_field_count<H>(), kStates = M::kStates;
  if (rows > 0) {
    M probe;
    ColumnMemo probe_memo;
    make(probe, HyperRow{&names, table, &probe_memo});
    if (is_line_search(probe.direction))
      throw std::invalid_argument("method: a line-search method sets its own step; it has nothing to sweep");
  }
  const int threads = max_threads();
  const std::size_t R = static_cast<std::size_t>(rows);
  auto set_row = [&](M& m, std::int64_t r, ColumnMemo& memo) {
    make(m, HyperRow{&names, table + r * names.size(), &memo});
  };
  // Every row's flags (key), numeric hyper-parameters and initial states, from one
  // Method per thread that each row sets in turn.
  std::vector<std::uint32_t> key(R);
  std::vector<T> values(fields * R);
  std::vector<double> init(kStates * R);
  constexpr std::int64_t kRowsPerTask = 256;
  parallel_for((rows + kRowsPerTask - 1) / kRowsPerTask, threads, [&](std::int64_t task) {
    M m;
    ColumnMemo memo;
    for (std::int64_t r = task * kRowsPerTask; r < std::min(rows, (task + 1) * kRowsPerTask); ++r) {
      set_row(m, r, memo);
      key[r] = m.loop.template lane_key<T>(0);
      store_lane(m.loop.template hyper<T>(0), values.data(), rows, r);
      for (std::size_t k = 0; k < kStates; ++k) init[k * R + r] = m.state_init[k];
    }
  });
  err_start = distance(x0, xstar, P.n);
  const std::int64_t mid = steps / 2;
  const bool diagonal = is_diagonal(P);
  // Configurations in order of their flags; blocks of at most `lanes` with equal flags,
  // enough of them to keep every thread busy, each small enough to stay in cache.
  const std::vector<std::int64_t> order = stable_order(key);
  if (rows == 0) return;
  // A block's arrays in bytes per lane and coordinate: x, the states, and the gradient
  // (one row in one pass) or Newton's residual.
  M m0;
  ColumnMemo memo0;
  set_row(m0, 0, memo0);
  const std::int64_t cell_bytes = static_cast<std::int64_t>(
      sizeof(T) * (1 + kStates + (steps_in_one_pass(m0, diagonal) ? 0 : 1)) +
      (m0.direction == Direction::newton ? sizeof(double) : 0));
  const std::int64_t in_cache = kBlockBytes / cell_bytes / std::max<std::int64_t>(P.n, 1) / 8 * 8;
  const std::int64_t cap = std::min<std::int64_t>(kMaxLanes, std::max<std::int64_t>(in_cache, 8));
  // At least two blocks per thread, and a whole number per thread, of about equal size (in
  // multiples of 8 lanes): a block more on one thread than on the other would leave that
  // one alone for its whole length.
  std::int64_t n_blocks = std::max<std::int64_t>((rows + cap - 1) / cap, 2 * threads);
  n_blocks = (n_blocks + threads - 1) / threads * threads;
  const std::int64_t lanes = std::max<std::int64_t>(1, ((rows + n_blocks - 1) / n_blocks + 7) / 8 * 8);
  std::vector<std::pair<std::int64_t, std::int64_t>> blocks;  // [begin, end) in order
  for (std::int64_t b = 0; b < rows;) {
    std::int64_t e = b + 1;
    while (e < rows && e - b < lanes && key[order[e]] == key[order[b]]) ++e;
    blocks.emplace_back(b, e);
    b = e;
  }
  auto run_block = [&](std::int64_t k) {
    const std::int64_t b = blocks[k].first, e = blocks[k].second, L = e - b;
    const std::size_t l = static_cast<std::size_t>(L);
    std::vector<T> lane_values(fields * l);
    std::vector<double> lane_init(kStates * l), mid_err(l), end_err(l);
    for (std::int64_t i = 0; i < L; ++i) {
      const std::int64_t r = order[b + i];
      for (std::size_t f = 0; f < fields; ++f) lane_values[f * l + i] = values[f * R + r];
      for (std::size_t s = 0; s < kStates; ++s) lane_init[s * l + i] = init[s * R + r];
    }
    std::vector<M> methods(1);
    ColumnMemo memo;
    set_row(methods[0], order[b], memo);
    if (methods[0].hook_per_lane) {
      methods.resize(l);
      for (std::int64_t i = 1; i < L; ++i) set_row(methods[i], order[b + i], memo);
    }
    std::unique_ptr<bool[]> div_b(new bool[l]());
    simulate_lanes<T>(P, diagonal, newton, methods.data(), L, lane_values.data(), lane_init.data(), x0, xstar,
                      steps, mid, err_start, mid_err.data(), end_err.data(), div_b.get());
    for (std::int64_t i = 0; i < L; ++i) {
      const std::int64_t r = order[b + i];
      err_mid[r] = mid_err[i];
      err_end[r] = end_err[i];
      diverged[r] = div_b[i];
    }
  };
  parallel_for(static_cast<std::int64_t>(blocks.size()), threads, run_block);
}

}  // namespace bowl
}  // namespace optbowl
