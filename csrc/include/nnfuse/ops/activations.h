// Activation functors: forward and backward math written once, for V = float
// (scalar CPU and CUDA) and V = Vec<float, Avx2 / Avx512>. Semantics follow
// torch.nn.functional (kinks, thresholds, parameter defaults are the caller's).
//
//   fwd(x, a)              y = f(x)
//   bwd(g, x, a)           dL/dx = g * f'(x)
//   bwd_from_y(g, y, a)    dL/dx from the forward output (has_bwd_from_y only),
//                          accurate relative to the exact formula in y
//
// NaN contract: a NaN in x (or y) or in g gives NaN, also where the derivative
// is a constant 0 (0 is applied as g * 0, so g = +-inf there gives NaN too).
// Infinite x gives the mathematical limit. Known limitation: where the
// derivative is applied as e.times(g * m) (sigmoid, tanh, logsigmoid, silu ...),
// g = +-inf with |x| tiny gives NaN (inf + -inf inside the fma) instead of inf.
//
// Measured max error (python -m nnfuse.accuracy --points 1000000; float32 ulps,
// float64 ulps against the float64 reference, whose formulas the float64 path
// follows where its own roundings would otherwise dominate):
//   float32 fwd: Sigmoid 1.53, Tanh 1.59, Gelu 1.27, GeluTanh 1.73, Silu 1.64,
//         Selu 1.65, Hardswish 1.87, Softsign 1.46, Mish 1.41.
//   float32 bwd: Sigmoid 2.59, Tanh 2.83, Silu 3.00 (floor), Gelu 2.77 (floor),
//         Mish 2.69 (floor), Softplus 2.34, GeluTanh 2.96 (floor), Softsign 1.46.
//   Every float32 input with |x| in [2^-24, 16 .. 128] (csrc/tools/exhaustive_ulp.cpp,
//   docs/exhaustive.md): forward at most 1.94 (GeluTanh), backward at most 3.26
//   (GeluTanh, floor).
//   float64: <= 4 forward, <= 8 backward for every op.
//   float16 / bfloat16: every op within 0.51 ulp of all 65536 inputs (gelu,
//   gelu-tanh, sigmoid, tanh, silu, mish, softplus, logsigmoid and the elu
//   family through their
//   *_narrow formulas).
// Tails are computed without cancellation (erfc / scaled-erfc, x e^x folded into
// one rounding into the denormal range, compensated products inside exp arguments).
#pragma once

#include <type_traits>

#include "nnfuse/common/macros.h"
#include "nnfuse/vec/math.h"
#include "nnfuse/vec/scalar.h"

NNF_NS_BEGIN

template <class V>
struct ActArgs {
  V p0, p1;
};

// Ops with fwd_narrow / bwd_narrow: formulas for float16 and bfloat16 outputs,
// accurate to 2^-15 relative in float (see vmath's 16-bit section). The CPU
// and CUDA kernels call them for 16-bit storage, fwd / bwd otherwise.
template <class Op, class = void>
struct HasFwdNarrow : std::false_type {};
template <class Op>
struct HasFwdNarrow<Op, std::void_t<decltype(&Op::template fwd_narrow<float>)>> : std::true_type {};
template <class Op, class = void>
struct HasBwdNarrow : std::false_type {};
template <class Op>
struct HasBwdNarrow<Op, std::void_t<decltype(&Op::template bwd_narrow<float>)>> : std::true_type {};
template <class Op, class T>
inline constexpr bool kNarrowFwd = sizeof(T) == 2 && HasFwdNarrow<Op>::value;
template <class Op, class T>
inline constexpr bool kNarrowBwd = sizeof(T) == 2 && HasBwdNarrow<Op>::value;
// The forward and backward (from x) formulas that kernels storing T apply.
template <class Op, class T, class V>
NNF_HD V forward_for(V x, const ActArgs<V>& a) {
  if constexpr (kNarrowFwd<Op, T>) {
    return Op::fwd_narrow(x, a);
  } else {
    return Op::fwd(x, a);
  }
}
// Ops whose derivative times g is one IEEE operation on g (g / 6, g times a
// factor, g or its flat zero) declare bwd_is_one_product: their results are
// already the reference's for every g, and backward_for takes them as they are.
template <class Op, class = void>
struct BwdIsOneProduct : std::false_type {};
template <class Op>
struct BwdIsOneProduct<Op, std::void_t<decltype(Op::bwd_is_one_product)>>
    : std::integral_constant<bool, Op::bwd_is_one_product> {};
template <class Op>
inline constexpr bool kBwdRescaled = !BwdIsOneProduct<Op>::value;
template <class Op, class T, class V>
NNF_HD V backward_formula(V g, V x, const ActArgs<V>& a) {
  if constexpr (kNarrowBwd<Op, T>) {
    return Op::bwd_narrow(g, x, a);
  } else {
    return Op::bwd(g, x, a);
  }
}
// The formulas fold g into their products (4 g in tanh's, g alpha in elu's,
// compensated products), so an infinite g, or one within a few binades of
// overflow, can overflow an intermediate, or meet inf - inf, where the
// reference's IEEE product g f'(x) is finite or +-inf. A vector with a
// result that is not finite takes such lanes again from g 2^-64 where |g| >=
// 1 (exact; the formulas' relative errors do not depend on g's scale) and
// scales the result back by 2^64, which overflows only where g f'(x) does; a
// smaller g is kept (g 2^-64 could underflow, and its overflow is g f'(x)'s
// own: f'(x) = e^(x / alpha) in celu with alpha < 0). An infinite g takes
// 2^64 sign(g) f'(x) times inf: +-inf where f'(x) is at least 2^-64 of the
// smallest denormal, else NaN (the reference's inf * 0 where f'(x) = 0; a
// float32 f'(x) below ~1e-64 is 0 here but not in the float64 reference).
// Lanes with a finite result keep it, and NaN inputs still give NaN. (The
// CPU kernels check blocks of formula results first and call this only for a
// block that needs it.)
template <class Op, class T, class V>
NNF_HD V backward_for(V g, V x, const ActArgs<V>& a) {
  using L = vmath::Limits<scalar_t<V>>;
  const V r = backward_formula<Op, T>(g, x, a);
  if constexpr (!kBwdRescaled<Op>) return r;
  const mask_t<V> redo = is_inf_or_nan(r);
  if (!any_lane(redo)) return r;
  const V inf = V(L::max) + V(L::max);
  const mask_t<V> infinite_g = vabs(g) == inf;
  const V unit(static_cast<scalar_t<V>>(0x1p-64));
  const V scale(static_cast<scalar_t<V>>(0x1p64));
  const mask_t<V> large_g = vabs(g) >= V(1.0f);
  const V g_scaled = select(infinite_g, copysign(scale, g), select(large_g, g * unit, g));
  const V back = select(infinite_g, inf, select(large_g, scale, V(1.0f)));
  return select(redo, backward_formula<Op, T>(g_scaled, x, a) * back, r);
}

