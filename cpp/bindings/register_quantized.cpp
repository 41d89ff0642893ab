// optbowl._core.quantized_adagrad / quantized_adam: AdaGrad and Adam steps with 8-bit
// (blockwise) or bfloat16 state (optbowl/quant.hpp, loops/quantized_loop.hpp); quantize /
// dequantize: the same code for state_dict conversions; bowl_run_quantized: the bowl
// simulator on these loops.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "arrays.hpp"
#include "optbowl/loops/quantized_loop.hpp"
#include "optbowl/registry.hpp"

namespace optbowl {

namespace {

using QuantizedAdagradLoop = QuantizedLoop<QuantizedAdagradKind>;
using QuantizedAdamLoop = QuantizedLoop<QuantizedAdamKind>;

StateFormat format_of(int bits, bool stochastic, std::uint64_t seed) {
  if (bits != 8 && bits != 16)
    throw py::value_error("state_bits: expected 8 or 16 for a quantized step, got " + std::to_string(bits));
  if (stochastic && bits != 16)
    throw py::value_error("stochastic_rounding: only for state_bits=16 (bfloat16 state)");
  return {bits, stochastic, seed};
}

bool has_dtype(const py::array& a, int num) { return a.dtype().num() == num; }

// The state arrays of one slot (codes, and with 8 bits the absmax per block), checked
// against the parameters; their pointers go to column `at` (and at + 1) of `ptrs`.
void check_slot(const py::list& params, py::handle codes, py::handle absmaxes, const char* codes_name,
                const char* absmax_name, int bits, std::vector<std::vector<void*>>& ptrs, std::size_t at,
                std::vector<Extent>& extents) {
  namespace np = py::detail;
  constexpr int kC = np::npy_api::constants::NPY_ARRAY_C_CONTIGUOUS_;
  constexpr int kAligned = np::npy_api::constants::NPY_ARRAY_ALIGNED_;
  constexpr int kWriteable = np::npy_api::constants::NPY_ARRAY_WRITEABLE_;
  const std::size_t n = params.size();
  auto as_list = [n](py::handle h, const char* name) {
    if (!py::isinstance<py::list>(h) && !py::isinstance<py::tuple>(h))
      throw py::type_error(std::string(name) + ": expected a list of arrays, got " +
                           std::string(py::str(py::type::handle_of(h).attr("__name__"))));
    py::sequence s = py::reinterpret_borrow<py::sequence>(h);
    if (s.size() != n)
      throw py::value_error(std::string(name) + ": expected " + count_of(n, "array") +
                            " (one per entry of params), got " + std::to_string(s.size()));
    return s;
  };
  auto checked = [](py::handle h, const std::string& who) {
    if (!py::isinstance<py::array>(h)) throw py::type_error(not_an_array(who, h));
    if (is_masked(h)) throw py::type_error(masked_message(who));
    py::array a = py::reinterpret_borrow<py::array>(h);
    const int flags = a.flags();
    if (!(flags & kC)) throw py::value_error(who + ": must be C-contiguous");
    if (!(flags & kAligned)) throw py::value_error(who + ": must be aligned to its dtype");
    if (!(flags & kWriteable)) throw py::value_error(who + ": is read-only");
    return a;
  };
  const py::sequence cs = as_list(codes, codes_name);
  py::sequence as;
  if (bits == 8) as = as_list(absmaxes, absmax_name);
  for (std::size_t i = 0; i < n; ++i) {
    const py::array p = py::reinterpret_borrow<py::array>(params[i]);
    const std::string who = item_name(codes_name, i);
    py::array c = checked(cs[i], who);
    const int want = bits == 8 ? np::npy_api::constants::NPY_UBYTE_ : np::npy_api::constants::NPY_USHORT_;
    if (!has_dtype(c, want))
      throw py::type_error(who + ": expected a " + (bits == 8 ? "uint8 array (8-bit codes" : "uint16 array (bfloat16 bits") +
                           ", state_bits=" + std::to_string(bits) + "), got dtype " + std::string(py::str(c.dtype())));
    bool same = c.ndim() == p.ndim();
    for (py::ssize_t j = 0; same && j < c.ndim(); ++j) same = c.shape(j) == p.shape(j);
    if (!same)
      throw py::value_error(who + ": shape " + shape_str(c) + " does not match " + item_name("params", i) + " " +
                            shape_str(p));
    ptrs[i][at] = const_cast<void*>(c.data());
    add_extent(extents, c, codes_name, i, true);
    if (bits != 8) continue;
    const std::string awho = item_name(absmax_name, i);
    py::array a = checked(as[i], awho);
    if (!has_dtype(a, np::npy_api::constants::NPY_FLOAT_))
      throw py::type_error(awho + ": expected a float32 array (one absmax per block), got dtype " +
                           std::string(py::str(a.dtype())));
    const std::int64_t blocks = quant::blocks_of(static_cast<std::int64_t>(p.size()));
    if (a.ndim() != 1 || a.shape(0) != blocks)
      throw py::value_error(awho + ": expected shape (" + std::to_string(blocks) + ",) (one absmax per block of " +
                            std::to_string(quant::kBlock) + " elements of " + item_name("params", i) + "), got " +
                            shape_str(a));
    ptrs[i][at + 1] = const_cast<void*>(a.data());
    add_extent(extents, a, absmax_name, i, true);
  }
}

// One state slot of a call: its codes (or bfloat16 bits) and absmaxes, and their names.
struct Slot {
  py::handle codes, absmaxes;
  const char* codes_name;
  const char* absmax_name;
};

// params and grads (float32 only), then the slots; a table of K pointers per tensor.
template <std::size_t K>
TensorTable<K> gather_quantized(const py::list& params, const py::list& grads, const std::vector<Slot>& slots,
                                int bits) {
  std::vector<Extent> extents;
  const TensorTable<2> pg = gather<2>({Operand{"params", params, true}, Operand{"grads", grads, false}}, &extents);
  for (std::size_t i = 0; i < pg.size(); ++i)
    if (pg.dtypes[i] != DType::f32)
      throw py::type_error(item_name("params", i) + ": state_bits=" + std::to_string(bits) +
                           " keeps the state of float32 parameters only, got float64 (use state_bits=32)");
  std::vector<std::vector<void*>> ptrs(pg.size(), std::vector<void*>(K, nullptr));
  for (std::size_t k = 0; k < slots.size(); ++k) {
    const Slot& s = slots[k];
    if (s.codes.is_none()) continue;
    check_slot(params, s.codes, s.absmaxes, s.codes_name, s.absmax_name, bits, ptrs, 2 + 2 * k, extents);
  }
  refuse_overlaps(extents);
  TensorTable<K> table;
  for (std::size_t i = 0; i < pg.size(); ++i) {
    std::array<void*, K> p{};
    p[0] = pg.ptrs[i][0];
    p[1] = pg.ptrs[i][1];
    for (std::size_t k = 2; k < K; ++k) p[k] = ptrs[i][k];
    table.add(p, pg.sizes[i], DType::f32);
  }
  table.claim = claim_extents(extents);
  return table;
}

using AdagradTuple = std::tuple<double, double, double, double, bool>;
using AdamTuple = std::tuple<double, double, double, double, double, bool, bool, bool>;

// Run `loop` on `table`, without the GIL.
template <class Loop, std::size_t K>
void run_loop(const Loop& loop, const TensorTable<K>& table) {
  py::gil_scoped_release release;
  for_each_block(loop, table);
}

template <class T>
py::array_t<T> new_array(const py::array& like) {
  std::vector<py::ssize_t> shape(like.shape(), like.shape() + like.ndim());
  return py::array_t<T>(shape);
}

// Adapts a quantized loop to the bowl simulator (bowl::simulate): the simulator hands one
// tensor of float32 iterates and gradients; the quantized state lives here.
template <class QLoop>
struct BowlQuantized {
  static constexpr std::size_t K = 3;  // param, grad, one state array the simulator allocates (unused)
  QLoop q;
  std::array<double, QLoop::S> init{};
  mutable std::vector<std::vector<std::uint8_t>> codes;
  mutable std::vector<std::vector<float>> absmax;
  mutable std::vector<std::vector<std::uint16_t>> half;

