// Multi-tensor CPU loop: one call updates a whole list of arrays in one pass.
//
// A TensorTable<K> holds, for every tensor of the list, K base pointers (param, grad,
// state arrays, in the rule's order), its length and its dtype. The loop cuts every
// tensor into chunks of kChunk to kChunkMax elements (make_chunks), and shares the whole
// chunk table among the threads; a chunk calls Rule::apply<T>(pointers, tensor, begin, end), which
// runs the per-element rule of optbowl/rules/ over [begin, end) of that tensor. Inputs smaller than
// kParallelMin elements stay on the calling thread.
//
// Threads: the calling thread and up to n - 1 helper threads claim chunks one at a time
// from an atomic counter, and the call returns as soon as every chunk is done. A helper
// that the OS has not scheduled yet does not hold the step up (an OpenMP barrier would
// wait for it, a whole scheduler tick on a busy machine): the caller takes its chunks.
// After each job a helper watches for the next one for kHelperSpinUs, yielding its core
// to any other runnable thread, then sleeps: back-to-back steps do not wait for a wake-up.
// The default n is OpenMP's (OMP_NUM_THREADS, else the cores), set_num_threads() sets it,
// at most max_thread_count(); helpers beyond a lowered count exit (HelperPool::shrink_to).
// A forked child gets a fresh pool (Runtime). Every step claims its arrays' memory while
// it runs, so that a step of another thread sharing one of them is refused (InFlightClaim).
//
// Runtime ISA dispatch: the chunk runner is instantiated three times for every Loop, in
// functions compiled for AVX-512, for AVX2+FMA and for the baseline target, and the one
// the CPU supports is picked at run time (cpu_isa(), detected once). `flatten` inlines the
// Loop and its per-element rule into each, so the rule's loops are vectorised with that
// ISA's registers and std::fma becomes one instruction. Every ISA rounds alike: the rules
// use only IEEE operations and explicit fma (the build forbids FMA contraction), so the
// results are bit-identical whichever runner runs. Other compilers and CPUs run the
// baseline.
#pragma once
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#include "optbowl/config.hpp"
#include "optbowl/half.hpp"

namespace optbowl {

// The arrays' storage: float32, float64, bfloat16, float16 (optbowl/half.hpp); bf16_f32 and
// f16_f32: a 16-bit parameter and gradient with float32 state (state_dtype=float32,
// run_wide_range below).
enum class DType : std::uint8_t { f32 = 0, f64 = 1, bf16 = 2, f16 = 3, bf16_f32 = 4, f16_f32 = 5 };

// The parameter's bytes per element (2 for a 16-bit parameter with float32 state).
inline std::int64_t dtype_size(DType d) { return d == DType::f64 ? 8 : (d == DType::f32 ? 4 : 2); }

struct Chunk {
  std::int32_t tensor;
  std::int64_t begin;
  std::int64_t end;
};

constexpr std::int64_t kChunk = 1 << 15;         // shortest chunk (128 KiB of float32)
constexpr std::int64_t kChunkMax = 1 << 20;      // longest chunk
constexpr std::int64_t kParallelMin = 1 << 16;   // below this many elements: one thread
constexpr int kHelperSpinUs = 100;               // a helper watches for the next job this long

// The most threads a step may use: kThreadsPerCpu per CPU, and at least kThreadsFloor.
// More threads than cores only take turns on them; thousands of them (set_num_threads
// used to accept any count) cost memory and scheduling for nothing. set_num_threads()
// refuses a count above it, and an OMP_NUM_THREADS above it is lowered to it.
constexpr int kThreadsPerCpu = 4;
constexpr int kThreadsFloor = 16;

// Read once: every step asks, and glibc reads /sys for it (6 us a call).
inline int cpu_count() {
  static const int n = [] {
    const unsigned c = std::thread::hardware_concurrency();
    return c > 0 ? static_cast<int>(c) : 1;
  }();
  return n;
}

inline int max_thread_count() { return std::max(kThreadsFloor, kThreadsPerCpu * cpu_count()); }

// Number of threads the loops use (0 = OpenMP's default). Read by every step, set by
// set_num_threads() from any thread: atomic.
inline std::atomic<int>& thread_setting() {
  static std::atomic<int> n{0};
  return n;
}

inline int max_threads() {
  const int set = thread_setting().load(std::memory_order_relaxed);
  if (set > 0) return std::min(set, max_thread_count());
#ifdef _OPENMP
  return std::max(1, std::min(omp_get_max_threads(), max_thread_count()));
#else
  return std::min(cpu_count(), max_thread_count());
#endif
}

// n tasks, claimed one at a time by the caller and the helpers.
struct ParallelJob {
  std::atomic<std::int64_t> next{0};
  std::atomic<std::int64_t> done{0};
  std::int64_t n = 0;
  std::function<void(std::int64_t)> task;  // called only for claimed tasks < n

