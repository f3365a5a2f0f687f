// Optimizer kernels. The build compiles this file once per instruction set;
// the per-element math comes from the functors in nnfuse/ops/optim.h.
//
// grad_stats: the read-only pass over a gradient block (sum of squares in
// double and the non-finite check). Widening float lanes to double takes
// intrinsics, so it is spelled per ISA here; it is a reduction loop, not part
// of the optimizer math.
// update: one fused pass per element: load p (or its float32 master), g and
// the state, apply GradPrep and Op::step, store. Tails use the same vector
// code through masked (AVX-512) or zero-padded (AVX2) loads and stores.
#include <type_traits>

#include "cpu/kernels/isa.h"
#include "cpu/optim_api.h"
#include "nnfuse/ops/optim.h"

NNF_NS_BEGIN

namespace {

// Double accumulator of the squares of a block's float elements in 16 virtual
// lanes (element i into lane i % 16, with one fma each), summed at the end as
// (lane j + lane j + 8) for j = 0..7 in order. Every ISA performs the same
// operations in the same order, so the norm has the same bits on each.
#if NNF_ISA_LEVEL == 2
struct SquareSum {
  __m512d a = _mm512_setzero_pd(), b = _mm512_setzero_pd();  // lanes 0-7, 8-15
  void add(VecF x) {
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(x.v));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x.v), 1)));
    a = _mm512_fmadd_pd(lo, lo, a);
    b = _mm512_fmadd_pd(hi, hi, b);
  }
  double total() const {
    alignas(64) double la[8], lb[8];
    _mm512_store_pd(la, a);
    _mm512_store_pd(lb, b);
    double s = 0.0;
    for (int i = 0; i < 8; ++i) s += la[i] + lb[i];
    return s;
  }
};
#elif NNF_ISA_LEVEL == 1
struct SquareSum {
  __m256d lanes[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
  int half = 0;  // vectors alternate between lanes 0-7 (half 0) and 8-15 (half 1)
  void add(VecF x) {
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x.v));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x.v, 1));
    lanes[2 * half] = _mm256_fmadd_pd(lo, lo, lanes[2 * half]);
    lanes[2 * half + 1] = _mm256_fmadd_pd(hi, hi, lanes[2 * half + 1]);
    half ^= 1;
  }
  double total() const {
    alignas(32) double l[16];
    for (int k = 0; k < 4; ++k) _mm256_store_pd(l + 4 * k, lanes[k]);
    double s = 0.0;
    for (int i = 0; i < 8; ++i) s += l[i] + l[i + 8];
    return s;
  }
};
#else
struct SquareSum {
  double lanes[16] = {};
  int next = 0;
  void add(float x) {
    lanes[next] = fma(static_cast<double>(x), static_cast<double>(x), lanes[next]);
    next = (next + 1) & 15;
  }
  double total() const {
    double s = 0.0;
    for (int i = 0; i < 8; ++i) s += lanes[i] + lanes[i + 8];
    return s;
  }
};
#endif

template <class T>
GradBlockStats grad_stats_float(const T* g, int64_t n, bool zero_nonfinite) {
  constexpr int L = kLanes<VecF>;
  SquareSum sum;
  VecF finite_probe(0.0f);  // sum of x - x: NaN iff some x is NaN or +-inf
  auto take = [&](VecF x) {
    VecF diff = x - x;
    finite_probe = finite_probe + diff;
    if (zero_nonfinite) x = select(diff == VecF(0.0f), x, VecF(0.0f));
    sum.add(x);
  };
  int64_t i = 0;
  for (; i + L <= n; i += L) take(vload(g + i));
  if constexpr (L > 1) {
    if (i < n) take(vload_partial(g + i, static_cast<int>(n - i)));  // padding adds 0
  }
  return {sum.total(), any_lane(is_nan(finite_probe)) ? 1 : 0, 0};
}

GradBlockStats grad_stats_double(const double* g, int64_t n, bool zero_nonfinite) {
  double sum = 0.0, probe = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double diff = g[i] - g[i];
    probe += diff;
    if (!(zero_nonfinite && diff != 0.0)) sum = fma(g[i], g[i], sum);
  }
  bool nonfinite = probe != 0.0;
  bool summed_nonfinite = nonfinite && !zero_nonfinite;  // an inf or NaN is part of the sum
  if (summed_nonfinite || sum <= 1.7976931348623157e308) return {sum, nonfinite ? 1 : 0, 0};
  // Finite elements whose squares overflow (the non-finite ones, if any, are
  // taken as 0): sum (x * 2^-600)^2 instead.
  const double down = pow2i(-600.0);
  sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (g[i] - g[i] != 0.0) continue;  // only here under "zero": NaN or inf
    double x = g[i] * down;
    sum = fma(x, x, sum);
  }
  return {sum, nonfinite ? 1 : 0, 1};
}