  void make_state(std::int64_t n) const {
    codes.assign(QLoop::S, {});
    absmax.assign(QLoop::S, {});
    half.assign(QLoop::S, {});
    for (std::size_t k = 0; k < QLoop::S; ++k) {
      const float v = static_cast<float>(init[k]);
      if (q.format.bits == 8) {
        absmax[k].assign(static_cast<std::size_t>(quant::blocks_of(n)), std::fabs(v));
        const std::uint8_t c = v == 0.0f ? 0 : quant::encode_unsigned(1.0f);  // the unsigned sum
        codes[k].assign(static_cast<std::size_t>(n), c);
      } else {
        half[k].assign(static_cast<std::size_t>(n), quant::bf16_nearest(v));
      }
    }
  }

  template <class T>
  void apply(const std::array<void*, K>& a, std::int32_t, std::int64_t begin, std::int64_t end) const {
    if constexpr (std::is_same<T, float>::value) {
      if (codes.empty()) make_state(end);
      std::array<void*, QLoop::K> p{};
      p[0] = a[0];
      p[1] = a[1];
      for (std::size_t k = 0; k < QLoop::S; ++k) {
        p[2 + 2 * k] = q.format.bits == 8 ? static_cast<void*>(codes[k].data()) : static_cast<void*>(half[k].data());
        p[3 + 2 * k] = absmax[k].data();
      }
      with_loop_isa([&] { q.template apply<float>(p, 0, begin, end); });
    } else {
      throw std::invalid_argument("dtype: quantized state needs float32 iterates");
    }
  }
};

template <class QLoop>
void count_quantized_steps(BowlQuantized<QLoop>& loop, std::int64_t t, double, double) {
  loop.q.steps[0] = static_cast<double>(t);
}

}  // namespace

void register_quantized(py::module_& m) {
  m.attr("quantization_block") = quant::kBlock;

  m.def(
      "quantized_adagrad",
      [](int bits, bool stochastic, std::uint64_t seed, py::list params, py::list grads, py::object sums,
         py::object sum_absmaxes, const std::vector<double>& steps, const std::vector<AdagradTuple>& groups,
         const std::vector<std::int64_t>& group_sizes) {
        QuantizedAdagradLoop loop;
        loop.format = format_of(bits, stochastic, seed);
        for (const auto& g : groups)
          loop.groups.push_back({std::get<0>(g), std::get<1>(g), std::get<2>(g), std::get<3>(g), std::get<4>(g)});
        const auto table = gather_quantized<QuantizedAdagradLoop::K>(params, grads, {Slot{sums, sum_absmaxes, "sums", "sum_absmaxes"}}, bits);
        if (steps.size() != table.size()) throw py::value_error("steps: expected one step count per tensor");
        loop.steps = steps;
        loop.group_of = group_index(group_sizes, table.size());
        run_loop(loop, table);
      },
      py::arg("state_bits"), py::arg("stochastic_rounding"), py::arg("seed"), py::arg("params"), py::arg("grads"),
      py::arg("sums"), py::arg("sum_absmaxes"), py::arg("steps"), py::arg("groups"), py::arg("group_sizes"),
      "One AdaGrad step with 8-bit (codes + absmaxes) or bfloat16 (uint16 bits; absmaxes None) "
      "sums, float32 parameters, in place; groups as adagrad's.");

  m.def(
      "quantized_adam",
      [](int bits, bool stochastic, std::uint64_t seed, py::list params, py::list grads, py::object exp_avgs,
         py::object exp_avg_sqs, py::object max_exp_avg_sqs, py::object exp_avg_absmaxes,
         py::object exp_avg_sq_absmaxes, py::object max_exp_avg_sq_absmaxes, const std::vector<double>& steps,
         const std::vector<AdamTuple>& groups, const std::vector<std::int64_t>& group_sizes) {
        QuantizedAdamLoop loop;
        loop.format = format_of(bits, stochastic, seed);
        bool amsgrad = false;
        for (const auto& g : groups) {
          loop.groups.push_back({std::get<0>(g), std::get<1>(g), std::get<2>(g), std::get<3>(g), std::get<4>(g),
                                 std::get<5>(g), std::get<6>(g), std::get<7>(g)});
          amsgrad = amsgrad || std::get<5>(g);
        }
        if (amsgrad && max_exp_avg_sqs.is_none())
          throw py::value_error("max_exp_avg_sqs: amsgrad=True needs one array per parameter");
        const auto table = gather_quantized<QuantizedAdamLoop::K>(
            params, grads,
            {Slot{exp_avgs, exp_avg_absmaxes, "exp_avgs", "exp_avg_absmaxes"},
             Slot{exp_avg_sqs, exp_avg_sq_absmaxes, "exp_avg_sqs", "exp_avg_sq_absmaxes"},
             Slot{amsgrad ? max_exp_avg_sqs : py::none(), max_exp_avg_sq_absmaxes, "max_exp_avg_sqs",
                  "max_exp_avg_sq_absmaxes"}},
            bits);
        if (steps.size() != table.size()) throw py::value_error("steps: expected one step count per tensor");
        loop.steps = steps;
        loop.group_of = group_index(group_sizes, table.size());
        run_loop(loop, table);
      },
      py::arg("state_bits"), py::arg("stochastic_rounding"), py::arg("seed"), py::arg("params"), py::arg("grads"),
      py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"), py::arg("exp_avg_absmaxes"),
      py::arg("exp_avg_sq_absmaxes"), py::arg("max_exp_avg_sq_absmaxes"), py::arg("steps"), py::arg("groups"),
      py::arg("group_sizes"),
      "One Adam step with 8-bit (codes + absmaxes) or bfloat16 (uint16 bits; absmaxes None) "
      "state, float32 parameters, in place; groups as adam's.");

  m.def(
      "quantize",
      [](const py::array_t<float, py::array::c_style | py::array::forcecast>& values, int bits, bool is_signed) {
        const std::int64_t n = values.size();
        const float* v = values.data();
        if (bits == 16) {
          py::array_t<std::uint16_t> out = new_array<std::uint16_t>(values);
          std::uint16_t* o = out.mutable_data();
          for (std::int64_t i = 0; i < n; ++i) o[i] = quant::bf16_nearest(v[i]);
          return py::tuple(py::make_tuple(out, py::none()));
        }
        if (bits != 8) throw py::value_error("state_bits: expected 8 or 16, got " + std::to_string(bits));
        py::array_t<std::uint8_t> codes = new_array<std::uint8_t>(values);
        py::array_t<float> absmax(quant::blocks_of(n));
        std::uint8_t* c = codes.mutable_data();
        float* a = absmax.mutable_data();
        for (std::int64_t b = 0; b < n; b += quant::kBlock) {
          const std::int64_t len = std::min(quant::kBlock, n - b);
          if (is_signed)
            quant::encode_block<true>(v + b, len, c + b, a[b / quant::kBlock]);
          else
            quant::encode_block<false>(v + b, len, c + b, a[b / quant::kBlock]);
        }
        return py::tuple(py::make_tuple(codes, absmax));
      },
      py::arg("values"), py::arg("state_bits"), py::arg("signed"),
      "(codes, absmax) of float32 values as 8-bit state (absmax None for 16: bfloat16 bits).");

  m.def(
      "dequantize",
      [](const py::array& codes, const py::object& absmax, int bits, bool is_signed) {
        py::array_t<float> out = new_array<float>(codes);
        float* o = out.mutable_data();
        const std::int64_t n = codes.size();
        if (bits == 16) {
          if (!has_dtype(codes, py::detail::npy_api::constants::NPY_USHORT_))
            throw py::type_error("codes: expected uint16 (bfloat16 bits)");
          const auto c = py::array_t<std::uint16_t, py::array::c_style>::ensure(codes);
          for (std::int64_t i = 0; i < n; ++i) o[i] = quant::bf16_decode(c.data()[i]);
          return out;
        }
        if (bits != 8) throw py::value_error("state_bits: expected 8 or 16, got " + std::to_string(bits));
        if (!has_dtype(codes, py::detail::npy_api::constants::NPY_UBYTE_))
          throw py::type_error("codes: expected uint8 (8-bit codes)");
        const auto c = py::array_t<std::uint8_t, py::array::c_style>::ensure(codes);
        const auto a = absmax.cast<py::array_t<float, py::array::c_style | py::array::forcecast>>();
        if (a.ndim() != 1 || a.shape(0) != quant::blocks_of(n))
          throw py::value_error("absmax: expected one value per block of " + std::to_string(quant::kBlock));
        for (std::int64_t b = 0; b < n; b += quant::kBlock) {
          const std::int64_t len = std::min(quant::kBlock, n - b);
          if (is_signed)
            quant::decode_block<true>(c.data() + b, a.data()[b / quant::kBlock], len, o + b);
          else
            quant::decode_block<false>(c.data() + b, a.data()[b / quant::kBlock], len, o + b);
        }
        return out;
      },
      py::arg("codes"), py::arg("absmax"), py::arg("state_bits"), py::arg("signed"),
      "float32 values of 8-bit state (codes, absmax) or of bfloat16 bits (absmax None).");

  m.def(
      "bowl_run_quantized",
      [](const std::string& method, const py::array_t<double, py::array::c_style | py::array::forcecast>& A,
         const py::array_t<double, py::array::c_style | py::array::forcecast>& b, double c,
         const py::array_t<double, py::array::c_style | py::array::forcecast>& x0, std::int64_t steps,
         const std::vector<std::string>& names,
         const py::array_t<double, py::array::c_style | py::array::forcecast>& hyper, int bits, bool stochastic,
         std::uint64_t seed, const py::object& noise, double sigma) {
        if (A.ndim() != 2 || A.shape(0) != A.shape(1)) throw py::value_error("A: expected a square matrix");
        const std::int64_t n = A.shape(0);
        if (b.ndim() != 1 || b.shape(0) != n || x0.ndim() != 1 || x0.shape(0) != n)
          throw py::value_error("b, x0: expected vectors of length " + std::to_string(n));
        if (steps < 0) throw py::value_error("steps: must be >= 0");
        if (hyper.ndim() != 1 || hyper.shape(0) != static_cast<py::ssize_t>(names.size()))
          throw py::value_error("hyper: expected one value per name");
        const StateFormat format = format_of(bits, stochastic, seed);
        py::array_t<double, py::array::c_style | py::array::forcecast> xi;
        bowl::Noise gradient_noise;
        if (!noise.is_none()) {
          xi = noise.cast<py::array_t<double, py::array::c_style | py::array::forcecast>>();
          if (xi.ndim() != 2 || xi.shape(0) != steps || xi.shape(1) != n)
            throw py::value_error("noise: expected draws of shape (steps, n)");
          if (!(sigma >= 0.0) || !std::isfinite(sigma)) throw py::value_error("noise: sigma must be finite and >= 0");
          gradient_noise = {xi.data(), sigma};
        }
        if (method != "adagrad" && method != "adam")
          throw py::value_error("method: state_bits=" + std::to_string(bits) + " is for 'adagrad' and 'adam', got '" +
                                method + "'");
        const bowl::Problem P{A.data(), b.data(), c, n};
        py::array_t<float> xs({steps + 1, n});
        py::array_t<double> f(steps + 1), grad_norm(steps + 1);
        bowl::Record<float> rec{xs.mutable_data(), f.mutable_data(), grad_norm.mutable_data()};
        const bowl::HyperRow row{&names, hyper.data()};
        auto go = [&](auto proto, auto qloop_tag) {
          using QLoop = decltype(qloop_tag);
          bowl::Method<BowlQuantized<QLoop>> qm;
          qm.loop.q.groups = proto.loop.groups;
          qm.loop.q.group_of.assign(1, 0);
          qm.loop.q.steps.assign(1, 0.0);
          qm.loop.q.format = format;
          for (std::size_t k = 0; k < QLoop::S; ++k) qm.loop.init[k] = proto.state_init[k];
          qm.before_step = count_quantized_steps<QLoop>;
          py::gil_scoped_release release;
          bowl::simulate<float>(P, nullptr, qm, x0.data(), x0.data(), steps, steps, rec, gradient_noise);
        };
        bowl::with_method(method, [&](auto make) {
          const auto proto = make(row);
          using Loop = typename decltype(proto)::Loop;
          if constexpr (std::is_same<Loop, AdagradLoop>::value)
            go(proto, QuantizedAdagradLoop{});
          else if constexpr (std::is_same<Loop, AdamLoop>::value)
            go(proto, QuantizedAdamLoop{});
        });
        return py::make_tuple(xs, f, grad_norm);
      },
      py::arg("method"), py::arg("A"), py::arg("b"), py::arg("c"), py::arg("x0"), py::arg("steps"), py::arg("names"),
      py::arg("hyper"), py::arg("state_bits"), py::arg("stochastic_rounding") = false, py::arg("seed") = 0,
      py::arg("noise") = py::none(), py::arg("sigma") = 0.0,
      "Run 'adagrad' or 'adam' on the bowl ½xᵀAx − bᵀx + c with 8-bit or bfloat16 state, float32 "
      "iterates; returns (x (steps+1, n), f, |grad|).");
}

}  // namespace optbowl
