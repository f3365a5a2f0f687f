// Softmax, log-softmax, their backward passes and the fused softmax
// cross-entropy. The build compiles this file once per instruction set; the
// math comes from nnfuse/ops/softmax.h, written once.
//
// Row reductions use 16 virtual lanes on every ISA: element i of a block adds
// into lane i % 16 (one AVX-512 vector, two AVX2 vectors, sixteen scalars),
// and the 16 lane sums are added in double in a fixed pairwise order. Every
// ISA therefore performs the same IEEE operations in the same order, and the
// scalar, AVX2 and AVX-512 results are identical to the bit (tested).
//
// Float32 forward rows and cross-entropy rows (softmax_rows_f32,
// cross_entropy_row_f32; on AVX-512, rows of up to 256 (softmax) or 512
// elements 16 at a time) compute one exp per element: the maximum (and
// minimum) first, then e^(z - M) written out while it is summed, then the
// output in place. Rows whose spread max - min is below 87 (almost all) use
// exp_near (with z - M by Fast2Sum where the row allows it) and lane sums
// that start at 1 (Fast2Sum); softmax rows of more than 16 elements with
// every |z| <= 256 take e^(z - K ln2) instead (softmax_term_shifted: no
// z - M). Long rows are cut in segments of kSoftmaxSegment, each reduced
// against its own maximum (or shift) and rescaled at the end, which the
// dispatch may give to several threads.
// Unmasked forward rows find the maximum without NaN tests and are redone
// with them when the sum shows a NaN (softmax_row_redo); the exps of a row
// overlap the memory reads of the next (a software prefetch).
//
// The other dtypes walk forward rows in blocks of kBlock elements (4 KiB of
// float32, in L1 after the block's first read): the block's maximum, then its
// sum of e^(z - M) against the running maximum M, absorbed into the running
// (M, S) in double (the online normaliser), and a second exp for the output.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "cpu/kernels/isa.h"
#include "cpu/softmax_api.h"
#include "nnfuse/ops/softmax.h"

NNF_NS_BEGIN

namespace {

constexpr int kGroup = 16;
constexpr int64_t kBlock = 1024;

// Logits are summed (for label smoothing) times 2^-40 (float) / 2^-80 (double):
// exact, and C * max / 2^40 stays finite for any row length below 2^40.
template <class S>
inline constexpr S kLogitSumScale = S(9.094947017729282379150390625e-13);  // 2^-40
template <>
inline constexpr double kLogitSumScale<double> = 8.27180612553027674871408692069962853565812110900878906250e-25;  // 2^-80

alignas(64) constexpr float kIota[kGroup] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

template <class V>
inline constexpr int kVecs = kGroup / kLanes<V>;

// The first n lanes.
template <class V>
NNF_HD mask_t<V> first_lanes_mask(int n) {
  if constexpr (kLanes<V> == 1) {
    return n > 0;
  } else {
    return vload(kIota) < V(static_cast<float>(n));
  }
}

// Lanes whose keep byte is nonzero (n valid bytes).
template <class V>
NNF_HD mask_t<V> keep_lanes(const uint8_t* keep, int n) {
  using S = scalar_t<V>;
  if constexpr (kLanes<V> == 1) {
    return keep[0] != 0;
  } else {
    S flags[kLanes<V>];
    for (int j = 0; j < kLanes<V>; ++j) flags[j] = (j < n && keep[j]) ? S(1) : S(0);
    return vload(flags) != V(S(0));
  }
}

// n (1..L) elements at p widened to the compute type; padded lanes are 0.
template <class T>
NNF_HD vec_for_t<T> load_n(const T* p, int n) {
  if constexpr (kLanes<vec_for_t<T>> == 1) {
    return vload(p);
  } else {
    return n == kLanes<vec_for_t<T>> ? vload(p) : vload_partial(p, n);
  }
}

template <class T>
NNF_HD void store_n(T* p, vec_for_t<T> v, int n) {
  if constexpr (kLanes<vec_for_t<T>> == 1) {
    vstore(p, v);
  } else if (n == kLanes<vec_for_t<T>>) {
    vstore(p, v);
  } else {
    vstore_partial(p, v, n);
  }
}

template <class V>
NNF_HD void store_lanes(scalar_t<V>* dst, V v) {
  if constexpr (kLanes<V> == 1) {
    dst[0] = v;
  } else {
    vstore(dst, v);
  }
}

template <class T>
NNF_HD void store_scalar(T* p, double v) {
  *p = StoreAs<T>::from(static_cast<compute_t<T>>(v));
}

// Logits scale * x of n elements, -inf in padded and masked-out lanes. With
// kUnit the scale is 1 and not applied: x * 1 = x for every non-NaN x (a NaN
// row stays NaN; which NaN it gets already differs between ISAs).
template <class T, bool kMasked, bool kUnit = false>
NNF_HD vec_for_t<T> load_logits(const T* p, const uint8_t* keep, int n, vec_for_t<T> scale) {
  using V = vec_for_t<T>;
  const V neg_inf(static_cast<scalar_t<V>>(smx::neg_inf_f()));
  V z = load_n(p, n);
  if constexpr (!kUnit) z = z * scale;
  if constexpr (kLanes<V> > 1) {
    if (n < kLanes<V>) z = select(first_lanes_mask<V>(n), z, neg_inf);
  }
  if constexpr (kMasked) z = select(keep_lanes<V>(keep, n), z, neg_inf);
  return z;
}

// Calls f(k, i, n) for each vector of [0, len): vector k (0..kVecs-1) of its
// group of 16 elements, at element i, with n valid elements.
template <class V, class F>
NNF_HD void for_vectors(int64_t len, F&& f) {
  constexpr int L = kLanes<V>;
  int64_t i = 0;
  for (; i + kGroup <= len; i += kGroup) {
#pragma GCC unroll 16
    for (int k = 0; k < kVecs<V>; ++k) f(k, i + k * L, L);
  }
  for (int k = 0; i + k * L < len; ++k) {
    int64_t start = i + k * L;
    f(k, start, len - start < L ? static_cast<int>(len - start) : L);
  }
}

// The fixed tree over the 16 virtual lanes that every reduction of a row
// takes (lane j with lane j + 8, then + 4, + 2, + 1), so that every ISA and
// kernel combines a row's lanes in the same order. N < 16: rows whose first N
// virtual lanes hold a value each and the others op's identity (+0 for the
// sums, -inf for max_nan), whose steps are then left out. T: a scalar, or a
// vector holding one row per lane.
template <int N, class T, class Op>
NNF_HD T pairwise_over_lanes(const T (&lane)[N], Op op) {
  static_assert(N >= 1 && N <= kGroup, "one value per virtual lane");
  T t[N];
  for (int j = 0; j < N; ++j) t[j] = lane[j];
  int used = N;
  for (int width = kGroup / 2; width >= 1; width /= 2) {
    for (int j = 0; j < width && j + width < used; ++j) t[j] = op(t[j], t[j + width]);
    used = std::min(used, width);
  }
  return t[0];
}
template <class T>
NNF_HD T pairwise_sum(const T (&lane)[kGroup]) {
  return pairwise_over_lanes(lane, [](T a, T b) { return a + b; });
}

template <class V>
NNF_HD scalar_t<V> max_lanes(const V (&mx)[kVecs<V>]) {
  using S = scalar_t<V>;
  S lanes[kGroup];
  for (int k = 0; k < kVecs<V>; ++k) store_lanes(lanes + k * kLanes<V>, mx[k]);
  // A tree (depth 4, not a chain of 15): short rows wait on this maximum.
  return pairwise_over_lanes(lanes, [](S a, S b) { return smx::max_nan(a, b); });
}

// The lanes of a float vector widened to double (exact), one row per lane
// (the column kernels below), with the double operations they and
// log_row_sum use; plain double on the scalar path.
#if NNF_ISA_LEVEL == 2
struct LanesF64 {
  __m512d lo, hi;
  LanesF64() = default;
  LanesF64(__m512d l, __m512d h) : lo(l), hi(h) {}
  explicit LanesF64(double s) : lo(_mm512_set1_pd(s)), hi(_mm512_set1_pd(s)) {}
};
// The zero-masking forms with every lane selected, as in vec/avx512.h: the
// same instructions without the undefined pass-through operand GCC 12 warns
// about.
inline LanesF64 widen(VecAvx512 v) {
  return {_mm512_maskz_cvtps_pd(0xff, _mm512_maskz_extractf32x8_ps(0xff, v.v, 0)),
          _mm512_maskz_cvtps_pd(0xff, _mm512_maskz_extractf32x8_ps(0xff, v.v, 1))};
}
inline VecAvx512 narrow(LanesF64 a) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_maskz_cvtpd_ps(0xff, a.lo)), _mm512_maskz_cvtpd_ps(0xff, a.hi),
                            1);
}
inline LanesF64 operator+(LanesF64 a, LanesF64 b) { return {_mm512_add_pd(a.lo, b.lo), _mm512_add_pd(a.hi, b.hi)}; }
inline LanesF64 operator-(LanesF64 a, LanesF64 b) { return {_mm512_sub_pd(a.lo, b.lo), _mm512_sub_pd(a.hi, b.hi)}; }
inline LanesF64 operator*(LanesF64 a, LanesF64 b) { return {_mm512_mul_pd(a.lo, b.lo), _mm512_mul_pd(a.hi, b.hi)}; }
inline LanesF64 operator/(LanesF64 a, LanesF64 b) { return {_mm512_div_pd(a.lo, b.lo), _mm512_div_pd(a.hi, b.hi)}; }
inline LanesF64 fma(LanesF64 a, LanesF64 b, LanesF64 c) {
  return {_mm512_fmadd_pd(a.lo, b.lo, c.lo), _mm512_fmadd_pd(a.hi, b.hi, c.hi)};
}
inline LanesF64 where_nan(LanesF64 x, LanesF64 a, LanesF64 b) {
  return {_mm512_mask_blend_pd(_mm512_cmp_pd_mask(x.lo, x.lo, _CMP_UNORD_Q), b.lo, a.lo),
          _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x.hi, x.hi, _CMP_UNORD_Q), b.hi, a.hi)};
}
// vgetexppd / vgetmantpd: exact, the same values as the exponent and
// significand fields for normal x.
inline void split_binade(LanesF64 x, LanesF64& e, LanesF64& m) {
  e = {_mm512_maskz_getexp_pd(0xff, x.lo), _mm512_maskz_getexp_pd(0xff, x.hi)};
  m = {_mm512_maskz_getmant_pd(0xff, x.lo, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src),
       _mm512_maskz_getmant_pd(0xff, x.hi, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src)};
}
// Entry j of a table of 16 doubles per lane, j = the top four significand
// bits of m (vpermt2pd reads the low four bits of each index lane).
inline LanesF64 significand_lookup(const double* table, LanesF64 m) {
  const __m512d t0 = _mm512_loadu_pd(table), t1 = _mm512_loadu_pd(table + 8);
  return {_mm512_permutex2var_pd(t0, _mm512_maskz_srli_epi64(0xff, _mm512_castpd_si512(m.lo), 48), t1),
          _mm512_permutex2var_pd(t0, _mm512_maskz_srli_epi64(0xff, _mm512_castpd_si512(m.hi), 48), t1)};
}
inline void store_f64(double* p, LanesF64 a) {
  _mm512_storeu_pd(p, a.lo);
  _mm512_storeu_pd(p + 8, a.hi);
}
inline LanesF64 load_f64(const double* p) { return {_mm512_loadu_pd(p), _mm512_loadu_pd(p + 8)}; }
inline uint32_t lane_bits(MaskAvx512 m) { return m.m; }
#elif NNF_ISA_LEVEL == 1
struct LanesF64 {
  __m256d lo, hi;
  LanesF64() = default;
  LanesF64(__m256d l, __m256d h) : lo(l), hi(h) {}
  explicit LanesF64(double s) : lo(_mm256_set1_pd(s)), hi(_mm256_set1_pd(s)) {}
};
inline LanesF64 widen(VecAvx2 v) {
  return {_mm256_cvtps_pd(_mm256_castps256_ps128(v.v)), _mm256_cvtps_pd(_mm256_extractf128_ps(v.v, 1))};
}
inline VecAvx2 narrow(LanesF64 a) { return _mm256_set_m128(_mm256_cvtpd_ps(a.hi), _mm256_cvtpd_ps(a.lo)); }
inline LanesF64 operator+(LanesF64 a, LanesF64 b) { return {_mm256_add_pd(a.lo, b.lo), _mm256_add_pd(a.hi, b.hi)}; }
inline LanesF64 operator-(LanesF64 a, LanesF64 b) { return {_mm256_sub_pd(a.lo, b.lo), _mm256_sub_pd(a.hi, b.hi)}; }
inline LanesF64 operator*(LanesF64 a, LanesF64 b) { return {_mm256_mul_pd(a.lo, b.lo), _mm256_mul_pd(a.hi, b.hi)}; }
inline LanesF64 operator/(LanesF64 a, LanesF64 b) { return {_mm256_div_pd(a.lo, b.lo), _mm256_div_pd(a.hi, b.hi)}; }
inline LanesF64 fma(LanesF64 a, LanesF64 b, LanesF64 c) {
  return {_mm256_fmadd_pd(a.lo, b.lo, c.lo), _mm256_fmadd_pd(a.hi, b.hi, c.hi)};
}
inline LanesF64 where_nan(LanesF64 x, LanesF64 a, LanesF64 b) {
  return {_mm256_blendv_pd(b.lo, a.lo, _mm256_cmp_pd(x.lo, x.lo, _CMP_UNORD_Q)),
          _mm256_blendv_pd(b.hi, a.hi, _mm256_cmp_pd(x.hi, x.hi, _CMP_UNORD_Q))};
}
// The exponent field (as 2^52 + field, less 2^52: exact) and the
// significand with the exponent of 1, as split_binade(double).
inline void split_binade_half(__m256d x, __m256d& e, __m256d& m) {
  const __m256i bits = _mm256_castpd_si256(x);
  const __m256d two52 = _mm256_set1_pd(4503599627370496.0);
  const __m256i field = _mm256_or_si256(_mm256_srli_epi64(bits, 52), _mm256_castpd_si256(two52));
  e = _mm256_sub_pd(_mm256_sub_pd(_mm256_castsi256_pd(field), two52), _mm256_set1_pd(1023.0));
  m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi64x(0x000fffffffffffffLL)),
                                          _mm256_set1_epi64x(0x3ff0000000000000LL)));
}
inline void split_binade(LanesF64 x, LanesF64& e, LanesF64& m) {
  split_binade_half(x.lo, e.lo, m.lo);
  split_binade_half(x.hi, e.hi, m.hi);
}
inline __m256d significand_lookup_half(const double* table, __m256d m) {
  const __m256i index = _mm256_and_si256(_mm256_srli_epi64(_mm256_castpd_si256(m), 48), _mm256_set1_epi64x(15));
  return _mm256_i64gather_pd(table, index, 8);
}
inline LanesF64 significand_lookup(const double* table, LanesF64 m) {
  return {significand_lookup_half(table, m.lo), significand_lookup_half(table, m.hi)};
}
inline void store_f64(double* p, LanesF64 a) {
  _mm256_storeu_pd(p, a.lo);
  _mm256_storeu_pd(p + 4, a.hi);
}
inline LanesF64 load_f64(const double* p) { return {_mm256_loadu_pd(p), _mm256_loadu_pd(p + 4)}; }
inline uint32_t lane_bits(MaskAvx2 m) { return static_cast<uint32_t>(_mm256_movemask_ps(m.m)); }
#else
using LanesF64 = double;
inline double widen(float v) { return v; }
inline float narrow(double a) { return static_cast<float>(a); }
inline void store_f64(double* p, double a) { *p = a; }
inline double load_f64(const double* p) { return *p; }
inline uint32_t lane_bits(bool m) { return m ? 1u : 0u; }
#endif

// One V widened to double: LanesF64 for the vectors of float, a double for a
// single lane (the scalar path, and the float64 rows on every ISA).
template <class V>
using LanesF64For = std::conditional_t<kLanes<V> == 1, double, LanesF64>;

