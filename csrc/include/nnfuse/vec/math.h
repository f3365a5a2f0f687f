// Vector math written once over the primitive vocabulary of vec/scalar.h, for
// V = float, Vec<float, Avx2>, Vec<float, Avx512> (and float in CUDA device
// code). Only the primitives and literal constants are used, with every fused
// multiply-add spelled fma(): the build disables contraction, so the four
// targets execute the same IEEE operations and return the same bits.
//
// double overloads call the C library: float64 is computed with libm.
//
// Polynomial coefficients are our own minimax fits (linear-programming minimax
// on Chebyshev nodes in float64, then rounded to float). Error bounds quoted
// below were MEASURED by the exhaustive-stride + dense + special-value harness
// (all float bit patterns stepped by a stride, dense [-20, 20], specials),
// against long double libm; ulp(r) = 2^(max(floor(log2|r|), -126) - 23).
#pragma once

#include <math.h>

#include "nnfuse/common/macros.h"
#include "nnfuse/vec/scalar.h"

NNF_NS_BEGIN

// ---- float64: libm ------------------------------------------------------------
NNF_HD double exp(double x) { return ::exp(x); }
NNF_HD double expm1(double x) { return ::expm1(x); }
NNF_HD double log(double x) { return ::log(x); }
NNF_HD double log1p(double x) { return ::log1p(x); }
NNF_HD double tanh(double x) { return ::tanh(x); }
NNF_HD double erf(double x) { return ::erf(x); }
NNF_HD double erfc(double x) { return ::erfc(x); }

