// Included by every kernel source, which the build compiles once per
// instruction set with NNF_ISA_LEVEL = 0 (scalar), 1 (AVX2) or 2 (AVX-512).
// It names the float vector type of this ISA (VecF) and the loaders/stores that
// widen 16-bit storage to float and narrow it back; float64 always runs with the
// scalar double type.
#pragma once

#include <cstdint>
#include <type_traits>

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

// bfloat16 element-wise loops run two vectors at a time through vload_pair /
// vstore_pair (AVX2 and AVX-512): at 16 values per AVX-512 vector, GELU on
// bfloat16 in L1 took 0.515 ns per element with vload / vstore and 0.448
// with pairs.
template <class T>
inline constexpr bool kBfloat16Pairs = NNF_ISA_LEVEL >= 1 && std::is_same<T, bfloat16_t>::value;

// The elements one full-width iteration of map_unary / map_binary stores.
template <class T>
inline constexpr int kStoreBlock = kLanes<vec_for_t<T>> * (kBfloat16Pairs<T> ? 2 : 1);

// Elements before the first store block at an address aligned to its width
// (64 bytes of float32 or of bfloat16 pairs on AVX-512), at most n. A store
// that splits a cache line costs a second line access: NumPy's large buffers
// start 16 bytes past a line, and there, with every store split, relu forward
// over 2^20 float32 (L3-resident, 1 thread) took 110 us against 95 us with
// the output aligned (2^16: 6.8 us against 5.7).
template <class T>
NNF_HD int64_t aligned_head(const T* out, int64_t n) {
  constexpr uintptr_t kWidth = kStoreBlock<T> * sizeof(T);
  const uintptr_t misalign = reinterpret_cast<uintptr_t>(out) % kWidth;
  const int64_t head = static_cast<int64_t>(((kWidth - misalign) % kWidth) / sizeof(T));
  return head < n ? head : n;
}

// Whether this ISA has non-temporal stores (use_stream is false without them).
inline constexpr bool kHasStreamStores = NNF_ISA_LEVEL >= 1;

#if NNF_ISA_LEVEL >= 1
// Orders a loop's non-temporal stores before whatever the caller does next.
NNF_HD void stream_fence() { _mm_sfence(); }
#else
NNF_HD void stream_fence() {}
#endif
template <bool kStream, class T, class V>
NNF_HD void vstore_maybe_stream(T* p, V v) {
  if constexpr (kStream) {
    vstore_stream(p, v);
  } else {
    vstore(p, v);
  }
}
template <bool kStream, class V>
NNF_HD void vstore_pair_maybe_stream(bfloat16_t* p, V even, V odd) {
  if constexpr (kStream) {
    vstore_stream_pair(p, even, odd);
  } else {
    vstore_pair(p, even, odd);
  }
}

// The streamed loops (outputs too large for the caches, so inputs from
// memory too) prefetch their inputs kPrefetchBytes ahead, one line per
// vector. On a 2-vCPU Intel Xeon, whose hardware prefetchers did not keep up
// with loops of many instructions per line, the loads otherwise waited on
// memory one reorder window at a time: 2^26 float32, 1 thread, AVX-512, ns per
// element without -> 1 / 2 / 4 KiB ahead (median of 7, alternating builds):
// gelu 1.76 -> 0.69 / 0.65 / 0.66, sigmoid 1.34 -> 0.40 / 0.37 / 0.37, mish
// 2.75 -> 1.06 / 1.02 / 1.02; relu (memory-bound) 0.33 unchanged.
inline constexpr int kPrefetchBytes = 2048;
template <class T>
NNF_HD void prefetch_ahead(const T* p) {
  __builtin_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes, 0, 3);
}

// The per-element lambdas are inlined into the loops: called out of line (as
// GCC chose for the larger functors), every call re-broadcast all the
// polynomial constants from memory instead of keeping them in registers.
#define NNF_LAMBDA_INLINE __attribute__((always_inline))

// Outputs the dispatch chose to stream (cpu_api.h, stream_output: large ones
// already backed by memory, and mid-size ones on machines measured to gain)
// are written with non-temporal stores: 2^26 float32 forward ~0.65 -> ~0.9 of
// np.copyto, which streams too; 2^26 bfloat16, 1 thread: relu backward 15.8
// -> 12.8 ms, hardsigmoid backward 21.5 -> 15.6 ms. float16 and bfloat16
// outputs stream too, float64 (scalar code) does not. Large fresh outputs
// take plain stores. Streamed loops and large ones prefetch their inputs.
// Results are the bits of plain stores (tested). The softmax rows stream by
// the same rule, from kStreamBytes only.

template <class T>
inline bool large_output(int64_t total) {
  return total * int64_t(sizeof(T)) >= kStreamBytes;
}
template <class T>
inline bool use_stream(const T* out, bool stream) {
#if NNF_ISA_LEVEL >= 1
  return !std::is_same<T, double>::value && stream && reinterpret_cast<uintptr_t>(out) % sizeof(T) == 0;
#else
  (void)out;
  (void)stream;
  return false;
#endif
}