// Sum of 16 lanes held in double (kVecs values of LanesF64For), by the fixed
// tree of pairwise_over_lanes: lane j plus lane j + 8, then j + 4, j + 2,
// j + 1. The vector forms perform these very additions (each lane of a
// double vector is one step's t[j]), so every ISA gets the same bits,
// without the round trip through memory that short rows (8 vectors at C =
// 128) would pay once per row.
template <class V>
NNF_HD double sum_f64_lanes(const LanesF64For<V> (&acc)[kVecs<V>]) {
#if NNF_ISA_LEVEL == 2
  if constexpr (kLanes<V> == 16) {
    const __m512d t8 = _mm512_add_pd(acc[0].lo, acc[0].hi);
    const __m256d t4 = _mm256_add_pd(_mm512_castpd512_pd256(t8), _mm512_extractf64x4_pd(t8, 1));
    const __m128d t2 = _mm_add_pd(_mm256_castpd256_pd128(t4), _mm256_extractf128_pd(t4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(t2, _mm_unpackhi_pd(t2, t2)));
  }
#elif NNF_ISA_LEVEL == 1
  if constexpr (kLanes<V> == 8) {
    const __m256d t4 = _mm256_add_pd(_mm256_add_pd(acc[0].lo, acc[1].lo), _mm256_add_pd(acc[0].hi, acc[1].hi));
    const __m128d t2 = _mm_add_pd(_mm256_castpd256_pd128(t4), _mm256_extractf128_pd(t4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(t2, _mm_unpackhi_pd(t2, t2)));
  }
#endif
  double t[kGroup];
  for (int k = 0; k < kVecs<V>; ++k) {
    if constexpr (kLanes<V> == 1) {
      t[k] = acc[k];
    } else {
      store_f64(t + k * kLanes<V>, acc[k]);
    }
  }
  return pairwise_sum(t);
}

// The lane sums of compensated accumulators in double: (s - kBias) + c
// (kBias 1 for BiasedSum, 0 for CompensatedSum), for vectors of float and for
// single float or double lanes (the float64 rows).
template <int kBias, class V>
NNF_HD LanesF64For<V> lane_sums_f64(V s, V c) {
  if constexpr (kLanes<V> == 1) {
    return (static_cast<double>(s) - kBias) + static_cast<double>(c);
  } else {
    return (widen(s) - LanesF64(kBias)) + widen(c);
  }
}
template <class V, int kBias>
NNF_HD double combine_pairs(const V (&sv)[kVecs<V>], const V (&cv)[kVecs<V>]) {
  LanesF64For<V> lane[kVecs<V>];
  for (int k = 0; k < kVecs<V>; ++k) lane[k] = lane_sums_f64<kBias>(sv[k], cv[k]);
  return sum_f64_lanes<V>(lane);
}

// Sum of the 16 lanes of compensated accumulators (s + c per lane), in
// double, pairwise. kBias is what the accumulators started at: 0 for
// CompensatedSum, 1 for BiasedSum (whose lane sums are (s - 1) + c).
// An infinite lane sum (an infinite term: an upstream gradient of +-inf)
// leaves its compensation NaN (TwoSum's inf - inf); the total is then the
// plain sum of the lanes, +-inf as in the reference's float64 sum, or NaN
// where infinities of both signs meet.
template <int kBias, class V, template <class> class Acc>
NNF_HD double combine_accumulators(const Acc<V> (&acc)[kVecs<V>]) {
  V s[kVecs<V>], c[kVecs<V>];
  for (int k = 0; k < kVecs<V>; ++k) {
    s[k] = acc[k].s;
    c[k] = acc[k].c;
  }
  const double total = combine_pairs<V, kBias>(s, c);
  if (total == total) return total;
  for (auto& ck : c) ck = V(0.0f);
  return combine_pairs<V, kBias>(s, c);
}
template <class V>
NNF_HD double combine_lanes(const smx::CompensatedSum<V> (&acc)[kVecs<V>]) {
  return combine_accumulators<0>(acc);
}
template <class V>
NNF_HD double combine_biased(const smx::BiasedSum<V> (&acc)[kVecs<V>]) {
  return combine_accumulators<1>(acc);
}

// The double forms, for the row kernels (and the scalar path's LanesF64);
// fma(double, ...) is the vocabulary's, hidden here by the one above.
using nnfuse::NNF_ISA_NS::fma;
inline double where_nan(double x, double a, double b) { return x != x ? a : b; }
// x = 2^e m with m in [1, 2), for normal positive x (the fields: exact).
inline void split_binade(double x, double& e, double& m) {
  const uint64_t bits = bit_cast_value<uint64_t>(x);
  e = static_cast<double>(static_cast<int>(bits >> 52) - 1023);
  m = bit_cast_value<double>((bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull);
}
// Entry j of a table of 16 doubles, j = the top four significand bits of m.
inline double significand_lookup(const double* table, double m) {
  return table[(bit_cast_value<uint64_t>(m) >> 48) & 15u];
}

// log s for the float32 rows' sums of e^(z - M), s >= 1 (a normal number) or
// NaN (NaN out), within 2^-52.1 relative (measured over 20000 sums by
// docs/fits/log_row_sum.py, which simulates these roundings; the float32
// outputs need far less, log s being at most |y|): the float32 results use it
// rounded to float and its float remainder, so libm's last bit does not matter,
// and one function written for double (the row kernels) and LanesF64 (the
// column kernels, a log per lane where libm took one call per row) gives them
// the same bits on every ISA. s = 2^k m, m in [1, 2); the top four bits of m
// pick r_j ~ 1 / (1 + (j + 1/2) / 16) and L_j = -log r_j (r_0 = 1: s near 1
// keeps its relative accuracy, f = m - 1 exact), and log s = k ln2 + L_j +
// log1p(f), f = m r_j - 1 in [-1/35, 1/16) rounded once, log1p(f) = f + f^2
// Q(f), Q of degree 8 (2^-55.6 relative before rounding); k ln2 with ln2 as
// hi + lo, hi of 32 significant bits (k hi exact). No division: the form
// log m = 2 atanh((m - 1) / (m + 1)) took two vdivpd per 16 rows, and this one
// made short rows faster (float32, 1 thread, AVX-512, ns per element, median
// of 11 alternating rounds, log-softmax of 2 / 4 / 8 / 16 columns:
// 2.75 / 1.85 / 1.37 / 1.30 -> 2.24 / 1.49 / 1.20 / 1.22; cross-entropy into
// out= of 2 / 4 columns: 4.61 / 2.82 -> 4.02 / 2.56).
struct LogRowTable {
  double r[16], log_inv_r[16], q[9];
};
inline constexpr LogRowTable kLogRow = {
    {1.0, 0.9142857142857143, 0.8648648648648649, 0.8205128205128205, 0.7804878048780488, 0.7441860465116279,
     0.7111111111111111, 0.6808510638297872, 0.6530612244897959, 0.6274509803921569, 0.6037735849056604,
     0.5818181818181818, 0.5614035087719298, 0.5423728813559322, 0.5245901639344263, 0.5079365079365079},
    {0.0, 0.08961215868968717, 0.14518200984449783, 0.19782574332991992, 0.2478361639045812, 0.2954642128938359,
     0.3409265869705932, 0.38441169891033206, 0.42608439531090014, 0.46608972992459924, 0.5045560107523953,
     0.5415972824327444, 0.5773153650348236, 0.6118015411059929, 0.6451379613735847, 0.6773988235918061},
    {-0.5000000000000001, 0.3333333333333875, -0.24999999999856465, 0.1999999995824464, -0.16666666666589766,
     0.1428579837117665, -0.12501226716269376, 0.11066830657574275, -0.08744617460490614}};

template <class D>
D log_row_sum(D s) {
  constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  D k, m;
  split_binade(s, k, m);
  const D f = fma(m, significand_lookup(kLogRow.r, m), D(-1.0));
  D q(kLogRow.q[8]);
  for (int j = 7; j >= 0; --j) q = fma(q, f, D(kLogRow.q[j]));
  const D log1p_f = fma(f * f, q, f);
  const D head = fma(k, D(kLn2Hi), significand_lookup(kLogRow.log_inv_r, m));
  return where_nan(s, s, head + fma(k, D(kLn2Lo), log1p_f));
}

// e^x for the float32 cross-entropy rows' label term, x = z_t - M in
// [-87, 0] (or NaN: NaN out), within about 1 ulp of double, written once for
// double (the row kernel) and LanesF64 (blocks of rows, one per lane) as
// log_row_sum, where libm took one call per row: the same bits on every ISA.
// k = round(x / ln2) by adding 1.5 * 2^52 (t), r = x - k ln2 with ln2 as
// hi + lo (k hi exact, |r| <= ln2 / 2), e^r by its Taylor polynomial to
// r^13 / 13! (the remainder (ln2 / 2)^14 / 14! < 2^-57 relative), times 2^k
// (exact: k in [-126, 0], a normal float, which pow2_lanes builds with the
// float vocabulary's scale_pow2).
struct TaylorExp {
  static constexpr int kDegree = 13;
  double inv_factorial[kDegree + 1] = {1.0};
  constexpr TaylorExp() {
    for (int i = 1; i <= kDegree; ++i) inv_factorial[i] = inv_factorial[i - 1] / i;
  }
};
inline constexpr TaylorExp kTaylorExp{};

inline double pow2_lanes(double k) { return scale_pow2(1.0, k); }
#if NNF_ISA_LEVEL >= 1
inline LanesF64 pow2_lanes(LanesF64 k) { return widen(scale_pow2(VecF(1.0f), narrow(k))); }
#endif

template <class D>
D exp_label_term(D x) {
  constexpr double kLog2e = 1.4426950408889634, kShift = 6755399441055744.0;  // 1.5 * 2^52
  constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  const D t = fma(x, D(kLog2e), D(kShift));
  const D k = t - D(kShift);
  const D r = fma(k, D(-kLn2Lo), fma(k, D(-kLn2Hi), x));
  D p(kTaylorExp.inv_factorial[TaylorExp::kDegree]);
  for (int i = TaylorExp::kDegree - 1; i >= 0; --i) p = fma(p, r, D(kTaylorExp.inv_factorial[i]));
  return p * pow2_lanes(k);
}

// Running maximum M and sum S = sum e^(z - M) of one row (pass 1). With
// kSumLogits, also the compensated sum of the logits (for label smoothing).
template <class T, bool kMasked, bool kSumLogits = false>
RowNorm row_norm(const T* x, const uint8_t* keep, int64_t n, vec_for_t<T> scale, double* sum_logits = nullptr) {
  using V = vec_for_t<T>;
  using S = scalar_t<V>;
  RowNorm norm;
  smx::CompensatedSum<V> zsum[kVecs<V>];
  for (auto& a : zsum) a.reset();
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t len = n - b < kBlock ? n - b : kBlock;
    const T* xb = x + b;
    const uint8_t* kb = kMasked ? keep + b : nullptr;
    V mx[kVecs<V>];
    for (auto& m : mx) m = V(static_cast<S>(smx::neg_inf_f()));
    for_vectors<V>(len, [&](int k, int64_t i, int cnt) {
      mx[k] = smx::max_nan(mx[k], load_logits<T, kMasked>(xb + i, kMasked ? kb + i : nullptr, cnt, scale));
    });
    const double block_max = static_cast<double>(max_lanes(mx));
    const double m_new = (block_max > norm.max || block_max != block_max) ? block_max : norm.max;
    if (m_new == smx::neg_inf_d()) continue;  // every element so far is -inf
    const V vm(static_cast<S>(m_new));
    smx::CompensatedSum<V> acc[kVecs<V>];
    for (auto& a : acc) a.reset();
    for_vectors<V>(len, [&](int k, int64_t i, int cnt) {
      V z = load_logits<T, kMasked>(xb + i, kMasked ? kb + i : nullptr, cnt, scale);
      acc[k].add(softmax_term(z, vm));
      // Scaled by an exact power of two so that the sum of logits near the
      // type's maximum cannot overflow (the caller scales the mean back).
      if constexpr (kSumLogits) zsum[k].add(load_n(xb + i, cnt) * V(kLogitSumScale<S>));
    });
    rownorm_absorb(norm, m_new, combine_lanes(acc));
  }
  if constexpr (kSumLogits) *sum_logits = combine_lanes(zsum);
  return norm;
}

template <class T>
void fill_row(T* y, int64_t n, scalar_t<vec_for_t<T>> value) {
  using V = vec_for_t<T>;
  constexpr int L = kLanes<V>;
  for (int64_t i = 0; i < n; i += L) store_n(y + i, V(value), n - i < L ? static_cast<int>(n - i) : L);
}

// ---- float32 rows: one exp per element ------------------------------------------
//
// Pass 1 finds the row maximum M (loads, multiplies, max: cheap). Pass 2
// computes e = e^(z - M) once per element, writes it to the output (softmax)
// and adds it to the compensated lane sums. Pass 3 scales the output in place
// by 1 / S (softmax) or writes (z - M) - log S (log-softmax, no exp). A row of
// up to ~L2 size is still cached when pass 3 reads it back; for longer rows
// the extra read and write of the output cost less than a second exp.

// Row maximum of the logits over 16 virtual lanes (a NaN anywhere wins), and
// with kMin the minimum of the valid lanes (to choose exp_near).
template <class V, bool kMasked, bool kMin>
NNF_HD void row_max_min(const float* x, const uint8_t* keep, int64_t n, V scale, float& max, float& min) {
  V mx[kVecs<V>], mn[kVecs<V>];
  for (auto& m : mx) m = V(smx::neg_inf_f());
  for (auto& m : mn) m = V(-smx::neg_inf_f());
  for_vectors<V>(n, [&](int k, int64_t i, int cnt) {
    V z = load_logits<float, kMasked>(x + i, kMasked ? keep + i : nullptr, cnt, scale);
    mx[k] = smx::max_nan(mx[k], z);
    if constexpr (kMin) {
      if constexpr (kLanes<V> > 1) {
        if (cnt < kLanes<V>) z = select(first_lanes_mask<V>(cnt), z, V(-smx::neg_inf_f()));
      }
      mn[k] = vmin(mn[k], z);
    }
  });
  max = max_lanes(mx);
  if constexpr (kMin) {
    float lanes[kGroup];
    for (int k = 0; k < kVecs<V>; ++k) store_lanes(lanes + k * kLanes<V>, mn[k]);
    min = pairwise_over_lanes(lanes, [](float a, float b) { return vmin(a, b); });
  }
}

// The largest (kMax) or smallest lane of a vector without NaNs: a tree of
// shuffles, in whatever order (short rows wait on these before their exps can
// start).
template <bool kMax, class V>
NNF_HD float reduce_any_order(V v) {
#if NNF_ISA_LEVEL >= 1
  auto op = [](__m128 a, __m128 b) { return kMax ? _mm_max_ps(a, b) : _mm_min_ps(a, b); };
#if NNF_ISA_LEVEL == 2
  // The zero-masking extracts (see widen): the plain ones of
  // _mm512_reduce_max_ps and _mm512_castps512_ps256 draw GCC 12's
  // uninitialised-operand warning where they are inlined.
  const __m256 lo = _mm512_maskz_extractf32x8_ps(0xff, v.v, 0), hi = _mm512_maskz_extractf32x8_ps(0xff, v.v, 1);
  const __m256 v8 = kMax ? _mm256_max_ps(lo, hi) : _mm256_min_ps(lo, hi);
#else
  const __m256 v8 = v.v;
#endif
  __m128 h = op(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
  h = op(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(op(h, _mm_movehdup_ps(h)));
#else
  return v;
#endif
}

// Pass 1 of rows without a mask (fast form): plain max and min, which skip
// a NaN (x86 maxps / minps return their second operand, the accumulator). A
// NaN then shows up as a NaN sum in pass 2 and the row is redone with
// row_max_min (exact form), as is a row whose maximum comes out -inf (all
// -inf or NaN). Without NaNs the maximum and minimum do not depend on the
// order (the maximum's zero sign is normalised by the caller), so the
// accumulators are unrolled freely: two chains of independent max / min
// instead of one chain of max, NaN test and blend per vector (two measured
// faster than four at C = 128 and 1024: less to combine at the end).
template <class V, bool kUnit>
NNF_HD void row_max_min_fast(const float* x, int64_t n, V scale, float& max, float& min) {
  constexpr int L = kLanes<V>;
  constexpr int kAcc = 2;
  const V neg_inf(smx::neg_inf_f()), pos_inf(-smx::neg_inf_f());
  V mx[kAcc], mn[kAcc];
  for (int k = 0; k < kAcc; ++k) {
    mx[k] = neg_inf;
    mn[k] = pos_inf;
  }
  int64_t i = 0;
  for (; i + kAcc * L <= n; i += kAcc * L) {
#pragma GCC unroll 2
    for (int k = 0; k < kAcc; ++k) {
      V z = vload(x + i + k * L);
      if constexpr (!kUnit) z = z * scale;
      mx[k] = vmax(z, mx[k]);
      mn[k] = vmin(z, mn[k]);
    }
  }
  for (; i < n; i += L) {
    const int cnt = n - i < L ? static_cast<int>(n - i) : L;
    V z = load_n(x + i, cnt);
    if constexpr (!kUnit) z = z * scale;
    V zmax = z, zmin = z;
    if constexpr (L > 1) {
      if (cnt < L) {
        const auto first = first_lanes_mask<V>(cnt);
        zmax = select(first, z, neg_inf);
        zmin = select(first, z, pos_inf);
      }
    }
    mx[0] = vmax(zmax, mx[0]);
    mn[0] = vmin(zmin, mn[0]);
  }
  for (int k = 1; k < kAcc; ++k) {
    mx[0] = vmax(mx[k], mx[0]);
    mn[0] = vmin(mn[k], mn[0]);
  }
  max = reduce_any_order<true>(mx[0]);
  min = reduce_any_order<false>(mn[0]);
}

// e^(z - M) in the form kTerms (the same bits in every form where it
// applies); for kShifted, m is the shift K and the term e^(z - K ln2).
template <RowTerms kTerms, class V>
NNF_HD V row_term(V z, V m) {
  if constexpr (kTerms == RowTerms::kShifted) {
    return softmax_term_shifted(z, m);
  } else if constexpr (kTerms == RowTerms::kGeneral) {
    return softmax_term(z, m);
  } else if constexpr (kTerms == RowTerms::kNear) {
    return softmax_term_near(z, m);
  } else if constexpr (kTerms == RowTerms::kNearFast) {
    return softmax_term_near_fast(z, m);
  } else {
    return softmax_term_near_fast_negative(z, m);
  }
}

// Calls f with terms as a compile-time constant.
template <class F>
NNF_HD auto with_row_terms(RowTerms terms, F&& f) {
  switch (terms) {
    case RowTerms::kShifted:
      return f(std::integral_constant<RowTerms, RowTerms::kShifted>{});
    case RowTerms::kNearFast:
      return f(std::integral_constant<RowTerms, RowTerms::kNearFast>{});
    case RowTerms::kNearFastNegative:
      return f(std::integral_constant<RowTerms, RowTerms::kNearFastNegative>{});
    case RowTerms::kNear:
      return f(std::integral_constant<RowTerms, RowTerms::kNear>{});
    default:
      return f(std::integral_constant<RowTerms, RowTerms::kGeneral>{});
  }
}

// S = sum of e^(z - M) over 16 virtual lanes (compensated), writing each term
// to e when kStore; kTerms: the row's form of the terms. ahead: the
// distance to the next row's logits and output (0: none): one line of each
// is prefetched per 16 elements, the output's for writing, so that the
// memory traffic of the next row overlaps this row's exps instead of
// waiting for its pass 1 and its first stores.
template <class V, bool kMasked, bool kStore, RowTerms kTerms, bool kUnit>
NNF_HD double row_exp_sum(const float* x, const uint8_t* keep, int64_t n, V scale, V m, float* e, const float* pfx,
                          const float* pfy) {
  smx::BiasedSum<V> acc[kVecs<V>];
  for (auto& a : acc) a.reset();
  for_vectors<V>(n, [&](int k, int64_t i, int cnt) {
    if (k == 0) {
      __builtin_prefetch(pfx + i, 0, 3);
      __builtin_prefetch(pfy + i, 1, 3);
    }
    V z = load_logits<float, kMasked, kUnit>(x + i, kMasked ? keep + i : nullptr, cnt, scale);
    V t = row_term<kTerms>(z, m);
    // padded lanes: z = -inf is outside exp_near's range
    if constexpr (kTerms != RowTerms::kGeneral && kLanes<V> > 1) {
      if (cnt < kLanes<V>) t = select(first_lanes_mask<V>(cnt), t, V(0.0f));
    }
    if constexpr (kStore) store_n(e + i, t, cnt);
    acc[k].add(t);
  });
  return combine_biased(acc);
}

template <class V, bool kMasked, bool kStore, bool kUnit>
NNF_HD double row_exp_sum(const float* x, const uint8_t* keep, int64_t n, V scale, V m, float* e, const float* pfx,
                          const float* pfy, RowTerms terms) {
  return with_row_terms(terms, [&](auto form) {
    return row_exp_sum<V, kMasked, kStore, form(), kUnit>(x, keep, n, scale, m, e, pfx, pfy);
  });
}

// A row is processed in segments of kSoftmaxSegment elements (one segment for
// rows up to that length). Each segment is reduced on its own while it is
// cached: its maximum m_s (pass 1), then the sum S_s of e^(z - m_s) with the
// terms written to the output (pass 2). The row's M and S come from the
// segments (combine_segment_sums), and each segment's output is scaled in
// place by c_s = e^(m_s - M) / S rounded once to float (pass 3; c = 1 / S for
// a row of one segment). The roundings are those of one global maximum: the
// term's, c's (0.5 ulp) and the product's (0.5 ulp); c_s <= 1, so a term
// that is denormal gives a denormal output with no more error. Reading each
// segment twice while it is in L2 (pass 2 prefetches the next segment)
// took 1024x131072 log-softmax from 0.55 to 0.50 ns/element on 1 thread
// (fastest of 15 calls, three alternating runs; softmax unchanged at 0.55:
// its exps fill L2 with the output instead). Segments of 2^13 elements
// measured no faster. The dispatch may spread the segments of a long row
// across threads; the segment sums are combined in segment order here and
// there alike, which keeps the bits independent of threads.
//
// exact: pass 1 in the NaN-aware form (row_max_min). Masked rows always take
// it; so do rows written in place, whose input pass 2 overwrites before a NaN
// could be seen. Other rows try the fast form first and are redone with
// exact when softmax_row_redo says so; both forms give the same maximum
// (a zero one normalised to -0) wherever the fast one is kept.
inline bool softmax_fast_pass1(const SoftmaxRange& r) { return r.keep == nullptr && r.x != r.out; }
inline bool softmax_unit_scale(const SoftmaxRange& r) { return static_cast<float>(r.scale) == 1.0f; }

// Rows of a segment or more (log-softmax) or of several segments (softmax)
// write their output with streaming stores when the whole output is large
// and already backed by memory (use_stream, as the backward rows below).
// Softmax rows of up to kStashedRowMax elements then store their terms in
// pass 2 to a stash, a per-thread buffer of two rows, and pass 3 scales them
// from there into the streamed output (softmax_long_rows_f32); longer rows,
// and rows whose segments are split across threads, take each term a second
// time in pass 3 instead. Pass 2 does not
// prefetch a streamed output, which would bring it in. 2^27 float32
// elements, 1 thread, median ns per element, plain -> streamed: log-softmax
// rows of 8192 / 16384 / 32768 / 65536 / 131072 0.62 / 0.67 / 0.74 / 0.78 /
// 0.82 -> 0.67 / 0.67 / 0.63 / 0.58 / 0.59; softmax 32768 / 65536 / 131072
// 0.62 / 0.63 / 0.65 -> 0.65 / 0.61 / 0.63 (2 threads: 0.34 -> 0.32).
// Shorter rows measured slower streamed: their plain stores go to lines
// that pass 2 prefetched for writing a row ahead. Rows written in place keep
// plain stores: their lines are cached from the passes before, and a
// streamed cross-entropy gradient written over its logits measured slower
// (1 thread, 1024x131072: 0.64 -> 0.89 ns per element).
inline bool softmax_stream_output(const SoftmaxRange& r) {
  const bool long_row = r.log ? r.cols >= kSoftmaxSegment : r.cols > kSoftmaxSegment;
  return r.keep == nullptr && r.x != r.out && long_row &&
         use_stream(static_cast<const float*>(r.out), r.stream);
}

template <bool kMasked>
void f32_segment_stats(const SoftmaxRange& r, int64_t row, int64_t b, int64_t e, bool exact, float* max, float* min) {
  using V = vec_for_t<float>;
  const float* x = static_cast<const float*>(r.x) + row * r.cols + b;
  const uint8_t* keep = kMasked ? r.keep + row * r.cols + b : nullptr;
  const V scale(static_cast<float>(r.scale));
  float mx = 0.0f, mn = 0.0f;
  if (kMasked || exact) {
    row_max_min<V, kMasked, !kMasked>(x, keep, e - b, scale, mx, mn);
  } else if (softmax_unit_scale(r)) {
    row_max_min_fast<V, true>(x, e - b, scale, mx, mn);
  } else {
    row_max_min_fast<V, false>(x, e - b, scale, mx, mn);
  }
  // A zero maximum becomes -0 (-(+0 + 0)), whatever zero the order of the
  // maxima left: z - M is then +0 for z = +-0, as it was for the zero rows of
  // the single-chain form. Other values, infinities and NaNs are unchanged.
  *max = -(-mx + 0.0f);
  *min = mn;
}

// Pass 2 of a segment: m is its maximum, or its shift K for kShifted terms.
template <bool kMasked>
double f32_segment_exp_sum(const SoftmaxRange& r, int64_t row, int64_t b, int64_t e, float m_or_shift,
                           RowTerms terms, int64_t ahead, float* stash) {
  using V = vec_for_t<float>;
  const float* x = static_cast<const float*>(r.x) + row * r.cols + b;
  const uint8_t* keep = kMasked ? r.keep + row * r.cols + b : nullptr;
  float* y = static_cast<float*>(r.out) + row * r.cols + b;
  const V scale(static_cast<float>(r.scale)), m(m_or_shift);
  const float* pfx = x + ahead;
  const bool stream = softmax_stream_output(r);
  const float* pfy = stream ? pfx : y + ahead;
  float* terms_out = stream && stash != nullptr ? stash + b : y;
  const bool store = !r.log && (!stream || stash != nullptr);
  if (!kMasked && softmax_unit_scale(r)) {
    return store ? row_exp_sum<V, kMasked, true, true>(x, keep, e - b, scale, m, terms_out, pfx, pfy, terms)
                 : row_exp_sum<V, kMasked, false, true>(x, keep, e - b, scale, m, nullptr, pfx, pfy, terms);
  }
  return store ? row_exp_sum<V, kMasked, true, false>(x, keep, e - b, scale, m, terms_out, pfx, pfy, terms)
               : row_exp_sum<V, kMasked, false, false>(x, keep, e - b, scale, m, nullptr, pfx, pfy, terms);
}

// The form of a row's terms: near, and M = 0, or M > 0 with |min| (so every
// |z|) below the power of two above M's binade: the condition of
// Fast2Sum(-M, z). Near with M < 0: every z <= M is at least as large in
// magnitude, Fast2Sum(z, -M). (exponent_of reads the exponent field: -127
// for zeros and denormals, whose Fast2Sum exponent is the least one anyway.)
// Softmax rows of more than kColumnRow elements take kShifted terms where
// their range allows (shiftable): no z - M and its correction (four
// operations per vector fewer than kNearFast), and three more saved by
// reduce_ln2_rounded and 2^(k - K) from its bits. 1 thread, AVX-512, ns per element, median of 11
// alternating rounds, kNearFast -> kShifted: 4096x1024 0.672 -> 0.530,
// 65536x128 0.662 -> 0.574, 64x131072 1.002 -> 0.764. Shorter rows keep
// e^(z - M): their column kernels reduce one row per lane, and the row
// kernel must give them the same bits.
constexpr int kColumnRow = static_cast<int>(kUnshiftedSoftmaxRowMax);  // the longest rows of the column kernels
inline bool softmax_shifted_rows(const SoftmaxRange& r) { return !r.log && r.cols > kColumnRow; }
inline RowTerms row_terms(const SoftmaxRowStats& st, bool masked, bool shifted) {
  if (shifted && !masked && softmax_shiftable_range(st.min, st.max)) return RowTerms::kShifted;
  if (!st.near(masked)) return RowTerms::kGeneral;
  if (st.max < 0.0f) return RowTerms::kNearFastNegative;
  const bool fast = st.max == 0.0f || exponent_of(vabs(st.min)) <= exponent_of(st.max);
  return fast ? RowTerms::kNearFast : RowTerms::kNear;
}

// Passes 1 and 2 of one segment, the first from its own statistics.
template <bool kMasked>
SoftmaxSegmentSum f32_segment_sum_from(const SoftmaxRange& r, int64_t row, int64_t b, int64_t e,
                                       const SoftmaxRowStats& st, int64_t ahead, float* stash = nullptr) {
  if (st.max == smx::neg_inf_f()) return {st.max, 0.0};
  const RowTerms terms = row_terms(st, kMasked, softmax_shifted_rows(r));
  SoftmaxSegmentSum seg{st.max, 0.0, terms, terms == RowTerms::kShifted ? softmax_shift(st.max) : 0.0f};
  seg.sum = 0.0 + f32_segment_exp_sum<kMasked>(r, row, b, e, seg.term_base(), terms, ahead, stash);
  return seg;
}

template <bool kMasked>
SoftmaxSegmentSum f32_segment_sum(const SoftmaxRange& r, int64_t row, int64_t b, int64_t e, bool exact,
                                  int64_t ahead, float* stash = nullptr) {
  float mx, mn;
  f32_segment_stats<kMasked>(r, row, b, e, exact, &mx, &mn);
  SoftmaxRowStats st;
  st.absorb(mx, mn);
  return f32_segment_sum_from<kMasked>(r, row, b, e, st, ahead, stash);
}

// Pass 3 of a segment whose maximum is seg_max, from the row's (M, S) (a
// maximum of -inf: no position left in the row).
template <bool kMasked, bool kUnit>
void f32_segment_finish_impl(const SoftmaxRange& r, int64_t row, int64_t b, int64_t e, const SoftmaxSegmentSum& seg,
                             const SoftmaxRowSum& rs, const float* stash) {
  using V = vec_for_t<float>;
  constexpr int L = kLanes<V>;
  const int64_t n = e - b;
  const float* x = static_cast<const float*>(r.x) + row * r.cols + b;
  const uint8_t* keep = kMasked ? r.keep + row * r.cols + b : nullptr;
  float* y = static_cast<float*>(r.out) + row * r.cols + b;
  if (rs.max == smx::neg_inf_f()) {
    fill_row(y, n, r.masked_rows_nan ? vmath::nan_f() : (r.log ? smx::neg_inf_f() : 0.0f));
    return;
  }
  if (r.log) {
    const V scale(static_cast<float>(r.scale)), m(rs.max);
    const double log_sum = log_row_sum(rs.sum);
    const float hi = static_cast<float>(log_sum);
    const V lhi(hi), llo(static_cast<float>(log_sum - static_cast<double>(hi)));
    if (!kMasked && softmax_stream_output(r)) {
      return map_unary<kHasStreamStores>(x, y, n, [&](V v) NNF_LAMBDA_INLINE {
        return log_softmax_out_rounded(kUnit ? v : v * scale, m, lhi, llo);
      });
    }
    for (int64_t i = 0; i < n; i += L) {
      int cnt = n - i < L ? static_cast<int>(n - i) : L;
      V z = load_logits<float, kMasked, kUnit>(x + i, kMasked ? keep + i : nullptr, cnt, scale);
      store_n(y + i, log_softmax_out_rounded(z, m, lhi, llo), cnt);
    }
    return;
  }
  // e^(-inf - M) / S: 0, or NaN with the row (M or S NaN); no terms were
  // written for a segment whose maximum is -inf. The terms are e^(z - o_s):
  // scaled by e^(o_s - o) / S.
  const float seg_max = seg.max;
  const double offset = seg.offset();
  const double c = (offset == rs.offset ? 1.0 : exp(offset - rs.offset)) / rs.sum;
  if (seg_max == smx::neg_inf_f()) {
    fill_row(y, n, static_cast<float>(c));
    return;
  }
  const V inv(static_cast<float>(c));
  if (!kMasked && softmax_stream_output(r)) {
    if (stash != nullptr) {  // pass 2 stored the terms there
      return map_unary<kHasStreamStores>(stash + b, y, n, [&](V t) NNF_LAMBDA_INLINE { return softmax_normalize(t, inv); });
    }
    const V scale(static_cast<float>(r.scale)), m(seg.term_base());
    return with_row_terms(seg.terms, [&](auto form) {
      map_unary<kHasStreamStores>(x, y, n, [&](V v) NNF_LAMBDA_INLINE {
        return softmax_normalize(row_term<form()>(kUnit ? v : v * scale, m), inv);
      });
    });
  }
  for (int64_t i = 0; i < n; i += L) {
    int cnt = n - i < L ? static_cast<int>(n - i) : L;
    store_n(y + i, softmax_normalize(load_n(y + i, cnt), inv), cnt);
  }
}

template <bool kMasked>
void f32_segment_finish(const SoftmaxRange& r, int64_t row, int64_t b, int64_t e, const SoftmaxSegmentSum& seg,
                        const SoftmaxRowSum& rs, const float* stash = nullptr) {
  if (!kMasked && softmax_unit_scale(r)) {
    f32_segment_finish_impl<kMasked, true>(r, row, b, e, seg, rs, stash);
  } else {
    f32_segment_finish_impl<kMasked, false>(r, row, b, e, seg, rs, stash);
  }
}

// Prefetch distance of pass 2 (see row_exp_sum): the next row, and at least
// 2 KiB ahead, so that short rows ask for memory a few rows in advance
// (65536x128: 0.57 ns/element at 2 KiB, 0.60 at 4 KiB, 0.65 at 16 KiB).
constexpr int64_t kPrefetchMin = 512;

// One row of up to kSoftmaxSegment elements.
template <bool kMasked>
void softmax_row_f32(const SoftmaxRange& r, int64_t row, bool exact) {
  const int64_t n = r.cols;
  const SoftmaxSegmentSum seg = f32_segment_sum<kMasked>(r, row, 0, n, exact, std::max(n, kPrefetchMin));
  const SoftmaxRowSum rs = combine_segment_sums(&seg, 1);
  if (softmax_row_redo(exact, seg.max, rs.sum)) return softmax_row_f32<kMasked>(r, row, true);
  f32_segment_finish<kMasked>(r, row, 0, n, seg, rs);
}

// Short rows are latency-bound (the maximum, then the sum, must be reduced
// across lanes before the next pass can start), so they are processed a group
// at a time, phase by phase: each row's reductions overlap the other rows'
// passes. Every row still gets exactly the operations it would alone. Up to
// kShortRow elements: longer rows measured faster one at a time, whose
// prefetch of the next row then stays ahead (float32, 1 thread, AVX-512:
// 8192x512 0.43 against 0.50 ns/element grouped, 4096x1024 0.43 against
// 0.56; about even at 256, grouped faster at 128).
constexpr int64_t kShortRow = 256;
constexpr int kShortGroup = 4;

template <bool kMasked>
void softmax_short_rows_f32(const SoftmaxRange& r, int64_t row, bool exact) {
  const int64_t n = r.cols;
  const int64_t ahead = std::max(n, kPrefetchMin);
  SoftmaxRowStats st[kShortGroup];
  SoftmaxSegmentSum seg[kShortGroup];
  for (int g = 0; g < kShortGroup; ++g) {
    float mx, mn;
    f32_segment_stats<kMasked>(r, row + g, 0, n, exact, &mx, &mn);
    st[g].absorb(mx, mn);
  }
  for (int g = 0; g < kShortGroup; ++g) seg[g] = f32_segment_sum_from<kMasked>(r, row + g, 0, n, st[g], ahead);
  for (int g = 0; g < kShortGroup; ++g) {
    if (softmax_row_redo(exact, seg[g].max, seg[g].sum)) {
      softmax_row_f32<kMasked>(r, row + g, true);
    } else {
      f32_segment_finish<kMasked>(r, row + g, 0, n, seg[g], combine_segment_sums(&seg[g], 1));
    }
  }
}

// ---- short float32 rows, one row per lane ----------------------------------------
//
// Rows of at most kColumnRow elements are taken kLanes rows at a time with
// one row per lane: in the block's transpose, vector j holds element j of
// every row, so the row's maximum and minimum, its terms and the sums of its 16
// virtual lanes (element j adds into virtual lane j % 16, as in for_vectors)
// are lane-wise operations, and the pairwise combination of the virtual lanes
// in double (combine_pairs' order) runs on the lanes widened to double, one
// row per lane. Every row gets the operations it gets one row at a time, in
// the same order, hence the same bits (tested), without the horizontal
// reductions that one row per vector waits on. On AVX-512 the outputs are
// computed in the column layout too and moved back to memory order by
// ColumnLayout::untranspose (the softmax's and cross-entropy's terms are not
// computed twice); elsewhere, and for log-softmax, in memory order, each
// row's values moved to its elements' lanes by vpermute.


// Rows up to these lengths (kColumnRow, above, and kColumnRowBackward) take
// the column kernels. Float32, 1 thread,
// AVX-512, 2^22 elements, fastest of 5, ns per element, one row at a time ->
// one row per lane, at 2 / 4 / 8 / 12 / 16 columns:
//   softmax               14.7 / 6.00 / 3.08 / 2.05 / 1.31 -> 1.30 / 1.10 / 1.09 / 1.15 / 1.09
//   log-softmax           16.1 / 7.30 / 3.75 / 2.47 / 1.57 -> 2.30 / 1.55 / 1.13 / 1.32 / 1.15
//   softmax backward      4.42 / 2.02 / 0.94 / 0.62 / 0.50 -> 0.66 / 0.57 / 0.58 / 1.02 / 0.62
//   log-softmax backward  5.49 / 2.71 / 1.25 / 0.83 / 0.62 -> 0.69 / 0.70 / 0.79 / 0.90 / 0.84
// The backward passes have less to do per row than the transposes cost
// beyond 10 columns (10: 0.74 -> 0.62 and 1.00 -> 0.90; 11 to 16 slower by
// up to 2x), and there keep the four-row kernel. Log-softmax takes its log
// per lane (log_row_sum; libm's per row: 3.88 / 2.15 / 1.52 at 2 / 4 / 8).
constexpr int kColumnRowBackward = 10;

// A block of kLanes rows of n elements, as n vectors in memory order
// ("rows": block element v kLanes + l is lane l of vector v), and its
// transpose ("columns": lane l of column j is element j of row l).
struct ColumnLayout {
  alignas(64) int32_t row_of[kColumnRow][kGroup];  // the row of block element v kLanes + l
#if NNF_ISA_LEVEL == 2
  // Column j takes its lanes from the vectors 2p and 2p + 1 of each pair p
  // with one vpermt2ps (pair_index) merged by pair_lanes: n / 2 permutes
  // and blends per column, where a gather (vgather) measured three times
  // slower (1 thread, rows in L1).
  alignas(64) int32_t pair_index[kColumnRow][kColumnRow / 2][kGroup];
  __mmask16 pair_lanes[kColumnRow][kColumnRow / 2];
  // The inverse the same way: vector v of the rows from the columns 2p and
  // 2p + 1 of each pair p.
  alignas(64) int32_t unpair_index[kColumnRow][kColumnRow / 2][kGroup];
  __mmask16 unpair_lanes[kColumnRow][kColumnRow / 2];
  // n a power of two: log2(n) stages of n vpermt2ps instead (16 columns: 64
  // permutes against 128 and 112 blends). Stage s pairs vectors v and
  // v ^ b (b = n >> (s + 1)) and sends the elements whose column has bit b
  // clear to the one of the two without b, the others to the one with it,
  // in row-major order; after the last stage vector j holds column j in
  // row order. stage_index[s][v]: output v's indices into (lower, upper).
  alignas(64) int32_t stage_index[4][kColumnRow][kGroup];
  // The inverse of each stage (its pairs of vectors are the same, and it is a
  // bijection on their 32 elements), which untranspose applies last stage
  // first: unstage_index[s][u][q] is where input lane q of vector u went.
  alignas(64) int32_t unstage_index[4][kColumnRow][kGroup];
#else
  alignas(64) int32_t row_start[kGroup];  // l n: lane l's row in the block, for vgather
#endif
  explicit ColumnLayout(int n) {
    constexpr int L = kLanes<VecF>;
    for (int v = 0; v < n; ++v)
      for (int l = 0; l < kGroup; ++l) row_of[v][l] = l < L ? (v * L + l) / n : 0;
#if NNF_ISA_LEVEL == 2
    for (int j = 0; j < n; ++j) {
      for (int p = 0; p < kColumnRow / 2; ++p) {
        pair_lanes[j][p] = 0;
        for (int l = 0; l < kGroup; ++l) pair_index[j][p][l] = 0;
      }
      for (int l = 0; l < kGroup; ++l) {
        const int element = l * n + j, vec = element / kGroup;
        pair_index[j][vec / 2][l] = (vec % 2) * kGroup + element % kGroup;
        pair_lanes[j][vec / 2] = static_cast<__mmask16>(pair_lanes[j][vec / 2] | (1u << l));
      }
    }
    for (int v = 0; v < n; ++v) {
      for (int p = 0; p < kColumnRow / 2; ++p) {
        unpair_lanes[v][p] = 0;
        for (int l = 0; l < kGroup; ++l) unpair_index[v][p][l] = 0;
      }
      for (int l = 0; l < kGroup; ++l) {
        const int element = v * kGroup + l, column = element % n, row = element / n;
        unpair_index[v][column / 2][l] = (column % 2) * kGroup + row;
        unpair_lanes[v][column / 2] = static_cast<__mmask16>(unpair_lanes[v][column / 2] | (1u << l));
      }
    }
    if ((n & (n - 1)) == 0) {
      int place[kColumnRow * kGroup];  // block element (r n + c): its vector kGroup + lane
      for (int element = 0; element < n * kGroup; ++element) place[element] = element;
      for (int s = 0, b = n / 2; b >= 1; ++s, b /= 2) {
        int next[kColumnRow * kGroup];
        for (int v = 0; v < n; ++v) {
          const int lower = std::min(v, v ^ b);
          int taken = 0;
          for (int element = 0; element < n * kGroup; ++element) {  // in row-major order
            const int vec = place[element] / kGroup;
            if (((element % n) & b) != (v & b) || (vec != v && vec != (v ^ b))) continue;
            stage_index[s][v][taken] = (vec == lower ? 0 : kGroup) + place[element] % kGroup;
            unstage_index[s][vec][place[element] % kGroup] = (v == lower ? 0 : kGroup) + taken;
            next[element] = v * kGroup + taken++;
          }
        }
        std::copy(next, next + n * kGroup, place);
      }
    }
#else
    for (int l = 0; l < kGroup; ++l) row_start[l] = l * n;
#endif
  }
  // columns[j] for j < N from rows[v] for v < N (N = n).
  template <int N>
  void transpose(const VecF* rows, VecF* columns) const {
    constexpr int n = N;
#if NNF_ISA_LEVEL == 2
    if constexpr (n > 1 && (n & (n - 1)) == 0) {
      VecF a[n];
      for (int v = 0; v < n; ++v) a[v] = rows[v];
#pragma GCC unroll 4
      for (int s = 0, bit = n / 2; bit >= 1; ++s, bit /= 2) network_stage<N>(a, bit, stage_index[s]);
      for (int j = 0; j < n; ++j) columns[j] = a[j];
      return;
    }
    constexpr int pairs = (n + 1) / 2;
    for (int j = 0; j < n; ++j) {
      __m512 col = _mm512_permutex2var_ps(rows[0].v, _mm512_load_si512(pair_index[j][0]), rows[n > 1 ? 1 : 0].v);
      for (int p = 1; p < pairs; ++p) {
        const __m512 part = _mm512_permutex2var_ps(rows[2 * p].v, _mm512_load_si512(pair_index[j][p]),
                                                   rows[std::min(2 * p + 1, n - 1)].v);
        col = _mm512_mask_blend_ps(pair_lanes[j][p], col, part);
      }
      columns[j] = col;
    }
#else
    constexpr int L = kLanes<VecF>;
    alignas(64) float block[kGroup * kColumnRow];
    for (int v = 0; v < n; ++v) vstore(block + v * L, rows[v]);
    for (int j = 0; j < n; ++j) columns[j] = vgather<VecF>(block + j, row_start);
#endif
  }
#if NNF_ISA_LEVEL == 2
  // rows[v] for v < N from columns[j] (the inverse of transpose<N>), as
  // transpose<N> does it: n a power of two, the stages undone in reverse
  // order (log2(n) permutes per vector); else n / 2 permutes and blends per
  // vector. A column kernel that keeps its per-element results in the column
  // layout stores them this way instead of computing them again in memory
  // order.
  template <int N>
  void untranspose(const VecF* columns, VecF* rows) const {
    constexpr int n = N;
    if constexpr (n == 1) {
      rows[0] = columns[0];
    } else if constexpr ((n & (n - 1)) != 0) {
      constexpr int pairs = (n + 1) / 2;
      for (int v = 0; v < n; ++v) {
        __m512 row = _mm512_permutex2var_ps(columns[0].v, _mm512_load_si512(unpair_index[v][0]), columns[1].v);
        for (int p = 1; p < pairs; ++p) {
          const __m512 part = _mm512_permutex2var_ps(columns[2 * p].v, _mm512_load_si512(unpair_index[v][p]),
                                                     columns[std::min(2 * p + 1, n - 1)].v);
          row = _mm512_mask_blend_ps(unpair_lanes[v][p], row, part);
        }
        rows[v] = row;
      }
    } else {
      VecF a[n];
      for (int j = 0; j < n; ++j) a[j] = columns[j];
      int stages = 0;
      for (int bit = n / 2; bit >= 1; bit /= 2) ++stages;
#pragma GCC unroll 4
      for (int s = stages - 1, bit = 1; s >= 0; --s, bit *= 2) network_stage<N>(a, bit, unstage_index[s]);
      for (int v = 0; v < n; ++v) rows[v] = a[v];
    }
  }

 private:
  // One stage of the staged network (transpose) or of its inverse
  // (untranspose) on a[0..N): vectors v and v ^ bit exchange elements, output
  // v taking index[v] into (the lower, the upper) of the two.
  template <int N>
  static void network_stage(VecF (&a)[N], int bit, const int32_t (&index)[kColumnRow][kGroup]) {
    VecF b[N];
#pragma GCC unroll 16
    for (int v = 0; v < N; ++v) {
      b[v] = _mm512_permutex2var_ps(a[std::min(v, v ^ bit)].v, _mm512_load_si512(index[v]), a[std::max(v, v ^ bit)].v);
    }
    for (int v = 0; v < N; ++v) a[v] = b[v];
  }
#endif
};

// combine_pairs for one row per lane, rows of at most 16 elements: virtual
// lane j holds element j alone, and its sum is that element's value exactly
// (lane[j], in double; the other lanes are +0, as combine_pairs finds them).
// For BiasedSum: (fl(1 + t) - 1) + (t - (fl(1 + t) - 1)), t in [0, 1] or
// NaN, is t. For CompensatedSum: (0 + x) + e is x + 0 for finite x (-0
// becomes +0) and NaN for x = +-inf (inf - inf in TwoSum), which is what
// (x - x) + x gives (a NaN total is then taken again from the plain sums,
// as combine_accumulators does). No lane sum is -0, so adding the +0 lanes
// changes no bit and is left out.
static_assert(kColumnRow <= kGroup, "rows of one term per virtual lane");
template <int N>
LanesF64 combine_columns(const LanesF64 (&lane)[N]) {
  return pairwise_over_lanes(lane, [](LanesF64 a, LanesF64 b) { return a + b; });
}

// The lanes a block of rows leaves to softmax_row_f32, a bit per lane:
// general (no finite maximum, or a term outside exp_near's range: every
// such row, as one row at a time) and redo (a NaN that the fast maximum
// skipped shows in the sum; redone with the NaN-aware one).
struct ColumnExits {
  uint32_t general = 0, redo = 0;
};

// f(std::integral_constant<int, n>) for n in [1, kMax]: the column kernels
// are compiled for each row length, their loops unrolled and the block kept
// in registers (at 2 columns this took softmax from 2.6 to 1.3 ns per
// element).
template <int kMax, int N = 1, class F>
void with_row_length(int n, F&& f) {
  if constexpr (N <= kMax) {
    if (n == N) return f(std::integral_constant<int, N>{});
    with_row_length<kMax, N + 1>(n, f);
  }
}

// Softmax or log-softmax of one block of kLanes rows of n elements.
template <int N, bool kUnit>
ColumnExits softmax_column_block(const ColumnLayout& lay, const float* x, float* y, VecF scale, bool log) {
  using V = VecF;
  constexpr int L = kLanes<V>, n = N;
  const V neg_inf(smx::neg_inf_f()), pos_inf(-smx::neg_inf_f());
  V zr[N], z[N];
  for (int v = 0; v < n; ++v) {
    zr[v] = vload(x + v * L);
    if constexpr (!kUnit) zr[v] = zr[v] * scale;
  }
  lay.transpose<N>(zr, z);
  V mx = neg_inf, mn = pos_inf;
  for (int j = 0; j < n; ++j) {
    mx = vmax(z[j], mx);  // as row_max_min_fast: NaNs skipped
    mn = vmin(z[j], mn);
  }
  mx = -(-mx + V(0.0f));  // a zero maximum as -0, as f32_segment_stats
  ColumnExits exits;
  exits.general = lane_bits((mx == neg_inf) | mask_not(mn - mx >= V(-87.0f)));
  LanesF64 lane[N];
  V term[N];
  for (int j = 0; j < n; ++j) {
    term[j] = softmax_term_near(z[j], mx);
    lane[j] = widen(term[j]);
  }
  const LanesF64 sum = LanesF64(0.0) + combine_columns<N>(lane);
  exits.redo = lane_bits(is_nan(narrow(sum))) & ~exits.general;
  if (log) {
    const LanesF64 log_sum = log_row_sum(sum);
    const V vhi = narrow(log_sum), vlo = narrow(log_sum - widen(vhi));
    for (int v = 0; v < n; ++v) {
      const int32_t* row = lay.row_of[v];
      vstore(y + v * L, log_softmax_out_rounded(zr[v], vpermute(mx, row), vpermute(vhi, row), vpermute(vlo, row)));
    }
  } else {
    const V inv = narrow(LanesF64(1.0) / sum);
#if NNF_ISA_LEVEL == 2
    // The outputs in the column layout, then moved to memory order by
    // permutes instead of each term's exp again (the same values, so the
    // same bits).
    V out[N];
    for (int j = 0; j < n; ++j) out[j] = softmax_normalize(term[j], inv);
    lay.untranspose<N>(out, zr);
    for (int v = 0; v < n; ++v) vstore(y + v * L, zr[v]);
#else
    for (int v = 0; v < n; ++v) {
      const int32_t* row = lay.row_of[v];
      vstore(y + v * L, softmax_normalize(softmax_term_near(zr[v], vpermute(mx, row)), vpermute(inv, row)));
    }
#endif
  }
  return exits;
}

// Rows [row_begin, row_end) of at most kMaxRow elements, unmasked, written
// elsewhere (the fast maximum reads the input again after the output is
// written), kRows at a time by block(x, y), which returns the rows it leaves
// to softmax_row_f32. A last block of fewer than kRows rows runs through a
// buffer whose missing rows are zeros.
template <int kRows, int kMaxRow, class Block>
void softmax_blocks_f32(const SoftmaxRange& r, int64_t row_begin, int64_t row_end, Block&& block) {
  const int64_t n = r.cols;
  alignas(64) float xbuf[kRows * kMaxRow], ybuf[kRows * kMaxRow];
  for (int64_t row0 = row_begin; row0 < row_end; row0 += kRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kRows, row_end - row0));
    const float* x = static_cast<const float*>(r.x) + row0 * n;
    float* y = static_cast<float*>(r.out) + row0 * n;
    ColumnExits exits;
    if (rows == kRows) {
      exits = block(x, y);
    } else {
      std::fill(std::copy(x, x + rows * n, xbuf), xbuf + kRows * n, 0.0f);
      exits = block(static_cast<const float*>(xbuf), static_cast<float*>(ybuf));
      std::copy(ybuf, ybuf + rows * n, y);
    }
    for (uint32_t rest = (exits.general | exits.redo) & ((1u << rows) - 1u); rest != 0; rest &= rest - 1) {
      const int l = __builtin_ctz(rest);
      softmax_row_f32<false>(r, row0 + l, ((exits.redo >> l) & 1u) != 0);
    }
  }
}

// Rows of at most kColumnRow elements, one row per lane.
template <int N, bool kUnit>
void softmax_column_rows_f32(const SoftmaxRange& r, int64_t row_begin, int64_t row_end) {
  static const ColumnLayout lay(N);  // built once per row length (thread-safe)
  const VecF scale(static_cast<float>(r.scale));
  softmax_blocks_f32<kLanes<VecF>, kColumnRow>(r, row_begin, row_end, [&](const float* x, float* y) {
    return softmax_column_block<N, kUnit>(lay, x, y, scale, r.log);
  });
}

#if NNF_ISA_LEVEL == 2
// ---- float32 rows of 17 to 512 elements, 16 rows at a time -------------------------
//
// The rows stay in memory order, K = ceil(n / 16) vectors each (the last one
// masked), and only their horizontal reductions are batched: each row's
// lane-wise maximum and minimum, then its 16 BiasedSum lanes, are 16 vectors
// for 16 rows, reduced together (reduce_rows: the maximum, or the pairwise
// sum of the lane sums in double in combine_pairs' order) into one vector
// with every row's value in its own lane. Each row gets the row kernel's operations in its order
// (its lanes add its elements j, 16 + j, ... with +0 for padding, as
// for_vectors), hence its bits (tested), without a reduction per row to wait
// on, nor the row kernel's per-row scalar work. Pass 2 prefetches the next
// block (a line of input and output per vector), as the row kernel does the
// next row: without it the blocks were slower than the rows once the data
// left L2. The cross-entropy (below) takes its rows the same way. Float32,
// 1 thread, AVX-512, 2^22 elements, fastest of 15 alternating calls in one
// process, ns per element, rows -> blocks:
//   columns       17           32           64           128          256
//   softmax       2.60 -> 1.84 1.17 -> 0.74 0.77 -> 0.62 0.49 -> 0.40 0.49 -> 0.42
//   log-softmax   3.22 -> 1.59 1.54 -> 0.84 0.94 -> 0.68 0.65 -> 0.57 0.65 -> 0.49
//   cross-entropy 5.40 -> 2.30 2.47 -> 1.05 1.52 -> 0.66 0.98 -> 0.55 0.74 -> 0.47
// The reductions were first a 16x16 transpose each and a reduction over its
// columns; reduce_rows (30 shuffles instead of 64, and no separate
// column pass) took, on the AMD EPYC (Zen 4), 1 thread, 2^16 elements (in
// L2), fastest of 15 rounds, two alternating processes each, softmax /
// log-softmax / cross-entropy, 17 columns 1.76 / 1.55 / 2.10 -> 1.46 / 1.31 /
// 1.82, 32 columns 0.67 / 0.81 / 0.91 -> 0.55 / 0.68 / 0.79, 64 columns
// 0.50 / 0.56 / 0.65 -> 0.43 / 0.50 / 0.64, 128 columns 0.39 / 0.47 / 0.56
// -> 0.38 / 0.44 / 0.52.
// Softmax blocks beyond 64 columns were slower than the rows (2^23 elements,
// 128 columns: 0.57 -> 0.60) until their terms took Fast2Sum as the row
// kernel's do (batch_row_terms). With reduce_rows, log-softmax and the
// cross-entropy take blocks up to 512 columns (AMD EPYC, 1 thread, 2^23
// elements, fastest of 15 rounds, rows -> blocks, ns per element, 288 / 384
// / 512 columns: log-softmax 0.57 / 0.51 / 0.50 -> 0.43-0.56 / 0.48 / 0.44-0.45,
// cross-entropy 1.01-1.06 / 0.98-1.00 / 0.92-0.93 -> 0.89-0.91 / 0.91 /
// 0.89-0.91; in L2, 2^16 elements, 12-25%). Softmax blocks stop at 256
// columns: beyond, their 16 rows of terms outgrow L1 before pass 3 scales
// them (2^23 elements, the same columns: 0.43 / 0.42 / 0.42 -> 0.49 / 0.49-0.52
// / 0.50-0.51, though 15% faster in L2). Longer rows stay one at a time,
// their prefetch a row ahead.
constexpr int kBatchRowMax = 512;
constexpr int kSoftmaxBatchRowMax = 256;
constexpr int kBatchVectorsMax = kBatchRowMax / kGroup;
constexpr int kBatchFastTerms = 4;

// Horizontal reductions of 16 rows at once, row l's lanes in vector l and
// its result in lane l. Each step pairs vectors, shuffles the lanes of both
// into two vectors and combines those: the lanes still holding a row's
// partial results halve and the rows per vector double, so 16 vectors take
// 15 combinations and 30 shuffles (a 16x16 transpose and a reduction over
// its columns: 64 shuffles). The steps combine lane j with lane j + 8, then
// j + 4, j + 2 and j + 1: pairwise_over_lanes' tree, so that the sums keep
// the row kernel's order and bits. The results come out in the lane order
// kReducedRow (row of each lane, its own inverse), put right by one permute.
alignas(64) constexpr int32_t kReducedRow[kGroup] = {0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15};

template <class Op>
VecF reduce_rows(const __m512 (&v)[kGroup], Op op) {
  __m512 w[8], x[4], y[2];
  // w[i]: rows i (lanes 0-7) and i + 8 (lanes 8-15), lane j with j + 8.
  for (int i = 0; i < 8; ++i) {
    w[i] = op(_mm512_maskz_shuffle_f32x4(0xFFFF, v[i], v[i + 8], 0x44),
              _mm512_maskz_shuffle_f32x4(0xFFFF, v[i], v[i + 8], 0xEE));
  }
  // x[i]: rows i, i + 8, i + 4, i + 12 by 128-bit lane, lane j with j + 4.
  for (int i = 0; i < 4; ++i) {
    x[i] = op(_mm512_maskz_shuffle_f32x4(0xFFFF, w[i], w[i + 4], 0x88),
              _mm512_maskz_shuffle_f32x4(0xFFFF, w[i], w[i + 4], 0xDD));
  }
  // y[i]: two rows per 128-bit lane (x[i]'s, then x[i + 2]'s), j with j + 2.
  for (int i = 0; i < 2; ++i) {
    const __m512d a = _mm512_castps_pd(x[i]), b = _mm512_castps_pd(x[i + 2]);
    y[i] = op(_mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xFF, a, b)),
              _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xFF, a, b)));
  }
  // One row per lane, j with j + 1.
  const __m512 z = op(_mm512_maskz_shuffle_ps(0xFFFF, y[0], y[1], 0x88), _mm512_maskz_shuffle_ps(0xFFFF, y[0], y[1], 0xDD));
  return _mm512_maskz_permutexvar_ps(0xFFFF, _mm512_load_si512(kReducedRow), z);
}