  void work() {
    for (std::int64_t i = next.fetch_add(1, std::memory_order_relaxed); i < n;
         i = next.fetch_add(1, std::memory_order_relaxed)) {
      task(i);
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

// ------------------------------------------------------------ the process's runtime state
// Byte range [begin, end) of one array of a step: operand k (params, grads, a state) of
// tensor `index`, and whether the step writes it.
struct ByteRange {
  std::uintptr_t begin, end;
  std::uint32_t operand, index;
  bool written;
};

class HelperPool;

// What every step shares: the helper pool, and the memory the steps in flight use (see
// InFlightClaim). One per process, made at import and never destroyed: the step of a
// daemon Python thread may still be using it while the process exits.
//
// Fork: a child has only the thread that forked. The parent's helpers are not in it, but
// the pool's condition variable, mutex and thread list still say they are: a child that
// signalled them waited for ever (glibc's broadcast waits for the waiters it knows of to
// leave). So, by pthread_atfork, the child drops the parent's pool (without touching it:
// its memory is left as it is) and makes a fresh one at its first parallel step, and it
// forgets the steps that the parent's other threads had in flight. `mutex` is held across
// the fork, so that neither is caught half-changed.
struct Runtime {
  std::mutex mutex;  // guards `pool`'s creation and `in_flight`
  std::atomic<HelperPool*> pool{nullptr};
  std::vector<const void*> in_flight;  // InFlightClaim records
};

inline Runtime& runtime();

namespace detail {
inline void before_fork() { runtime().mutex.lock(); }
inline void after_fork_in_parent() { runtime().mutex.unlock(); }
inline void after_fork_in_child() {
  Runtime& rt = runtime();
  rt.pool.store(nullptr, std::memory_order_relaxed);  // the parent's pool stays unused
  rt.in_flight.clear();
  rt.mutex.unlock();
}
inline Runtime* make_runtime() {
  // never destroyed (see Runtime): a static object would be, at exit
  auto* rt = new Runtime;  // NOLINT(cppcoreguidelines-owning-memory)
#if defined(__unix__) || defined(__APPLE__)
  ::pthread_atfork(&before_fork, &after_fork_in_parent, &after_fork_in_child);
#endif
  return rt;
}
}  // namespace detail

inline Runtime& runtime() {
  static Runtime* const rt = detail::make_runtime();
  return *rt;
}

// Helper threads, started on first use and kept; one pool per process (a forked child
// makes its own, see Runtime).
class HelperPool {
 public:
  static HelperPool& instance() {
    Runtime& rt = runtime();
    HelperPool* pool = rt.pool.load(std::memory_order_acquire);
    if (pool == nullptr) {
      std::lock_guard<std::mutex> lock(rt.mutex);
      pool = rt.pool.load(std::memory_order_relaxed);
      if (pool == nullptr) {
        pool = new HelperPool;  // NOLINT: never destroyed, as the Runtime
        rt.pool.store(pool, std::memory_order_release);
      }
    }
    return *pool;
  }

  // The pool if this process has made one, else nullptr.
  static HelperPool* existing() { return runtime().pool.load(std::memory_order_acquire); }

  HelperPool(const HelperPool&) = delete;
  HelperPool& operator=(const HelperPool&) = delete;

  // Run task(0), ..., task(n - 1) on the calling thread and up to `helpers` helpers;
  // return when all have run. Safe to call from several threads at once. A task must not
  // throw. If the OS refuses a new thread, the helpers there are run the job (the caller
  // alone, at worst): the results never depend on the number of threads.
  void run(std::int64_t n, int helpers, std::function<void(std::int64_t)> task) {
    auto job = std::make_shared<ParallelJob>();
    job->n = n;
    job->task = std::move(task);
    if (helpers > 0) {
      bool any = false;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        grow(helpers);
        if (!helpers_.empty()) {
          job_ = job;
          wanted_ = helpers;
          ++generation_;
          posted_.store(generation_, std::memory_order_release);
          any = true;
        }
      }
      if (any) cv_.notify_all();
    }
    job->work();
    while (job->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
  }

  // Let the helpers beyond the first `keep` finish and exit; returns when they have.
  void shrink_to(int keep) {
    std::vector<std::unique_ptr<Helper>> leaving;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      while (static_cast<int>(helpers_.size()) > std::max(keep, 0)) {
        helpers_.back()->retire = true;
        leaving.push_back(std::move(helpers_.back()));
        helpers_.pop_back();
      }
    }
    if (leaving.empty()) return;
    cv_.notify_all();
    for (auto& h : leaving) h->thread.join();
  }

  // Helper threads now running.
  int size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int>(helpers_.size());
  }

 private:
  struct Helper {
    std::thread thread;
    int index = 0;        // helpers 0 .. wanted_ - 1 take part in a job
    bool retire = false;  // guarded by mutex_: exit at the next wake-up
  };

  HelperPool() = default;

  void grow(int helpers) {  // mutex_ held
    while (static_cast<int>(helpers_.size()) < helpers) {
      auto h = std::make_unique<Helper>();
      h->index = static_cast<int>(helpers_.size());
      Helper* self = h.get();
      try {
        h->thread = std::thread([this, self] { loop(*self); });
      } catch (const std::system_error&) {
        return;  // no more threads to be had: run with those there are
      }
      helpers_.push_back(std::move(h));
    }
  }

  void loop(Helper& self) {
    std::uint64_t seen = 0;
    for (;;) {
      // Steps often follow each other closely: watch for the next job a little while
      // (yielding the core to any other runnable thread) before sleeping, so that it does
      // not wait for this thread to be woken, tens of microseconds on some machines.
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(kHelperSpinUs);
      while (posted_.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < until)
        std::this_thread::yield();
      std::shared_ptr<ParallelJob> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return self.retire || generation_ != seen; });
        if (self.retire) return;
        seen = generation_;
        if (self.index >= wanted_) continue;
        job = job_;
      }
      job->work();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Helper>> helpers_;
  std::shared_ptr<ParallelJob> job_;
  std::uint64_t generation_ = 0;
  std::atomic<std::uint64_t> posted_{0};  // generation_, readable without the mutex
  int wanted_ = 0;
};

// Set the thread count (0: the default) and let the helpers no longer needed exit.
inline void set_thread_count(int n) {
  thread_setting().store(n, std::memory_order_relaxed);
  if (HelperPool* pool = HelperPool::existing()) pool->shrink_to(max_threads() - 1);
}

// ------------------------------------------------------------ steps in flight
// Two steps that run at the same time (the compiled calls release the GIL) and share an
// array that one of them writes race on it: updates are lost, or a step reads a
// half-written gradient. Every step claims the byte ranges of its arrays, already sorted
// for its own aliasing check, before it writes anything, and holds the claim until it
// returns; a claim that overlaps a claim of another thread's step in flight where either
// writes is refused (a RuntimeError naming the array), and the refused step writes
// nothing. What it costs: a mutex and a vector of pointers when no other step is in
// flight, a merge of two sorted range lists against each one that is. (Steps of one thread
// never overlap in time: a call may claim its arrays in parts, which are not compared
// with each other.)
class InFlightClaim {
 public:
  InFlightClaim() = default;
  InFlightClaim(InFlightClaim&& other) noexcept : record_(std::move(other.record_)) {}
  InFlightClaim& operator=(InFlightClaim&& other) noexcept {
    if (this != &other) {
      release();
      record_ = std::move(other.record_);
    }
    return *this;
  }
  InFlightClaim(const InFlightClaim&) = delete;
  InFlightClaim& operator=(const InFlightClaim&) = delete;
  ~InFlightClaim() { release(); }