namespace act_detail {
// v, except NaN where x is NaN (for derivatives that are piecewise constant).
template <class V>
NNF_HD V nan_from(V x, V v) {
  return select(is_nan(x), x, v);
}
// The zero of a piecewise-constant derivative's flat pieces times g: g - g,
// which is +0 for every finite g, as PyTorch's where(..., 0, g) (g * 0 would
// be -0 for g < 0), and NaN for an infinite or NaN g (the README's NaN
// contract, where PyTorch gives 0).
template <class V>
NNF_HD V flat_zero(V g) {
  return g - g;
}
// v / 6 without a division (vdivps bounds hardsigmoid's and hardswish's
// forward loops on the CPUs measured): q = v RN(1/6), then Markstein's
// correction q - (6q - v) RN(1/6), the residual exact in the fma. Equal to
// v / 6 for every float with |v| >= 2^-125 (all of them compared); below,
// where the quotient is denormal, it differs from v / 6 by at most one
// denormal ulp.
// The residual is taken as 6q - v, not v - 6q, so that a zero v keeps its
// sign (-0: q - (+0) = -0). float64 keeps the division.
template <class V>
NNF_HD V div_by_six(V v) {
  if constexpr (std::is_same_v<scalar_t<V>, float>) {
    const V sixth(1.0f / 6.0f);
    V q = v * sixth;
    return fma(-fma(q, V(6.0f), -v), sixth, q);
  } else {
    return v / V(6.0f);
  }
}
// g where the mask holds, flat_zero(g) elsewhere; NaN where x is NaN.
template <class V, class M>
NNF_HD V pass_where(M m, V g, V x) {
  return nan_from(x, select(m, g, flat_zero(g)));
}
// g d/dx [x sigmoid(w(x))] = g s (1 + x w' (1 - s)), s = sigmoid(w), for an
// odd w (SiLU: w = x; gelu-tanh: w = 2u(x)) and 16-bit outputs, from
// s = vmath::sigmoid_narrow(|w|) and xw = x w'(x): n (1 + xw q) where x < 0,
// q (1 + xw n) elsewhere (n = sigmoid(-|w|), q = sigmoid(|w|)), with one
// times(): g (1 + xw q) n where x < 0, n alone elsewhere.
template <class V>
NNF_HD V gated_bwd_narrow(V g, mask_t<V> neg, const vmath::NarrowProduct<V>& s, V xw) {
  V n = s.times(select(neg, g * fma(xw, s.q, V(1.0f)), V(1.0f)));
  return select(neg, n, g * (s.q * fma(xw, n, V(1.0f))));
}
// The same derivative in full precision, g (sigmoid(w) + xw sigmoid(w)
// sigmoid(-w)) with xw = x w'(x) as xwh + xwl (kHasXwl) and z = |w| as z + zlo
// (kHasZlo). With p = sigmoid(-z) = q 2^j (vmath::sigmoid_parts, one
// division) and p (1 - p) from it:
//   x < 0:  y' = p + xw p (1 - p) = (q + xw q (1 - p)) 2^j   (2^j applied last)
//   x >= 0: y' = (1 - p) + xw p (1 - p)
// each one fma of its terms (xwl's term added first). (The form t s (1 + x
// s), s = 1 / (1 + t), t = e^-z, squares the rounding of s: 4.14 floor ulp
// for SiLU at x = -6.53 over all floats, over the bound.)
template <bool kHasZlo, bool kHasXwl, class V>
NNF_HD V gated_bwd(V g, mask_t<V> neg, V z, V zlo, V xwh, V xwl) {
  vmath::SigmoidParts<V> sp = vmath::sigmoid_parts<kHasZlo>(V(1.0f), z, zlo);
  V p = sp.w * sp.q;
  V head = select(neg, sp.q, p);
  V slope = g * fma(-head, p, head);  // g q (1 - p) or g p (1 - p)
  V base = g * select(neg, sp.q, V(1.0f) - p);
  if constexpr (kHasXwl) base = fma(xwl, slope, base);
  V y = fma(xwh, slope, base);
  return select(neg, sp.scaled(y), y);
}
// m e^x for x <= 0 with e^x = p 2^k from vmath::exp_narrow, 2^k applied last
// with one rounding (x clamped to [exp_lo, 0]; the elu family's x > 0 side
// is selected away).
template <class V>
NNF_HD V times_exp_narrow(V m, V x) {
  vmath::ExpNarrow<V> e = vmath::exp_narrow(vmax(V(vmath::Limits<scalar_t<V>>::exp_lo), vmin(V(0.0f), x)));
  return e.scaled(m * e.p);
}
}  // namespace act_detail

// g sigmoid(-z) sigmoid(z) for z >= 0 (the sigmoid's derivative): with
// sigmoid(-z) = p = q 2^j (sigmoid_parts), g q (1 - p) 2^j: q - q p in one
// fma, 2^j applied last (one rounding, also into the denormal range). An
// error of q moves the result by a factor (1 - 2p) / (1 - p) <= 1 of it.
template <class V>
NNF_HD V times_sigmoid_slope(V g, V z) {
  vmath::SigmoidParts<V> sp = vmath::sigmoid_parts<false>(V(1.0f), z, V(0.0f));
  return sp.scaled(g * fma(-sp.q, sp.w * sp.q, sp.q));
}

// Sigmoid: y = 1 / (1 + e^-x);  y' = y (1 - y) = p (1 - p), p = sigmoid(-|x|)
// (times_sigmoid_slope, one division). Not t / (1 + t)^2 with t = e^-|x|:
// the square doubles the rounding of 1 + t, which an exhaustive check
// measured at 4.52 ulp (x = 5.1785), over the bound.
struct Sigmoid {
  static constexpr bool has_bwd_from_y = true;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    return sigmoid(x);
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>&) {
    return times_sigmoid_slope(g, vabs(x));
  }
  template <class V>
  NNF_HD static V bwd_from_y(V g, V y, const ActArgs<V>&) {
    return g * (y * (V(1.0f) - y));
  }
  // float16 / bfloat16 outputs (vmath::sigmoid_narrow): sigmoid(-|x|) or
  // sigmoid(|x|); the slope sigmoid(-|x|) sigmoid(|x|).
  template <class V>
  NNF_HD static V fwd_narrow(V x, const ActArgs<V>&) {
    return vmath::mul_sigmoid_narrow(V(1.0f), x);
  }
  template <class V>
  NNF_HD static V bwd_narrow(V g, V x, const ActArgs<V>&) {
    vmath::NarrowProduct<V> s = vmath::sigmoid_narrow(vabs(x));
    return s.times(g * s.q);
  }
};