// The same in double: t[l] holds row l's lanes j + (j + 8), j < 8 (the
// tree's first step), the result is row l's total in lane l of LanesF64.
inline LanesF64 reduce_rows_sum(const __m512d (&t)[kGroup]) {
  __m512d u[8], v[4], f[2];
  for (int i = 0; i < 8; ++i) {  // rows i, i + 8; j with j + 4
    u[i] = _mm512_add_pd(_mm512_maskz_shuffle_f64x2(0xFF, t[i], t[i + 8], 0x44),
                         _mm512_maskz_shuffle_f64x2(0xFF, t[i], t[i + 8], 0xEE));
  }
  for (int i = 0; i < 4; ++i) {  // rows i, i + 8, i + 4, i + 12 by 128-bit lane; j with j + 2
    v[i] = _mm512_add_pd(_mm512_maskz_shuffle_f64x2(0xFF, u[i], u[i + 4], 0x88),
                         _mm512_maskz_shuffle_f64x2(0xFF, u[i], u[i + 4], 0xDD));
  }
  for (int i = 0; i < 2; ++i) {  // v[i]'s row, then v[i + 2]'s, by 128-bit lane; j with j + 1
    f[i] = _mm512_add_pd(_mm512_maskz_unpacklo_pd(0xFF, v[i], v[i + 2]), _mm512_maskz_unpackhi_pd(0xFF, v[i], v[i + 2]));
  }
  // f[0] holds rows 0 2 8 10 4 6 12 14, f[1] rows 1 3 9 11 5 7 13 15.
  const __m512i rows_lo = _mm512_setr_epi64(0, 8, 1, 9, 4, 12, 5, 13);
  const __m512i rows_hi = _mm512_setr_epi64(2, 10, 3, 11, 6, 14, 7, 15);
  return {_mm512_permutex2var_pd(f[0], rows_lo, f[1]), _mm512_permutex2var_pd(f[0], rows_hi, f[1])};
}