namespace vmath {

// A constant of value type V written once as a double literal: float lanes get
// the float nearest to it (the literals below are chosen so that this is the
// float the float32 code has always used).
template <class V>
NNF_HD V cst(double v) {
  return V(static_cast<scalar_t<V>>(v));
}

// Per-precision constants of the exponential and the saturation thresholds of
// the activations. The thresholds are where every exp-based term is exactly 0
// (or 1) in the precision, also after multiplication by a gradient |g| < 2^102
// (float) / 2^268 (double): clamping there turns inf * 0 into the limit.
template <class S>
struct Limits;
template <>
struct Limits<float> {
  // exp_parts: x clamped to [exp_lo, exp_hi]; 2^k is split in factors
  // >= 2^emin (normal), the second may be 2^(emin - 1) = +0 (flush, see
  // scaled_by_pow2). exp_hi = 256, not 88.7 where e^x overflows: m e^x is
  // finite up to x = 88.7 - ln|m| (celu_backward's g e^(x / alpha) with alpha
  // < 0), and overflows beyond 256 for every nonzero float m (e^256 > 2^369).
  static constexpr float exp_lo = -200.0f, exp_hi = 256.0f, emin = -126.0f;
  static constexpr float log2e = 1.442695041f;
  // ln2 = ln2_hi + ln2_lo; ln2_hi has 15 significant bits, so k ln2_hi is exact.
  static constexpr float ln2_hi = 0.693145751953125f, ln2_lo = 1.428606765330187e-06f;
  static constexpr float tail = 200.0f;     // silu, mish: |x| e^-|x| g is 0 beyond
  static constexpr float gelu = 20.0f;      // gelu: a phi(a) g is 0 beyond
  static constexpr float gelu_tanh = 14.0f; // gelu tanh: e^-2u(a) is 0 beyond
  static constexpr float max = 3.402823466e+38f;  // largest finite
};
template <>
struct Limits<double> {  // (float64 exp is the C library's, see ExpParts<double>)
  static constexpr double tail = 1000.0;
  static constexpr double gelu = 50.0;
  static constexpr double gelu_tanh = 26.0;
  static constexpr double max = 1.7976931348623157e+308;
};

// v 2^k with one rounding, for integral k <= 381 (the exponentials' 2^k and
// the sigmoid's 2^-k). all_normal: emin <= k <= 127 in every lane (almost
// every vector), where that is one exact factor (scale_pow2). Otherwise 2^k
// is applied as three factors: lanes with k in that range take 2^k times 1
// times 1 (the same bits as the one-factor path, so the result of a lane does
// not depend on its neighbours: ISAs of any width agree), the others 2^k1
// 2^k2 2^k3 with k1 = min(max(rint(k/2), emin), 127), k2 = min(max(k - k1,
// emin - 1), 127) and k3 = max(k - k1 - k2, 0). For k < 0 that is k1 2^k2
// as halves (k3 = 0): both factors are normal for k >= 2 emin; below,
// pow2i(emin - 1) = +0 flushes the result: there v 2^k < 2^(2 emin - 1 / 2)
// |v|, which rounds to 0 for |v| < 2^102. v 2^k1 is exact (normal) for |v| >=
// 2^-63, so the result is rounded once there. For k > 127 every factor scales
// up, exactly until the product overflows: k up to 381 lets an exponential's
// argument reach 256 (Limits::exp_hi), where m e^x still is finite for a
// small enough m. The maxima turn a NaN k into emin (the callers' v carries
// the NaN).
template <class V>
NNF_HD V scaled_by_pow2(V v, V k, bool all_normal) {
  if (all_normal) return scale_pow2(v, k);
  using L = Limits<scalar_t<V>>;
  const V top(127.0f);
  mask_t<V> in = (k >= V(L::emin)) & (k <= top);
  V k1 = select(in, k, vmin(top, vmax(vrint(k * V(0.5f)), V(L::emin))));
  V k2 = vmin(top, vmax(k - k1, V(L::emin - 1)));
  V k3 = vmax(k - k1 - k2, V(0.0f));
  return ((v * pow2i(k1)) * pow2i(k2)) * pow2i(k3);
}

// e^x = (1 + em1) 2^k with em1 = e^r - 1, |r| <= 0.35, and k integral. Keeping
// the factors apart lets a caller fold a multiplier m in first, m + m em1 with
// one rounding, and round into the denormal range only once (times(m)): that is
// what keeps x e^x, g e^x ... accurate, also when the product is denormal.
// scaled(v) = v 2^k with one rounding (scaled_by_pow2; 2^k is normal in every
// lane for x in [-87.68, 88.37), and the factors for x in [-174.7, 256]).
template <class V>
struct ExpParts {
  V em1, k;
  bool normal;  // emin <= k <= 127 in every lane
  NNF_HD V scaled(V v) const { return scaled_by_pow2(v, k, normal); }
  NNF_HD V value() const { return scaled(em1 + V(1.0f)); }
  NNF_HD V times(V m) const { return scaled(fma(m, em1, m)); }
  // times(m) where 2^k may scale up (k > 0: e^x > 1): there a denormal m would
  // be rounded to its few bits in m + m em1 before 2^k. |m| < 2^64 is taken as
  // m 2^64 (exact) against 2^(k - 64): the same rounding as times(m) for every
  // result that is normal, and one rounding for the others.
  NNF_HD V times_scaled_up(V m) const {
    using L = Limits<scalar_t<V>>;
    const V up_scale(static_cast<scalar_t<V>>(0x1p64));
    const mask_t<V> up = vabs(m) < up_scale;
    const V mu = select(up, m * up_scale, m);
    const V ku = select(up, k - V(64.0f), k);
    return scaled_by_pow2(fma(mu, em1, mu), ku, all_lanes((ku >= V(L::emin)) & (ku <= V(127.0f))));
  }
  // 2^k: exact for k >= emin - 23, else the nearest denormal or 0.
  NNF_HD V scale() const { return scaled(V(1.0f)); }
  // 1 + e^x rounded once, for x <= 0 (2^k is then exact or flushed, and
  // 1 + 2^k is exact while it matters, k >= -23).
  NNF_HD V one_plus() const {
    V s = scale();
    return fma(em1, s, V(1.0f) + s);
  }
};

// float64 keeps the value e^x rounded to double (C library exp): the float64
// reference computes "grad times the float64 f'(x)" and x times a rounded
// e^x, and float64 results are measured against it; folding m in first would
// be more accurate where e^x is denormal but disagree with the contract there.
template <>
struct ExpParts<double> {
  double v;
  NNF_HD double value() const { return v; }
  NNF_HD double times(double m) const { return m * v; }
  NNF_HD double one_plus() const { return 1.0 + v; }
};

// e^r - 1 - r = r^2 q(r) on |r| <= 0.3467; minimax for the relative error of
// e^r - 1 (2^-29.5 before rounding the coefficients). Shared by exp and expm1.
// q's upper part q1 + q2 r + ... + q5 r^4 goes by Estrin's scheme, off the
// dependency chain of every exp, and only the last step q0 + r (...) by
// Horner, so that q is still rounded last at its largest term. Against the
// five-step Horner chain (float32, 1 thread, AVX-512, 2^16 elements, ns per
// element, two alternating runs): tanh 0.445/0.524 -> 0.443/0.496, gelu
// 0.906/0.703 -> 0.868/0.674, sigmoid 0.657/0.667 -> 0.645/0.628, elu
// 0.402/0.587 -> 0.382/0.570; about 1 in 5000 outputs moves by an ulp, and
// over every float only tanh's worst case did (1.726 -> 1.728 ulp,
// docs/exhaustive.md). All of q by Estrin moved gelu-tanh's from 1.937 to
// 1.966 (bound 2).
template <class V>
NNF_HD V expm1_reduced(V r) {
  V r2 = r * r;
  V q12 = fma(V(4.166646674e-02f), r, V(1.666666716e-01f));
  V q34 = fma(V(1.393357175e-03f), r, V(8.333398029e-03f));
  V q = fma(fma(V(1.983296243e-04f), r2, q34), r2, q12);
  q = fma(q, r, V(5.000000000e-01f));
  return fma(r2, q, r);
}
// float64: the C library on the reduced argument (< 1 ulp).

// 1.5 2^23: t + kIntegerShift lies in [2^23, 2^24), where the floats are the
// integers, for float |t| < 2^22 (rint_small, reduce_ln2_rounded).
inline constexpr float kIntegerShift = 12582912.0f;

// Cody-Waite reduction x = k ln2 + r for float |x| <= 256, the reduction of
// every float exp (exp_parts, mul_sigmoid, expm1, tanh, the softmax family,
// GELU's exp_neg_half_square). k comes from one fma: t = x log2e + 1.5 2^23
// rounded once lies in [2^23, 2^24), where the floats are the integers, so t
// - 1.5 2^23 = k exactly and t's low significand bits are k (pow2_rounded
// takes 2^k from them: no conversion). k is x log2e rounded to nearest with
// the product unrounded, so |r| <= ln2 / 2 + 2^-15 (+ the rounding of k
// ln2_lo), within expm1_reduced's range, and t is nondecreasing in x. ln2_hi
// has 15 significant bits and |k| <= 370 < 2^9, so k ln2_hi and fma(k,
// -ln2_hi, x) are exact and only k ln2_lo is rounded; ln2_lo > 0 keeps the
// sign of a zero x. kDoubled: the reduction of x / 2 with r returned doubled,
// x / 2 = k ln2 + r / 2 (2 ln2_hi has the same 15 bits, so the same
// exactness), for a caller that holds 2x and would otherwise spend a product
// on the halving. Against k = vrint(x log2e) (a product and a two-uop
// rounding, 12 cycles to k against 8), float32, 1 thread, AVX-512, 2^16
// elements, ns per element, two alternating runs: tanh 0.482/0.709 ->
// 0.432/0.673, gelu 0.736/0.709 -> 0.662/0.660, sigmoid 0.634/0.465 ->
// 0.592/0.424, silu 0.468/0.530 -> 0.443/0.458, elu 0.441/0.559 ->
// 0.426/0.543; mish even. Over every float (docs/exhaustive.md) no worst
// case moved.
template <class V>
struct Ln2SplitRounded {
  V t, k, r;
};
template <bool kDoubled = false, class V>
NNF_HD Ln2SplitRounded<V> reduce_ln2_rounded(V x) {
  static_assert(std::is_same_v<scalar_t<V>, float>, "the shift rounds to integers in float only");
  using L = Limits<scalar_t<V>>;
  constexpr float kScale = kDoubled ? 2.0f : 1.0f;
  const V shift(kIntegerShift);
  V t = fma(x, V(L::log2e / kScale), shift);
  V k = t - shift;
  V r = fma(k, V(-kScale * L::ln2_hi), x);
  return {t, k, fma(k, V(-kScale * L::ln2_lo), r)};
}
// The same, for callers that need only k and r.
template <class V>
struct Ln2Split {
  V k, r;
};
template <bool kDoubled = false, class V>
NNF_HD Ln2Split<V> reduce_ln2(V x) {
  const Ln2SplitRounded<V> s = reduce_ln2_rounded<kDoubled>(x);
  return {s.k, s.r};
}

// e^(x + xlo): x + xlo = k ln2 + r by reduce_ln2 on x, with xlo added to r.
// x is clamped (NaN passes through) to
// [exp_lo, exp_hi] (Limits): e^exp_hi times any nonzero float is inf. See
// ExpParts for how 2^k is applied.
// kClamp = false: the caller guarantees x in [exp_lo, exp_hi] or NaN and a
// small or NaN xlo (its result is NaN then anyway), and both clamps are skipped.
// kNonPositive: the caller guarantees x <= 0 or NaN, so k <= 0 needs no test
// and a clamp only from below (vmin(exp_hi, x) is x there, NaN included).
// |xc| <= 256 after the clamps, as reduce_ln2 needs.
template <bool kHasLo, bool kClamp = true, bool kNonPositive = false, class V>
NNF_HD ExpParts<V> exp_parts_impl(V x, V xlo) {
  using L = Limits<scalar_t<V>>;
  V xc = x;
  if (kClamp) xc = vmax(V(L::exp_lo), kNonPositive ? x : vmin(V(L::exp_hi), x));
  auto [k, r] = reduce_ln2(xc);
  // xlo is clamped (NaN -> bound): it only matters where x is in range, and a
  // huge or NaN correction from an out-of-range product must not leak in.
  if (kHasLo) r = r + (kClamp ? vmax(vmin(xlo, V(1.0e-4f)), V(-1.0e-4f)) : xlo);
  V em1 = expm1_reduced(r);
  if (kNonPositive) return {em1, k, all_lanes(k >= V(L::emin))};
  return {em1, k, all_lanes((k >= V(L::emin)) & (k <= V(127.0f)))};
}
// float64: e^(x + xlo) = e^x (1 + xlo), as the reference.
template <bool kHasLo, bool kClamp = true, bool kNonPositive = false>
NNF_HD ExpParts<double> exp_parts_impl(double x, double xlo) {
  return {kHasLo ? ::exp(x) * (1.0 + vmax(vmin(xlo, 1.0e-4), -1.0e-4)) : ::exp(x)};
}
template <class V>
NNF_HD ExpParts<V> exp_parts(V x) { return exp_parts_impl<false>(x, V(0.0f)); }
// e^(x + xlo) for a small correction xlo (|xlo| <= ulp(x)), e.g. the rounding
// error of a product that formed x.
template <class V>
NNF_HD ExpParts<V> exp_parts(V x, V xlo) { return exp_parts_impl<true>(x, xlo); }
// exp_parts for x <= 0 or NaN (e^-|z| and the like): the same bits, one clamp
// and one test fewer.
template <class V>
NNF_HD ExpParts<V> exp_parts_nonpositive(V x) { return exp_parts_impl<false, true, true>(x, V(0.0f)); }
template <class V>
NNF_HD ExpParts<V> exp_parts_nonpositive(V x, V xlo) { return exp_parts_impl<true, true, true>(x, xlo); }

// e^(a*b) with the exact product: a*b = p + e (fma split), so the rounding of
// a*b is not amplified by |a*b| in the result. For a*b in [-200, 0] (-200 =
// exp_lo: the callers clamp their arguments), so no clamping is needed.
template <class V>
NNF_HD ExpParts<V> exp_mul_parts(V a, V b) {
  V p = a * b;
  return exp_parts_impl<true, false, true>(p, fma(a, b, -p));
}

// m sigmoid(s (z + zlo)) for z >= 0 (clamped to Limits::tail; NaN passes),
// s = -1 in the lanes of neg, +1 elsewhere, with a single division. |m| <
// 2^102 where the result is 0 (neg lanes with z > 103), and m <= 2^126
// where z < 17.7 or in neg lanes. With e^z = 2^k (1 + em1), k >= 0, and
// w = 2^-k (sigmoid_parts):
//   m sigmoid(-z) = (m / den) w,   den = em1 + (1 + w)
//   m sigmoid(z)  = m - w q,       q = m / den   (one fma: w q exact)
// The numerator is never rounded and e^z appears once. m sigmoid(-z) <= m /
// 2, so the fma of the second form cancels at most one bit. Applying w after
// the division rounds a denormal result once; callers that need more than
// m sigmoid(-z) (the derivatives) take q and w and apply w last themselves.
template <class V>
struct SigmoidParts {
  V q, w, j;    // m sigmoid(-z) = q 2^j, w = 2^j (see sigmoid_parts)
  bool normal;  // 2^j normal in every lane
  // v 2^j rounded once (scaled_by_pow2; j <= 0, 2^j normal for z < 87.3:
  // almost always). Rounded once also where two factors are needed: every
  // caller's |v| >= 2^-63 there (|m| >= 0.1 where k > 0).
  NNF_HD V scaled(V v) const { return scaled_by_pow2(v, j, normal); }
};
template <bool kHasLo, class V>
NNF_HD SigmoidParts<V> sigmoid_parts(V m, V z, V zlo) {
  using L = Limits<scalar_t<V>>;
  auto [k, r] = reduce_ln2(vmin(V(L::tail), z));
  if (kHasLo) r = r + vmax(vmin(zlo, V(1.0e-4f)), V(-1.0e-4f));
  V em1 = expm1_reduced(r);
  V j = -k;  // NaN stays NaN and is caught by the maximum
  // w = 2^j, one instruction with vscalefps. Below 2^emin (z > 87.3) the
  // exponent emin - 1 gives +0 where scale_pow2 multiplies by pow2i and
  // 2^-127 with vscalefps: w then only meets m - w q, em1 + w and the
  // callers' 1 - w q, all far above 2^-100 there, so either value gives the
  // same bits.
  V w = scale_pow2(V(1.0f), vmax(j, V(L::emin - 1)));
  // den = (em1 + c) + (1 + w), c = (1 - (1 + w)) + w the exact rounding
  // error of 1 + w (Fast2Sum): for k <= 23, c = +0 and den is rounded once;
  // beyond, 1 + w rounds to 1, c = w is added to em1 first and its rounding
  // is damped by 2^-k. A vector whose every k is at most 23 (z < 16.3,
  // almost every vector) leaves c out: em1 + +0 and em1 differ only for em1
  // = -0, and both then give 1 + w, so the bits are the same (a NaN k fails
  // the test). Three additions fewer per vector; float32, 2^20 elements, 1
  // thread, fastest of six alternating runs, ns per element: sigmoid 0.341
  // / 0.387 -> 0.320 / 0.363 (forward / backward), silu forward 0.350 ->
  // 0.326, tanh backward 0.410 -> 0.384.
  V one_w = V(1.0f) + w;
  const bool near = all_lanes(j >= V(-23.0f));
  V den = near ? em1 + one_w : (em1 + ((V(1.0f) - one_w) + w)) + one_w;
  // m is capped at 2^126 in the division only, so that q cannot overflow;
  // where it matters (m > 2^126, in lanes with k >= 26) m sigmoid(z) = m
  // (1 - d), d < 2^-26 / 0.7 < 2^-25, is m, and so is m - w q with the
  // capped q (w q < 2^101).
  return {vmin(V(0x1p126f), m) / den, w, j, near || all_lanes(j >= V(L::emin))};
}
template <bool kHasLo, class V>
NNF_HD V mul_sigmoid_abs(V m, mask_t<V> neg, V z, V zlo) {
  SigmoidParts<V> sp = sigmoid_parts<kHasLo>(m, z, zlo);
  return select(neg, sp.scaled(sp.q), fma(-sp.w, sp.q, m));
}
// m sigmoid(u) for all u. u = +-0 takes the first form, m / 2 with the sign of m.
template <class V>
NNF_HD V mul_sigmoid(V m, V u) { return mul_sigmoid_abs<false>(m, u <= V(0.0f), vabs(u), V(0.0f)); }
// float64: e = e^-z with the C library: q = m / (1 + e), w = e, so that
// q w = m sigmoid(-z) and m - w q = m sigmoid(z) as above.
template <>
struct SigmoidParts<double> {
  double q, w, j;
  NNF_HD double scaled(double v) const { return v * w; }
};
// e^-(z + zlo) as the reference forms it: e^-z (1 - zlo).
template <bool kHasLo>
NNF_HD double exp_neg_lo(double z, double zlo) {
  return ::exp(-z) * (1.0 - (kHasLo ? zlo : 0.0));
}
template <bool kHasLo>
NNF_HD SigmoidParts<double> sigmoid_parts(double m, double z, double zlo) {
  double e = exp_neg_lo<kHasLo>(z, zlo);
  return {m / (1.0 + e), e, 0.0};
}
// float64: the reference's sigmoid, e = e^-z (1 - zlo), m e / (1 + e) or
// m / (1 + e) (m times the rounded quotient).
template <bool kHasLo>
NNF_HD double mul_sigmoid_abs(double m, bool neg, double z, double zlo) {
  double e = exp_neg_lo<kHasLo>(z, zlo);
  return m * (neg ? e / (1.0 + e) : 1.0 / (1.0 + e));
}
NNF_HD double mul_sigmoid(double m, double u) { return mul_sigmoid_abs<false>(m, u < 0.0, vabs(u), 0.0); }

// expm1 of x + xlo (xlo a small correction); see expm1 below.
template <bool kHasLo, class V>
NNF_HD V expm1_impl(V x, V xlo) {
  V xc = vmax(V(-18.0f), vmin(V(89.0f), x));
  auto [k, r] = reduce_ln2(xc);
  if (kHasLo) r = r + vmax(vmin(xlo, V(1.0e-4f)), V(-1.0e-4f));
  V em1 = expm1_reduced(r);
  V kc = vmin(k, V(127.0f));  // NaN -> 127 (r is NaN anyway)
  V s = pow2i(kc);
  V y = fma(s, em1, s - V(1.0f));
  y = fma(y, k - kc, y);  // k = 128: y * 2, overflowing to inf where it must
  return copysign(y, x);
}
template <class V>
NNF_HD V expm1_lo(V x, V xlo) { return expm1_impl<true>(x, xlo); }
// float64: expm1(x + xlo) = expm1(x) + xlo e^x to first order (xlo clamped as
// in exp_parts: NaN or huge corrections from out-of-range products are dropped),
// with the sign of x as the float form (a -0 stays -0: 0 (em + 1) + -0 is +0).
NNF_HD double expm1_lo(double x, double xlo) {
  double em = ::expm1(x);
  // An overflowed e^x stays +inf (the correction's inf * 0 would be NaN).
  if (em > 0x1.fffffffffffffp+1023) return em;
  return copysign(fma(vmax(vmin(xlo, 1.0e-4), -1.0e-4), em + 1.0, em), x);
}

// log(1 + f) + e ln2 for f in [sqrt(1/2) - 1, sqrt(2) - 1] (+ tiny). log1p(f) =
// f + f^2 Q(f), Q of degree 8 (relative error of log1p 2^-27.9 before coefficient
// rounding).
template <class V>
NNF_HD V log_reduced(V f, V e) {
  V q = fma(V(-7.621774077e-02f), f, V(1.290443093e-01f));
  q = fma(q, f, V(-1.324298829e-01f));
  q = fma(q, f, V(1.418182552e-01f));
  q = fma(q, f, V(-1.660908312e-01f));
  q = fma(q, f, V(2.000197321e-01f));
  q = fma(q, f, V(-2.500158250e-01f));
  q = fma(q, f, V(3.333332539e-01f));
  q = fma(q, f, V(-4.999998808e-01f));
  V t = fma(f * f, q, f);
  t = fma(e, V(-1.904654212e-09f), t);
  return fma(e, V(6.931471825e-01f), t);
}

// log1p(t) for t in [0, 1] or NaN (softplus, logsigmoid: t = e^-|x|): the
// steps of log1p below with what this range makes constant folded away (u = 1
// + t in [1, 2], so e is 0 or 1; the Fast2Sum has 1 as the larger term; no
// special values but NaN, which c carries). Bit-identical to log1p(t) there,
// about 14 operations fewer.
template <class V>
NNF_HD V log1p_unit(V t) {
  V u = V(1.0f) + t;
  V c = (V(1.0f) - u) + t;
  mask_t<V> big = u > V(1.414213562f);
  V m = select(big, u * V(0.5f), u);
  V e = select(big, V(1.0f), V(0.0f));
  V f = fma(c, select(big, V(0.5f), V(1.0f)), m - V(1.0f));
  return log_reduced(f, e);
}
NNF_HD double log1p_unit(double t) { return ::log1p(t); }

// Special values of log(u): u = +inf -> +inf, u = 0 -> -inf, u < 0 -> NaN, NaN -> NaN.
NNF_HD float inf_f() { return bit_cast_value<float>(0x7f800000u); }
NNF_HD float nan_f() { return bit_cast_value<float>(0x7fc00000u); }

template <class V>
NNF_HD V log_special(V u, V res) {
  res = select(u < V(inf_f()), res, u);
  res = select(u == V(0.0f), V(-inf_f()), res);
  return select(u < V(0.0f), V(nan_f()), res);
}

// t = k / (k + a) for a >= 0 and rel ~ (t_exact - t) / t from the exact
// residuals of the sum (Fast2Sum) and of the division (fma). erfcx below is a
// polynomial in t whose relative sensitivity to t, C(t) = dln f / dln t,
// reaches 2.4: without this correction the two roundings in t alone cost up
// to ~2.4 ulp.
template <class V>
NNF_HD V recip_shift(V a, float k, V& rel) {
  V s = V(k) + a;
  V se = (vmax(V(k), a) - s) + vmin(V(k), a);
  V t = V(k) / s;
  rel = fma(-t, se, fma(-t, s, V(k))) * V(1.0f / k);
  return t;
}

// erfcx(x) = e^(x^2) erfc(x) = t P(t), t = 2 / (2 + x), P of degree 10; minimax
// relative error 2^-28.1 on 0 <= x <= 10.1 (erfc(x) is 0 in float beyond 10.06).
// The rounding of t is corrected to first order with C(t) ~ 0.875 + 1.83 t - 0.433 t^2.
template <class V>
NNF_HD V erfcx_reduced(V x) {
  V rel;
  V t = recip_shift(x, 2.0f, rel);
  V p = fma(V(3.557389230e-02f), t, V(-1.898858696e-01f));
  p = fma(p, t, V(3.784322143e-01f));
  p = fma(p, t, V(-2.851124108e-01f));
  p = fma(p, t, V(-2.623444051e-02f));
  p = fma(p, t, V(3.811065480e-02f));
  p = fma(p, t, V(5.373131111e-02f));
  p = fma(p, t, V(1.859156489e-01f));
  p = fma(p, t, V(2.451226562e-01f));
  p = fma(p, t, V(2.822580338e-01f));
  p = fma(p, t, V(2.820882797e-01f));
  V c = fma(fma(V(-4.334554e-01f), t, V(1.831621e+00f)), t, V(8.754891e-01f));
  V y = p * t;
  return fma(y, rel * c, y);
}

// erf(x) = x P(x^2) for |x| <= 1, P of degree 6 (relative error 2^-29.7
// before coefficient rounding).
template <class V>
NNF_HD V erf_small(V x) {
  V x2 = x * x;
  V p = fma(V(7.889123663e-05f), x2, V(-8.020842797e-04f));
  p = fma(p, x2, V(5.189535674e-03f));
  p = fma(p, x2, V(-2.685444430e-02f));
  p = fma(p, x2, V(1.128360033e-01f));
  p = fma(p, x2, V(-3.761262596e-01f));
  // x c0 is exact inside the fma; only the small x^3 term is rounded.
  return fma(x, V(1.128379107e+00f), (x * x2) * p);
}

// erfc(a) for a >= 0 (NaN passes): e^(-a^2) erfcx(a), the square exact (fma
// split) so its rounding is not amplified; m * erfc(a) with one rounding into the
// denormal range. a is clamped at 10.1 where erfc is already 0.
template <class V>
NNF_HD V erfc_pos_times(V a, V m) {
  V ac = vmin(V(10.1f), a);
  ExpParts<V> e = exp_mul_parts(-ac, ac);
  return e.times(m * erfcx_reduced(ac));
}

// Normal tail for GELU: R(a) = Phi(-a) e^(a^2/2) = erfcx(a / sqrt 2) / 2 for
// 0 <= a <= 20 (NaN passes), piecewise: the quarter octave of a + 2 (its
// exponent's two low bits and its mantissa's top two bits, one 16-entry
// lookup) picks one of 14 pieces covering [0, 22), and there R = P_i(a - c_i)
// with P_i of degree 6. c_i is a float near the piece's middle where R(c_i) is
// within 3e-4 ulp of a float (Gal's accurate tables), so the constant term is
// all but exact; the other coefficients are a relative minimax fit, rounded to
// float (relative error <= 2^-26.1 over every piece, docs/fits/gauss_tail.py
// fits and prints the table). a - c_i is exact (Sterbenz) except on the first
// piece for a < 1/8, where its rounding moves R by < 2^-27 relative. The
// last Horner step is compensated (R = hi + lo): rounding R to float alone
// would cost up to 2^-24 relative, which the exponential's roundings then
// push past 2 ulp of GELU (measured 2.36 at x = -2.77 over all floats). No
// division, unlike a global fit in t = 3 / (3 + a).
NNF_TABLE float kGaussTailPieces[8][16] = {
    {2.499830574e-01f, 7.501474619e-01f, 1.249782085e+00f, 1.749958277e+00f, 2.500043154e+00f, 3.499909401e+00f, 4.499473572e+00f, 5.501399040e+00f, 6.999445915e+00f, 9.001333237e+00f, 1.099824429e+01f, 1.299777889e+01f, 1.599862480e+01f, 1.900199699e+01f, 1.900199699e+01f, 1.900199699e+01f},  // centre c_i
    {4.140371084e-01f, 3.002068400e-01f, 2.307844013e-01f, 1.852347851e-01f, 1.413293630e-01f, 1.063475758e-01f, 8.481251448e-02f, 7.032582909e-02f, 5.589774251e-02f, 4.379245266e-02f, 3.598054126e-02f, 3.051456809e-02f, 2.483973280e-02f, 2.093708701e-02f, 2.093708701e-02f, 2.093708701e-02f},  // c_i0
    {-2.954400778e-01f, -1.737428904e-01f, -1.105120778e-01f, -7.478913665e-02f, -4.561280087e-02f, -2.673540451e-02f, -1.733061485e-02f, -1.205183193e-02f, -7.689059246e-03f, -4.751821514e-03f, -3.219498321e-03f, -2.320671454e-03f, -1.540715806e-03f, -1.095815911e-03f, -1.095815911e-03f, -1.095815911e-03f},  // c_i1
    {1.700910926e-01f, 8.493702114e-02f, 4.633419961e-02f, 2.717845887e-02f, 1.364773791e-02f, 6.388049107e-03f, 3.416940337e-03f, 2.011946868e-03f, 1.039309776e-03f, 5.098654656e-04f, 2.858573571e-04f, 1.754974073e-04f, 9.520399908e-05f, 5.719836554e-05f, 5.719836554e-05f, 5.719836554e-05f},  // c_i2
    {-8.429939300e-02f, -3.667424619e-02f, -1.753396355e-02f, -9.075783193e-03f, -3.830115544e-03f, -1.459121238e-03f, -6.520091556e-04f, -3.277615178e-04f, -1.381213078e-04f, -5.411150414e-05f, -2.518826295e-05f, -1.319774310e-05f, -5.859716566e-06f, -2.977494205e-06f, -2.977494205e-06f, -2.977494205e-06f},  // c_i3
    {3.725003079e-02f, 1.435619965e-02f, 6.104640663e-03f, 2.823957009e-03f, 1.017322647e-03f, 3.201621876e-04f, 1.207411551e-04f, 5.218598017e-05f, 1.807012814e-05f, 5.683302788e-06f, 2.203166105e-06f, 9.871392876e-07f, 3.594052487e-07f, 1.545870703e-07f, 1.545870703e-07f, 1.545870703e-07f},  // c_i4
    {-1.522259135e-02f, -5.239024758e-03f, -2.003804781e-03f, -8.334803861e-04f, -2.639516606e-04f, -6.893717364e-05f, -2.209282866e-05f, -8.209036423e-06f, -2.395725232e-06f, -6.023735182e-07f, -1.941288019e-07f, -7.433389726e-08f, -2.254786580e-08f, -8.098064441e-09f, -8.098064441e-09f, -8.098064441e-09f},  // c_i5
    {5.681002513e-03f, 1.756870304e-03f, 6.114053540e-04f, 2.307294926e-04f, 6.390111957e-05f, 1.406953379e-05f, 3.881890734e-06f, 1.255884968e-06f, 3.041204479e-07f, 6.200514946e-08f, 1.678406569e-08f, 5.498113964e-09f, 1.371748493e-09f, 4.182627023e-10f, 4.182627023e-10f, 4.182627023e-10f},  // c_i6
};
// The entry of one table row for key: rows of 16 by quarter_octave_lookup,
// rows of 32 by piece_lookup32.
template <class V>
NNF_HD V row_lookup(const float (&row)[16], V key) {
  return quarter_octave_lookup(row, key);
}
template <class V>
NNF_HD V row_lookup(const float (&row)[32], V key) {
  return piece_lookup32(row, key);
}
// sum over j = kLow .. kHigh of table[j] d^(j - kLow), each row's entry for
// the piece of key (row_lookup), by Horner from the top row.
template <int kLow, int kHigh, int kEntries, class V>
NNF_HD V table_horner(const float (*table)[kEntries], V key, V d) {
  if constexpr (kLow == kHigh) {
    return row_lookup(table[kLow], key);
  } else {
    return fma(table_horner<kLow + 1, kHigh>(table, key, d), d, row_lookup(table[kLow], key));
  }
}

template <class V>
struct TailValue {
  V hi, lo;  // R(a) = hi + lo, |lo| <~ 2^-23 |hi|
};
template <class V>
NNF_HD TailValue<V> gauss_tail_scaled(V a) {
  V key = a + V(2.0f);
  V d = a - quarter_octave_lookup(kGaussTailPieces[0], key);
  V p = table_horner<2, 7>(kGaussTailPieces, key, d);
  // hi = c0 + p d rounded once; c0 - hi is exact (Sterbenz: |p d| < c0 / 2
  // on every piece), so lo is the rounding error of hi, itself rounded once.
  V c0 = quarter_octave_lookup(kGaussTailPieces[1], key);
  V hi = fma(p, d, c0);
  return {hi, fma(p, d, c0 - hi)};
}

// m (q + qlo) e^x with e^x = 2^k (1 + em1) from ExpParts (GELU's forward
// tail, mish's x < 0 side, GELU-tanh's backward): m q + m s with s = q em1 +
// qlo (1 + em1), the main product m q exact inside the last fma and s (at
// most 0.42 of it) rounded twice, then 2^k applied with one rounding, also
// into the denormal range.
template <class V>
struct ScaledTail {
  ExpParts<V> e;
  V q, qlo;
  NNF_HD V times(V m) const {
    V s = fma(q, e.em1, fma(qlo, e.em1, qlo));
    return e.scaled(fma(m, q, m * s));
  }
};
// float64: m q times the libm exponential (qlo = 0: the tail is rounded to
// float64 first, as in the reference).
template <>
struct ScaledTail<double> {
  ExpParts<double> e;
  double q, qlo;
  NNF_HD double times(double m) const { return e.times(m * q); }
};

// e^(-a^2/2) = (1 + em1) 2^k for 0 <= a <= Limits::gelu (NaN passes), for
// GELU's backward tail: a^2 = p + pe exactly (fma split), and -p reduced with
// the reduced argument kept doubled (reduce_ln2<true>), w = -p - 2k ln2 - pe
// = 2r, so that no product by -1/2 is needed. Then e^(w/2) = 1 + w P(w), P of degree 5
// (docs/fits/exp_half.py: relative error 2^-28.3 on |w| <= ln2, widened for
// the roundings of k ln2_lo and of w). em1 = w P is rounded twice (P, then
// the product) where expm1_reduced's r + r^2 q keeps r exact; the backward's
// bound has room for it, the forward's does not (see gelu_tail below).
template <class V>
NNF_HD ExpParts<V> exp_neg_half_square(V a) {
  using L = Limits<scalar_t<V>>;
  V p = a * a;
  V pe = fma(a, a, -p);
  auto [k, w] = reduce_ln2<true>(-p);
  w = w - pe;
  V q = fma(V(2.159347059e-05f), w, V(2.615214617e-04f));
  q = fma(q, w, V(2.604267327e-03f));
  q = fma(q, w, V(2.083315141e-02f));
  q = fma(q, w, V(1.249999851e-01f));
  q = fma(q, w, V(5.000000000e-01f));
  return {w * q, k, all_lanes(k >= V(L::emin))};
}

// m q e^(-a^2/2), e^(-a^2/2) = 2^k (1 + em1) from exp_neg_half_square: the
// product m q rounded, then m q (1 + em1) with one rounding and 2^k applied
// with one more, also into the denormal range.
template <class V>
struct GaussTail {
  ExpParts<V> e;
  V q;
  NNF_HD V times(V m) const {
    V mq = m * q;
    return e.scaled(fma(mq, e.em1, mq));
  }
};

// GELU's tails for a = |x| >= 0 (a clamped by the caller to Limits::gelu):
//   gelu_tail(a).times(m)  = m Phi(-a)
//   gelu_dtail(a).times(m) = m (Phi(-a) - a phi(a))   (phi the normal density)
// float: e^(-a^2/2) with the exact square, times the scaled tail R(a) (above).
// The backward's tail takes the shorter exp_neg_half_square (four operations
// fewer; float32, 1 thread, AVX-512, in L1: 0.62 -> 0.56 ns per element),
// which moved its worst case over every float input from 2.550 to 2.601
// floor ULP (bound 4; docs/exhaustive.md), and GaussTail: q = R(a) - a /
// sqrt(2 pi) rounded once (R's low part left out) and m q rounded before the
// exponential's factor, three operations fewer than ScaledTail (2^20
// elements, 1 thread, fastest of eight alternating runs: 0.623 -> 0.574 ns
// per element), which moved that worst case to 3.023 (x = -5.2127). The
// forward keeps exp_mul_parts and ScaledTail: the shorter exponential alone
// took it from 1.673 to 1.942 ULP, next to its bound of 2, for 7%.
template <class V>
NNF_HD ScaledTail<V> gelu_tail(V a) {
  TailValue<V> r = gauss_tail_scaled(a);
  return {exp_mul_parts(V(-0.5f) * a, a), r.hi, r.lo};
}
template <class V>
NNF_HD GaussTail<V> gelu_dtail(V a) {
  TailValue<V> r = gauss_tail_scaled(a);
  return {exp_neg_half_square(a), fma(-a, cst<V>(0.3989422804014327), r.hi)};
}

// float64: the reference's formula, Phi(-a) = erfc(t)/2 with t = a/sqrt2
// carried as th + tl and the first-order correction erfc(th + tl) = erfc(th) -
// tl 2/sqrt(pi) e^(-th^2); a phi(a) with the exact square, e^(-(p + pe)/2) =
// e^(-p/2) (1 - pe/2). Like the reference (whose backward is "grad times the
// float64 f'(x)"), the tail is rounded to float64 before the multiplier is
// applied: where erfc(t) is denormal (a > 37.5) both lose relative accuracy
// together (~x/4 denormal ulps), so they agree.
NNF_HD double erfc_scaled_arg(double a) {  // erfc(a / sqrt 2)
  const double k_sqrt1_2 = 0x1.6a09e667f3bcdp-1, k_sqrt1_2_lo = -0x1.bdd3413b26456p-55;
  double th = a * k_sqrt1_2;
  double tl = fma(a, k_sqrt1_2, -th) + a * k_sqrt1_2_lo;
  return ::erfc(th) - 1.1283791670955126 * ::exp(-th * th) * tl;
}
NNF_HD ScaledTail<double> gelu_tail(double a) { return {{0.5}, erfc_scaled_arg(a), 0.0}; }
NNF_HD ScaledTail<double> gelu_dtail(double a) {
  double p = a * a;
  double pe = fma(a, a, -p);
  double a_phi = (a * (::exp(-0.5 * p) * (1.0 - 0.5 * pe))) * 0.3989422804014327;
  return {{1.0}, 0.5 * erfc_scaled_arg(a) - a_phi, 0.0};
}

// ---- float16 and bfloat16 outputs ---------------------------------------------
// A result stored as float16 (11 significant bits) or bfloat16 (8) needs far
// less than float's 24: computed in float to a relative error e and rounded
// once to nearest, it is within 0.5 + e 2^11 (float16) or 0.5 + e 2^8
// (bfloat16) ulp of the exact value, so e <= 2^-15 keeps both below 0.57 ulp
// (the bound is 1) and bfloat16 below 0.51. The functions below meet e <=
// 2^-15 with fewer operations than the float32 formulas (GELU's forward loop:
// about two thirds of the instructions, without the compensations); they are used only
// where an op stores 16-bit results (Op::fwd_narrow), on every ISA and on CUDA
// alike, so the backends still agree to the bit.

// 2^f = 1 + f P(f) for |f| <= 1/2, P of degree 3 (relative error 2^-18.4,
// docs/fits/exp2_narrow.py).
template <class V>
NNF_HD V exp2_reduced_narrow(V f) {
  V p = fma(V(9.582884610e-03f), f, V(5.590810254e-02f));
  p = fma(p, f, V(2.402410656e-01f));
  p = fma(p, f, V(6.931239963e-01f));
  return fma(p, f, V(1.0f));
}
// 2^f - 1 = f P1(f) for |f| <= 1/2, P1 of degree 4 fitted to the relative
// error of 2^f - 1 (2^-21.1, same script): near f = 0 that error is P1's
// own, which P's fit above leaves at 2^-14.9.
template <class V>
NNF_HD V exp2m1_reduced_narrow(V f) {
  V p = fma(V(1.332740299e-03f), f, V(9.666121565e-03f));
  p = fma(p, f, V(5.550523847e-02f));
  p = fma(p, f, V(2.402235568e-01f));
  p = fma(p, f, V(6.931471229e-01f));
  return p * f;
}

// The pieces of gauss_tail_scaled at degree 4 (relative error <= 2^-18.0 over
// every piece; docs/fits/gauss_tail.py --degree 4).
NNF_TABLE float kGaussTailNarrow[6][16] = {
    {2.499830574e-01f, 7.501474619e-01f, 1.249782085e+00f, 1.749958277e+00f, 2.500043154e+00f, 3.499909401e+00f, 4.499473572e+00f, 5.501399040e+00f, 6.999445915e+00f, 9.001333237e+00f, 1.099824429e+01f, 1.299777889e+01f, 1.599862480e+01f, 1.900199699e+01f, 1.900199699e+01f, 1.900199699e+01f},  // centre c_i
    {4.140371084e-01f, 3.002068400e-01f, 2.307844013e-01f, 1.852347851e-01f, 1.413293630e-01f, 1.063475758e-01f, 8.481251448e-02f, 7.032582909e-02f, 5.589774251e-02f, 4.379245266e-02f, 3.598054126e-02f, 3.051456809e-02f, 2.483973280e-02f, 2.093708701e-02f, 2.093708701e-02f, 2.093708701e-02f},  // c_i0
    {-2.954218984e-01f, -1.737365574e-01f, -1.105096415e-01f, -7.478811592e-02f, -4.560766369e-02f, -2.673405223e-02f, -1.733018085e-02f, -1.205166895e-02f, -7.688304875e-03f, -4.751630593e-03f, -3.219437087e-03f, -2.320647938e-03f, -1.540601719e-03f, -1.095813350e-03f, -1.095813350e-03f, -1.095813350e-03f},  // c_i1
    {1.700914949e-01f, 8.493649960e-02f, 4.633400589e-02f, 2.717832476e-02f, 1.364695188e-02f, 6.387847941e-03f, 3.416886553e-03f, 2.011917997e-03f, 1.039226889e-03f, 5.098446272e-04f, 2.858532825e-04f, 1.754960977e-04f, 9.519753803e-05f, 5.719818728e-05f, 5.719818728e-05f, 5.719818728e-05f},  // c_i2
    {-8.548456430e-02f, -3.708366677e-02f, -1.769079827e-02f, -9.141169488e-03f, -3.912771586e-03f, -1.480759587e-03f, -6.589457626e-04f, -3.303478879e-04f, -1.411319390e-04f, -5.487009184e-05f, -2.543232586e-05f, -1.329126735e-05f, -5.973204679e-06f, -2.987686230e-06f, -2.987686230e-06f, -2.987686230e-06f},  // c_i3
    {3.755667061e-02f, 1.446416043e-02f, 6.141705438e-03f, 2.839231398e-03f, 1.035196357e-03f, 3.242203966e-04f, 1.218426041e-04f, 5.261235856e-05f, 1.843582140e-05f, 5.763593890e-06f, 2.222487865e-06f, 9.933683032e-07f, 3.661370727e-07f, 1.551839830e-07f, 1.551839830e-07f, 1.551839830e-07f},  // c_i4
};

// 2^t = p 2^k for t <= 127 (NaN passes): k = rint(t), p = 2^(t - k) (exact
// t - k). exp_narrow: e^x with t = x log2(e) rounded once, which moves e^x by
// at most ln2 2^-24 |t| relative.
template <class V>
struct ExpNarrow {
  V p, k, f;    // f = t - k
  bool normal;  // 2^k normal in every lane (x >= -87.3)
  // v 2^k rounded once (scaled_by_pow2).
  NNF_HD V scaled(V v) const { return scaled_by_pow2(v, k, normal); }
  NNF_HD V value() const { return scaled(p); }
};
// rint(t) for float |t| < 2^22 or NaN, to nearest even as vrint, but a zero
// result is +0: t + 1.5 2^23 lies in [2^23, 2^24), where the floats are the
// integers, and taking 1.5 2^23 off again is exact. exp2_narrow takes it so
// that f = t - k keeps the sign of t = -0 (vrint's -0 would give f = +0,
// and the elu family's expm1 would lose the sign of x = -0).
template <class V>
NNF_HD V rint_small(V t) {
  const V shift(kIntegerShift);
  return (t + shift) - shift;
}
template <class V>
NNF_HD ExpNarrow<V> exp2_narrow(V t) {
  V k = rint_small(t);
  V f = t - k;
  return {exp2_reduced_narrow(f), k, f, all_lanes(k >= V(Limits<scalar_t<V>>::emin))};
}
template <class V>
NNF_HD ExpNarrow<V> exp_narrow(V x) {
  return exp2_narrow(x * cst<V>(1.4426950408889634));  // log2(e)
}

// q e^x as a multiplier: times(m) = m q e^x, (m q) p rounded and 2^k applied
// last with one rounding, also into the denormal range.
template <class V>
struct NarrowProduct {
  ExpNarrow<V> e;
  V q;
  NNF_HD V times(V m) const { return e.scaled((m * q) * e.p); }
};

// GELU's tails for 16-bit outputs, as gelu_tail / gelu_dtail, for 0 <= a <=
// 20 (NaN passes): times(m) = m Phi(-a) (q = R(a), the degree-4 pieces) or
// m (Phi(-a) - a phi(a)) (q = R(a) - a / sqrt(2 pi)), with e^(-a^2/2) =
// 2^t, t = a^2 (-log2(e) / 2), from exp2_narrow. t is formed with three
// roundings (the constant's included): an error of at most 3 2^-24 |t| that
// moves e^(-a^2/2) by ln2 3 2^-24 |t|, below 2^-15.9 relative for |t| <= 133
// (a <= 13.6); beyond, a Phi(-a) < 2^-134 rounds to 0 in both 16-bit types.
// With R (2^-18.0) and p (2^-18.4), Phi(-a) is within 2^-15.4 relative before
// the last products, within 2^-15 after.
template <class V>
NNF_HD NarrowProduct<V> gelu_tail_narrow(V a) {
  V key = a + V(2.0f);
  V d = a - quarter_octave_lookup(kGaussTailNarrow[0], key);
  return {exp2_narrow((a * a) * cst<V>(-0.7213475204444817)), table_horner<1, 5>(kGaussTailNarrow, key, d)};
}
template <class V>
NNF_HD NarrowProduct<V> gelu_dtail_narrow(V a) {
  NarrowProduct<V> tail = gelu_tail_narrow(a);
  return {tail.e, fma(-a, cst<V>(0.3989422804014327), tail.q)};
}

// e^x - 1 for x <= 0 (x is clamped to [-30, 0]: -1 below, where it is -1
// in float; NaN passes), the elu family's negative side: with t = x log2(e)
// = k + f as exp_narrow, f P(f) where k = 0 (|x| < 0.347), else p 2^k - 1 in
// one fma, where |e^x - 1| >= 0.29 amplifies the error of p at most 2.4-fold
// (2^-17.1).
template <class V>
NNF_HD V expm1_narrow(V x) {
  ExpNarrow<V> e = exp_narrow(vmax(V(-30.0f), vmin(V(0.0f), x)));
  return select(e.k == V(0.0f), exp2m1_reduced_narrow(e.f), fma(e.p, pow2i(e.k), V(-1.0f)));
}

// log1p(t) = t Q(t) for 0 <= t <= 1 (NaN passes; softplus and logsigmoid: t
// = e^-|x|), Q of degree 6 (relative error 2^-19.5, docs/fits/log1p_narrow.py).
template <class V>
NNF_HD V log1p_unit_narrow(V t) {
  V q = fma(V(1.410399284e-02f), t, V(-6.629396230e-02f));
  q = fma(q, t, V(1.491047740e-01f));
  q = fma(q, t, V(-2.349766046e-01f));
  q = fma(q, t, V(3.310791850e-01f));
  q = fma(q, t, V(-4.998680949e-01f));
  q = fma(q, t, V(9.999986887e-01f));
  return t * q;
}

// For z >= 0 (clamped to Limits::tail; NaN passes): q = sigmoid(z) = 1 / (1 +
// e^-z) and times(m) = m q e^-z = m sigmoid(-z). t = -z log2(e) is rounded
// once, which moves e^-z by at most ln2 2^-24 |t| <= 2^-17.4 relative for z
// <= 93 (beyond, sigmoid(-z) < 2^-134 rounds to 0 in both 16-bit types);
// with p (2^-18.4) and the roundings of 1 + e^-z and the quotient,
// sigmoid(+-z) is within 2^-16 relative.
template <class V>
NNF_HD NarrowProduct<V> sigmoid_narrow(V z) {
  ExpNarrow<V> e = exp_narrow(-vmin(V(Limits<scalar_t<V>>::tail), z));
  return {e, V(1.0f) / (V(1.0f) + e.value())};
}
// m sigmoid(u): m sigmoid(-|u|) where u < 0, else m sigmoid(|u|) (u = +-0
// takes the second form, m / 2).
template <class V>
NNF_HD V mul_sigmoid_narrow(V m, V u) {
  NarrowProduct<V> s = sigmoid_narrow(vabs(u));
  return select(u < V(0.0f), s.times(m), m * s.q);
}

}  // namespace vmath