// Tanh: y = tanh x;  y' = 1 - y^2 = 4 p (1 - p), p = sigmoid(-2|x|) (tail
// without cancellation; see Sigmoid for why not 4E / (1 + E)^2).
struct Tanh {
  static constexpr bool has_bwd_from_y = true;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    return tanh(x);
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>&) {
    return times_sigmoid_slope(V(4.0f) * g, V(2.0f) * vabs(x));
  }
  template <class V>
  NNF_HD static V bwd_from_y(V g, V y, const ActArgs<V>&) {
    return g * ((V(1.0f) - y) * (V(1.0f) + y));
  }
  // float16 / bfloat16 outputs: x P(x^2) below 0.55 (vmath::tanh_small), else
  // sign(x) (1 - 2 n), n = sigmoid(-2|x|) <= 1/4 (vmath::sigmoid_narrow, so
  // its error is damped); y' = 4 n sigmoid(2|x|).
  template <class V>
  NNF_HD static V fwd_narrow(V x, const ActArgs<V>&) {
    V a = vabs(x);
    V large = copysign(fma(V(-2.0f), vmath::sigmoid_narrow(a + a).times(V(1.0f)), V(1.0f)), x);
    return select(a < V(0.55f), vmath::tanh_small(x), large);
  }
  template <class V>
  NNF_HD static V bwd_narrow(V g, V x, const ActArgs<V>&) {
    V a = vabs(x);
    vmath::NarrowProduct<V> s = vmath::sigmoid_narrow(a + a);
    return s.times((V(4.0f) * g) * s.q);
  }
};

// Relu: y = max(x, 0);  y' = x > 0 ? 1 : 0 (relu'(0) = 0).
struct Relu {
  static constexpr bool bwd_is_one_product = true;
  static constexpr bool has_bwd_from_y = true;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    return vmax(V(0.0f), x);
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>&) {
    return act_detail::pass_where(x > V(0.0f), g, x);
  }
  template <class V>
  NNF_HD static V bwd_from_y(V g, V y, const ActArgs<V>& a) {
    return bwd(g, y, a);
  }
};

// LeakyRelu (also PReLU with p0 = the channel weight, RReLU with p0 = the
// slope, which may differ per lane): y = x > 0 ? x : p0 x;
// y' = x > 0 ? 1 : p0 (leaky_relu'(0) = slope). bwd_from_y needs p0 >= 0 (as
// torch's in-place rule), so that y > 0 <=> x > 0.
struct LeakyRelu {
  static constexpr bool bwd_is_one_product = true;
  static constexpr bool has_bwd_from_y = true;
  // A slope of 0 is relu: -inf * 0 is taken at its limit +0 (the
  // reference's), not IEEE's NaN; a NaN x or a NaN or infinite slope (prelu's
  // weights are data) still gives the IEEE product.
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>& a) {
    V t = x * a.p0;
    return select(x > V(0.0f), x, select(is_nan(t) & (x == x) & (a.p0 == V(0.0f)), V(0.0f), t));
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>& a) {
    return act_detail::nan_from(x, select(x > V(0.0f), g, g * a.p0));
  }
  template <class V>
  NNF_HD static V bwd_from_y(V g, V y, const ActArgs<V>& a) {
    return bwd(g, y, a);
  }
  // PReLU weight gradient, per element: dL/dw = x > 0 ? 0 : g x.
  template <class V>
  NNF_HD static V prelu_weight_grad(V g, V x) {
    return select(x > V(0.0f), g * V(0.0f), g * x);
  }
};

// Elu(alpha = p0): y = x > 0 ? x : alpha (e^x - 1);
// y' = x > 0 ? 1 : alpha e^x = y + alpha.
struct Elu {
  static constexpr bool has_bwd_from_y = true;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>& a) {
    return select(x > V(0.0f), x, a.p0 * expm1(x));
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>& a) {
    return select(x > V(0.0f), g, vmath::exp_parts(x).times(g * a.p0));
  }
  template <class V>
  NNF_HD static V bwd_from_y(V g, V y, const ActArgs<V>& a) {
    return select(y > V(0.0f), g, g * (y + a.p0));
  }
  // float16 / bfloat16 outputs: vmath::expm1_narrow, and g alpha e^x with
  // e^x from vmath::exp_narrow (x clamped to [exp_lo, 0]: only x <= 0 is kept).
  template <class V>
  NNF_HD static V fwd_narrow(V x, const ActArgs<V>& a) {
    return select(x > V(0.0f), x, a.p0 * vmath::expm1_narrow(x));
  }
  template <class V>
  NNF_HD static V bwd_narrow(V g, V x, const ActArgs<V>& a) {
    return select(x > V(0.0f), g, act_detail::times_exp_narrow(g * a.p0, x));
  }
};

// Selu: y = scale (x > 0 ? x : alpha (e^x - 1)), alpha = 1.6732632423543772,
// scale = 1.0507009873554805;  y' = x > 0 ? scale : scale alpha e^x
// = y + scale alpha.
struct Selu {
  static constexpr bool has_bwd_from_y = true;
  static constexpr double kScale = 1.0507009873554805;       // float: 1.050700987f
  static constexpr double kScaleAlpha = 1.7580993408473768;  // float: 1.758099341f
  // scale * alpha - kScaleAlpha, from the exact product of the 31-digit constants.
  static constexpr double kScaleAlphaLo = 1.41535193800845e-17;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    return select(x > V(0.0f), x * vmath::cst<V>(kScale), expm1(x) * vmath::cst<V>(kScaleAlpha));
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>&) {
    return select(x > V(0.0f), g * vmath::cst<V>(kScale),
                  vmath::exp_parts(x).times(g * vmath::cst<V>(kScaleAlpha)));
  }
  template <class V>
  NNF_HD static V bwd_from_y(V g, V y, const ActArgs<V>&) {
    // scale alpha as a pair hi + lo of the precision: y + scale alpha cancels in the tail.
    V hi = vmath::cst<V>(kScaleAlpha);
    V lo = vmath::cst<V>((kScaleAlpha - static_cast<double>(static_cast<scalar_t<V>>(kScaleAlpha))) + kScaleAlphaLo);
    return select(y > V(0.0f), g * vmath::cst<V>(kScale), g * ((y + hi) + lo));
  }
  // float16 / bfloat16 outputs: as Elu's.
  template <class V>
  NNF_HD static V fwd_narrow(V x, const ActArgs<V>&) {
    return select(x > V(0.0f), x * vmath::cst<V>(kScale), vmath::expm1_narrow(x) * vmath::cst<V>(kScaleAlpha));
  }
  template <class V>
  NNF_HD static V bwd_narrow(V g, V x, const ActArgs<V>&) {
    return select(x > V(0.0f), g * vmath::cst<V>(kScale),
                  act_detail::times_exp_narrow(g * vmath::cst<V>(kScaleAlpha), x));
  }
};