// The sums of 16 rows' compensated lane accumulators (s, c of row l in
// vector l; started at kBias), one row per lane: (s - kBias) + c per lane in
// double and combine_pairs' pairwise tree.
template <int kBias>
LanesF64 reduced_lane_sums(const __m512 (&s)[kGroup], const __m512 (&c)[kGroup]) {
  __m512d t[kGroup];
  for (int l = 0; l < kGroup; ++l) {
    const LanesF64 lane = lane_sums_f64<kBias>(VecF(s[l]), VecF(c[l]));
    t[l] = _mm512_add_pd(lane.lo, lane.hi);
  }
  return reduce_rows_sum(t);
}

// A block of 16 rows of n elements, 16 (K - 1) < n <= 16 K, in memory
// order: vector k of a row is its elements 16 k on, the last one masked to
// the row's tail (loads give +0 in the padding, stores leave it alone).
template <int K>
struct BatchRows {
  int n;
  __mmask16 tail_lanes;
  explicit BatchRows(int row_length) : n(row_length), tail_lanes(first_lanes(row_length - kGroup * (K - 1))) {}
  VecF load(const float* row, int k) const {
    return k + 1 < K ? vload(row + k * kGroup) : VecF(_mm512_maskz_loadu_ps(tail_lanes, row + k * kGroup));
  }
  void store(float* row, int k, VecF v) const {
    if (k + 1 < K) {
      vstore(row + k * kGroup, v);
    } else {
      _mm512_mask_storeu_ps(row + k * kGroup, tail_lanes, v.v);
    }
  }
  // Vector k with its padding lanes set to fill.
  VecF padded(VecF v, int k, VecF fill) const {
    return k + 1 < K ? v : VecF(_mm512_mask_mov_ps(fill.v, tail_lanes, v.v));
  }
};