  // Claim `ranges` (sorted by begin) for the calling thread's step, or throw a
  // std::runtime_error whose message starts with name(range) of the first range that
  // conflicts with a step in flight in another thread.
  template <class Name>
  static InFlightClaim claim(std::vector<ByteRange>&& ranges, const Name& name) {
    InFlightClaim c;
    if (ranges.empty()) return c;
    auto record = std::make_unique<Record>();
    record->ranges = std::move(ranges);
    record->thread = std::this_thread::get_id();
    Runtime& rt = runtime();
    {
      std::lock_guard<std::mutex> lock(rt.mutex);
      for (const void* other : rt.in_flight) {
        const Record& o = *static_cast<const Record*>(other);
        if (o.thread == record->thread) continue;
        if (const ByteRange* mine = first_conflict(record->ranges, o.ranges)) {
          throw std::runtime_error(
              name(*mine) + ": shares memory with an array of a step running now in another "
              "thread, and one of the two steps writes it; steps that share an array must not "
              "run at the same time (serialise them, e.g. with a lock)");
        }
      }
      rt.in_flight.push_back(record.get());
    }
    c.record_ = std::move(record);
    return c;
  }

  // Steps in flight now (for tests).
  static std::size_t count() {
    Runtime& rt = runtime();
    std::lock_guard<std::mutex> lock(rt.mutex);
    return rt.in_flight.size();
  }

 private:
  struct Record {
    std::vector<ByteRange> ranges;
    std::thread::id thread;
  };

  // The first range of `a` that overlaps a range of `b` where either is written, or nullptr.
  // Both sorted by begin: one merged pass, each side keeping its farthest-reaching range
  // and its farthest-reaching written one (a range overlaps an earlier-starting one iff it
  // starts before that one's end).
  static const ByteRange* first_conflict(const std::vector<ByteRange>& a, const std::vector<ByteRange>& b) {
    std::uintptr_t a_any = 0, a_written = 0, b_any = 0, b_written = 0;  // farthest ends so far
    std::size_t i = 0, j = 0;
    const ByteRange* a_last_written = nullptr;  // the range of a that reaches a_written
    const ByteRange* a_last_any = nullptr;
    while (i < a.size() || j < b.size()) {
      if (j == b.size() || (i < a.size() && a[i].begin <= b[j].begin)) {
        const ByteRange& y = a[i++];
        if (y.begin < (y.written ? b_any : b_written)) return &y;
        if (y.end > a_any) a_any = y.end, a_last_any = &y;
        if (y.written && y.end > a_written) a_written = y.end, a_last_written = &y;
      } else {
        const ByteRange& y = b[j++];
        if (y.written && y.begin < a_any) return a_last_any;
        if (!y.written && y.begin < a_written) return a_last_written;
        if (y.end > b_any) b_any = y.end;
        if (y.written && y.end > b_written) b_written = y.end;
      }
    }
    return nullptr;
  }

  void release() {
    if (!record_) return;
    Runtime& rt = runtime();
    {
      std::lock_guard<std::mutex> lock(rt.mutex);
      auto& v = rt.in_flight;
      const auto it = std::find(v.begin(), v.end(), static_cast<const void*>(record_.get()));
      if (it != v.end()) {
        *it = v.back();
        v.pop_back();
      }
    }
    record_.reset();
  }

