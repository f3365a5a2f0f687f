// Softmax family: the row math written once, for V = float (scalar CPU and
// CUDA), Vec<float, Avx2 / Avx512> and double (float64 rows). The loops that
// walk a row (CPU: csrc/cpu/kernels/softmax.cpp) only call these.
//
// Forward, for logits z_j = scale * x_j of one row (masked positions are -inf):
//   M = max_j z_j,  S = sum_j e^(z_j - M)          (online: see combine below)
//   softmax      y_j = e^(z_j - M) / S
//   log_softmax  y_j = (z_j - M) - log S           (both terms <= 0: no cancellation)
// Backward, from the forward output y and the upstream gradient g:
//   softmax      dx_j = scale * y_j (g_j - sum_k g_k y_k)
//   log_softmax  dx_j = scale * (g_j - e^(y_j) sum_k g_k)
// Cross-entropy with label t, smoothing eps over C classes and z-loss lambda,
// lse = M + log S, p_j = e^(z_j - M) / S:
//   loss  = (1 - eps)(lse - z_t) + eps (lse - mean_j z_j) + lambda lse^2
//   dloss/dz_j = p_j (1 + 2 lambda lse) - eps / C - (1 - eps) [j == t]
//
// Accuracy devices (why the formulas look the way they do):
// - z - M is computed exactly as d + dlo (TwoSum): e^(z - M) is then as accurate
//   as exp itself even when |z - M| is large, where the rounding of d alone
//   would cost |d| / 2 ULP.
// - Sums of e^(z - M) are compensated (TwoSum per lane): the lane sums are
//   accurate to ~1 ULP whatever the row length, then added in double. The
//   backward's sums of g y (or g) over float rows are taken in double lanes
//   (CPU) or in double (CUDA); float64 rows compensate in double.
// - Row totals (S, the dot products, the loss) live in double.
// - Float32 rows (the CPU kernels, and CUDA's below 65536 columns) compute
//   e^(z - M) once per element and scale it afterwards (softmax_normalize):
//   one more rounding, measured within the bound; exp_near and BiasedSum are
//   the cheaper exact forms they use where their conditions hold.
#pragma once

#include "nnfuse/common/macros.h"
#include "nnfuse/vec/math.h"
#include "nnfuse/vec/scalar.h"

NNF_NS_BEGIN

namespace smx {

NNF_HD float neg_inf_f() { return -bit_cast_value<float>(0x7f800000u); }
NNF_HD double neg_inf_d() { return -bit_cast_value<double>(0x7ff0000000000000ull); }

// s + e = a + b exactly (Knuth's TwoSum: no condition on the magnitudes).
template <class V>
NNF_HD void two_sum(V a, V b, V& s, V& e) {
  s = a + b;
  V a2 = s - b;
  V b2 = s - a2;
  e = (a - a2) + (b - b2);
}

// d + dlo = z - m exactly. dlo = 0 where d <= -128, is -inf or NaN: e^d is 0
// there anyway, TwoSum gives inf - inf = NaN for infinite d, and exp_parts
// clamps d but not the correction (d = -2.5e38 can carry dlo = -8.6e10).
template <class V>
NNF_HD void exact_diff(V z, V m, V& d, V& dlo) {
  V e;
  two_sum(z, -m, d, e);
  dlo = select(d > V(-128.0f), e, V(0.0f));
}
NNF_HD void exact_diff(double z, double m, double& d, double& dlo) {
  d = z - m;
  dlo = 0.0;  // float64 rows: e^d with libm, like the float64 reference
}

// e^(d + dlo) and k * e^(d + dlo) (k folded in before any rounding into the
// denormal range), with the reduction of every float exp, as exp_near.
template <class V>
NNF_HD V exp_lo(V d, V dlo) {
  return vmath::exp_parts(d, dlo).value();
}
template <class V>
NNF_HD V exp_lo_times(V d, V dlo, V k) {
  return vmath::exp_parts(d, dlo).times(k);
}
NNF_HD double exp_lo(double d, double dlo) { return exp(d); }
NNF_HD double exp_lo_times(double d, double dlo, double k) { return k * exp(d); }

// e^(d + dlo) for d in [-87, 0] or NaN, |dlo| <= ulp(d) / 2: e^d >= e^-87 >
// 2^-126 is then a normal number, so a single power of two 2^k (k in
// [-126, 0]) scales it. Same reduction (reduce_ln2_rounded, 2^k from its
// bits) and polynomial as exp_lo, and like value() one final rounding of
// (1 + em1) 2^k, here fused: fma(em1, 2^k, 2^k) (one addition less than
// (em1 + 1) * 2^k, and the same bits, the result being normal). So the same
// bits as exp_lo(d, dlo) there, in about half the operations (no clamps,
// one scale factor). Callers guarantee the range for every lane they keep
// (NaN and infinite rows or lanes never get here): k is then in [-126, 0].
// Without dlo, r + 0 is left out (it only turns a -0 into +0, and e^r - 1 =
// +-0 gives the same fma): the same bits as exp(d).
template <bool kHasLo, class V>
NNF_HD V exp_near_impl(V d, V dlo) {
  auto [t, k, r] = vmath::reduce_ln2_rounded(d);
  if (kHasLo) r = r + dlo;
  V p = pow2_rounded(t, V(0.0f));
  return fma(vmath::expm1_reduced(r), p, p);
}
template <class V>
NNF_HD V exp_near(V d, V dlo) {
  return exp_near_impl<true>(d, dlo);
}
template <class V>
NNF_HD V exp_near(V d) {
  return exp_near_impl<false>(d, V(0.0f));
}

// Max that keeps a NaN of either operand (vmax alone keeps only its second's).
template <class V>
NNF_HD V max_nan(V acc, V z) {
  return select(is_nan(z), z, vmax(z, acc));
}

// A compensated running sum: s + c, TwoSum per addition.
template <class V>
struct CompensatedSum {
  V s, c;
  NNF_HD void reset() {
    s = V(0.0f);
    c = V(0.0f);
  }
  NNF_HD void add(V x) {
    V e;
    two_sum(s, x, s, e);
    c = c + e;
  }
};

// A compensated sum of terms in [0, 1] that starts at 1: s >= 1 >= x, so
// Fast2Sum (3 operations) gives the rounding error of s + x exactly. The sum
// is s + c - 1.
template <class V>
struct BiasedSum {
  V s, c;
  NNF_HD void reset() {
    s = V(1.0f);
    c = V(0.0f);
  }
  NNF_HD void add(V x) {
    V t = s + x;
    c = c + (x - (t - s));
    s = t;
  }
};

}  // namespace smx