// exp(x). Cody-Waite reduction to |r| <= ln2/2, e^r = 1 + r + r^2 q(r) (degree 7
// overall), scaled by 2^k (two normal factors where needed, ExpParts) so denormal results are
// rounded once. Range: all floats. x > 88.7228 -> +inf; x < -103.97 -> +0;
// -inf -> +0; NaN -> NaN; denormal x -> 1. Measured max error 0.96 ulp
// (denormal results: one rounding, on the denormal grid).
template <class V>
NNF_HD V exp(V x) {
  return vmath::exp_parts(x).value();
}

// expm1(x) = e^x - 1. Same reduction; result 2^k (e^r - 1) + (2^k - 1), where the
// two terms never cancel badly (|k| >= 1 implies |result| >= 0.29); k = 128 is
// folded as a final doubling. Range: all floats. x < -17.33 -> -1; x > 88.7228
// -> +inf; +-0 -> +-0 (sign restored with copysign, expm1 has the sign of x);
// denormal x -> x; -inf -> -1; NaN -> NaN. Measured max error 1.41 ulp.
template <class V>
NNF_HD V expm1(V x) {
  return vmath::expm1_impl<false>(x, V(0.0f));
}

// log(x). Denormal x is scaled by 2^23 first; x = m 2^e with m in
// [sqrt(1/2), sqrt(2)), log x = e ln2 + log1p(m - 1) (m - 1 exact), polynomial
// of degree 10. Range: all floats. +0/-0 -> -inf, x < 0 -> NaN, +inf -> +inf,
// NaN -> NaN, denormals exact-scaled. Measured max error 0.88 ulp.
template <class V>
NNF_HD V log(V x) {
  mask_t<V> tiny = x < V(1.17549435e-38f);
  V xs = select(tiny, x * V(8388608.0f), x);
  V e = exponent_of(xs) - select(tiny, V(23.0f), V(0.0f));
  V m = mantissa_of(xs);
  mask_t<V> big = m > V(1.414213562f);
  m = select(big, m * V(0.5f), m);
  e = select(big, e + V(1.0f), e);
  return vmath::log_special(x, vmath::log_reduced(m - V(1.0f), e));
}