// Pass 2 of row l of a block whose logits are z(row, k): the terms
// e^(z - M), written to y when store, summed in BiasedSum lanes (padding:
// +0, as row_exp_sum), in the form row_terms would take for the row
// (shifted: e^(z - K ln2), m = K; negative: M < 0; fast: Fast2Sum's
// condition; the same bits in any near form). Rows of fewer than
// kBatchFastTerms vectors keep TwoSum among the near forms: choosing
// per row measured 2-4% slower there (17 and 32 columns) and faster from
// 64 on (128: 0.54 -> 0.44 ns per element, softmax, 1 thread). The next
// block is prefetched, a line of input and output per vector.
template <int K, class Logits>
smx::BiasedSum<VecF> batch_row_terms(const BatchRows<K>& rows, Logits&& z, const float* x, float* y, int l, VecF m,
                                     bool shifted, bool negative, bool fast, bool store) {
  using V = VecF;
  smx::BiasedSum<V> acc;
  acc.reset();
  auto terms = [&](auto term) {
    for (int k = 0; k < K; ++k) {
      const int64_t ahead = kGroup * rows.n + (l * K + k) * kGroup;
      __builtin_prefetch(x + ahead, 0, 3);
      __builtin_prefetch(y + ahead, 1, 3);
      V t = term(z(l, k), m);
      if (k + 1 == K) t = V(_mm512_maskz_mov_ps(rows.tail_lanes, t.v));
      if (store) rows.store(y + l * rows.n, k, t);
      acc.add(t);
    }
  };
  if (shifted) {
    terms([](V zv, V shift) { return softmax_term_shifted(zv, shift); });
    return acc;
  }
  if constexpr (K < kBatchFastTerms) {
    terms([](V zv, V mv) { return softmax_term_near(zv, mv); });
    return acc;
  }
  if (negative) {
    terms([](V zv, V mv) { return softmax_term_near_fast_negative(zv, mv); });
  } else if (fast) {
    terms([](V zv, V mv) { return softmax_term_near_fast(zv, mv); });
  } else {
    terms([](V zv, V mv) { return softmax_term_near(zv, mv); });
  }
  return acc;
}

// The lanes (rows) whose terms take kShifted (with shifted_rows, the
// softmax's), and those that may take Fast2Sum, as row_terms: M < 0, and M =
// 0 or no |z| above M's binade. m: the row's maximum, or its shift K where
// shifted.
struct BatchForms {
  uint32_t shifted, negative, fast;
  VecF m;
  BatchForms(VecF mx, VecF mn, bool shifted_rows)
      : shifted(shifted_rows ? lane_bits(softmax_shiftable_range(mn, mx)) : 0u),
        negative(lane_bits(mx < VecF(0.0f))),
        fast(lane_bits((mx == VecF(0.0f)) | (exponent_of(vabs(mn)) <= exponent_of(mx)))),
        m(select(MaskAvx512{static_cast<__mmask16>(shifted)}, softmax_shift(mx), mx)) {}
};

// Pass 1 of a block of 16 rows whose logits are z(row, k): each row's
// lane-wise maximum and minimum (padding lanes -inf and +inf, NaNs skipped as
// row_max_min_fast), reduced so that row l's comes out in lane l (the order
// of the maxima and minima changes no bit: no lane holds a NaN), a zero
// maximum as -0 (as f32_segment_stats). on_vector(l, z) sees each of row l's
// logit vectors as it is read (the cross-entropy's logit sums).
struct BatchMaxMin {
  VecF max, min;
};
template <int K, class Logits, class OnVector>
BatchMaxMin batch_max_min(const BatchRows<K>& rows, Logits&& z, OnVector&& on_vector) {
  using V = VecF;
  const V neg_inf(smx::neg_inf_f()), pos_inf(-smx::neg_inf_f());
  __m512 mxr[kGroup], mnr[kGroup];
  for (int l = 0; l < kGroup; ++l) {
    V mx = neg_inf, mn = pos_inf;
    for (int k = 0; k < K; ++k) {
      const V zv = z(l, k);
      mx = vmax(rows.padded(zv, k, neg_inf), mx);
      mn = vmin(rows.padded(zv, k, pos_inf), mn);
      on_vector(l, zv);
    }
    mxr[l] = mx.v;
    mnr[l] = mn.v;
  }
  const V mx = reduce_rows(mxr, [](__m512 a, __m512 b) { return _mm512_maskz_max_ps(0xFFFF, a, b); });
  const V mn = reduce_rows(mnr, [](__m512 a, __m512 b) { return _mm512_maskz_min_ps(0xFFFF, a, b); });
  return {-(-mx + V(0.0f)), mn};
}

// Softmax or log-softmax of the 16 rows of n elements at x, written to y.
template <int K, bool kUnit>
ColumnExits softmax_batch_block(const float* x, float* y, int n, VecF scale, bool log) {
  using V = VecF;
  const BatchRows<K> rows(n);
  const V neg_inf(smx::neg_inf_f());
  auto logits = [&](int l, int k) {
    V z = rows.load(x + l * n, k);
    if constexpr (!kUnit) z = z * scale;
    return z;
  };
  const BatchMaxMin stats = batch_max_min(rows, logits, [](int, V) {});
  const V mx = stats.max, mn = stats.min;
  ColumnExits exits;
  exits.general = lane_bits((mx == neg_inf) | mask_not(mn - mx >= V(-87.0f)));
  const BatchForms forms(mx, mn, !log);
  alignas(64) float row_max[kGroup], row_m[kGroup];
  vstore(row_max, mx);
  vstore(row_m, forms.m);
  // Pass 2: the terms (written out by softmax) and each row's lane sums.
  __m512 sums[kGroup], comps[kGroup];
  for (int l = 0; l < kGroup; ++l) {
    const smx::BiasedSum<V> acc = batch_row_terms(rows, logits, x, y, l, V(row_m[l]), (forms.shifted >> l) & 1u,
                                                  (forms.negative >> l) & 1u, (forms.fast >> l) & 1u, !log);
    sums[l] = acc.s.v;
    comps[l] = acc.c.v;
  }
  const LanesF64 sum = LanesF64(0.0) + reduced_lane_sums<1>(sums, comps);
  exits.redo = lane_bits(is_nan(narrow(sum))) & ~exits.general;
  // Pass 3: the outputs.
  alignas(64) float row_hi[kGroup], row_lo[kGroup];
  if (log) {
    const LanesF64 log_sum = log_row_sum(sum);
    const V hi = narrow(log_sum);
    vstore(row_hi, hi);
    vstore(row_lo, narrow(log_sum - widen(hi)));
    for (int l = 0; l < kGroup; ++l) {
      const V m(row_max[l]), lhi(row_hi[l]), llo(row_lo[l]);
      for (int k = 0; k < K; ++k) rows.store(y + l * n, k, log_softmax_out_rounded(logits(l, k), m, lhi, llo));
    }
  } else {
    vstore(row_hi, narrow(LanesF64(1.0) / sum));
    for (int l = 0; l < kGroup; ++l) {
      const V inv(row_hi[l]);
      for (int k = 0; k < K; ++k) rows.store(y + l * n, k, softmax_normalize(rows.load(y + l * n, k), inv));
    }
  }
  return exits;
}

// Rows of kColumnRow + 1 to 16 K elements, 16 at a time.
template <int K, bool kUnit>
void softmax_batch_rows_f32(const SoftmaxRange& r, int64_t row_begin, int64_t row_end) {
  const int n = static_cast<int>(r.cols);
  const VecF scale(static_cast<float>(r.scale));
  softmax_blocks_f32<kGroup, kBatchRowMax>(r, row_begin, row_end, [&](const float* x, float* y) {
    return softmax_batch_block<K, kUnit>(x, y, n, scale, r.log);
  });
}

// f(std::integral_constant<int, K>) for K in [2, kBatchVectorsMax].
template <int K = 2, class F>
void with_batch_vectors(int k, F&& f) {
  if constexpr (K <= kBatchVectorsMax) {
    if (k == K) return f(std::integral_constant<int, K>{});
    with_batch_vectors<K + 1>(k, f);
  }
}
#endif