// y[i] = f(x[i]) and out[i] = f(a[i], b[i]) over [0, n): masked vectors up to
// the first aligned output block (aligned_head), full blocks, at most one more
// full vector, then one masked vector for the tail; with a single lane, every
// element in turn. Every element goes through the same instructions, so where
// the vectors start does not change any result. kStream: the full vectors
// are written with non-temporal stores (then a store fence; map_binary with
// kFence false leaves it to a caller that maps many rows and fences once
// after the last), for outputs too large to stay in the caches.
template <bool kStream = false, bool kPrefetch = kStream, class T, class F>
NNF_HD void map_unary(const T* x, T* y, int64_t n, F&& f) {
  using V = vec_for_t<T>;
  constexpr int L = kLanes<V>;
  int64_t i = 0;
  if constexpr (L > 1) {
    const int64_t head = aligned_head(y, n);
    for (; i < head; i += L) {
      const int m = static_cast<int>(head - i < L ? head - i : L);
      vstore_partial(y + i, f(vload_partial(x + i, m)), m);
    }
    i = head;
  }
  if constexpr (kBfloat16Pairs<T>) {
    for (; i + 2 * L <= n; i += 2 * L) {
      if constexpr (kPrefetch) prefetch_ahead(x + i);
      const auto xs = vload_pair(x + i);
      vstore_pair_maybe_stream<kStream>(y + i, f(xs.even), f(xs.odd));
    }
  }
  for (; i + L <= n; i += L) {
    if constexpr (kPrefetch) prefetch_ahead(x + i);
    vstore_maybe_stream<kStream>(y + i, f(vload(x + i)));
  }
  if constexpr (kStream) stream_fence();
  if constexpr (L > 1) {
    if (i < n) {
      int rest = static_cast<int>(n - i);
      vstore_partial(y + i, f(vload_partial(x + i, rest)), rest);
    }
  }
}

template <bool kStream = false, bool kFence = true, bool kPrefetch = kStream, class T, class F>
NNF_HD void map_binary(const T* a, const T* b, T* out, int64_t n, F&& f) {
  using V = vec_for_t<T>;
  constexpr int L = kLanes<V>;
  int64_t i = 0;
  if constexpr (L > 1) {
    const int64_t head = aligned_head(out, n);
    for (; i < head; i += L) {
      const int m = static_cast<int>(head - i < L ? head - i : L);
      vstore_partial(out + i, f(vload_partial(a + i, m), vload_partial(b + i, m)), m);
    }
    i = head;
  }
  if constexpr (kBfloat16Pairs<T>) {
    for (; i + 2 * L <= n; i += 2 * L) {
      if constexpr (kPrefetch) {
        prefetch_ahead(a + i);
        prefetch_ahead(b + i);
      }
      const auto as = vload_pair(a + i);
      const auto bs = vload_pair(b + i);
      vstore_pair_maybe_stream<kStream>(out + i, f(as.even, bs.even), f(as.odd, bs.odd));
    }
  }
  // Four vectors per iteration: the two-input loops of the cheap backward
  // passes are bound by the loop's own overhead in L2 (float32, 1 thread,
  // AVX-512, 2^16 elements, median of 15 alternating rounds: relu backward
  // 16.9 -> 14.7 us, tanh backward from y 17.6 -> 14.6, leaky_relu backward
  // 16.7 -> 14.2; the exp-bound ones and larger sizes unchanged). The
  // one-input loops measured no faster unrolled.
#pragma GCC unroll 4
  for (; i + L <= n; i += L) {
    if constexpr (kPrefetch) {
      prefetch_ahead(a + i);
      prefetch_ahead(b + i);
    }
    vstore_maybe_stream<kStream>(out + i, f(vload(a + i), vload(b + i)));
  }
  if constexpr (kStream && kFence) stream_fence();
  if constexpr (L > 1) {
    if (i < n) {
      int rest = static_cast<int>(n - i);
      vstore_partial(out + i, f(vload_partial(a + i, rest), vload_partial(b + i, rest)), rest);
    }
  }
}

// map_unary / map_binary with streaming stores where use_stream says so, and
// prefetched inputs for any large output (map_binary_any: where kPrefetch).
template <class T, class F>
void map_unary_any(const T* x, T* y, int64_t n, int64_t total, bool stream, F&& f) {
#if NNF_ISA_LEVEL >= 1
  if constexpr (!std::is_same<T, double>::value) {
    if (use_stream(y, stream)) return map_unary<true>(x, y, n, f);
    if (large_output<T>(total)) return map_unary<false, true>(x, y, n, f);
  }
#endif
  map_unary(x, y, n, f);
}
// kFence = false leaves the store fence after streamed stores to the caller
// (one fence after several calls). kPrefetch = false: a loop of a few
// arithmetic operations per vector (relu's backward, tanh's from y), which the
// hardware prefetchers keep fed and the software prefetches slowed: 2^26
// float32, 1 thread, AVX-512, an AMD EPYC (Zen 4), median ms of 9, four
// alternating runs: relu backward 26.9-28.7 -> 20.2-21.7, tanh backward from
// y 28.7-30.9 -> 20.7-21.4 (np.add of the same bytes 23.5-28.0); plain
// stores into a resident output: relu backward 42.8-43.6 with the
// prefetches against 28.3-29.4 without. The exp-bound loops (sigmoid, gelu,
// mish backward) measured the same either way there, and gained with them
// on the Intel Xeon of the comment above (gelu backward 1.00 -> 0.62 ns per
// element).
template <bool kFence = true, bool kPrefetch = true, class T, class F>
void map_binary_any(const T* a, const T* b, T* out, int64_t n, int64_t total, bool stream, F&& f) {
#if NNF_ISA_LEVEL >= 1
  if constexpr (!std::is_same<T, double>::value) {
    if (use_stream(out, stream)) return map_binary<true, kFence, kPrefetch>(a, b, out, n, f);
    if (large_output<T>(total)) return map_binary<false, true, kPrefetch>(a, b, out, n, f);
  }
#endif
  map_binary(a, b, out, n, f);
}

NNF_NS_END