// log1p(x). u = 1 + x rounded; the rounding error c of that sum is recovered
// exactly (Fast2Sum with the larger of 1, x first) and added to the reduced
// argument: log1p(x) = e ln2 + log1p(f + c 2^-e). Range: all floats. x = -1 ->
// -inf, x < -1 -> NaN, +inf -> +inf, +-0 -> +-0, denormal x -> x, NaN -> NaN.
// Measured max error 1.27 ulp.
template <class V>
NNF_HD V log1p(V x) {
  V u = V(1.0f) + x;
  V big_term = vmax(V(1.0f), x);
  V small_term = vmin(V(1.0f), x);
  V c = small_term - (u - big_term);
  V e = exponent_of(u);
  V m = mantissa_of(u);
  mask_t<V> big = m > V(1.414213562f);
  m = select(big, m * V(0.5f), m);
  e = select(big, e + V(1.0f), e);
  V f = fma(c, pow2i(vmax(V(-126.0f), -e)), m - V(1.0f));
  return copysign(vmath::log_special(u, vmath::log_reduced(f, e)), x);
}

namespace vmath {
// tanh(x) = x P(x^2) for |x| < 0.55, P of degree 6 (relative error 2^-35
// before coefficient rounding): the float16 / bfloat16 tanh's small branch.
template <class V>
NNF_HD V tanh_small(V x) {
  V x2 = x * x;
  V p = fma(V(2.386439359e-03f), x2, V(-8.404538967e-03f));
  p = fma(p, x2, V(2.177917957e-02f));
  p = fma(p, x2, V(-5.395897105e-02f));
  p = fma(p, x2, V(1.333328784e-01f));
  p = fma(p, x2, V(-3.333333135e-01f));
  // x (1 + x^2 P) rather than x + x^3 P: the same accuracy for 16-bit
  // outputs, and tanh(-0) = -0 (x + x^3 P adds +0 to -0).
  return x * fma(x2, p, V(1.0f));
}
}  // namespace vmath