// Rows longer than a segment, one at a time (see above); the prefetch of
// pass 2 runs a segment ahead, into the next segment or row. A streamed
// softmax row's terms go to a stash (two rows' worth, taken in turn), and its
// pass 3 runs one row late, segment s of row r - 1 after passes 1 and 2 of
// segment s of row r, so that one row's streaming stores are spread between
// the next row's exps instead of following its own. The same terms and scale
// factors, so the same bits. 1 thread, AVX-512, median ms of 5-7 alternating
// processes, terms taken twice -> stashed and one row late: 1024x131072 70.5
// -> 58.6, 64x262144 8.9 -> 7.1, 128x65539 4.25 -> 3.82, 32x524288 9.0 -> 7.5
// (2 threads: 36.4 -> 34.1, 2.27 -> 2.07, 5.0 -> 4.7). Stashed but finished
// in the same row, 1024x131072 took 63-65 ms; one stash of a row, each
// segment finished before the next row's passes overwrite it, 69.8 ms.
// kStashedRowMax: two rows of 2^20 were 1.15x as fast on 1 thread but 0.90x
// on 2 (16x1048576), of 2^21 1.03x on 1, and of 2^22 3.4x as slow (their
// stash no longer fits the L3 cache, and is newly mapped memory each call).
constexpr int64_t kStashedRowMax = int64_t(1) << 19;
template <bool kMasked>
void softmax_long_rows_f32(const SoftmaxRange& r, int64_t row_begin, int64_t row_end, bool exact) {
  const int64_t n = r.cols;
  const int64_t segments = (n + kSoftmaxSegment - 1) / kSoftmaxSegment;
  auto bounds_end = [&](int64_t b) { return std::min(n, b + kSoftmaxSegment); };
  std::vector<SoftmaxSegmentSum> seg(segments), prev_seg(segments);
  const bool stashed = !kMasked && !r.log && n <= kStashedRowMax && softmax_stream_output(r);
  std::vector<float> stash_buffer(stashed ? 2 * n : 0);
  float* stash = stashed ? stash_buffer.data() : nullptr;
  float* prev_stash = stashed ? stash_buffer.data() + n : nullptr;
  SoftmaxRowSum prev_rs;
  int64_t pending = -1;
  for (int64_t row = row_begin; row < row_end; ++row) {
    for (bool exact_pass = exact;; exact_pass = true) {
      for (int64_t s = 0; s < segments; ++s) {
        const int64_t b = s * kSoftmaxSegment;
        seg[s] = f32_segment_sum<kMasked>(r, row, b, bounds_end(b), exact_pass, kSoftmaxSegment, stash);
        if (pending >= 0) f32_segment_finish<kMasked>(r, pending, b, bounds_end(b), prev_seg[s], prev_rs, prev_stash);
      }
      pending = -1;
      const SoftmaxRowSum rs = combine_segment_sums(seg.data(), segments);
      if (softmax_row_redo(exact_pass, seg.data(), segments, rs)) continue;
      if (stashed) {
        pending = row;
        prev_rs = rs;
        std::swap(seg, prev_seg);
        std::swap(stash, prev_stash);
        break;
      }
      for (int64_t s = 0; s < segments; ++s) {
        const int64_t b = s * kSoftmaxSegment;
        f32_segment_finish<kMasked>(r, row, b, bounds_end(b), seg[s], rs, stash);
      }
      break;
    }
  }
  for (int64_t s = 0; pending >= 0 && s < segments; ++s) {
    const int64_t b = s * kSoftmaxSegment;
    f32_segment_finish<kMasked>(r, pending, b, bounds_end(b), prev_seg[s], prev_rs, prev_stash);
  }
}

template <bool kMasked>
void softmax_rows_f32(const SoftmaxRange& r, int64_t row_begin, int64_t row_end) {
  const int64_t n = r.cols;
  const bool exact = !softmax_fast_pass1(r);
  int64_t row = row_begin;
  if (!kMasked && !exact && n <= kColumnRow) {
    return with_row_length<kColumnRow>(static_cast<int>(n), [&](auto len) {
      softmax_unit_scale(r) ? softmax_column_rows_f32<len(), true>(r, row_begin, row_end)
                            : softmax_column_rows_f32<len(), false>(r, row_begin, row_end);
    });
  }
#if NNF_ISA_LEVEL == 2
  if (!kMasked && !exact && n <= (r.log ? kBatchRowMax : kSoftmaxBatchRowMax)) {
    return with_batch_vectors(static_cast<int>((n + kGroup - 1) / kGroup), [&](auto vectors) {
      softmax_unit_scale(r) ? softmax_batch_rows_f32<vectors(), true>(r, row_begin, row_end)
                            : softmax_batch_rows_f32<vectors(), false>(r, row_begin, row_end);
    });
  }
#endif
  if (n <= kShortRow) {
    for (; row + kShortGroup <= row_end; row += kShortGroup) softmax_short_rows_f32<kMasked>(r, row, exact);
  }
  if (n <= kSoftmaxSegment) {
    for (; row < row_end; ++row) softmax_row_f32<kMasked>(r, row, exact);
  } else {
    softmax_long_rows_f32<kMasked>(r, row, row_end, exact);
  }
}

template <class T, bool kMasked>
void softmax_rows(const SoftmaxRange& r, int64_t row_begin, int64_t row_end) {
  using V = vec_for_t<T>;
  using S = scalar_t<V>;
  constexpr int L = kLanes<V>;
  const int64_t n = r.cols;
  const V scale(static_cast<S>(r.scale));
  const S nan = static_cast<S>(vmath::nan_f());
  for (int64_t row = row_begin; row < row_end; ++row) {
    const T* x = static_cast<const T*>(r.x) + row * n;
    const uint8_t* keep = kMasked ? r.keep + row * n : nullptr;
    T* y = static_cast<T*>(r.out) + row * n;
    const RowNorm norm = row_norm<T, kMasked>(x, keep, n, scale);
    if (norm.max == smx::neg_inf_d()) {
      // No position left: zeros (log: -inf), or NaN as PyTorch.
      fill_row(y, n, r.masked_rows_nan ? nan : (r.log ? static_cast<S>(smx::neg_inf_f()) : S(0)));
      continue;
    }
    const V m(static_cast<S>(norm.max));
    if (r.log) {
      const double log_sum = log(norm.sum);
      const S hi = static_cast<S>(log_sum);
      const V lhi(hi), llo(static_cast<S>(log_sum - static_cast<double>(hi)));
      for (int64_t i = 0; i < n; i += L) {
        int cnt = n - i < L ? static_cast<int>(n - i) : L;
        V z = load_logits<T, kMasked>(x + i, kMasked ? keep + i : nullptr, cnt, scale);
        store_n(y + i, log_softmax_out(z, m, lhi, llo), cnt);
      }
    } else {
      const V inv(static_cast<S>(1.0 / norm.sum));
      for (int64_t i = 0; i < n; i += L) {
        int cnt = n - i < L ? static_cast<int>(n - i) : L;
        V z = load_logits<T, kMasked>(x + i, kMasked ? keep + i : nullptr, cnt, scale);
        store_n(y + i, softmax_out(z, m, inv), cnt);
      }
    }
  }
}

void softmax_forward(const SoftmaxRange& r, int64_t row_begin, int64_t row_end) {
  dispatch_dtype(r.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, float>) {
      if (r.keep) {
        softmax_rows_f32<true>(r, row_begin, row_end);
      } else {
        softmax_rows_f32<false>(r, row_begin, row_end);
      }
    } else if (r.keep) {
      softmax_rows<T, true>(r, row_begin, row_end);
    } else {
      softmax_rows<T, false>(r, row_begin, row_end);
    }
  });
}

// Every lane in [-87, 0] (NaN: no), where exp_near is exp.
template <class V>
NNF_HD bool all_in_near_range(V y) {
  if constexpr (kLanes<V> == 1) {
    return y >= V(-87.0f) && y <= V(0.0f);
  } else {
    return all_lanes((y >= V(-87.0f)) & (y <= V(0.0f)));
  }
}

// ---- backward -------------------------------------------------------------------

// Pass 1 of a backward row: sum(g) (log-softmax) or sum(g y) (softmax).
// Rows of float lanes (float32, float16, bfloat16) add each term, g y
// rounded to float, into 16 virtual lanes of double (element j into lane
// j % 16, as for_vectors), combined by pairwise_over_lanes' tree
// (sum_f64_lanes): the total's error is the terms' roundings (2^-24 of the
// sum of |g y| at most) and n 2^-53 of that sum, where the float lanes
// with TwoSum they replace allowed (n / 16)^2 2^-48; and the loop is a
// conversion and an addition per 8 terms, not TwoSum's six additions per 16
// chained through the running sum. 1 thread, AVX-512, AMD EPYC, 2^16
// elements (in L2), fastest of 15 rounds, two alternating processes each,
// ns per element, TwoSum -> double lanes, softmax / log-softmax backward: 64
// columns 0.29 / 0.43 -> 0.20 / 0.35, 128 0.23 / 0.40 -> 0.18 / 0.35, 4096
// 0.27 / 0.43-0.51 -> 0.20 / 0.40-0.45. float64 rows keep CompensatedSum.
// Padded lanes load 0: they add 0.
// Log-softmax's g is prefetched (prefetch_ahead), the next row's too at the
// row's end: 2^27 elements, 1 thread, Intel Xeon, 1024 / 32768 / 131072
// columns 0.90 / 0.95 / 1.06 -> 0.80 / 0.88 / 0.97 ns per element; on an
// AMD EPYC (Zen 4) within a few percent either way (1024 and 4096 columns
// faster with it, 32768 slower, 1 thread, three alternating runs).
// Softmax's pass 1 (two loads and one product per vector, no exp) is not
// prefetched: on the Xeon the prefetches gained 2-3%, on the EPYC they cost
// a third (1 thread, median ms of 30 calls, three alternating runs,
// prefetched -> not: 4096x1024 1.43-1.59 -> 1.02-1.16, 65536x128 3.06-3.56
// -> 2.51-2.66, 256x32768 3.35-3.65 -> 2.86-3.03; np.add of the same bytes
// 0.99-1.06 / 2.5-2.8 / 2.5-2.7; 2 threads even).
template <class T>
double softmax_backward_row_total(const T* g, const T* y, int64_t n, bool log) {
  using V = vec_for_t<T>;
  // add(k, term) for every vector of the row, k its lane accumulator.
  auto for_terms = [&](auto&& add) {
    if (log) {
      for_vectors<V>(n, [&](int k, int64_t i, int cnt) {
        if (k == 0) prefetch_ahead(g + i);
        add(k, load_n(g + i, cnt));
      });
    } else {
      for_vectors<V>(n, [&](int k, int64_t i, int cnt) {
        add(k, softmax_bwd_term(load_n(g + i, cnt), load_n(y + i, cnt)));
      });
    }
  };
  if constexpr (std::is_same_v<scalar_t<V>, float>) {
    LanesF64 acc[kVecs<V>];
    for (auto& a : acc) a = LanesF64(0.0);
    for_terms([&](int k, V term) { acc[k] = acc[k] + widen(term); });
    return sum_f64_lanes<V>(acc);
  } else {
    smx::CompensatedSum<V> acc[kVecs<V>];
    for (auto& a : acc) a.reset();
    for_terms([&](int k, V term) { acc[k].add(term); });
    return combine_lanes(acc);
  }
}

// Float32 backward output of one vector (pass 2); kUnit skips the product by
// a scale of 1.
template <bool kLog, bool kUnit, class V>
NNF_HD V softmax_backward_out_f32(V gv, V yv, V total, V scale) {
  if constexpr (kLog) {
    // padded lanes load 0, inside the range
    if (all_in_near_range(yv)) {
      return kUnit ? log_softmax_bwd_out_near_unit(gv, yv, total) : log_softmax_bwd_out_near(gv, yv, total, scale);
    }
    return log_softmax_bwd_out(gv, yv, total, scale);
  } else {
    return kUnit ? softmax_bwd_out_unit(gv, yv, total) : softmax_bwd_out(gv, yv, total, scale);
  }
}

// Backward rows of at most kColumnRowBackward elements, kLanes rows at a time with
// one row per lane (as softmax_column_rows_f32): the terms g y (softmax) or
// g (log-softmax) in memory order, summed over their transpose, then the
// output in memory order.
// The same operations per row as the loop below, so the same bits.
template <int N, bool kLog, bool kUnit>
void softmax_backward_column_block(const ColumnLayout& lay, const float* g, const float* y, float* dx, VecF scale) {
  using V = VecF;
  constexpr int L = kLanes<V>, n = N;
  V gr[N], yr[N], terms[N], t[N];
  for (int v = 0; v < n; ++v) {
    gr[v] = vload(g + v * L);
    yr[v] = vload(y + v * L);
    terms[v] = kLog ? gr[v] : softmax_bwd_term(gr[v], yr[v]);
  }
  lay.transpose<N>(terms, t);
  LanesF64 lane[N];
  for (int j = 0; j < n; ++j) lane[j] = LanesF64(0.0) + widen(t[j]);
  const V total = narrow(combine_columns<N>(lane));
  for (int v = 0; v < n; ++v)
    vstore(dx + v * L, softmax_backward_out_f32<kLog, kUnit>(gr[v], yr[v], vpermute(total, lay.row_of[v]), scale));
}

template <int N, bool kLog, bool kUnit>
void softmax_backward_column_rows_f32(const SoftmaxBackwardRange& r, int64_t row_begin, int64_t row_end) {
  using V = VecF;
  constexpr int L = kLanes<V>, n = N;
  static const ColumnLayout lay(n);  // built once per row length (thread-safe)
  const V scale(static_cast<float>(r.scale));
  alignas(64) float gbuf[kGroup * kColumnRow], ybuf[kGroup * kColumnRow], dxbuf[kGroup * kColumnRow];
  for (int64_t row0 = row_begin; row0 < row_end; row0 += L) {
    const int rows = static_cast<int>(std::min<int64_t>(L, row_end - row0));
    const float* g = static_cast<const float*>(r.grad) + row0 * n;
    const float* y = static_cast<const float*>(r.y) + row0 * n;
    float* dx = static_cast<float*>(r.out) + row0 * n;
    if (rows == L) {
      softmax_backward_column_block<N, kLog, kUnit>(lay, g, y, dx, scale);
      continue;
    }
    std::fill(std::copy(g, g + rows * n, gbuf), gbuf + L * n, 0.0f);
    std::fill(std::copy(y, y + rows * n, ybuf), ybuf + L * n, 0.0f);
    softmax_backward_column_block<N, kLog, kUnit>(lay, gbuf, ybuf, dxbuf, scale);
    std::copy(dxbuf, dxbuf + rows * n, dx);
  }
}

// Rows of kColumnRowBackward to kGroup elements, kTinyGroup at a time and
// phase by phase, so that one row's reduction overlaps the others' work: the
// operations of the general loop below, with the row's vectors loaded once
// and kept in registers. Same bits on every ISA, thread count and scale.
// 1 thread, AVX-512, 2^22 elements, softmax / log-softmax backward, ns per
// element, general loop -> these: 12 columns 0.79-1.14 / 0.97-1.56 ->
// 0.64 / 0.84, 16 columns 0.55 / 0.67 -> 0.50 / 0.63.
// Rows of kGroup + 1 to 2 kGroup elements, and those up to
// kShortRowBackward that end in a partial vector, take the same loop
// (vector v of a row goes to lane accumulator v % kVecs, the order of
// for_vectors, so the same bits): 2^22 elements, AVX-512, median ns per
// element, row loop -> this, softmax / log-softmax backward, 1 thread: 17
// columns 1.54 / 2.01 -> 1.03 / 1.57, 24 1.06 / 1.40 -> 0.73 / 1.10, 32
// 0.62 / 0.91 -> 0.62 / 0.80, 33 0.94 / 1.29 -> 0.73 / 1.09, 44 0.67 /
// 0.97 -> 0.61 / 0.83, 60 0.53 / 0.84 -> 0.54 / 0.75; 2 threads, 32
// columns 0.49 / 0.86 -> 0.42 / 0.60. Rows of 48 and 64 keep the row loop
// (48, 2 threads: 0.34 -> 0.47 this way).
constexpr int kTinyGroup = 4;
constexpr int kShortRowBackward = 64;

template <int kMaxRow, bool kLog, bool kUnit>
void softmax_backward_tiny_rows_f32(const SoftmaxBackwardRange& r, int64_t row_begin, int64_t row_end) {
  using V = vec_for_t<float>;
  constexpr int L = kLanes<V>;
  constexpr int G = kTinyGroup;
  constexpr int kRowVecs = (kMaxRow + L - 1) / L;
  const int n = static_cast<int>(r.cols);
  const V scale(static_cast<float>(r.scale));
  for (int64_t row0 = row_begin; row0 < row_end; row0 += G) {
    const int rows = static_cast<int>(std::min<int64_t>(G, row_end - row0));
    const float* g = static_cast<const float*>(r.grad) + row0 * n;
    const float* y = static_cast<const float*>(r.y) + row0 * n;
    float* dx = static_cast<float*>(r.out) + row0 * n;
    V gv[G][kRowVecs], yv[G][kRowVecs];
    double total[G];
    for (int j = 0; j < rows; ++j) {
      LanesF64 acc[kVecs<V>];
      for (auto& a : acc) a = LanesF64(0.0);
      for (int k = 0; k < kRowVecs; ++k) {
        if (k * L >= n) break;  // as for_vectors: no vector starts past the row
        const int cnt = std::min(n - k * L, L);
        gv[j][k] = load_n(g + j * n + k * L, cnt);
        yv[j][k] = load_n(y + j * n + k * L, cnt);
        acc[k % kVecs<V>] = acc[k % kVecs<V>] + widen(kLog ? gv[j][k] : softmax_bwd_term(gv[j][k], yv[j][k]));
      }
      total[j] = sum_f64_lanes<V>(acc);
    }
    for (int j = 0; j < rows; ++j) {
      const V t(static_cast<float>(total[j]));
      for (int k = 0; k * L < n; ++k)
        store_n(dx + j * n + k * L, softmax_backward_out_f32<kLog, kUnit>(gv[j][k], yv[j][k], t, scale),
                std::min(n - k * L, L));
    }
  }
}

