// Included by every kernel source, which the build compiles once per
// instruction set with NNF_ISA_LEVEL = 0 (scalar), 1 (AVX2) or 2 (AVX-512).
// It names the float vector type of this ISA (VecF) and the loaders/stores that
// widen 16-bit storage to float and narrow it back; float64 always runs with the
// scalar double type.
#pragma once

#include <cstdint>

#include "cpu/cpu_api.h"
#include "cpu/dtype_dispatch.h"
#include "nnfuse/common/dtypes.h"
#include "nnfuse/vec/scalar.h"

#if !defined(NNF_ISA_LEVEL)
#error "kernel sources are compiled once per ISA with NNF_ISA_LEVEL set"
#endif

#if NNF_ISA_LEVEL == 2
#include "nnfuse/vec/avx512.h"
#elif NNF_ISA_LEVEL == 1
#include "nnfuse/vec/avx2.h"
#endif

NNF_NS_BEGIN

#if NNF_ISA_LEVEL == 2
using VecF = VecAvx512;
inline constexpr const char* kIsaName = "avx512";
#elif NNF_ISA_LEVEL == 1
using VecF = VecAvx2;
inline constexpr const char* kIsaName = "avx2";
#else
using VecF = float;
inline constexpr const char* kIsaName = "scalar";
template <class T>
NNF_HD float vload(const T* p) {
  return to_float(*p);
}
template <class T>
NNF_HD void vstore(T* p, float v) {
  *p = StoreAs<T>::from(v);
}
#endif

NNF_HD double vload(const double* p) { return *p; }
NNF_HD void vstore(double* p, double v) { *p = v; }

// The value type a storage type computes in on this ISA.
template <class T>
struct VecFor {
  using type = VecF;
};
template <>
struct VecFor<double> {
  using type = double;
};
template <class T>
using vec_for_t = typename VecFor<T>::type;

template <class V>
inline constexpr int kLanes = VecTraits<V>::lanes;

// y[i] = f(x[i]) and out[i] = f(a[i], b[i]) over [0, n): full vectors, then one
// masked (or zero-padded) vector for the tail, so every element goes through
// the same instructions.
template <class T, class F>
NNF_HD void map_unary(const T* x, T* y, int64_t n, F&& f) {
  using V = vec_for_t<T>;
  constexpr int L = kLanes<V>;
  int64_t i = 0;
  for (; i + L <= n; i += L) vstore(y + i, f(vload(x + i)));
  if constexpr (L > 1) {
    if (i < n) {
      int rest = static_cast<int>(n - i);
      vstore_partial(y + i, f(vload_partial(x + i, rest)), rest);
    }
  }
}

template <class T, class F>
NNF_HD void map_binary(const T* a, const T* b, T* out, int64_t n, F&& f) {
  using V = vec_for_t<T>;
  constexpr int L = kLanes<V>;
  int64_t i = 0;
  for (; i + L <= n; i += L) vstore(out + i, f(vload(a + i), vload(b + i)));
  if constexpr (L > 1) {
    if (i < n) {
      int rest = static_cast<int>(n - i);
      vstore_partial(out + i, f(vload_partial(a + i, rest), vload_partial(b + i, rest)), rest);
    }
  }
}

NNF_NS_END