// tanh(x) = sign(x) h / (1 + h), h = (e^z - 1) / 2, z = 2|x| (exact), with
// e^z = 2^k (1 + em1) (Cody-Waite) and s = 2^(k - 1):
//   h = fma(s, em1, s - 1/2),   1 + h = fma(s, em1, s + 1/2),
// each rounded once (s -+ 1/2 exact for k <= 24, |x| < 8.3). The quotient is
// taken as n - n q, q = n / (1 + h): n = h for |x| < 0.55 (t = h - h h / (1 +
// h)), where the roundings of 1 + h and of q are damped by q / (1 - q) <= 1 and
// h's own error near 0 is that of em1 = expm1(z) (no 1 - q cancellation as in
// 1 - 2 / (e^z + 1)); n = 1 above (t = 1 - 1 / (1 + h), 1 / (1 + h) <= 1/2, so
// every error there is damped, also where s + 1/2 rounds for k > 24). One exp,
// one division, no second polynomial: float32, 1 thread, AVX-512, in L1, 0.57
// -> 0.40 ns per element against the former x P(x^2) below 0.55 and 1 - 2w /
// (em1 + 1 + w) above (max error 1.33 -> 1.73 ulp over every float,
// docs/exhaustive.md). z is clamped at 20, where 1 / (1 + h) < 2^-28 rounds t
// to 1. Range: all floats. |x| > 9.01 -> +-1, +-0 -> +-0, +-inf -> +-1, NaN ->
// NaN, denormal x -> x (em1 = z exactly, h = |x|, h h underflows).
template <class V>
NNF_HD V tanh(V x) {
  V a = vabs(x);
  V z = vmin(V(20.0f), a + a);  // NaN passes (vmin keeps its second operand's NaN)
  auto [k, r] = vmath::reduce_ln2(z);
  V em1 = vmath::expm1_reduced(r);
  // k <= 29 (z <= 20); the minimum turns a NaN k into a valid exponent.
  V s = scale_pow2(V(0.5f), vmin(k, V(29.0f)));
  V h = fma(s, em1, s - V(0.5f));
  V one_h = fma(s, em1, s + V(0.5f));
  V n = select(a < V(0.55f), h, V(1.0f));
  V q = n / one_h;
  return copysign(fma(-n, q, n), x);
}