void grad_stats(DType dtype, const void* grad, int64_t begin, int64_t end, bool zero_nonfinite,
                GradBlockStats* out) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = static_cast<const T*>(grad) + begin;
    if constexpr (std::is_same_v<T, double>) {
      *out = grad_stats_double(g, end - begin, zero_nonfinite);
    } else {
      *out = grad_stats_float(g, end - begin, zero_nonfinite);
    }
  });
}

template <class Op, class T>
void update_typed(const OptimConfig& c, const OptimTensor& t, int64_t begin, int64_t end) {
  using V = vec_for_t<T>;
  using S = scalar_t<V>;  // state type: float, or double for float64 parameters
  constexpr int L = kLanes<V>;
  const typename Op::template Hyper<V> h(c.hyper, c.flags);
  const GradPrep<V> prep{V(static_cast<S>(c.clip)), c.flags};
  const V scale(std::is_same_v<S, double> ? static_cast<S>(t.scale_double) : static_cast<S>(t.scale));
  T* p = static_cast<T*>(t.param) + begin;
  const T* g = static_cast<const T*>(t.grad) + begin;
  S* st[3];
  for (int k = 0; k < 3; ++k) st[k] = t.state[k] ? static_cast<S*>(t.state[k]) + begin : nullptr;
  S* master = t.master ? static_cast<S*>(t.master) + begin : nullptr;
  const int64_t n = end - begin;

  auto body = [&](int64_t i, int rest) {
    auto load = [&](const auto* ptr) -> V {
      if constexpr (L == 1) {
        return vload(ptr + i);
      } else {
        return rest == L ? vload(ptr + i) : vload_partial(ptr + i, rest);
      }
    };
    auto store = [&](auto* ptr, V v) {
      if constexpr (L == 1) {
        vstore(ptr + i, v);
      } else {
        if (rest == L) {
          vstore(ptr + i, v);
        } else {
          vstore_partial(ptr + i, v, rest);
        }
      }
    };
    V pv = master ? load(master) : load(p);
    V gv = prep(load(g), scale);
    V s[3] = {V(0), V(0), V(0)};
    for (int k = 0; k < 3; ++k)
      if (st[k]) s[k] = load(st[k]);
    Op::step(pv, gv, s, h);
    for (int k = 0; k < 3; ++k)
      if (st[k]) store(st[k], s[k]);
    if (master) store(master, pv);
    store(p, pv);  // rounded to nearest even for 16-bit parameters
  };
  // The inputs are prefetched a few lines ahead (prefetch_ahead, isa.h) where
  // the dispatch says it pays (c.prefetch: optim_prefetch, optim_dispatch.h).
  auto loop = [&](auto prefetch) {
    int64_t i = 0;
    for (; i + L <= n; i += L) {
      if constexpr (L > 1 && decltype(prefetch)::value) {
        prefetch_ahead(g + i);
        prefetch_ahead(p + i);
        if (master) prefetch_ahead(master + i);
        for (int k = 0; k < 3; ++k)
          if (st[k]) prefetch_ahead(st[k] + i);
      }
      body(i, L);
    }
    if (i < n) body(i, static_cast<int>(n - i));
  };
  if (c.prefetch) {
    loop(std::true_type{});
  } else {
    loop(std::false_type{});
  }
}

template <class T>
void update_dtype(const OptimConfig& c, const OptimTensor& t, int64_t begin, int64_t end) {
  switch (c.kind) {
    case OptimKind::adam: update_typed<AdamOp, T>(c, t, begin, end); break;
    case OptimKind::sgd: update_typed<SgdOp, T>(c, t, begin, end); break;
    case OptimKind::rmsprop: update_typed<RmspropOp, T>(c, t, begin, end); break;
    case OptimKind::adagrad: update_typed<AdagradOp, T>(c, t, begin, end); break;
  }
}

void update(const OptimConfig& c, const OptimTensor& t, int64_t begin, int64_t end) {
  dispatch_dtype(c.dtype, [&](auto tag) { update_dtype<typename decltype(tag)::type>(c, t, begin, end); });
}

}  // namespace

const OptimKernelTable& optim_kernel_table() {
  static constexpr OptimKernelTable table = {kIsaName, grad_stats, update};
  return table;
}

NNF_NS_END