  std::unique_ptr<Record> record_;
};

template <std::size_t K>
struct TensorTable {
  std::vector<std::array<void*, K>> ptrs;
  std::vector<std::int64_t> sizes;
  std::vector<DType> dtypes;
  InFlightClaim claim;  // the arrays' memory, held while a step may write it (see above)

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

// The chunks in the order they are claimed. Each is about 1 / (2 * threads) of the
// elements still left after it starts (OpenMP's "guided" schedule), a multiple of kChunk
// between kChunk and kChunkMax, and never crosses a tensor: the first chunks are long,
// so every thread streams through long runs of each array (the hardware prefetchers
// ramp up once per run), and the last are short, so the threads finish together.
template <std::size_t K>
std::vector<Chunk> make_chunks(const TensorTable<K>& t, int threads) {
  std::vector<Chunk> chunks;
  std::int64_t left = t.numel();
  const std::int64_t parts = 2 * static_cast<std::int64_t>(threads > 0 ? threads : 1);
  for (std::size_t i = 0; i < t.size(); ++i) {
    for (std::int64_t b = 0; b < t.sizes[i];) {
      const std::int64_t want = std::min(std::max(left / parts / kChunk * kChunk, kChunk), kChunkMax);
      const std::int64_t e = std::min(b + want, t.sizes[i]);
      chunks.push_back({static_cast<std::int32_t>(i), b, e});
      left -= e - b;
      b = e;
    }
  }
  return chunks;
}

// Software prefetch, for steps whose arrays stream from memory (prefetch_min_bytes below).
// The range runs kPrefetchBlock elements at a time, and before each block every array's
// cache lines kPrefetchAhead elements ahead are prefetched, so that the loads a block will
// need are in flight while the blocks before it compute: the hardware prefetchers alone
// fall behind a loop that computes more than a copy does. It pays only for a loop that
// moves few bytes per element and computes little (an int8 compact state); it costs a loop
// whose blocks recompute per-call scalars (bias corrections). Prefetching all of a block's
// lines at once instead (512 elements) took 1.1-1.4x the time: the prefetches must be
// spread among the loads. Distances of 1024-4096 elements and the t0 and nta hints did
// alike. The measurements: bench/README.md, "Measurements behind the CPU runners".
//
// Only a Loop whose member `bool prefetches() const` says so prefetches; such a Loop also
// gives each array's bytes per element, `std::int64_t stream_bytes<T>(k) const` (an int8
// compact state is one byte). The other Loops' runners have no prefetching code.
template <class Rule, class = void>
struct has_prefetches : std::false_type {};
template <class Rule>
struct has_prefetches<Rule, std::void_t<decltype(std::declval<const Rule&>().prefetches())>>
    : std::true_type {};

constexpr std::int64_t kPrefetchBlock = 64;
constexpr std::int64_t kPrefetchAhead = 2048;

template <class T, class Rule, std::size_t K>
inline void run_prefetched(const Rule& rule, const std::array<void*, K>& a, std::int32_t tensor,
                           std::int64_t begin, std::int64_t end) {
  std::array<const char*, K> base{};
  std::array<std::int64_t, K> size{};
  std::size_t m = 0;
  for (std::size_t k = 0; k < K; ++k) {
    if (a[k] == nullptr) continue;  // an array the step does not use
    base[m] = static_cast<const char*>(a[k]);
    size[m] = rule.template stream_bytes<T>(k);
    ++m;
  }
  std::int64_t i = begin;
  // The prefetches stay inside the range: the last kPrefetchAhead elements have none.
  for (; i + kPrefetchAhead + kPrefetchBlock <= end; i += kPrefetchBlock) {
    for (std::size_t s = 0; s < m; ++s) {
      const char* ahead = base[s] + (i + kPrefetchAhead) * size[s];
      for (std::int64_t b = 0; b < kPrefetchBlock * size[s]; b += 64) OPTBOWL_PREFETCH(ahead + b);
    }
    rule.template apply<T>(a, tensor, i, i + kPrefetchBlock);
  }
  if (i < end) rule.template apply<T>(a, tensor, i, end);
}

// Elements [begin, end) of one tensor. The elements before the first cache line of the
// parameter array (pointer 0) are a call of their own, so that the rule's vector loop
// loads and stores whole cache lines of it, and of every array at the same offset (NumPy
// puts large arrays 16 bytes into a page): a 512-bit access that crosses a line costs two.
// (Measured: bench/README.md, "Measurements behind the CPU runners".)
template <bool Prefetch, class T, class Rule, std::size_t K>
inline void run_range(const Rule& rule, const std::array<void*, K>& a, std::int32_t tensor,
                      std::int64_t begin, std::int64_t end) {
  constexpr std::int64_t kLine = 64, kSize = static_cast<std::int64_t>(sizeof(T));
  const auto at =
      static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(static_cast<T*>(a[0]) + begin) % kLine);
  constexpr std::int64_t kSplitFrom = 256;  // elements: a shorter range is one call
  const std::int64_t head = at % kSize == 0 ? (kLine - at) % kLine / kSize : 0;
  if (head > 0 && end - begin >= kSplitFrom) {
    rule.template apply<T>(a, tensor, begin, begin + head);
    begin += head;
  }
  if constexpr (Prefetch)
    run_prefetched<T>(rule, a, tensor, begin, end);
  else
    rule.template apply<T>(a, tensor, begin, end);
}

// torch's fused CPU kernels (the AVX2 and AVX-512 builds of torch 2.13) step
// the last numel % (kTorchTailBytes / sizeof(T)) elements of each tensor in a scalar loop that
// their compiler contracts otherwise than the vectorised body. (The body's vectors are 32 or
// 64 bytes; torch's compiler vectorises the start of the scalar loop with 32-byte vectors,
// rounded as the body, so 32 bytes whichever ISA torch dispatched: measured against torch
// 2.13 for every size from 1 to 130 elements, in both builds.) A Loop that declares
// `bool torch_tail(std::int32_t tensor) const` and
// `apply_tail<T>(pointers, tensor, begin, end)` has those elements of each tensor for which
// torch_tail says so stepped by apply_tail, whichever chunk they fall in; the tail depends
// only on the tensor's size, never on the threads or the chunks.
constexpr std::int64_t kTorchTailBytes = 32;

template <class T>
constexpr std::int64_t torch_tail_begin(std::int64_t numel) {
  return numel - numel % (kTorchTailBytes / static_cast<std::int64_t>(sizeof(T)));
}

template <class Rule, class = void>
struct has_torch_tail : std::false_type {};
template <class Rule>
struct has_torch_tail<Rule, std::void_t<decltype(std::declval<const Rule&>().torch_tail(std::int32_t{}))>>
    : std::true_type {};

template <bool Prefetch, class T, class Rule, std::size_t K>
inline void run_tensor_range(const Rule& rule, const TensorTable<K>& t, const Chunk& c) {
  std::int64_t end = c.end;
  if constexpr (has_torch_tail<Rule>::value) {
    const std::int64_t tail = torch_tail_begin<T>(t.sizes[c.tensor]);
    if (end > tail && rule.torch_tail(c.tensor)) {
      const std::int64_t from = std::max(c.begin, tail);
      rule.template apply_tail<T>(t.ptrs[c.tensor], c.tensor, from, end);
      end = from;
    }
  }
  if (c.begin < end) run_range<Prefetch, T>(rule, t.ptrs[c.tensor], c.tensor, c.begin, end);
}

// Elements [0, n) of a Loop's tensor 0 outside the chunk tables (the bowl simulator's run):
// the body, and torch's tail where the Loop has one, as a step of the optimizers rounds them.
template <class T, class Rule, std::size_t K>
inline void apply_with_torch_tail(const Rule& rule, const std::array<void*, K>& a, std::int64_t n) {
  std::int64_t end = n;
  if constexpr (has_torch_tail<Rule>::value) {
    const std::int64_t tail = torch_tail_begin<T>(n);
    if (tail < n && rule.torch_tail(0)) {
      rule.template apply_tail<T>(a, 0, tail, n);
      end = tail;
    }
  }
  if (end > 0) rule.template apply<T>(a, 0, 0, end);
}

// torch's single-tensor ops (the rules torch has no fused kernel for) step a bfloat16 or
// float16 tensor in vectors of float32 arithmetic and its last numel % 32 elements in a
// scalar loop of c10::BFloat16 / c10::Half arithmetic, which rounds add(alpha=)'s product to
// the dtype before the sum (math.hpp, torch_add_scaled). Measured against torch 2.13 for
// every size from 1 to 130 elements. A Loop with `static constexpr bool kHalfTail = true`
// has those elements stepped by apply_half_tail<T>(pointers, tensor, begin, end),
// whichever chunk they fall in. torch cuts a tensor of more than 32768 elements (its grain
// size) into one part per intra-op thread, each with a tail of its own: there the tail here
// (the whole tensor's) is torch's with one thread.
// A Loop may declare another width (static constexpr std::int64_t kHalfTailWidth).
constexpr std::int64_t kTorchHalfTail = 32;

template <class Rule, class = void>
struct has_half_tail : std::false_type {};
template <class Rule>
struct has_half_tail<Rule, std::enable_if_t<Rule::kHalfTail>> : std::true_type {};

template <class Rule, class = void>
struct half_tail_width : std::integral_constant<std::int64_t, kTorchHalfTail> {};
template <class Rule>
struct half_tail_width<Rule, std::void_t<decltype(Rule::kHalfTailWidth)>>
    : std::integral_constant<std::int64_t, Rule::kHalfTailWidth> {};

template <bool Prefetch, class T, class Rule, std::size_t K>
inline void run_half_range(const Rule& rule, const TensorTable<K>& t, const Chunk& c) {
  std::int64_t end = c.end;
  if constexpr (has_half_tail<Rule>::value) {
    const std::int64_t n = t.sizes[c.tensor], tail = n - n % half_tail_width<Rule>::value;
    if (end > tail) {
      const std::int64_t from = std::max(c.begin, tail);
      rule.template apply_half_tail<T>(t.ptrs[c.tensor], c.tensor, from, end);
      end = from;
    }
  }
  if (c.begin < end) run_range<Prefetch, T>(rule, t.ptrs[c.tensor], c.tensor, c.begin, end);
}

// A 16-bit parameter with float32 state (state_dtype=float32; DType::bf16_f32, f16_f32):
// the float32 computation with the parameter stored in 16 bits. Blocks of kWideBlock
// elements: the parameter and gradient are widened into float32 buffers on the stack, the
// Loop's float32 apply runs over the block with the state pointers offset to it (the state
// as it is, never rounded), and the parameter is narrowed back, to nearest even. torch's
// 16-bit roundings (Storage<S>::Round, the kHalfTail and torch tails) do not apply. One
// function for both 16-bit formats, so that a runner inlines the float32 apply once more,
// not twice. Only the element loops (Loops with hyper<S>(tensor)) take it: pointer 0 is the
// parameter and pointer 1 the gradient there.
constexpr std::int64_t kWideBlock = 512;

template <class Rule, class = void>
struct takes_wide_state : std::false_type {};
template <class Rule>
struct takes_wide_state<Rule, std::void_t<decltype(std::declval<const Rule&>().template hyper<float>(std::int32_t{}))>>
    : std::bool_constant<(Rule::K >= 2)> {};

template <class S>
inline void widen_block(const void* x, std::int64_t from, std::int64_t n, float* OPTBOWL_RESTRICT out) {
  const S* OPTBOWL_RESTRICT in = static_cast<const S*>(x) + from;
  OPTBOWL_IVDEP
  for (std::int64_t i = 0; i < n; ++i) out[i] = Storage<S>::load(in[i]);
}

template <class S>
inline void narrow_block(const float* OPTBOWL_RESTRICT in, std::int64_t n, void* x, std::int64_t from) {
  S* OPTBOWL_RESTRICT out = static_cast<S*>(x) + from;
  OPTBOWL_IVDEP
  for (std::int64_t i = 0; i < n; ++i) out[i] = Storage<S>::store(in[i]);
}

template <class Rule, std::size_t K>
inline void run_wide_range(const Rule& rule, const TensorTable<K>& t, const Chunk& c) {
  if constexpr (takes_wide_state<Rule>::value) {
    const std::array<void*, K>& a = t.ptrs[c.tensor];
    const bool bf16 = t.dtypes[c.tensor] == DType::bf16_f32;
    alignas(64) float param[kWideBlock];
    alignas(64) float grad[kWideBlock];
    for (std::int64_t b = c.begin; b < c.end; b += kWideBlock) {
      const std::int64_t n = std::min(kWideBlock, c.end - b);
      if (bf16) {
        widen_block<bf16_t>(a[0], b, n, param);
        widen_block<bf16_t>(a[1], b, n, grad);
      } else {
        widen_block<half_t>(a[0], b, n, param);
        widen_block<half_t>(a[1], b, n, grad);
      }
      std::array<void*, K> w{};
      w[0] = param;
      w[1] = grad;
      for (std::size_t k = 2; k < K; ++k) w[k] = a[k] == nullptr ? nullptr : static_cast<float*>(a[k]) + b;
      rule.template apply<float>(w, c.tensor, 0, n);
      if (bf16)
        narrow_block<bf16_t>(param, n, a[0], b);
      else
        narrow_block<half_t>(param, n, a[0], b);
    }
  } else {
    (void)rule, (void)t, (void)c;  // the bindings give such a Loop no float32 state
  }
}

template <bool Prefetch, class Rule, std::size_t K>
inline void run_chunk(const Rule& rule, const TensorTable<K>& t, const Chunk& c) {
  // torch's fused kernels round their 16-bit tails as their body (measured): a 16-bit tail
  // only for a Loop whose rule torch runs as single-tensor ops (kHalfTail).
  switch (t.dtypes[c.tensor]) {
    case DType::f32: return run_tensor_range<Prefetch, float>(rule, t, c);
    case DType::f64: return run_tensor_range<Prefetch, double>(rule, t, c);
    case DType::bf16: return run_half_range<Prefetch, bf16_t>(rule, t, c);
    case DType::f16: return run_half_range<Prefetch, half_t>(rule, t, c);
    case DType::bf16_f32:
    case DType::f16_f32: return run_wide_range(rule, t, c);
  }
}

// ---------------------------------------------------------------- ISA dispatch
enum class Isa : int { baseline = 0, avx2 = 1, avx512 = 2 };

inline const char* isa_name(Isa isa) {
  return isa == Isa::avx512 ? "avx512" : (isa == Isa::avx2 ? "avx2" : "baseline");
}

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) && \
    !defined(__CUDACC__)
