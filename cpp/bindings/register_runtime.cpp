// Threads, the ISA the loops run with, build facts, and the streaming floor kernel.
#include <pybind11/pybind11.h>

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "arrays.hpp"
#include "optbowl/loops/stream_floor_loop.hpp"
#include "optbowl/multi_tensor.hpp"
#include "optbowl/registry.hpp"

namespace optbowl {
namespace py = pybind11;

namespace {

constexpr std::size_t kFloorMaxWrites = 5;
constexpr std::size_t kFloorMaxReads = 2;

const char* const kInoutNames[kFloorMaxWrites] = {"inout[0]", "inout[1]", "inout[2]", "inout[3]",
                                                  "inout[4]"};
const char* const kReadNames[kFloorMaxReads] = {"read[0]", "read[1]"};

template <std::size_t W, std::size_t R>
void stream_floor_fixed(const py::list& inout, const py::list& read, double scale, double shift) {
  std::array<Operand, W + R> ops{};
  for (std::size_t k = 0; k < W; ++k) ops[k] = Operand{kInoutNames[k], inout[k], true};
  for (std::size_t j = 0; j < R; ++j) ops[W + j] = Operand{kReadNames[j], read[j], false};
  const TensorTable<W + R> table = gather<W + R>(ops);
  StreamFloorLoop<W, R> loop;
  loop.scale = scale;
  loop.shift = shift;
  py::gil_scoped_release release;
  for_each_element(loop, table);
}

template <std::size_t W, std::size_t... R>
void stream_floor_reads(std::size_t r, const py::list& inout, const py::list& read, double scale,
                        double shift, std::index_sequence<R...>) {
  ((r == R ? stream_floor_fixed<W, R>(inout, read, scale, shift) : void()), ...);
}

template <std::size_t... W>
void stream_floor_any(std::size_t w, std::size_t r, const py::list& inout, const py::list& read,
                      double scale, double shift, std::index_sequence<W...>) {
  ((w == W + 1 ? stream_floor_reads<W + 1>(r, inout, read, scale, shift,
                                          std::make_index_sequence<kFloorMaxReads + 1>{})
               : void()),
   ...);
}

}  // namespace

// name() returns the setting, set_name(bytes) sets it (bytes >= 0); results do not depend on it.
// "A, B and C": the titles of the compiled rules whose Loop `Has`.
template <template <class, class = void> class Has>
std::string rules_with() {
  std::vector<std::string> titles;
  registry::Rules::each([&titles](auto rule) {
    using Rule = decltype(rule);
    if (Has<typename Rule::Loop>::value) titles.push_back(Rule::title);
  });
  std::string s;
  for (std::size_t k = 0; k < titles.size(); ++k)
    s += (k == 0 ? "" : k + 1 == titles.size() ? " and " : ", ") + titles[k];
  return s.empty() ? "none" : s;
}

static void def_bytes_setting(py::module_& m, const std::string& name, std::int64_t& (*setting)(),
                              const std::string& doc) {
  m.def(name.c_str(), [setting] { return setting(); }, doc.c_str());
  m.def(
      ("set_" + name).c_str(),
      [setting](std::int64_t bytes) {
        if (bytes < 0) throw py::value_error("bytes: must be >= 0, got " + std::to_string(bytes));
        setting() = bytes;
      },
      py::arg("bytes"), ("Set " + name + "(); results do not depend on it.").c_str());
}

void register_runtime(py::module_& m) {
  runtime();  // made (and its fork handlers installed) at import, before any thread can fork
  m.def(
      "set_num_threads",
      [](py::object value) {
        // an int of any size (10**100 too) gets this message, not an OverflowError
        if (!py::isinstance<py::int_>(value) || py::isinstance<py::bool_>(value))
          throw py::type_error("n: expected an int, got " +
                               std::string(py::str(py::type::handle_of(value).attr("__name__"))));
        const int cap = max_thread_count();
        const py::int_ big = py::reinterpret_borrow<py::int_>(value);
        if (big < py::int_(0) || big > py::int_(cap))
          throw py::value_error("n: must be from 0 (the default) to " + std::to_string(cap) + " (" +
                                std::to_string(kThreadsPerCpu) + " per CPU, at least " +
                                std::to_string(kThreadsFloor) + "), got " + std::string(py::str(value)));
        const int n = big.cast<int>();
        py::gil_scoped_release release;  // the helpers that exit may be finishing a step
        set_thread_count(n);
      },
      py::arg("n"),
      "Use n threads (the calling one and n - 1 helpers) for the steps and ``optbowl.sweep``;\n"
      "0 restores the default: ``OMP_NUM_THREADS`` if set, else every CPU, and at most the cap.\n"
      "The cap is 4 threads per CPU and at least 16 (``optbowl._core.max_num_threads()``);\n"
      "a larger n raises ValueError. Helper threads start at the first step that needs\n"
      "them, and those beyond a lowered count exit before this returns. The count never\n"
      "changes results, only speed.\n\n"
      ">>> import optbowl as ob\n"
      ">>> ob.set_num_threads(1); ob.get_num_threads()\n"
      "1\n"
      ">>> ob.set_num_threads(0)\n");
  m.def("get_num_threads", [] { return max_threads(); },
        "The number of threads the steps use (see set_num_threads).");
  m.def("max_num_threads", [] { return max_thread_count(); },
        "The most threads set_num_threads accepts: 4 per CPU, and at least 16.");
  m.def("helper_threads", [] {
        HelperPool* pool = HelperPool::existing();
        return pool ? pool->size() : 0;
      },
      "Helper threads running now in this process's pool (private; for tests).");
  m.def("steps_in_flight", [] { return InFlightClaim::count(); },
        "Compiled steps running now, in every thread (private; for tests).");
  m.def("has_openmp", [] {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
  });
  m.attr("chunk_size") = kChunk;  // the shortest chunk (multi_tensor.hpp)
  m.attr("chunk_size_max") = kChunkMax;
  m.attr("parallel_min") = kParallelMin;

  // The rules each sentence names are those whose Loop declares the trait (multi_tensor.hpp).
  const std::string in_cache = rules_with<runs_avx512_in_cache>();
  const std::string wide = rules_with<runs_avx512_wide>();
  const std::string isa_doc =
      "The instruction set the loops run with: 'avx512', 'avx2' or 'baseline'. With 'avx512'\n"
      "the loops of " +
      rules_with<runs_avx512>() + " and the floor kernel use 512-bit vectors; " + in_cache +
      "\nuse them on AMD Zen 5 and later for steps whose arrays fit in cache (wide_in_cache_bytes),\n" +
      wide + " there at every size; the others run their AVX2 build, which is as fast or faster.";
  m.def("cpu_isa", [] { return std::string(isa_name(isa_setting())); }, isa_doc.c_str());
  def_bytes_setting(
      m, "wide_in_cache_bytes", &wide_in_cache_bytes,
      "Steps of " + in_cache +
          " over at most this many bytes of arrays run with\n"
          "512-bit vectors when cpu_isa() is 'avx512' (0: never), and steps of " +
          wide +
          " at every\n"
          "size when it is not 0. 64 MiB on AMD Zen 5 and later, where it pays in and near cache;\n"
          "else 0.");
  def_bytes_setting(
      m, "prefetch_min_bytes", &prefetch_min_bytes,
      "Steps of a loop that prefetches (" + rules_with<has_prefetches>() +
          ", with its compact\n"
          "state) over at least this many bytes of arrays (K per element, used or not) prefetch\n"
          "each array's cache lines ahead in software, so that its loop keeps up with memory;\n"
          "0: every such step. 32 MiB.");
  m.def("detected_isa", [] { return std::string(isa_name(detect_isa())); },
        "The best instruction set this CPU supports (of 'avx512', 'avx2', 'baseline').");
  m.def(
      "set_cpu_isa",
      [](const std::string& name) {
        Isa want;
        if (name == "avx512") want = Isa::avx512;
        else if (name == "avx2") want = Isa::avx2;
        else if (name == "baseline") want = Isa::baseline;
        else throw py::value_error("isa: expected 'avx512', 'avx2' or 'baseline', got '" + name + "'");
        if (static_cast<int>(want) > static_cast<int>(detect_isa()))
          throw py::value_error("isa: this CPU does not support '" + name + "' (best: '" +
                                isa_name(detect_isa()) + "')");
        isa_setting() = want;
      },
      py::arg("isa"),
      "Run the loops with `isa` (at most the detected one); results do not depend on it.");

  m.def(
      "stream_floor",
      [](py::list inout, py::list read, double scale, double shift) {
        const std::size_t w = inout.size(), r = read.size();
        if (w < 1 || w > kFloorMaxWrites)
          throw py::value_error("inout: expected 1 to " + std::to_string(kFloorMaxWrites) +
                                " lists of arrays, got " + std::to_string(w));
        if (r > kFloorMaxReads)
          throw py::value_error("read: expected 0 to " + std::to_string(kFloorMaxReads) +
                                " lists of arrays, got " + std::to_string(r));
        stream_floor_any(w, r, inout, read, scale, shift, std::make_index_sequence<kFloorMaxWrites>{});
      },
      py::arg("inout"), py::arg("read"), py::arg("scale") = 1.0, py::arg("shift") = 0.0,
      "The memory floor of a step: per element s = sum of the `read` arrays, and every "
      "`inout` array x = x * scale + s * shift, in place, with the optimizers' chunking, "
      "threads and ISA. inout: list of W lists of arrays (W = 1..5); read: list of R lists "
      "(R = 0..2); each list has one array per tensor, float32/float64, shapes matching.");
}

}  // namespace optbowl