// erf(x). |x| < 1: x P(x^2), P of degree 6; |x| >= 1: sign(x) (1 - erfc(|x|)) with erfc from the
// scaled form (no cancellation: erfc(1) = 0.157). Range: all floats. |x| > 3.92
// -> +-1, +-0 -> +-0, +-inf -> +-1, NaN -> NaN, denormal x -> 1.128 x.
// Measured max error 1.83 ulp.
template <class V>
NNF_HD V erf(V x) {
  V a = vabs(x);
  V small = vmath::erf_small(x);
  V large = copysign(V(1.0f) - vmath::erfc_pos_times(a, V(1.0f)), x);
  return select(a < V(1.0f), small, large);
}

// erfc(x) = 1 - erf(x) for |x| < 0.47 (erf < 0.5: no cancellation), else
// e^(-x^2) erfcx(|x|) for x > 0, 2 - erfc(|x|) for x < 0 (erfc(|x|) < 0.51). e^(-x^2) with the exact square. Range: all
// floats. x > 10.06 -> +0 (denormal results from x ~ 9.2), x < -3.9 -> 2,
// +-inf -> 0 / 2, NaN -> NaN. Measured max error 3.0 ulp (x = 2.049): the
// degree-10 polynomial in t evaluated in float (condition ~2) plus e^(-x^2)
// each contribute ~1 ulp; a compensated last Horner step would be needed for 2.
template <class V>
NNF_HD V erfc(V x) {
  V a = vabs(x);
  V y = vmath::erfc_pos_times(a, V(1.0f));
  y = select(x < V(0.0f), V(2.0f) - y, y);
  return select(a < V(0.47f), V(1.0f) - vmath::erf_small(x), y);
}

// Scaled complementary error function erfcx(x) = e^(x^2) erfc(x), valid for
// 0 <= x <= 10.1 only (the range erfc needs); NaN -> NaN. Measured max error
// 2.6 ulp (near x = 0, where the polynomial sum has condition number ~2).
template <class V>
NNF_HD V erfcx(V x) {
  return vmath::erfcx_reduced(x);
}

// sigmoid(x) = 1 / (1 + e^-x), as t / (1 + t) (x < 0) or 1 / (1 + t) (x >= 0)
// with t = e^-|x| <= 1, so neither tail cancels and the x < 0 tail is e^x
// rounded once (denormal for x < -87.3). Range: all floats. -inf -> 0, +inf ->
// 1, NaN -> NaN. Measured max error 1.68 ulp (x = -1.1044; every float with
// |x| < 104 against long double, beyond which the result is exactly 0 or 1).
template <class V>
NNF_HD V sigmoid(V x) {
  return vmath::mul_sigmoid(V(1.0f), x);
}

NNF_NS_END