// Softmax backward rows of at least kStreamRow elements write their output
// with streaming stores when the whole output is large (use_stream): the
// output then costs one memory stream instead of two (the read for ownership
// and the write-back). One fence after all the rows: a fence per row made
// 65536x128 4.5x slower. Measured, float32, fastest of 15 calls, three
// alternating runs, plain -> streamed, ns per element: 256x32768 0.61-0.83
// -> 0.41-0.60 (1 thread), 0.45-0.55 -> 0.32-0.40 (2 threads); 1024x4096
// 0.55-0.70 -> 0.40-0.42 (1 thread), 0.47-0.56 -> 0.34-0.37 (2 threads).
// Shorter rows measured slower streamed (65536x128: 0.49 -> 0.80; 4096x1024
// about even): every row boundary leaves a partly written line, stored
// plainly. Log-softmax backward (an exp per element) gained once its inputs
// were prefetched (pass 1 here, pass 2 in map_binary): 2^27 elements, 1
// thread, median ns per element, 4096 / 32768 / 131072 columns 0.85 / 0.90 /
// 0.97 -> 0.79 / 0.70 / 0.68 (2 threads, 4096 / 131072: 0.44 / 0.50 -> 0.40 /
// 0.35).
constexpr int64_t kStreamRow = 4096;
inline bool stream_backward_rows(const SoftmaxBackwardRange& r) {
  return r.cols >= kStreamRow && use_stream(static_cast<const float*>(r.out), r.stream);
}

template <bool kLog, bool kUnit>
void softmax_backward_rows_f32(const SoftmaxBackwardRange& r, int64_t row_begin, int64_t row_end) {
  using V = vec_for_t<float>;
  const int64_t n = r.cols;
  if (n <= kColumnRowBackward) {
    return with_row_length<kColumnRowBackward>(static_cast<int>(n), [&](auto len) {
      softmax_backward_column_rows_f32<len(), kLog, kUnit>(r, row_begin, row_end);
    });
  }
  if (n <= kGroup) return softmax_backward_tiny_rows_f32<kGroup, kLog, kUnit>(r, row_begin, row_end);
  if (n <= 2 * kGroup || (n <= kShortRowBackward && n % kGroup != 0)) {
    return softmax_backward_tiny_rows_f32<kShortRowBackward, kLog, kUnit>(r, row_begin, row_end);
  }
  const V scale(static_cast<float>(r.scale));
  const bool stream = stream_backward_rows(r);
  for (int64_t row = row_begin; row < row_end; ++row) {
    const float* g = static_cast<const float*>(r.grad) + row * n;
    const float* y = static_cast<const float*>(r.y) + row * n;
    float* dx = static_cast<float*>(r.out) + row * n;
    const V total(static_cast<float>(softmax_backward_row_total(g, y, n, kLog)));
    if (stream) {
      map_binary<kHasStreamStores, false>(g, y, dx, n, [&](V gv, V yv) NNF_LAMBDA_INLINE {
        return softmax_backward_out_f32<kLog, kUnit>(gv, yv, total, scale);
      });
      continue;
    }
    for_vectors<V>(n, [&](int k, int64_t i, int cnt) {
      store_n(dx + i, softmax_backward_out_f32<kLog, kUnit>(load_n(g + i, cnt), load_n(y + i, cnt), total, scale), cnt);
    });
  }
  if (stream) stream_fence();
}

template <class T>
void softmax_backward_rows(const SoftmaxBackwardRange& r, int64_t row_begin, int64_t row_end) {
  using V = vec_for_t<T>;
  using S = scalar_t<V>;
  constexpr int L = kLanes<V>;
  const int64_t n = r.cols;
  const V scale(static_cast<S>(r.scale));
  if constexpr (std::is_same_v<T, float>) {
    const bool unit = static_cast<float>(r.scale) == 1.0f;
    if (r.log) {
      unit ? softmax_backward_rows_f32<true, true>(r, row_begin, row_end)
           : softmax_backward_rows_f32<true, false>(r, row_begin, row_end);
    } else {
      unit ? softmax_backward_rows_f32<false, true>(r, row_begin, row_end)
           : softmax_backward_rows_f32<false, false>(r, row_begin, row_end);
    }
    return;
  }
  for (int64_t row = row_begin; row < row_end; ++row) {
    const T* g = static_cast<const T*>(r.grad) + row * n;
    const T* y = static_cast<const T*>(r.y) + row * n;
    T* dx = static_cast<T*>(r.out) + row * n;
    const V total(static_cast<S>(softmax_backward_row_total(g, y, n, r.log)));
    if constexpr (std::is_same_v<S, float>) {
      if (r.log) {
        for (int64_t i = 0; i < n; i += L) {
          int cnt = n - i < L ? static_cast<int>(n - i) : L;
          V gv = load_n(g + i, cnt), yv = load_n(y + i, cnt);
          // padded lanes load 0, inside the range
          V out = all_in_near_range(yv) ? log_softmax_bwd_out_near(gv, yv, total, scale)
                                        : log_softmax_bwd_out(gv, yv, total, scale);
          store_n(dx + i, out, cnt);
        }
        continue;
      }
    }
    for (int64_t i = 0; i < n; i += L) {
      int cnt = n - i < L ? static_cast<int>(n - i) : L;
      V gv = load_n(g + i, cnt), yv = load_n(y + i, cnt);
      store_n(dx + i, r.log ? log_softmax_bwd_out(gv, yv, total, scale) : softmax_bwd_out(gv, yv, total, scale), cnt);
    }
  }
}

// ---- fused cross-entropy ---------------------------------------------------------

// One row's loss, the factor a of its other elements' gradients
// (a e^(z - M) - b, b = range_cross_entropy_b) and, given e_t = e^(z_t - M), its
// label's gradient, from its maximum m, S, log S, the sum of its logits times
// logit_scale (label smoothing only) and the label's logit z_t: the one
// formula of every cross-entropy kernel, in double (D = double) or for a
// block of rows one per lane (D = LanesF64). The row kernels call
// label_grad after their gradient loop, which then need not wait on its
// exp (calling it first made rows of 512 and 1024 classes 1.2-1.5x slower
// with libm's exp).
template <class D>
struct CrossEntropyRowResult {
  D loss, a, k;
  D label_grad(const CrossEntropyRange& r, D sum, D e_t) const {
    return cross_entropy_label_grad_from_exp(e_t, sum, r.weight, k, r.smoothing, static_cast<double>(r.cols));
  }
  D label_grad_from_rest(const CrossEntropyRange& r, D sum, D rest) const {
    return cross_entropy_label_grad_from_rest(rest, sum, r.weight, k, r.smoothing, static_cast<double>(r.cols));
  }
};
template <class D>
CrossEntropyRowResult<D> cross_entropy_row_result(const CrossEntropyRange& r, D m, D sum, D log_sum,
                                                  D scaled_logit_sum, double logit_scale, D z_t) {
  const double n = static_cast<double>(r.cols), w = r.weight;
  const D k = cross_entropy_k(r.z_loss, m, log_sum);
  // The compensated logit sum is NaN where a logit is -inf (its correction
  // meets -inf - -inf); a NaN or +inf logit makes m or log_sum NaN as well.
  // The mean is then -inf and the smoothing term +inf, as in the reference.
  const D mean_z = where_nan(scaled_logit_sum, D(smx::neg_inf_d()), (scaled_logit_sum / D(n)) / D(logit_scale));
  return {cross_entropy_loss(z_t, m, log_sum, mean_z, r.smoothing, r.z_loss), D(w) * k / sum, k};
}
inline double range_cross_entropy_b(const CrossEntropyRange& r) {
  return cross_entropy_b(r.weight, r.smoothing, static_cast<double>(r.cols));
}

// The sum of term(i) over i != label, in 16 virtual lanes of double (element
// i into lane i % 16, the label's lane adding +0) combined pairwise: every
// ISA and every kernel adds the same terms in the same order, so a row's
// bits do not depend on which kernel took it.
template <class Term>
double label_rest(int64_t n, int64_t label, Term&& term) {
  double lanes[kGroup] = {};
  int64_t i = 0;
  for (; i + kGroup <= n; i += kGroup) {
    for (int j = 0; j < kGroup; ++j) lanes[j] += i + j == label ? 0.0 : term(i + j);
  }
  for (int j = 0; i + j < n; ++j) lanes[j] += i + j == label ? 0.0 : term(i + j);
  return pairwise_sum(lanes);
}

// label_rest of a row of float terms in memory, by vectors: element i into
// virtual lane i % 16 (kVecs vectors of LanesF64 hold the 16 lanes), the
// label's lane and the tail adding +0. The same bits as label_rest.
inline double row_label_rest(const float* terms, int64_t n, int64_t label) {
  using V = VecF;
  constexpr int L = kLanes<V>, K = kVecs<V>;
  LanesF64 acc[K];
  for (auto& a : acc) a = LanesF64(0.0);
  const V iota = vload(kIota);
  for (int64_t i = 0; i < n; i += kGroup) {
    for (int k = 0; k < K; ++k) {
      const int64_t at = i + k * L;
      if (at >= n) break;
      const int cnt = n - at < L ? static_cast<int>(n - at) : L;
      // |label - at| >= 2^24 rounds to a float outside [0, L): no lane matches.
      const V v = select(iota == V(static_cast<float>(label - at)), V(0.0f), load_n(terms + at, cnt));
      acc[k] = acc[k] + widen(v);
    }
  }
  alignas(64) double lanes[kGroup];
  for (int k = 0; k < K; ++k) store_f64(lanes + k * L, acc[k]);
  return pairwise_sum(lanes);
}

// Float32 rows whose logits are finite with a spread below 87: one exp per
// element (written to grad, then a * e - b in place). Returns false for the
// other rows, which take the general path below.
inline bool cross_entropy_row_f32(const CrossEntropyRange& r, int64_t row, const float* x, float* grad, int64_t label) {
  using V = vec_for_t<float>;
  constexpr int L = kLanes<V>;
  const int64_t n = r.cols;
  const double eps = r.smoothing;
  // Pass 1 in the fast form (row_max_min_fast): a NaN it skips makes the
  // sum, hence the loss and every gradient of the row, NaN, as before (the
  // NaN-aware form sent such a row to the general path). Nothing is redone,
  // so a gradient written over its logits may take it too (pass 2 reads each
  // logit before writing its term). 4096x1024 and 256x32768, 1 thread: 0.77
  // -> 0.64 ns/element against the NaN-aware form.
  float mx, mn;
  row_max_min_fast<V, true>(x, n, V(1.0f), mx, mn);
  mx = -(-mx + 0.0f);  // the zero sign of the order-free maximum, as f32_segment_stats
  if (!(mn - mx >= -87.0f)) return false;  // also rows with an infinity
  double sum_z = 0.0;
  if (eps != 0.0) {
    // As in row_norm: the logits times 2^-40, compensated, 16 lanes.
    smx::CompensatedSum<V> zsum[kVecs<V>];
    for (auto& a : zsum) a.reset();
    for_vectors<V>(n, [&](int k, int64_t i, int cnt) { zsum[k].add(load_n(x + i, cnt) * V(kLogitSumScale<float>)); });
    sum_z = combine_lanes(zsum);
  }
  const double z_t = static_cast<double>(x[label]);  // read before grad may overwrite x
  const V m(mx);
  // z - M by TwoSum only (Fast2Sum where it applies gives the same bits, but
  // a second instantiation of the loop here made rows of 2 to 128 elements
  // 3-7% slower for 5% at 1024).
  // The next row's logits and gradient are prefetched (see row_exp_sum).
  const double sum =
      row_exp_sum<V, false, true, RowTerms::kNear, false>(x, nullptr, n, V(1.0f), m, grad, x + n, grad + n);
  const double max_d = static_cast<double>(mx);
  // The terms are in grad now (the label's is 1 where the row is confident).
  const bool confident = confident_row(z_t, max_d, sum);
  const double rest = confident ? row_label_rest(grad, n, label) : 0.0;
  const CrossEntropyRowResult<double> res = cross_entropy_row_result(
      r, max_d, sum, confident ? log1p_small(rest) : log_row_sum(sum), sum_z, kLogitSumScale<float>, z_t);
  r.loss[row] = res.loss;
  const V a(static_cast<float>(res.a)), b(static_cast<float>(range_cross_entropy_b(r)));
  for (int64_t i = 0; i < n; i += L) {
    int cnt = n - i < L ? static_cast<int>(n - i) : L;
    store_n(grad + i, cross_entropy_grad_from_exp(load_n(grad + i, cnt), a, b), cnt);
  }
  store_scalar(grad + label, confident ? res.label_grad_from_rest(r, sum, rest)
                                       : res.label_grad(r, sum, exp_label_term(z_t - max_d)));
  return true;
}

// One row (the general path, and the float32 rows' one-exp form).
template <class T>
void cross_entropy_row(const CrossEntropyRange& r, int64_t row) {
  using V = vec_for_t<T>;
  using S = scalar_t<V>;
  constexpr int L = kLanes<V>;
  const int64_t n = r.cols;
  const double eps = r.smoothing;
  const T* x = static_cast<const T*>(r.logits) + row * n;
  T* grad = static_cast<T*>(r.grad) + row * n;
  const int64_t label = r.labels[row];
  if (label == r.ignore_index || label < 0 || label >= n) {
    // Out-of-range labels are rejected by the caller; never read them.
    r.loss[row] = label == r.ignore_index ? 0.0 : static_cast<double>(vmath::nan_f());
    fill_row(grad, n, S(0));
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (cross_entropy_row_f32(r, row, x, grad, label)) return;
  }
  double sum_z = 0.0;
  const RowNorm norm = eps != 0.0 ? row_norm<T, false, true>(x, nullptr, n, V(S(1)), &sum_z)
                                  : row_norm<T, false, false>(x, nullptr, n, V(S(1)));
  const double z_t = static_cast<double>(to_float(x[label]));  // read before grad may overwrite x
  bool confident = false;
  double rest = 0.0;
  if constexpr (!std::is_same_v<S, double>) {
    confident = confident_row(z_t, norm.max, norm.sum);
    if (confident) {
      const S m = static_cast<S>(norm.max);
      rest = label_rest(n, label, [&](int64_t i) {
        S d, dlo;
        smx::exact_diff(to_float(x[i]), m, d, dlo);
        return static_cast<double>(smx::exp_lo(d, dlo));
      });
    }
  }
  const CrossEntropyRowResult<double> res = cross_entropy_row_result(
      r, norm.max, norm.sum, confident ? log1p_small(rest) : log(norm.sum), sum_z, kLogitSumScale<S>, z_t);
  r.loss[row] = res.loss;
  const V m(static_cast<S>(norm.max));
  const V a(static_cast<S>(res.a)), b(static_cast<S>(range_cross_entropy_b(r)));
  for (int64_t i = 0; i < n; i += L) {
    int cnt = n - i < L ? static_cast<int>(n - i) : L;
    store_n(grad + i, cross_entropy_grad(load_n(x + i, cnt), m, a, b), cnt);
  }
  store_scalar(grad + label, confident ? res.label_grad_from_rest(r, norm.sum, rest)
                                       : res.label_grad(r, norm.sum, exp(z_t - norm.max)));
}

// The labels of a block of rows: those equal to ignore_index, and those
// outside [0, n) (left to cross_entropy_row, which never reads them), a bit
// per row.
struct BlockLabels {
  uint32_t ignored = 0, invalid = 0;
  BlockLabels(const CrossEntropyRange& r, const int64_t* labels, int rows, int64_t n) {
#if NNF_ISA_LEVEL == 2
    if (rows == kGroup) {  // two vectors of 8 labels (the unsigned compare takes the negative ones too)
      const __m512i ignore = _mm512_set1_epi64(r.ignore_index), classes = _mm512_set1_epi64(n);
      for (int half = 0; half < 2; ++half) {
        const __m512i label = _mm512_loadu_si512(labels + 8 * half);
        const uint32_t is_ignored = _mm512_cmpeq_epi64_mask(label, ignore);
        const uint32_t outside = _mm512_cmpge_epu64_mask(label, classes);
        ignored |= is_ignored << (8 * half);
        invalid |= (outside & ~is_ignored & 0xFFu) << (8 * half);
      }
      return;
    }
#endif
    for (int l = 0; l < rows; ++l) {
      if (labels[l] == r.ignore_index) {
        ignored |= 1u << l;
      } else if (labels[l] < 0 || labels[l] >= n) {
        invalid |= 1u << l;
      }
    }
  }
};

// The confident rows of a block (see confident_row), as bits, from the rows'
// sums (lane l: row l). A float comparison with 1 + 2^-19 finds the
// candidates first (sums rounded to float stay below it wherever the double
// is below 1 + 2^-20): most blocks have none.
inline uint32_t confident_bits(LanesF64 row_sum, uint32_t ignored, const double* z_t, const float* max_f,
                               const double* sum) {
  uint32_t confident = lane_bits(narrow(row_sum) < VecF(1.0f + 0x1p-19f)) & ~ignored;
  for (uint32_t left = confident; left != 0; left &= left - 1) {
    const int l = __builtin_ctz(left);
    if (!confident_row(z_t[l], max_f[l], sum[l])) confident &= ~(1u << l);
  }
  return confident;
}
// log_sum = log1p_small(rest) in the lanes of `confident`.
inline void take_log_rests(uint32_t confident, const double* rest, double* log_sum) {
  alignas(64) double log_rest[kGroup];
  store_f64(log_rest, log1p_small(load_f64(rest)));
  for (; confident != 0; confident &= confident - 1) {
    const int l = __builtin_ctz(confident);
    log_sum[l] = log_rest[l];
  }
}