#define OPTBOWL_X86_DISPATCH 1
#include <cpuid.h>
// flatten inlines a runner's whole call tree, so that every rule and conversion is compiled
// for its ISA. Sanitizer builds (OPTBOWL_NO_FLATTEN, set by CMake's OPTBOWL_SANITIZE) leave
// it out: instrumented, the flattened runners take the compiler tens of minutes, and the
// results are the same (the rules' fma and conversions are exact wherever they are compiled).
#ifdef OPTBOWL_NO_FLATTEN
#define OPTBOWL_FLATTEN
#define OPTBOWL_TARGET_BASELINE
#else
#define OPTBOWL_FLATTEN , flatten
#define OPTBOWL_TARGET_BASELINE __attribute__((flatten))
#endif
#define OPTBOWL_TARGET_AVX512                                                                   \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi,bmi2,popcnt,f16c,"      \
                        "prefer-vector-width=512") OPTBOWL_FLATTEN))
#define OPTBOWL_TARGET_AVX2 __attribute__((target("avx2,fma,bmi,bmi2,popcnt,f16c") OPTBOWL_FLATTEN))
#else
#define OPTBOWL_X86_DISPATCH 0
#define OPTBOWL_TARGET_BASELINE
#endif

// The best ISA this CPU supports (of those optbowl has runners for).
inline Isa detect_isa() {
#if OPTBOWL_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::baseline;
}