// Celu(alpha = p0): y = max(0, x) + min(0, alpha (e^(x/alpha) - 1));
// y' = x > 0 ? 1 : e^(x/alpha) = y / alpha + 1. x/alpha is carried as q + qe
// (exact residual), so its rounding is not amplified by the exponential.
// 1/alpha is loop-invariant (the compiler hoists it).
// alpha = 1 (the default) is Elu's formula, taken directly: there q = x and
// qe = +0 (NaN for x = +-inf, which the correction's clamp turns into 1e-4
// where e^q is already 0 or unused), and r + 0 only turns a reduced -0 into
// +0, which e^r - 1 = r + r^2 P(r) maps to the same +0, so the bits are
// Elu's (tested) and the quotient, its residual and the correction's clamp
// and addition are saved.
struct Celu {
  static constexpr bool has_bwd_from_y = true;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>& a) {
    if (all_lanes(a.p0 == V(1.0f))) return Elu::fwd(x, a);
    V ia = V(1.0f) / a.p0;
    V q = x * ia;
    V qe = fma(-q, a.p0, x) * ia;
    V y = a.p0 * vmath::expm1_lo(q, qe);
    if constexpr (std::is_same_v<scalar_t<V>, float>) {
      // alpha < 0: q >= 0 where x <= 0, and e^q overflows from q = 88.7 where
      // alpha e^q need not (|alpha| < 1). Above q = 20, alpha (e^q - 1) is
      // alpha e^q within 2^-28.8 relative, taken from the exponential's parts
      // with alpha folded in before 2^k (exp_hi = 256 covers every finite
      // result). float64 overflows where the float64 reference's expm1 does.
      if (!all_lanes(a.p0 > V(0.0f))) y = select(q > V(20.0f), vmath::exp_parts(q, qe).times(a.p0), y);
    }
    return select(x > V(0.0f), x, y);
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>& a) {
    if (all_lanes(a.p0 == V(1.0f))) return Elu::bwd(g, x, a);
    V ia = V(1.0f) / a.p0;
    V q = x * ia;
    V qe = fma(-q, a.p0, x) * ia;
    const vmath::ExpParts<V> ep = vmath::exp_parts(q, qe);
    if constexpr (std::is_same_v<scalar_t<V>, float>) {
      // alpha < 0: e^q >= 1 scales g up (ExpParts::times_scaled_up).
      if (!all_lanes(a.p0 > V(0.0f))) return select(x > V(0.0f), g, ep.times_scaled_up(g));
    }
    return select(x > V(0.0f), g, ep.times(g));
  }
  template <class V>
  NNF_HD static V bwd_from_y(V g, V y, const ActArgs<V>& a) {
    return select(y > V(0.0f), g, g * ((y + a.p0) * (V(1.0f) / a.p0)));
  }
  // float16 / bfloat16 outputs: as Elu's in q = x / alpha (rounded twice:
  // e^q moves by about |q| 2^-23 relative, below 2^-16 wherever it is not 0
  // in 16 bits). The narrow exponentials take q <= 0 only (x <= 0 and alpha >
  // 0); a negative alpha (q >= 0, e^q up to overflow) takes the float32
  // formulas, whose results round to 16 bits within the same bound.
  template <class V>
  NNF_HD static V fwd_narrow(V x, const ActArgs<V>& a) {
    if (!all_lanes(a.p0 > V(0.0f))) return fwd(x, a);
    return select(x > V(0.0f), x, a.p0 * vmath::expm1_narrow(x * (V(1.0f) / a.p0)));
  }
  template <class V>
  NNF_HD static V bwd_narrow(V g, V x, const ActArgs<V>& a) {
    if (!all_lanes(a.p0 > V(0.0f))) return bwd(g, x, a);
    return select(x > V(0.0f), g, act_detail::times_exp_narrow(g, x * (V(1.0f) / a.p0)));
  }
};

// Gelu (exact): y = x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2;
// y' = Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi).
// With a = |x|, E = e^(-a^2/2) (exact square) and R(a) = Phi(-a) e^(a^2/2):
// Phi(-a) = E R, so y = x<0 ? x E R : x - x E R, and with D = E (R - a/sqrt(2 pi)),
// y' = x<0 ? D : 1 - D. No 1 + erf(x) cancellation anywhere. y' has an interior
// zero at x = -0.7518 where R - a/sqrt(2 pi) cancels.
struct Gelu {
  static constexpr bool has_bwd_from_y = false;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    return fwd_impl<false>(x);
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>&) {
    return bwd_impl<false>(g, x);
  }
  // float16 / bfloat16 outputs: the same formulas with the tails of
  // vmath::gelu_tail_narrow (relative error <= 2^-15, see there).
  template <class V>
  NNF_HD static V fwd_narrow(V x, const ActArgs<V>&) {
    return fwd_impl<true>(x);
  }
  template <class V>
  NNF_HD static V bwd_narrow(V g, V x, const ActArgs<V>&) {
    return bwd_impl<true>(g, x);
  }

 private:
  // a is clamped where every tail term is 0 (Limits::gelu), which also maps
  // +-inf to the limits.
  template <bool kNarrow, class V>
  NNF_HD static V fwd_impl(V x) {
    V a = vmin(V(vmath::Limits<scalar_t<V>>::gelu), vabs(x));
    V h;  // a Phi(-a)
    if constexpr (kNarrow) {
      h = vmath::gelu_tail_narrow(a).times(a);
    } else {
      h = vmath::gelu_tail(a).times(a);
    }
    // -h for x < 0, x - h elsewhere: max(-0, x) is -0 for x < 0 (-0 - h =
    // -h, a zero h included) and x elsewhere (NaN too), two operations fewer
    // than the compare, negation and blend (same bits; float32, 2^20, 1
    // thread: 0.572 -> 0.557 ns per element).
    return vmax(V(-0.0f), x) - h;
  }
  template <bool kNarrow, class V>
  NNF_HD static V bwd_impl(V g, V x) {
    V a = vmin(V(vmath::Limits<scalar_t<V>>::gelu), vabs(x));
    // One times(): D g (x < 0) or D (x >= 0), the same bits as two calls.
    mask_t<V> neg = x < V(0.0f);
    V m = select(neg, g, V(1.0f));
    V t;
    if constexpr (kNarrow) {
      t = vmath::gelu_dtail_narrow(a).times(m);
    } else {
      t = vmath::gelu_dtail(a).times(m);
    }
    return select(neg, t, g * (V(1.0f) - t));
  }
};

