// Multi-tensor CPU loop: one call updates a whole list of arrays in one pass.
//
// A TensorTable<K> holds, for every tensor of the list, K base pointers (param, grad,
// state arrays, in the rule's order), its length and its dtype. The loop cuts every
// tensor into chunks of at most kChunk elements, and runs one OpenMP loop over the
// whole chunk table; a chunk calls Rule::apply<T>(pointers, tensor, begin, end), which
// runs the per-element rule of optbowl/rules/ over [begin, end) of that tensor. Inputs smaller than
// kParallelMin elements stay on the calling thread.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace optbowl {

enum class DType : std::uint8_t { f32 = 0, f64 = 1 };

template <std::size_t K>
struct TensorTable {
  std::vector<std::array<void*, K>> ptrs;
  std::vector<std::int64_t> sizes;
  std::vector<DType> dtypes;

  void add(const std::array<void*, K>& p, std::int64_t n, DType dt) {
    ptrs.push_back(p);
    sizes.push_back(n);
    dtypes.push_back(dt);
  }
  std::size_t size() const { return sizes.size(); }
  std::int64_t numel() const {
    std::int64_t n = 0;
    for (auto s : sizes) n += s;
    return n;
  }
};

struct Chunk {
  std::int32_t tensor;
  std::int64_t begin;
  std::int64_t end;
};

constexpr std::int64_t kChunk = 1 << 15;         // elements per chunk (128 KiB of float32)
constexpr std::int64_t kParallelMin = 1 << 16;   // below this many elements: one thread

// Number of threads the loops use (0 = OpenMP's default).
inline int& thread_setting() {
  static int n = 0;
  return n;
}

inline int max_threads() {
#ifdef _OPENMP
  return thread_setting() > 0 ? thread_setting() : omp_get_max_threads();
#else
  return 1;
#endif
}

template <std::size_t K>
std::vector<Chunk> make_chunks(const TensorTable<K>& t) {
  std::vector<Chunk> chunks;
  for (std::size_t i = 0; i < t.size(); ++i)
    for (std::int64_t b = 0; b < t.sizes[i]; b += kChunk)
      chunks.push_back({static_cast<std::int32_t>(i), b,
                        b + kChunk < t.sizes[i] ? b + kChunk : t.sizes[i]});
  return chunks;
}

template <class Rule, std::size_t K>
inline void run_chunk(const Rule& rule, const TensorTable<K>& t, const Chunk& c) {
  if (t.dtypes[c.tensor] == DType::f32)
    rule.template apply<float>(t.ptrs[c.tensor], c.tensor, c.begin, c.end);
  else
    rule.template apply<double>(t.ptrs[c.tensor], c.tensor, c.begin, c.end);
}

// Apply `rule` to every element of every tensor of `t`. Call without the GIL.
template <class Rule, std::size_t K>
void for_each_element(const Rule& rule, const TensorTable<K>& t) {
  const std::int64_t total = t.numel();
  if (total == 0) return;
  const int threads = max_threads();
  if (total < kParallelMin || threads <= 1) {
    for (std::size_t i = 0; i < t.size(); ++i)
      if (t.sizes[i] > 0) run_chunk(rule, t, Chunk{static_cast<std::int32_t>(i), 0, t.sizes[i]});
    return;
  }
  const std::vector<Chunk> chunks = make_chunks(t);
  const std::int64_t n = static_cast<std::int64_t>(chunks.size());
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
  for (std::int64_t c = 0; c < n; ++c) run_chunk(rule, t, chunks[c]);
}

}  // namespace optbowl