// The ISA the loops use: detected once; lowered with set_cpu_isa() (tests compare ISAs).
inline Isa& isa_setting() {
  static Isa isa = detect_isa();
  return isa;
}

// A runner per ISA, and for the Loops that prefetch (has_prefetches) a second one that
// does: each runner is flattened into one function, and with the prefetching range inlined
// beside the plain one GCC compiled the plain one worse (1.13-1.22x the time in L1:
// bench/README.md, "Measurements behind the CPU runners").
template <class Rule, std::size_t K>
using ChunkRunner = void (*)(const Rule&, const TensorTable<K>&, const Chunk*, std::int64_t);

template <class Rule, std::size_t K, bool Prefetch>
OPTBOWL_TARGET_BASELINE void run_chunks_baseline(const Rule& rule, const TensorTable<K>& t,
                                                 const Chunk* c, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) run_chunk<Prefetch>(rule, t, c[i]);
}

#if OPTBOWL_X86_DISPATCH
template <class Rule, std::size_t K, bool Prefetch>
OPTBOWL_TARGET_AVX2 void run_chunks_avx2(const Rule& rule, const TensorTable<K>& t,
                                         const Chunk* c, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) run_chunk<Prefetch>(rule, t, c[i]);
}

template <class Rule, std::size_t K, bool Prefetch>
OPTBOWL_TARGET_AVX512 void run_chunks_avx512(const Rule& rule, const TensorTable<K>& t,
                                             const Chunk* c, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) run_chunk<Prefetch>(rule, t, c[i]);
}