namespace act_detail {
// w = 2u(a) = a (c1 + c2 a^2) for a >= 0, c1 = 2 sqrt(2/pi), c2 = 0.044715 c1,
// as w + wl to about 2^-45 relative: constants as float pairs, a^2 exact, the
// sum c1 + c2 a^2 by TwoSum. Needed because e^-w amplifies the error of w by |w|.
template <class V>
struct TanhGeluArg {
  V w, wl, x2;
};
// c1, c2 and 3 c2 (for w') as hi + lo pairs of each precision (float64: 3 c2 only hi).
template <class S>
struct GeluTanhConsts;
template <>
struct GeluTanhConsts<float> {
  static constexpr float c1h = 1.595769167e+00f, c1l = -4.534068054e-08f;
  static constexpr float c2h = 7.135481387e-02f, c2l = 2.398832466e-09f;
  static constexpr float c2x3 = 2.140644491e-01f, c2x3l = -2.540834210e-10f;
};
template <>
struct GeluTanhConsts<double> {
  static constexpr double c1h = 0x1.9884533d43651p+0, c1l = -0x1.cbc0d30ebfd15p-54;
  static constexpr double c2h = 0x1.2444f2a4d8b4bp-4, c2l = -0x1.6c843a29d1c70p-61;
  static constexpr double c2x3 = 0.21406444881780073, c2x3l = 0.0;
};
template <class V>
NNF_HD TanhGeluArg<V> tanh_gelu_arg(V a) {
  using C = GeluTanhConsts<scalar_t<V>>;
  const V c1h(C::c1h), c1l(C::c1l);
  const V c2h(C::c2h), c2l(C::c2l);
  V x2 = a * a;
  V x2e = fma(a, a, -x2);
  V p = c2h * x2;
  V pe = fma(c2h, x2, -p);
  V s = c1h + p;
  V bb = s - c1h;
  V se = (c1h - (s - bb)) + (p - bb);
  V lo = fma(c2h, x2e, se);
  lo = fma(c2l, x2, lo);
  lo = lo + pe;
  lo = lo + c1l;
  V w = a * s;
  V wl = fma(a, lo, fma(a, s, -w));
  return {w, wl, x2};
}
// float64: the reference's double-double evaluation of 2u, step for step, so
// that e^-2u, rounded to float64 (denormal from a = 21), is the reference's.
NNF_HD TanhGeluArg<double> tanh_gelu_arg(double a) {
  const double c = 0.044715, c_lo = 0x1.441355475a31ap-59;
  const double k = 0x1.9884533d43651p-1, k_lo = -0x1.cbc0d30ebfd15p-55;  // sqrt(2/pi)
  auto two_sum = [](double x, double y, double& e) {
    double s = x + y, bb = s - x;
    e = (x - (s - bb)) + (y - bb);
    return s;
  };
  double p2 = a * a, e2 = fma(a, a, -p2);
  double p3 = p2 * a, e3 = fma(p2, a, -p3) + e2 * a;
  double q = c * p3, eq = fma(c, p3, -q) + (c * e3 + c_lo * p3);
  double ev;
  double v = two_sum(a, q, ev);
  ev = ev + eq;
  double uh = k * v, ul = fma(k, v, -uh) + (k * ev + k_lo * v);
  double ue;
  uh = two_sum(uh, ul, ue);
  return {2.0 * uh, 2.0 * ue, p2};
}
// float64 GELU-tanh derivative as the reference writes it: s + 2 x s (1 - s) u'
// with s = sigmoid(2u) and s (1 - s) = e / (1 + e)^2, e = e^-|2u| (1 -+ lo),
// every factor rounded to float64 in the reference's order (its value where e
// is denormal, x < -21, differs from the exact one by more than 8 ulp).
NNF_HD double reference_gelu_tanh_bwd(double g, double x) {
  double v = vmax(-vmath::Limits<double>::tail, vmin(vmath::Limits<double>::tail, x));
  TanhGeluArg<double> w = tanh_gelu_arg(vabs(v));
  double zh = copysign(w.w, v), zl = v < 0.0 ? -w.wl : w.wl;
  double e = ::exp(-w.w) * (1.0 - (zh > 0.0 ? zl : zh < 0.0 ? -zl : 0.0));
  double s = zh >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
  double ds = e / ((1.0 + e) * (1.0 + e));
  double du = 0x1.9884533d43651p-1 * (1.0 + 3.0 * 0.044715 * v * v);
  double d = is_nan(x) ? x : s + 2.0 * v * ds * du;
  return g * d;
}
}  // namespace act_detail

// GeluTanh: y = x/2 (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3)
// = x sigmoid(2u) = x / (1 + e^-2u);  with t = e^-|2u|, s = 1 / (1 + t):
// y = x<0 ? x t s : x s;  y' = sigmoid(2u) + x w' sigmoid(2u) sigmoid(-2u),
// w' = c1 + 3 c2 x^2. Interior zero near x = -0.7518.
struct GeluTanh {
  static constexpr bool has_bwd_from_y = false;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    V a = vmin(V(vmath::Limits<scalar_t<V>>::gelu_tanh), vabs(x));
    act_detail::TanhGeluArg<V> w = act_detail::tanh_gelu_arg(a);
    V m = vmax(V(-vmath::Limits<scalar_t<V>>::gelu_tanh), x);
    return vmath::mul_sigmoid_abs<true>(m, x <= V(0.0f), w.w, w.wl);
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>&) {
    return bwd_impl(g, x);
  }
  // float16 / bfloat16 outputs: with w = w(|x|) >= 0 (tanh_gelu_arg's w,
  // without its low part: rounded a few times, w moves sigmoid(-w) by about
  // w 2^-23 relative, below 2^-16 wherever it is not 0 in 16 bits),
  // n = sigmoid(-w) and q = sigmoid(w) (vmath::sigmoid_narrow):
  //   y = x sigmoid(w(x));  y' from act_detail::gated_bwd_narrow,
  // w' = c1 + 3 c2 x^2.
  template <class V>
  NNF_HD static V fwd_narrow(V x, const ActArgs<V>&) {
    const V limit(vmath::Limits<scalar_t<V>>::gelu_tanh);
    V w = act_detail::tanh_gelu_arg(vmin(limit, vabs(x))).w;
    return vmath::mul_sigmoid_narrow(vmax(-limit, x), copysign(w, x));
  }
  template <class V>
  NNF_HD static V bwd_narrow(V g, V x, const ActArgs<V>&) {
    using C = act_detail::GeluTanhConsts<scalar_t<V>>;
    const V limit(vmath::Limits<scalar_t<V>>::gelu_tanh);
    V xc = vmax(-limit, vmin(limit, x));
    act_detail::TanhGeluArg<V> w = act_detail::tanh_gelu_arg(vabs(xc));
    V xw = xc * fma(V(C::c2x3), w.x2, V(C::c1h));
    return act_detail::gated_bwd_narrow(g, x < V(0.0f), vmath::sigmoid_narrow(w.w), xw);
  }
  // float64: the reference's formula (see act_detail::reference_gelu_tanh_bwd).
  NNF_HD static double bwd_impl(double g, double x) { return act_detail::reference_gelu_tanh_bwd(g, x); }
  // y' = sigmoid(w) + x w' sigmoid(w) sigmoid(-w) by act_detail::gated_bwd,
  // w = 2u(|x|) as w + wl (tanh_gelu_arg) and x w' as xwh + xwl: w' = c1 +
  // 3 c2 x^2 rounded once (the rounding of x^2 moves it by at most 2^-24
  // relative), times x exactly. One exp and one division, against a form
  // carrying every factor of t s^2 (1 + x w' t s), s = 1 / (1 + t), as a
  // double-float.
  template <class V>
  NNF_HD static V bwd_impl(V g, V x) {
    using C = act_detail::GeluTanhConsts<scalar_t<V>>;
    V a = vmin(V(vmath::Limits<scalar_t<V>>::gelu_tanh), vabs(x));
    act_detail::TanhGeluArg<V> w = act_detail::tanh_gelu_arg(a);
    // w' = c1 + 3 c2 x^2 as dh + dl (the exact square, TwoSum).
    V x2e = fma(a, a, -w.x2);
    V q = V(C::c2x3) * w.x2;
    V dh = V(C::c1h) + q;
    V dl = ((vmax(V(C::c1h), q) - dh) + vmin(V(C::c1h), q)) +
           (fma(V(C::c2x3), w.x2, -q) + fma(V(C::c2x3), x2e, fma(V(C::c2x3l), w.x2, V(C::c1l))));
    V xs = copysign(a, x);
    V xwh = xs * dh;
    V xwl = fma(xs, dh, -xwh) + xs * dl;
    return act_detail::gated_bwd<true, true>(g, x < V(0.0f), w.w, w.wl, xwh, xwl);
  }
};

