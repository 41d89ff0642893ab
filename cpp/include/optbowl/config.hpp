// Compiler portability for the per-element rules.
//
// Every rule in optbowl/rules/ is an inline function template that the CPU loop,
// the CUDA kernels and the bowl simulator all call. OPTBOWL_HD marks it for both host
// and device when the translation unit is compiled by nvcc.
#pragma once

#if defined(__CUDACC__)
#define OPTBOWL_HD __host__ __device__ __forceinline__
#else
#define OPTBOWL_HD inline
#endif

#if defined(__GNUC__) || defined(__clang__)
#define OPTBOWL_RESTRICT __restrict__
#elif defined(_MSC_VER)
#define OPTBOWL_RESTRICT __restrict
#else
#define OPTBOWL_RESTRICT
#endif

// Before an element loop: no iteration reads what another writes (every array of a call is
// its own buffer, which the bindings check, and a bowl sweep's lane arrays are its own), so
// the compiler may vectorise without proving it, and loads pointers it cannot prove
// invariant (a sweep's per-lane hyper-parameter arrays) once.
#if defined(__CUDACC__)
#define OPTBOWL_IVDEP
#elif defined(__clang__)
#define OPTBOWL_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define OPTBOWL_IVDEP _Pragma("GCC ivdep")
#else
#define OPTBOWL_IVDEP
#endif

// A hint to fetch the cache line holding p (read, no temporal locality); never faults.
#if defined(__GNUC__) || defined(__clang__)
#define OPTBOWL_PREFETCH(p) __builtin_prefetch((p), 0, 0)
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <xmmintrin.h>
#define OPTBOWL_PREFETCH(p) _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_NTA)
#else
#define OPTBOWL_PREFETCH(p) ((void)(p))
#endif