// The AVX-512 runner of a step whose tensors are all bfloat16 or float16 (half_step), for
// the Loops that have no AVX-512 runner of their own: only the 16-bit ranges, so that it
// costs half a runner's code and compile time.
template <bool Prefetch, class Rule, std::size_t K>
inline void run_half_chunk(const Rule& rule, const TensorTable<K>& t, const Chunk& c) {
  if (t.dtypes[c.tensor] == DType::bf16) return run_half_range<Prefetch, bf16_t>(rule, t, c);
  run_half_range<Prefetch, half_t>(rule, t, c);
}

template <class Rule, std::size_t K, bool Prefetch>
OPTBOWL_TARGET_AVX512 void run_half_chunks_avx512(const Rule& rule, const TensorTable<K>& t,
                                                  const Chunk* c, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) run_half_chunk<Prefetch>(rule, t, c[i]);
}
#endif

// Whether a Loop runs its AVX-512 runner on an AVX-512 CPU: a Loop that declares
// `static constexpr bool kAvx512 = true;` always does; one that declares
// `static constexpr bool kAvx512InCache = true;` does when the step's arrays fit in cache
// on a CPU where that pays (wide_in_cache_bytes below), and one that declares
// `static constexpr bool kAvx512Wide = true;` at every size on such a CPU; every other one
// runs its AVX2 runner there.
// 512-bit vectors pay where the loop is nothing but loads, stores and simple arithmetic,
// or is mostly comparisons and selects, which AVX-512 does in mask registers (an int8
// compact state also needs AVX-512's byte instructions); elsewhere they matched or lost
// to AVX2, and AVX-512 narrowed to 256-bit vectors spilled mask registers to the stack.
// GCC's own tuning prefers 256-bit vectors on AVX-512 CPUs, for the same reason. The
// measurements per rule and CPU: bench/README.md, "Measurements behind the CPU runners".
template <class Rule, class = void>
struct runs_avx512 : std::false_type {};
template <class Rule>
struct runs_avx512<Rule, std::void_t<decltype(Rule::kAvx512)>> : std::bool_constant<Rule::kAvx512> {};
template <class Rule, class = void>
struct runs_avx512_in_cache : std::false_type {};
template <class Rule>
struct runs_avx512_in_cache<Rule, std::void_t<decltype(Rule::kAvx512InCache)>>
    : std::bool_constant<Rule::kAvx512InCache> {};
template <class Rule, class = void>
struct runs_avx512_wide : std::false_type {};
template <class Rule>
struct runs_avx512_wide<Rule, std::void_t<decltype(Rule::kAvx512Wide)>>
    : std::bool_constant<Rule::kAvx512Wide> {};

// A step of 16-bit tensors runs AVX-512 on every Loop (every AVX-512 CPU): a float's
// rounding to bfloat16 and its narrowing to 16 bits (vpmovdw), float16's conversions
// (vcvtps2ph and vcvtph2ps on 512-bit vectors) and the NaN test (a mask register) are
// each one instruction there, and AVX2 spends a shuffle sequence per 8 elements on them.
// On a Zen 4, which splits 512-bit vectors in two, the bfloat16 steps on ResNet-18's
// tensors took 0.5-0.8x the time of the AVX2 runner (bench/README.md, "16-bit runners").
// A Loop with an AVX-512 runner (one of the flags above) runs it; one without, its
// 16-bit-only runner, where it declares `static constexpr bool kAvx512Half = true;`.
template <class Rule>
constexpr bool has_avx512_runner() {
  return runs_avx512<Rule>::value || runs_avx512_in_cache<Rule>::value || runs_avx512_wide<Rule>::value;
}
template <class Rule, class = void>
struct runs_avx512_half : std::false_type {};
template <class Rule>
struct runs_avx512_half<Rule, std::void_t<decltype(Rule::kAvx512Half)>>
    : std::bool_constant<Rule::kAvx512Half> {};

// Whether every tensor of a step is bfloat16 or float16.
template <std::size_t K>
bool half_step(const TensorTable<K>& t) {
  for (const DType d : t.dtypes)
    if (d != DType::bf16 && d != DType::f16) return false;
  return true;
}

// The loops whose steps are bound by square roots and divisions once their arrays are in
// cache (kAvx512InCache) run 512-bit vectors on steps of at most this many bytes of arrays
// (K per element, used or not); 0: never. AMD's Zen 5 (family 1Ah) divides and takes
// square roots of 512-bit vectors at twice the rate of 256-bit ones; once the arrays
// stream from memory the gain is gone, and one thread loses a little there (above): hence
// 64 MiB, the largest of those loops' arrays at 3.3M elements. The loops that declare
// kAvx512Wide run 512-bit vectors at every size where this is not 0. Intel's Xeon showed
// no such gain (1M elements: 0.94-1.11) and Zen 4 splits 512-bit vectors in two: 0 there.
// The measurements: bench/README.md, "Measurements behind the CPU runners".
inline bool cpu_is_amd_family_1ah_or_later() {
#if OPTBOWL_X86_DISPATCH
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
  const bool amd = b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;  // "AuthenticAMD"
  if (!amd || !__get_cpuid(1, &a, &b, &c, &d)) return false;
  const unsigned base = (a >> 8) & 0xf, extended = (a >> 20) & 0xff;
  return (base == 0xf ? base + extended : base) >= 0x1a;
#else
  return false;
#endif
}