// Silu: y = x sigmoid(x);  y' = sigmoid(x) + x sigmoid(x) sigmoid(-x), by
// act_detail::gated_bwd with w = x. Interior zero at x = -1.2785.
struct Silu {
  static constexpr bool has_bwd_from_y = false;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    return vmath::mul_sigmoid(vmax(V(-vmath::Limits<scalar_t<V>>::tail), x), x);
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>&) {
    const V big(vmath::Limits<scalar_t<V>>::tail);
    V xc = vmax(-big, vmin(big, x));
    return act_detail::gated_bwd<false, false>(g, x < V(0.0f), vabs(x), V(0.0f), xc, V(0.0f));
  }
  // float16 / bfloat16 outputs: y = x sigmoid(x) (vmath::mul_sigmoid_narrow),
  // y' from act_detail::gated_bwd_narrow with w = x.
  template <class V>
  NNF_HD static V fwd_narrow(V x, const ActArgs<V>&) {
    return vmath::mul_sigmoid_narrow(vmax(V(-vmath::Limits<scalar_t<V>>::tail), x), x);
  }
  template <class V>
  NNF_HD static V bwd_narrow(V g, V x, const ActArgs<V>&) {
    const V big(vmath::Limits<scalar_t<V>>::tail);
    V xc = vmax(-big, vmin(big, x));
    return act_detail::gated_bwd_narrow(g, x < V(0.0f), vmath::sigmoid_narrow(vabs(x)), xc);
  }
};

namespace act_detail {
// Mish's denominator D = e (e + 2) + 2, e = e^x (x clamped to [-tail, 20]):
// e = s (1 + em1) rounded once, s = 2^k, + elo (s em1 + (s - e), s - e exact), u = e + 2 as u + ulo
// (Fast2Sum), D = e u + 2 as D + Dlo, and 1 / (D + Dlo) = id (1 + rid), so the
// quotients below are rounded once.
template <class V>
struct MishDen {
  vmath::ExpParts<V> ep;
  V e, elo, u, ulo, id, rid;
};
template <class V>
NNF_HD MishDen<V> mish_den(V xc) {
  vmath::ExpParts<V> ep = vmath::exp_parts(xc);
  V s = ep.scale();
  V e = fma(s, ep.em1, s);
  V elo = fma(s, ep.em1, s - e);
  const V two(2.0f);
  V u = e + two;
  V ulo = ((vmax(e, two) - u) + vmin(e, two)) + elo;
  V p = e * u;
  V pe = fma(e, u, -p);
  V D = p + two;
  V Dlo = ((vmax(p, two) - D) + vmin(p, two)) + (pe + fma(e, ulo, elo * u));
  V id = V(1.0f) / D;
  V rid = fma(-id, D, V(1.0f)) - id * Dlo;
  return {ep, e, elo, u, ulo, id, rid};
}
}  // namespace act_detail