// ---- forward ------------------------------------------------------------------

// Pass 1 of a row, per block: after the block's maximum m (max with the running
// one) is known, each element adds e^(z - m).
template <class V>
NNF_HD V softmax_term(V z, V m) {
  V d, dlo;
  smx::exact_diff(z, m, d, dlo);
  return smx::exp_lo(d, dlo);
}

// softmax_term where every z - M >= -87 (the caller checked the row): the
// same value, with exp_near.
template <class V>
NNF_HD V softmax_term_near(V z, V m) {
  V d, e;
  smx::two_sum(z, -m, d, e);
  return smx::exp_near(d, e);
}

// softmax_term_near for a row in which, besides, no z has a larger exponent
// than M >= 0 (the caller checked the row's minimum): that is the condition of
// Fast2Sum(-M, z), which gives z - M = d + dlo exactly in three operations
// instead of TwoSum's six. The same d and dlo, so the same bits. float32,
// 1 thread, AVX-512, rows of 128 to 8192 in L2: softmax and log-softmax
// 1-8% faster (fastest of four alternating rounds).
template <class V>
NNF_HD V softmax_term_near_fast(V z, V m) {
  V d = z - m;
  return smx::exp_near(d, z - (d + m));
}

// The same for M < 0, where every z <= M has at least M's exponent:
// Fast2Sum(z, -M), dlo = -M - (d - z), written (z - d) - M (d - z is exact,
// and RN is symmetric, so the same value and the same zero).
template <class V>
NNF_HD V softmax_term_near_fast_negative(V z, V m) {
  V d = z - m;
  return smx::exp_near(d, (z - d) - m);
}

// Softmax is unchanged when every term is taken against the same shift, so
// a softmax row may take e^(z - K ln2) with K = k(M), the power of two 2^K
// nearest e^M, instead of e^(z - M): reduce_ln2_rounded(z) gives z = k ln2 +
// r with r rounded once, and 2^(k - K) e^r needs no z - M at all (the exact
// difference d + dlo of the forms above: up to six operations, and r + dlo),
// and 2^(k - K) comes from the reduction's own bits. z <= M gives k <= K (t
// is nondecreasing), so a term is at most e^(ln2 / 2 + 2^-15) < 2 and
// BiasedSum's Fast2Sum stays exact. For rows with every |z| <= 256 and z - M
// >= -86: k - K >= -126 and every term is a normal number above e^-86.35, as
// exp_near's. Log-softmax and the cross-entropy keep e^(z - M): their log S
// near 0 needs the sum relative to the largest term exactly 1.
template <class V>
NNF_HD V softmax_term_shifted(V z, V shift_k) {
  auto [t, k, r] = vmath::reduce_ln2_rounded(z);
  V p = pow2_rounded(t, -shift_k);
  return fma(vmath::expm1_reduced(r), p, p);
}
// The shift K of softmax_term_shifted for a row whose maximum is m.
template <class V>
NNF_HD V softmax_shift(V m) {
  return vmath::reduce_ln2_rounded(m).k;
}