inline std::int64_t& wide_in_cache_bytes() {
  static std::int64_t bytes = cpu_is_amd_family_1ah_or_later() ? (std::int64_t{64} << 20) : 0;
  return bytes;
}

// Steps over at least this many bytes of arrays (step_bytes) prefetch in software
// (run_prefetched above); 0: every step. 32 MiB, the L3 of the Zen 5 it was measured on
// (smaller steps run from cache, where the prefetches would only cost instructions);
// elsewhere none: on Zen 4 (AMD family 19h) the compact state through the optimizer on
// ResNet-18's tensors took 0.81-0.84x the float state's time without, 0.91-0.93x with
// (bench/README.md, "Software prefetch").
inline std::int64_t& prefetch_min_bytes() {
  static std::int64_t bytes =
      cpu_is_amd_family_1ah_or_later() ? (std::int64_t{32} << 20) : std::numeric_limits<std::int64_t>::max();
  return bytes;
}

// Bytes of the arrays of a step over `t`, at most K per element.
template <std::size_t K>
std::int64_t step_bytes(const TensorTable<K>& t) {
  std::int64_t bytes = 0;
  for (std::size_t i = 0; i < t.size(); ++i)
    bytes += t.sizes[i] * static_cast<std::int64_t>(K) * dtype_size(t.dtypes[i]);
  return bytes;
}

// The runner of Rule for a step over `t`, prefetching or not.
template <class Rule, std::size_t K, bool Prefetch>
ChunkRunner<Rule, K> chunk_runner_of(const TensorTable<K>& t) {
#if OPTBOWL_X86_DISPATCH
  switch (isa_setting()) {
    case Isa::avx512:
      if constexpr (has_avx512_runner<Rule>()) {
        if (half_step(t)) return &run_chunks_avx512<Rule, K, Prefetch>;
      } else if constexpr (runs_avx512_half<Rule>::value) {
        if (half_step(t)) return &run_half_chunks_avx512<Rule, K, Prefetch>;
      }
      if constexpr (runs_avx512<Rule>::value) return &run_chunks_avx512<Rule, K, Prefetch>;
      if constexpr (runs_avx512_in_cache<Rule>::value)
        if (step_bytes(t) <= wide_in_cache_bytes()) return &run_chunks_avx512<Rule, K, Prefetch>;
      if constexpr (runs_avx512_wide<Rule>::value)
        if (wide_in_cache_bytes() > 0) return &run_chunks_avx512<Rule, K, Prefetch>;
      return &run_chunks_avx2<Rule, K, Prefetch>;
    case Isa::avx2: return &run_chunks_avx2<Rule, K, Prefetch>;
    default: break;
  }
#endif
  (void)t;
  return &run_chunks_baseline<Rule, K, Prefetch>;
}

template <class Rule, std::size_t K>
ChunkRunner<Rule, K> chunk_runner(const Rule& rule, const TensorTable<K>& t) {
  if constexpr (has_prefetches<Rule>::value)
    if (rule.prefetches() && step_bytes(t) >= prefetch_min_bytes())
      return chunk_runner_of<Rule, K, true>(t);
  (void)rule;
  return chunk_runner_of<Rule, K, false>(t);
}

// Call f() compiled for the ISA the loops use: `flatten` inlines f and everything it calls
// into a function built for that ISA, as the chunk runners above are (the bowl simulator
// runs its own loops through this). `noinline` keeps each such function whole, also when
// it is called from another one: a hot inner loop wrapped in its own with_loop_isa is
// optimised on its own rather than as a corner of a much larger function.
#if defined(__GNUC__) || defined(__clang__)
#define OPTBOWL_NOINLINE __attribute__((noinline))
#else
#define OPTBOWL_NOINLINE
#endif
template <class F>
OPTBOWL_NOINLINE OPTBOWL_TARGET_BASELINE void call_baseline(F& f) {
  f();
}
#if OPTBOWL_X86_DISPATCH
template <class F>
OPTBOWL_NOINLINE OPTBOWL_TARGET_AVX2 void call_avx2(F& f) {
  f();
}
template <class F>
OPTBOWL_NOINLINE OPTBOWL_TARGET_AVX512 void call_avx512(F& f) {
  f();
}
#endif

template <class F>
void with_loop_isa(F&& f) {
#if OPTBOWL_X86_DISPATCH
  switch (isa_setting()) {
    case Isa::avx512: return call_avx512(f);
    case Isa::avx2: return call_avx2(f);
    default: break;
  }
#endif
  call_baseline(f);
}

// Apply `rule` to every element of every tensor of `t`. Call without the GIL.
template <class Rule, std::size_t K>
void for_each_element(const Rule& rule, const TensorTable<K>& t) {
  const std::int64_t total = t.numel();
  if (total == 0) return;
  const ChunkRunner<Rule, K> run = chunk_runner(rule, t);
  const int threads = max_threads();
  if (total < kParallelMin || threads <= 1) {
    for (std::size_t i = 0; i < t.size(); ++i) {
      if (t.sizes[i] == 0) continue;
      const Chunk whole{static_cast<std::int32_t>(i), 0, t.sizes[i]};
      run(rule, t, &whole, 1);
    }
    return;
  }
  const std::vector<Chunk> chunks = make_chunks(t, threads);
  const std::int64_t n = static_cast<std::int64_t>(chunks.size());
  const int helpers = static_cast<int>(std::min<std::int64_t>(threads - 1, n - 1));
  HelperPool::instance().run(n, helpers, [&](std::int64_t c) { run(rule, t, &chunks[c], 1); });
}

}  // namespace optbowl