// Mish: y = x tanh(softplus(x)) = x n / (n + 2), n = e (e + 2), e = e^x;
// y' = tanh(sp) + x sech^2(sp) sigmoid(x) = e [(e + 2) + 4x (e + 1) / D] / D,
// D = n + 2 = e(e + 2) + 2. For x < 0 the factor e is applied last (x e^x tail
// rounded once); sums and quotients are carried as double-floats (mish_den),
// so each result is rounded about once or twice (was 3.25 / 4.77 ulp with six
// roundings). x is clamped to [-Limits::tail, 20], beyond which y = x or 0
// already (y' = 1 / 0). Interior zero of y' near x = -1.1924.
struct Mish {
  static constexpr bool has_bwd_from_y = false;
  // float64: the reference's formulas, x tanh(softplus(x)) and tanh(sp) + x
  // sech^2(sp) sigmoid(x) with the C library (agreeing with it to ~2 ulp where the
  // float formula below, with more roundings, would differ by up to 6).
  NNF_HD static double fwd(double x, const ActArgs<double>&) {
    double xm = vmax(-vmath::Limits<double>::tail, x);
    double sp = vmax(xm, 0.0) + ::log1p(::exp(-vabs(xm)));
    return xm * ::tanh(sp);
  }
  NNF_HD static double bwd(double g, double x, const ActArgs<double>&) {
    double v = vmax(-vmath::Limits<double>::tail, vmin(vmath::Limits<double>::tail, x));
    double sp = vmax(v, 0.0) + ::log1p(::exp(-vabs(v)));
    double e = ::exp(-2.0 * sp);
    double sech2 = 4.0 * e / ((1.0 + e) * (1.0 + e));
    double d = ::tanh(sp) + v * sech2 * vmath::mul_sigmoid(1.0, v);
    return g * (is_nan(x) ? x : d);
  }
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    V xc = vmax(V(-vmath::Limits<scalar_t<V>>::tail), vmin(V(20.0f), x));
    act_detail::MishDen<V> d = act_detail::mish_den(xc);
    // x < 0: y = x e R, R = u / D = u id (1 + rid) as P + Pl, times x and e
    // as GELU's tail (ScaledTail: e applied with one rounding).
    V P = d.u * d.id;
    V Pl = fma(d.u, d.id, -P) + fma(d.ulo, d.id, P * d.rid);
    V yneg = vmath::ScaledTail<V>{d.ep, P, Pl}.times(xc);
    // x >= 0: y = x - 2x / D (2 / D <= 0.4): h = -2x id exact to first order,
    // x + h by Fast2Sum, one final rounding.
    V m2 = V(-2.0f) * xc;
    V h = m2 * d.id;
    V hl = fma(m2, d.id, -h) + h * d.rid;
    V sum = xc + h;
    V ypos = sum + (((xc - sum) + h) + hl);
    // y has the sign of x, also for x = -0 (where x + h is +0).
    return copysign(select(x < V(0.0f), yneg, select(x > V(20.0f), x, ypos)), x);
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>&) {
    V xc = vmax(V(-vmath::Limits<scalar_t<V>>::tail), vmin(V(20.0f), x));
    act_detail::MishDen<V> d = act_detail::mish_den(xc);
    // A = 4x (e + 1) as Ah + Al (v = e + 1 by Fast2Sum), c = A / D as ch + cl.
    V v = d.e + V(1.0f);
    V vlo = ((vmax(d.e, V(1.0f)) - v) + vmin(d.e, V(1.0f))) + d.elo;
    V x4 = V(4.0f) * xc;
    V Ah = x4 * v;
    V Al = fma(x4, v, -Ah) + x4 * vlo;
    V ch = Ah * d.id;
    V cl = fma(Ah, d.id, -ch) + fma(ch, d.rid, Al * d.id);
    // x < 0: y' = e (u + c) / D, u + c cancels at the interior zero: TwoSum.
    V sh = d.u + ch;
    V bb = sh - d.u;
    V sl = ((d.u - (sh - bb)) + (ch - bb)) + (d.ulo + cl);
    V bh = sh * d.id;
    V bl = fma(sh, d.id, -bh) + fma(bh, d.rid, sl * d.id);
    V yneg = vmath::ScaledTail<V>{d.ep, bh, bl}.times(g);
    // x >= 0: y' = (1 - 2 id) + e c id, both terms positive.
    // 1 - 2 / D with the rounding of D (rid) corrected.
    V m2id = V(-2.0f) * d.id;
    V ypos = fma(d.e * ch, d.id, fma(m2id, d.rid, fma(V(-2.0f), d.id, V(1.0f))));
    return select(x < V(0.0f), yneg, g * ypos);
  }
  // float16 / bfloat16 outputs: the same formulas without the compensations,
  // e^x = p 2^k from vmath::exp_narrow (2^-17.4 relative where a 16-bit
  // result is not 0), u = e + 2, D = e u + 2:
  //   y = x p (u / D) 2^k (x < 0) or x - 2x / D (2 / D <= 0.4);
  //   y' = p (u + c) / D 2^k (x < 0) or (1 - 2 / D) + e c / D, c = 4x (e + 1) / D.
  template <class V>
  NNF_HD static V fwd_narrow(V x, const ActArgs<V>&) {
    MishNarrow<V> d = mish_narrow(x);
    V yneg = d.en.scaled((d.xc * d.en.p) * (d.u * d.id));
    V ypos = fma(V(-2.0f) * d.xc, d.id, d.xc);
    return copysign(select(x < V(0.0f), yneg, select(x > V(20.0f), x, ypos)), x);  // as fwd
  }
  template <class V>
  NNF_HD static V bwd_narrow(V g, V x, const ActArgs<V>&) {
    MishNarrow<V> d = mish_narrow(x);
    V c = ((V(4.0f) * d.xc) * (d.e + V(1.0f))) * d.id;
    V yneg = d.en.scaled((g * d.en.p) * ((d.u + c) * d.id));
    V ypos = fma(d.e * c, d.id, fma(V(-2.0f), d.id, V(1.0f)));
    return select(x < V(0.0f), yneg, g * ypos);
  }

 private:
  // x clamped to [-tail, 20], e = e^x (p 2^k in en), u = e + 2, id = 1 / (e u + 2).
  template <class V>
  struct MishNarrow {
    vmath::ExpNarrow<V> en;
    V xc, e, u, id;
  };
  template <class V>
  NNF_HD static MishNarrow<V> mish_narrow(V x) {
    V xc = vmax(V(-vmath::Limits<scalar_t<V>>::tail), vmin(V(20.0f), x));
    vmath::ExpNarrow<V> en = vmath::exp_narrow(xc);
    V e = en.value();
    V u = e + V(2.0f);
    return {en, xc, e, u, V(1.0f) / fma(e, u, V(2.0f))};
  }
};

// Hardtanh(min_val = p0, max_val = p1): y = min(max(x, p0), p1);
// y' = p0 < x < p1 ? 1 : 0. Also relu6 (p0 = 0, p1 = 6).
struct Hardtanh {
  static constexpr bool bwd_is_one_product = true;
  static constexpr bool has_bwd_from_y = true;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>& a) {
    return vmin(a.p1, vmax(a.p0, x));
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>& a) {
    return act_detail::pass_where((x > a.p0) & (x < a.p1), g, x);
  }
  template <class V>
  NNF_HD static V bwd_from_y(V g, V y, const ActArgs<V>& a) {
    return bwd(g, y, a);
  }
};

// Hardsigmoid: y = min(max(x + 3, 0), 6) / 6;  y' = -3 < x < 3 ? 1/6 : 0.
struct Hardsigmoid {
  static constexpr bool bwd_is_one_product = true;
  static constexpr bool has_bwd_from_y = false;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    // v is 0 or at least 2^-22 (x + 3 is exact near -3): div_by_six is v / 6.
    // float32, 2^20 elements, 1 thread: 0.106 -> 0.085-0.098 ns per element
    // (relu's 0.085-0.099 in the same runs).
    return act_detail::div_by_six(vmin(V(6.0f), vmax(V(0.0f), x + V(3.0f))));
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>&) {
    return act_detail::pass_where((x > V(-3.0f)) & (x < V(3.0f)), g / V(6.0f), x);
  }
};

// Hardswish: y = x min(max(x + 3, 0), 6) / 6;
// y' = x <= -3 ? 0 : x < 3 ? (2x + 3) / 6 : 1 (torch 2.13's kinks: y'(-3) = 0,
// y'(3) = 1; torch writes x/3 + 0.5; fma(2, x, 3) = 2 (x + 1.5) rounded once is
// exact near the zero at -1.5, so the result is (x + 1.5) / 3 as the reference).
struct Hardswish {
  static constexpr bool bwd_is_one_product = true;
  static constexpr bool has_bwd_from_y = false;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    // x >= 3 returns x itself (x * 6 / 6 would overflow for x > 5.6e37); x <= -3
    // gives -3 * 0 = -0, also for x = -inf (vmax passes NaN, its second operand).
    // div_by_six differs from the division only where x (x + 3) is below
    // 2^-125: over every float x in (-3, 3) the worst error is 1.913 ulp with
    // either (against a long double reference). float32, 2^20 elements, 1 thread:
    // 0.105 -> 0.090 ns per element (relu 0.084, fastest of six alternating
    // runs).
    return select(x >= V(3.0f), x, act_detail::div_by_six(vmax(V(-3.0f), x) * vmax(V(0.0f), x + V(3.0f))));
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>&) {
    V mid = g * ((fma(V(2.0f), x, V(3.0f))) / V(6.0f));
    V r = select(x <= V(-3.0f), act_detail::flat_zero(g), select(x < V(3.0f), mid, g));
    return act_detail::nan_from(x, r);
  }
};