// The range of softmax_term_shifted: every |z| <= 256 and z - M >= -86, from
// the row's minimum and maximum (floats, or vectors of per-row values: the
// AVX-512 16-row blocks' BatchForms).
template <class T>
NNF_HD auto softmax_shiftable_range(T min, T max) {
  return (min >= T(-256.0f)) & (max <= T(256.0f)) & (min - max >= T(-86.0f));
}
// Float32 softmax rows (not log-softmax, not masked) of more than this many
// elements take softmax_term_shifted where their range allows; shorter rows
// keep e^(z - M). The CPU's column kernels take rows up to this length one
// per lane, and every CPU kernel and the CUDA team kernels (rows below 65536
// columns) give a row the same terms.
constexpr int64_t kUnshiftedSoftmaxRowMax = 16;

// Online normaliser in double: the running (M, S) absorbs a block whose terms
// were computed against m' = max(M, block maximum) and sum to b.
struct RowNorm {
  double max = smx::neg_inf_d();
  double sum = 0.0;
};
NNF_HD void rownorm_absorb(RowNorm& r, double block_max_new, double block_sum) {
  if (!(block_max_new <= r.max)) {                // larger, or NaN: the row becomes NaN
    r.sum = r.sum * exp(r.max - block_max_new);  // M = -inf: 0 * 0
    r.max = block_max_new;
  }
  r.sum = r.sum + block_sum;
}

// Pass 2: y = e^(z - M) / S as e^(z - M) * inv, inv = 1 / S rounded once.
template <class V>
NNF_HD V softmax_out(V z, V m, V inv) {
  V d, dlo;
  smx::exact_diff(z, m, d, dlo);
  return smx::exp_lo_times(d, dlo, inv);
}

// One-exp form (float32 rows): e = softmax_term(z, M) is written out while S
// is summed, then scaled in place: y = e * inv (one more rounding than
// softmax_out, measured within the float32 bound).
template <class V>
NNF_HD V softmax_normalize(V e, V inv) {
  return e * inv;
}

// Pass 2: y = (z - M) - log S, log S = lhi + llo (lhi rounded to V, llo the
// rest). Both terms are <= 0, so the sum does not cancel.
template <class V>
NNF_HD V log_softmax_out(V z, V m, V lhi, V llo) {
  V d, dlo;
  smx::exact_diff(z, m, d, dlo);
  return (d - lhi) + (dlo - llo);
}

// The float32 rows' form: y = ((z - M) - lhi) - llo without the exact
// difference. Both terms are <= 0, so |y| >= |z - M| and the rounding of
// z - M costs at most 0.5 ULP of y: at most 1.5 ULP before the error of log S
// (measured in SOFTMAX_BOUNDS), against the 8 operations of exact_diff.
template <class V>
NNF_HD V log_softmax_out_rounded(V z, V m, V lhi, V llo) {
  return ((z - m) - lhi) - llo;
}

// ---- backward -----------------------------------------------------------------

// softmax: pass 1 sums g * y; pass 2 writes scale * y (g - dot).
template <class V>
NNF_HD V softmax_bwd_term(V g, V y) {
  return g * y;
}
// The _unit forms are the same for scale = 1: the last product is then exact
// (its operand is already a quiet NaN where it is one) and left out.
template <class V>
NNF_HD V softmax_bwd_out_unit(V g, V y, V dot) {
  return y * (g - dot);
}
template <class V>
NNF_HD V softmax_bwd_out(V g, V y, V dot, V scale) {
  return softmax_bwd_out_unit(g, y, dot) * scale;
}

// log_softmax: pass 1 sums g; pass 2 writes scale * (g - e^y sum_g).
template <class V>
NNF_HD V log_softmax_bwd_out(V g, V y, V sum_g, V scale) {
  return (g - exp(y) * sum_g) * scale;
}

// The same for float lanes that all lie in [-87, 0] (the caller checks the
// vector): exp_near(y) equals exp(y) to the bit there (same reduction,
// polynomial and single rounding), so which lanes take which path does not
// change a result, and ISAs of different widths still agree.
template <class V>
NNF_HD V log_softmax_bwd_out_near_unit(V g, V y, V sum_g) {
  return g - smx::exp_near(y) * sum_g;
}
template <class V>
NNF_HD V log_softmax_bwd_out_near(V g, V y, V sum_g, V scale) {
  return log_softmax_bwd_out_near_unit(g, y, sum_g) * scale;
}