// Per-row results of a block of cross-entropy rows, one per lane of
// LanesF64 (16 on AVX-512, 8 on AVX2, 1 on the scalar path), from each row's
// maximum, S, log S and (label smoothing) scaled logit sum, the label's
// logit z_t read before the gradient could overwrite it: the loss, the
// factors a and b of the other elements' gradient, and the label's gradient
// (ignored rows: loss 0, a = b = 0), as cross_entropy_row_f32 has them, lane
// by lane. Row by row in scalar double with libm's exp, this step made
// 65536x10 / 65536x16 take 3.35 / 2.39 ns per element on 1 thread, against
// 2.11 / 1.68 lane-wise.
struct BlockGradFactors {
  alignas(64) float a[kGroup], b[kGroup];
  alignas(64) double label_grad[kGroup];
  BlockGradFactors(const CrossEntropyRange& r, uint32_t ignored, const float* max_f, const double* sum,
                   const double* log_sum, const double* sum_z, const double* z_t, double* loss) {
    constexpr int kRows = kLanes<VecF>;
    const LanesF64 m = widen(vload(max_f)), s = load_f64(sum), zt = load_f64(z_t);
    const CrossEntropyRowResult<LanesF64> res =
        cross_entropy_row_result(r, m, s, load_f64(log_sum), load_f64(sum_z), kLogitSumScale<float>, zt);
    store_f64(loss, res.loss);
    vstore(a, narrow(res.a));
    store_f64(label_grad, res.label_grad(r, s, exp_label_term(zt - m)));
    const float b_row = static_cast<float>(range_cross_entropy_b(r));
    for (int l = 0; l < kRows; ++l) {
      b[l] = b_row;
      if ((ignored >> l) & 1u) {
        loss[l] = 0.0;
        a[l] = b[l] = 0.0f;
      }
    }
  }
  // The label gradients of the confident rows (bits of `confident`; see
  // confident_row), lane-wise from their rest (0 in the other lanes) and the
  // log_sum = log1p_small(rest) the constructor was given.
  void take_rests(const CrossEntropyRange& r, uint32_t confident, const float* max_f, const double* sum,
                  const double* log_sum, const double* rest) {
    if (confident == 0) return;
    const LanesF64 m = widen(vload(max_f)), s = load_f64(sum);
    const LanesF64 k = cross_entropy_k(r.z_loss, m, load_f64(log_sum));
    alignas(64) double grad_from_rest[kGroup];
    store_f64(grad_from_rest, cross_entropy_label_grad_from_rest(load_f64(rest), s, r.weight, k, r.smoothing,
                                                                 static_cast<double>(r.cols)));
    for (; confident != 0; confident &= confident - 1) {
      const int l = __builtin_ctz(confident);
      label_grad[l] = grad_from_rest[l];
    }
  }
  // The label's gradient, or a row of zeros for an ignored row.
  void finish_row(float* grad_row, int64_t n, int l, uint32_t ignored, int64_t label) const {
    if ((ignored >> l) & 1u) {
      fill_row(grad_row, n, 0.0f);
    } else {
      store_scalar(grad_row + label, label_grad[l]);
    }
  }
};

#if NNF_ISA_LEVEL == 2
// l n + labels[l] for the 16 rows of a column block of n (<= 16) columns, as
// int32 (below 256 + 16): the elements of the labels' logits and gradients.
inline __m512i label_offsets(const int64_t* labels, int64_t n) {
  const __m512i row_start = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32(static_cast<int32_t>(n)));
  const __m256i lo = _mm512_cvtepi64_epi32(_mm512_loadu_si512(labels));
  const __m256i hi = _mm512_cvtepi64_epi32(_mm512_loadu_si512(labels + 8));
  return _mm512_add_epi32(row_start, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
}
#endif

// Cross-entropy rows of at most kColumnRow elements, a block of kLanes rows
// at a time with one row per lane (as softmax_column_rows_f32): the
// maximum by max_lanes' tree of max_nan over the virtual lanes (element j
// alone in lane j; no zero-sign normalisation here), the minimum, the terms
// and the lane sums lane-wise; then each row's loss and label gradient in
// double, and the gradient in memory order. The operations of
// cross_entropy_row_f32, so the same bits. A block with a row that row
// does not take (NaN, infinite or spread beyond 87) goes row by row, before
// anything is written (the gradient may overwrite the logits).
template <int N>
bool cross_entropy_column_block(const CrossEntropyRange& r, const ColumnLayout& lay, const float* x, float* grad,
                                const int64_t* labels, double* loss) {
  using V = VecF;
  constexpr int L = kLanes<V>, n = N;
  const BlockLabels lab(r, labels, L, n);
  V zr[N], z[N];
  for (int v = 0; v < n; ++v) zr[v] = vload(x + v * L);
  lay.transpose<N>(zr, z);
  V mn = z[0];
  for (int j = 0; j < n; ++j) mn = vmin(mn, z[j]);  // any order: NaN rows are not near anyway
  const V mx = pairwise_over_lanes(z, [](V a, V b) { return smx::max_nan(a, b); });
  if (((lane_bits(mask_not(mn - mx >= V(-87.0f))) | lab.invalid) & ~lab.ignored) != 0) return false;
  LanesF64 lane[N];
  V term[N];
  for (int j = 0; j < n; ++j) {
    term[j] = softmax_term_near(z[j], mx);
    lane[j] = widen(term[j]);
  }
  alignas(64) double sum[kGroup], log_sum[kGroup], sum_z[kGroup] = {}, z_t[kGroup];
  const LanesF64 row_sum = combine_columns<N>(lane);
  store_f64(sum, row_sum);
  store_f64(log_sum, log_row_sum(row_sum));
  if (r.smoothing != 0.0) {
    for (int j = 0; j < n; ++j) {
      const V scaled = z[j] * V(kLogitSumScale<float>);
      lane[j] = widen((scaled - scaled) + scaled);  // CompensatedSum of one term (see combine_columns)
    }
    store_f64(sum_z, combine_columns<N>(lane));
  }
  alignas(64) float max_f[kGroup];
  vstore(max_f, mx);
#if NNF_ISA_LEVEL == 2
  // Each row's label logit by one gather (0 for ignored rows), and below its
  // label gradient by one scatter: the values of the scalar loops, without
  // their load or store and branch per row (2^20 rows of 2 classes, 1
  // thread: 5.55 -> 4.23 ns per element with the label check above).
  const __m512i label_index = label_offsets(labels, n);
  const __mmask16 kept = static_cast<__mmask16>(~lab.ignored);
  const VecF z_label(_mm512_mask_i32gather_ps(_mm512_setzero_ps(), kept, label_index, x, 4));
  store_f64(z_t, widen(z_label));
#else
  for (int l = 0; l < L; ++l) z_t[l] = ((lab.ignored >> l) & 1u) ? 0.0 : static_cast<double>(x[l * n + labels[l]]);
#endif
  alignas(64) double rest[kGroup] = {};
  const uint32_t confident = confident_bits(row_sum, lab.ignored, z_t, max_f, sum);
  if (confident != 0) {
    // Every row's rest at once (lane l: row l): label_rest's 16 virtual
    // lanes hold one term each here (n <= 16), so its tree over t[j] = row
    // l's term j (0 for the label and beyond n) gives its bits.
    alignas(64) float label_f[kGroup];
    for (int l = 0; l < L; ++l) label_f[l] = static_cast<float>(labels[l]);  // < 16 where it matters
    const V label_v = vload(label_f);
    LanesF64 t[kGroup];
    for (int j = 0; j < kGroup; ++j) {
      t[j] = j < n ? widen(select(label_v == V(static_cast<float>(j)), V(0.0f), term[j])) : LanesF64(0.0);
    }
    store_f64(rest, pairwise_sum(t));
    take_log_rests(confident, rest, log_sum);
  }
  BlockGradFactors f(r, lab.ignored, max_f, sum, log_sum, sum_z, z_t, loss);
  f.take_rests(r, confident, max_f, sum, log_sum, rest);
  const V a = vload(f.a), b = vload(f.b);
#if NNF_ISA_LEVEL == 2
  V g[N];  // as softmax_column_block
  for (int j = 0; j < n; ++j) g[j] = cross_entropy_grad_from_exp(term[j], a, b);
  lay.untranspose<N>(g, zr);
  for (int v = 0; v < n; ++v) vstore(grad + v * L, zr[v]);
  _mm512_mask_i32scatter_ps(grad, kept, label_index, narrow(load_f64(f.label_grad)).v, 4);
  for (uint32_t rest = lab.ignored; rest != 0; rest &= rest - 1) fill_row(grad + __builtin_ctz(rest) * n, n, 0.0f);
#else
  for (int v = 0; v < n; ++v) {
    const int32_t* row = lay.row_of[v];
    const V t = softmax_term_near(zr[v], vpermute(mx, row));
    vstore(grad + v * L, cross_entropy_grad_from_exp(t, vpermute(a, row), vpermute(b, row)));
  }
  for (int l = 0; l < L; ++l) f.finish_row(grad + l * n, n, l, lab.ignored, labels[l]);
#endif
  return true;
}

// Cross-entropy rows [row_begin, row_end) of at most kMaxRow elements, kRows
// at a time by block(x, grad, labels, loss), which returns false (having
// written nothing) for a block it leaves to cross_entropy_row. A last block
// of fewer than kRows rows runs through buffers; its missing rows get zeros
// and label 0.
template <int kRows, int kMaxRow, class Block>
void cross_entropy_blocks_f32(const CrossEntropyRange& r, int64_t row_begin, int64_t row_end, Block&& block) {
  const int64_t n = r.cols;
  alignas(64) float xbuf[kRows * kMaxRow], gbuf[kRows * kMaxRow];
  int64_t label_buf[kRows];
  double loss_buf[kRows];
  for (int64_t row0 = row_begin; row0 < row_end; row0 += kRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kRows, row_end - row0));
    const float* x = static_cast<const float*>(r.logits) + row0 * n;
    float* grad = static_cast<float*>(r.grad) + row0 * n;
    bool done;
    if (rows == kRows) {
      done = block(x, grad, r.labels + row0, r.loss + row0);
    } else {
      std::fill(std::copy(x, x + rows * n, xbuf), xbuf + kRows * n, 0.0f);
      std::fill(std::copy(r.labels + row0, r.labels + row0 + rows, label_buf), label_buf + kRows, int64_t{0});
      done = block(static_cast<const float*>(xbuf), static_cast<float*>(gbuf), static_cast<const int64_t*>(label_buf),
                   static_cast<double*>(loss_buf));
      if (done) {
        std::copy(gbuf, gbuf + rows * n, grad);
        std::copy(loss_buf, loss_buf + rows, r.loss + row0);
      }
    }
    if (!done) {
      for (int l = 0; l < rows; ++l) cross_entropy_row<float>(r, row0 + l);
    }
  }
}

template <int N>
void cross_entropy_column_rows_f32(const CrossEntropyRange& r, int64_t row_begin, int64_t row_end) {
  static const ColumnLayout lay(N);  // built once per row length (thread-safe)
  cross_entropy_blocks_f32<kLanes<VecF>, kColumnRow>(
      r, row_begin, row_end, [&](const float* x, float* grad, const int64_t* labels, double* loss) {
        return cross_entropy_column_block<N>(r, lay, x, grad, labels, loss);
      });
}

#if NNF_ISA_LEVEL == 2
// Cross-entropy rows of 17 to kBatchRowMax elements, 16 at a time
// as softmax_batch_block: the rows in memory order, their reductions
// batched (lane-wise maximum, minimum, BiasedSum and, with label smoothing,
// the CompensatedSum of the scaled logits, each reduced by reduce_rows so
// that every row's value comes out of max_lanes' or combine_pairs' tree in
// its own lane). The operations of cross_entropy_row_f32 (z - M by Fast2Sum where
// batch_row_terms finds its condition: the same d and dlo), so the same
// bits; the row kernel keeps TwoSum, where a second loop cost more than
// Fast2Sum saved (see there). Pass 1
// sees every row before pass 2 writes the terms into the gradient (which may
// be the logits), so a block with a row the row kernel must take is left to
// it whole.
template <int K, bool kSmoothing>
bool cross_entropy_batch_block(const CrossEntropyRange& r, const float* x, float* grad, const int64_t* labels,
                               double* loss) {
  using V = VecF;
  const int n = static_cast<int>(r.cols);
  const BatchRows<K> rows(n);
  const BlockLabels lab(r, labels, kGroup, n);
  const V neg_inf(smx::neg_inf_f());
  auto logits = [&](int l, int k) { return rows.load(x + l * n, k); };
  // Pass 1 (batch_max_min) with, for label smoothing, each row's scaled
  // logit sum (padding +0), as the row's zsum.
  smx::CompensatedSum<V> zsum[kGroup];
  for (auto& a : zsum) a.reset();
  const BatchMaxMin stats = batch_max_min(rows, logits, [&](int l, V z) {
    if constexpr (kSmoothing) zsum[l].add(z * V(kLogitSumScale<float>));
  });
  const V mx = stats.max, mn = stats.min;
  // A row with a NaN among finite logits gets a NaN sum, loss and gradient
  // here as in the row kernel; one of NaNs alone (maximum -inf) is left to it.
  const uint32_t general = lane_bits((mx == neg_inf) | mask_not(mn - mx >= V(-87.0f)));
  if (((general | lab.invalid) & ~lab.ignored) != 0) return false;
  const BatchForms forms(mx, mn, false);
  alignas(64) float max_f[kGroup];
  alignas(64) double sum[kGroup], log_sum[kGroup], sum_z[kGroup] = {}, z_t[kGroup];
  vstore(max_f, mx);
  for (int l = 0; l < kGroup; ++l) z_t[l] = ((lab.ignored >> l) & 1u) ? 0.0 : static_cast<double>(x[l * n + labels[l]]);
  if constexpr (kSmoothing) {
    __m512 zsr[kGroup], zcr[kGroup];
    for (int l = 0; l < kGroup; ++l) {
      zsr[l] = zsum[l].s.v;
      zcr[l] = zsum[l].c.v;
    }
    store_f64(sum_z, reduced_lane_sums<0>(zsr, zcr));
  }
  // Pass 2: the terms, written to the gradient, and each row's lane sums.
  __m512 sums[kGroup], comps[kGroup];
  for (int l = 0; l < kGroup; ++l) {
    const smx::BiasedSum<V> acc = batch_row_terms(rows, logits, x, grad, l, V(max_f[l]), false,
                                                  (forms.negative >> l) & 1u, (forms.fast >> l) & 1u, true);
    sums[l] = acc.s.v;
    comps[l] = acc.c.v;
  }
  const LanesF64 row_sum = reduced_lane_sums<1>(sums, comps);
  store_f64(sum, row_sum);
  store_f64(log_sum, log_row_sum(row_sum));
  alignas(64) double rest[kGroup] = {};
  const uint32_t confident = confident_bits(row_sum, lab.ignored, z_t, max_f, sum);
  if (confident != 0) {
    for (uint32_t left = confident; left != 0; left &= left - 1) {
      const int l = __builtin_ctz(left);
      rest[l] = row_label_rest(grad + l * n, n, labels[l]);
    }
    take_log_rests(confident, rest, log_sum);
  }
  BlockGradFactors f(r, lab.ignored, max_f, sum, log_sum, sum_z, z_t, loss);
  f.take_rests(r, confident, max_f, sum, log_sum, rest);
  // Pass 3: a e - b in place, then the label's gradient.
  for (int l = 0; l < kGroup; ++l) {
    float* g = grad + l * n;
    if (!((lab.ignored >> l) & 1u)) {
      const V a(f.a[l]), b(f.b[l]);
      for (int k = 0; k < K; ++k) rows.store(g, k, cross_entropy_grad_from_exp(rows.load(g, k), a, b));
    }
    f.finish_row(g, n, l, lab.ignored, labels[l]);
  }
  return true;
}

template <int K>
void cross_entropy_batch_rows_f32(const CrossEntropyRange& r, int64_t row_begin, int64_t row_end) {
  auto run = [&](auto block) { cross_entropy_blocks_f32<kGroup, kBatchRowMax>(r, row_begin, row_end, block); };
  if (r.smoothing != 0.0) {
    run([&](const float* x, float* grad, const int64_t* labels, double* loss) {
      return cross_entropy_batch_block<K, true>(r, x, grad, labels, loss);
    });
  } else {
    run([&](const float* x, float* grad, const int64_t* labels, double* loss) {
      return cross_entropy_batch_block<K, false>(r, x, grad, labels, loss);
    });
  }
}
#endif

template <class T>
void cross_entropy_rows(const CrossEntropyRange& r, int64_t row_begin, int64_t row_end) {
  if constexpr (std::is_same_v<T, float>) {
    if (r.cols <= kColumnRow) {
      return with_row_length<kColumnRow>(static_cast<int>(r.cols), [&](auto len) {
        cross_entropy_column_rows_f32<len()>(r, row_begin, row_end);
      });
    }
#if NNF_ISA_LEVEL == 2
    if (r.cols <= kBatchRowMax) {
      return with_batch_vectors(static_cast<int>((r.cols + kGroup - 1) / kGroup), [&](auto vectors) {
        cross_entropy_batch_rows_f32<vectors()>(r, row_begin, row_end);
      });
    }
#endif
  }
  for (int64_t row = row_begin; row < row_end; ++row) cross_entropy_row<T>(r, row);
}

}  // namespace

const SoftmaxKernelTable& softmax_kernel_table() {
  static constexpr SoftmaxKernelTable table = {
      kIsaName,
      softmax_forward,
      [](const SoftmaxBackwardRange& r, int64_t b, int64_t e) {
        dispatch_dtype(r.dtype, [&](auto tag) { softmax_backward_rows<typename decltype(tag)::type>(r, b, e); });
      },
      [](const CrossEntropyRange& r, int64_t b, int64_t e) {
        dispatch_dtype(r.dtype, [&](auto tag) { cross_entropy_rows<typename decltype(tag)::type>(r, b, e); });
      },
      [](const SoftmaxRange& r, int64_t row, int64_t b, int64_t e, bool exact) {
        return r.keep ? f32_segment_sum<true>(r, row, b, e, exact, 0) : f32_segment_sum<false>(r, row, b, e, exact, 0);
      },
      [](const SoftmaxRange& r, int64_t row, int64_t b, int64_t e, const SoftmaxSegmentSum& seg,
         const SoftmaxRowSum& rs) {
        r.keep ? f32_segment_finish<true>(r, row, b, e, seg, rs) : f32_segment_finish<false>(r, row, b, e, seg, rs);
      },
  };
  return table;
}

NNF_NS_END
