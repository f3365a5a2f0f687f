// Portability macros shared by host, per-ISA and device code.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define NNF_HD __host__ __device__ __forceinline__
#define NNF_DEVICE_CODE 1
#else
#define NNF_HD inline __attribute__((always_inline))
#endif

// A read-only lookup table of the shared math: device memory in CUDA code (a
// copy per translation unit; host code never reads it there).
#if defined(__CUDACC__)
#define NNF_TABLE static __device__ const
#else
#define NNF_TABLE inline constexpr
#endif

// Every header of the core opens its namespace with NNF_NS_BEGIN. The inline
// namespace is named after the instruction set the translation unit is compiled
// for (set by the build: isa_scalar, isa_avx2, isa_avx512, isa_cuda, or
// isa_base for code compiled with baseline flags). Inline functions compiled
// with AVX-512 flags therefore get symbols of their own, and the linker can
// never hand an AVX-512 copy of a helper to the scalar path (an ODR clash that
// crashes older CPUs).
#ifndef NNF_ISA_NS
#define NNF_ISA_NS isa_base
#endif
#define NNF_NS_BEGIN \
  namespace nnfuse { \
  inline namespace NNF_ISA_NS {
#define NNF_NS_END \
  } \
  }