// ---- cross-entropy ------------------------------------------------------------

// Gradient of one element that is not the label: a * e^(z - M) - b, with
// a = w (1 + 2 lambda lse) / S and b = w eps / C (w: the reduction's weight).
template <class V>
NNF_HD V cross_entropy_grad(V z, V m, V a, V b) {
  V d, dlo;
  smx::exact_diff(z, m, d, dlo);
  return smx::exp_lo_times(d, dlo, a) - b;
}

// The float32 rows' one-exp form: e = e^(z - M) was written to the gradient
// while S was summed; a * e - b with one rounding (fma).
template <class V>
NNF_HD V cross_entropy_grad_from_exp(V e, V a, V b) {
  return fma(e, a, -b);
}

// The label's gradient from e_t = e^(z_t - M) (p_t - (1 - eps) cancels when
// p_t -> 1), and the row's loss (log_sum = log S, mean_z = mean of the row's
// logits, used only when eps > 0), in double: D is double, or on the CPU
// double lanes, one row per lane.
template <class D>
NNF_HD D cross_entropy_label_grad_from_exp(D e_t, D sum, double w, D k, double eps, double classes) {
  const D p = e_t / sum;
  return D(w) * ((p * k - D(eps / classes)) - D(1.0 - eps));
}

// The same where the label's logit is the row's maximum (e_t = 1) and rest,
// the sum of the other terms, was summed apart: p_t - 1 = -rest / S, so the
// label's gradient is w ((k - 1) - (rest / S) k + eps (1 - 1 / C)), without
// p_t - 1 cancelling in S's rounding when S is near 1 (a confident row).
template <class D>
NNF_HD D cross_entropy_label_grad_from_rest(D rest, D sum, double w, D k, double eps, double classes) {
  return D(w) * (((k - D(1.0)) - (rest / sum) * k) + D(eps - eps / classes));
}

template <class D>
NNF_HD D cross_entropy_loss(D z_t, D m, D log_sum, D mean_z, double eps, double z_loss) {
  const D nll = (m - z_t) + log_sum;
  D loss = D(1.0 - eps) * nll;
  if (eps != 0.0) loss = loss + D(eps) * ((m - mean_z) + log_sum);
  if (z_loss != 0.0) {
    const D lse = m + log_sum;
    loss = loss + D(z_loss) * lse * lse;
  }
  return loss;
}

// k = 1 + 2 lambda lse (lse = M + log S), the factor of p_j in every gradient
// (z-loss), and b = w eps / C, the smoothing term every gradient subtracts
// (w: the reduction's weight), as every cross-entropy kernel takes them.
template <class D>
NNF_HD D cross_entropy_k(double z_loss, D m, D log_sum) {
  return D(1.0) + D(2.0 * z_loss) * (m + log_sum);
}
NNF_HD double cross_entropy_b(double w, double eps, double classes) { return w * eps / classes; }

// Confident rows: where the label's logit is the row's maximum (e_t = 1) and
// S = 1 + rest lies within 2^-20 of 1, log S and p_t - 1 = -rest / S come out
// of S's rounding, about 2^-52 absolute (a float32 loss of 2e-13 was 1e-3 off
// relative). Such rows sum rest, the other terms, apart, and take
// log1p_small(rest) for log S and cross_entropy_label_grad_from_rest; above
// 2^-20 S's rounding is below 2^-28 of the loss. Float32 and 16-bit rows only
// (on the CPU, and on CUDA below 65536 columns):
// float64 losses are measured in ULPs of max(|loss|, 1) (docs/accuracy.md),
// which S's rounding meets everywhere.
constexpr double kConfidentRowSum = 1.0 + 0x1p-20;
NNF_HD bool confident_row(double z_t, double max, double sum) { return z_t == max && sum < kConfidentRowSum; }

// log1p(r) for 0 <= r < 2^-20: r - r^2 / 2 + r^3 / 3, the next term r^4 / 4
// below 2^-61 r.
template <class D>
NNF_HD D log1p_small(D r) {
  return r * (D(1.0) - r * (D(0.5) - r * D(1.0 / 3.0)));
}

// The label's gradient from z_t itself (the general path and CUDA).
NNF_HD double cross_entropy_label_grad(double z_t, double m, double sum, double w, double k, double eps,
                                       double classes) {
  return cross_entropy_label_grad_from_exp<double>(exp(z_t - m), sum, w, k, eps, classes);
}

NNF_NS_END