// Softplus(beta = p0, threshold = p1): y = beta x > threshold ? x : log1p(e^(beta x)) / beta
// = max(x, 0) + log1p(e^-|beta x|) / beta (z = beta x kept as z + ze, exact);
// y' = beta x > threshold ? 1 : sigmoid(beta x) = 1 - e^(-beta y).
// beta = 1 (the default) leaves out the product, its residual and the
// exponential's correction: z = x, ze = +0 (NaN for x = +-inf, clamped to
// 1e-4 where e^-inf is 0 anyway), and r + +-0 = r for every reduced r (never
// -0: an exact zero sum or fma rounds to +0), so the bits are those of the
// general form. Tested: softplus(2x, beta = 1/2) takes the general form with
// the same z and is exactly 2 softplus(x).
struct Softplus {
  static constexpr bool has_bwd_from_y = true;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>& a) {
    V z;
    V l = vmath::log1p_unit(exp_neg_abs(x, a, z).value());
    if (!all_lanes(a.p0 == V(1.0f))) l = l / a.p0;
    return select(z > a.p1, x, select(z > V(0.0f), x, V(0.0f)) + l);
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>& a) {
    V z;
    vmath::ExpParts<V> e = exp_neg_abs(x, a, z);
    V q = g / e.one_plus();
    return select(z > a.p1, g, select(z < V(0.0f), e.times(q), q));
  }
  // float16 / bfloat16 outputs: z = beta x rounded once, which moves e^-|z|
  // by at most 2^-24 |z| relative, below 2^-17.4 wherever it is not 0 in 16
  // bits; log1p(e^-|z|) from exp_narrow and log1p_unit_narrow, g sigmoid(z)
  // from vmath::sigmoid_narrow.
  template <class V>
  NNF_HD static V fwd_narrow(V x, const ActArgs<V>& a) {
    V z = a.p0 * x;
    V t = vmath::exp_narrow(-vmin(V(vmath::Limits<scalar_t<V>>::tail), vabs(z))).value();
    V l = vmath::log1p_unit_narrow(t);
    if (!all_lanes(a.p0 == V(1.0f))) l = l / a.p0;
    V y = select(z > V(0.0f), x, V(0.0f)) + l;
    return select(z > a.p1, x, y);
  }
  template <class V>
  NNF_HD static V bwd_narrow(V g, V x, const ActArgs<V>& a) {
    V z = a.p0 * x;
    return select(z > a.p1, g, vmath::mul_sigmoid_narrow(g, z));
  }
  template <class V>
  NNF_HD static V bwd_from_y(V g, V y, const ActArgs<V>& a) {
    V z = a.p0 * y;
    return select(z > a.p1, g, g * -expm1(-z));
  }

 private:
  // e^-|z| for z = beta x (returned in z): z = x for beta = 1 (see above),
  // else the product's exact residual ze corrects the exponent (-|z| - ze
  // sign(z); at z = 0 it is at most 2^-149 and vanishes in 1 + e^r).
  template <class V>
  NNF_HD static vmath::ExpParts<V> exp_neg_abs(V x, const ActArgs<V>& a, V& z) {
    if (all_lanes(a.p0 == V(1.0f))) {
      z = x;
      return vmath::exp_parts_nonpositive(-vabs(x));
    }
    z = a.p0 * x;
    V ze = fma(a.p0, x, -z);
    return vmath::exp_parts_nonpositive(-vabs(z), select(z > V(0.0f), -ze, ze));
  }
};

// Softsign: y = x / (1 + |x|);  y' = 1 / (1 + |x|)^2.
struct Softsign {
  static constexpr bool has_bwd_from_y = false;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    V a = vabs(x);
    return select(a == V(vmath::inf_f()), copysign(V(1.0f), x), x / (V(1.0f) + a));
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>&) {
    // d = 1 + a as d + dlo (Fast2Sum), s = 1 / d rounded, r = 1 - s (d + dlo)
    // (exact residual): 1 / (1 + a)^2 = s^2 (1 + 2r); g s as gs + gse, the
    // product gs s exact inside the last fma: ~1 rounding in all. a = inf is
    // taken as the largest float (s ~ 2^-128: the result is g * 0 as the limit).
    V a = vmin(V(vmath::Limits<scalar_t<V>>::max), vabs(x));
    V d = V(1.0f) + a;
    V dlo = (vmax(V(1.0f), a) - d) + vmin(V(1.0f), a);
    V s = V(1.0f) / d;
    V r = fma(-s, d, V(1.0f)) - s * dlo;
    V gs = g * s;
    V gse = fma(g, s, -gs);
    return fma(gs, s, fma(gse, s, (r + r) * (gs * s)));
  }
};

// Logsigmoid: y = log sigmoid(x) = min(x, 0) - log1p(e^-|x|);
// y' = sigmoid(-x) = x > 0 ? t / (1 + t) : 1 / (1 + t), t = e^-|x|.
struct Logsigmoid {
  static constexpr bool has_bwd_from_y = false;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    V t = vmath::exp_parts_nonpositive(-vabs(x)).value();
    return select(x < V(0.0f), x, V(0.0f)) - vmath::log1p_unit(t);
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>&) {
    vmath::ExpParts<V> e = vmath::exp_parts_nonpositive(-vabs(x));
    V q = g / e.one_plus();
    return select(x > V(0.0f), e.times(q), q);
  }
  // float16 / bfloat16 outputs: e^-|x| from vmath::exp_narrow (|x| clamped to
  // Limits::tail, where it is 0), log1p from log1p_unit_narrow; y' =
  // sigmoid(-x) from vmath::sigmoid_narrow.
  template <class V>
  NNF_HD static V fwd_narrow(V x, const ActArgs<V>&) {
    V t = vmath::exp_narrow(-vmin(V(vmath::Limits<scalar_t<V>>::tail), vabs(x))).value();
    return select(x < V(0.0f), x, V(0.0f)) - vmath::log1p_unit_narrow(t);
  }
  template <class V>
  NNF_HD static V bwd_narrow(V g, V x, const ActArgs<V>&) {
    return vmath::mul_sigmoid_narrow(g, -x);
  }
};

NNF_NS_END
