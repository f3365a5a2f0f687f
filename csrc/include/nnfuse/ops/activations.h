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
//   float32 fwd: Sigmoid 1.53, Tanh 1.59, Gelu 1.33, GeluTanh 1.53, Silu 1.64,
//         Selu 1.65, Hardswish 1.87, Softsign 1.46, Mish 1.50.
//   float32 bwd: Sigmoid 2.59, Tanh 2.83, Silu 3.00 (floor), Gelu 2.63 (floor),
//         Mish 1.73 (floor), Softplus 2.30, GeluTanh 2.39 (floor), Softsign 1.46.
//   Every float32 input with |x| in [2^-24, 16 .. 128] (csrc/tools/exhaustive_ulp.cpp,
//   docs/exhaustive.md): forward at most 1.79 (Gelu), backward at most 3.21
//   (Silu, floor).
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

namespace act_detail {
// GELU's float32 pieces (docs/fits/activation_pieces.py fits and prints them),
// for a = |x| <= 9, uniform in t = a (a + 3): piece i = round(0.2915 t), so
// they narrow like 1 / (2a + 3), as the relative change of e^(-a^2/2) does,
// and 32 of them reach a = 9. Rows as kMishPieces' (centre c_i, then the
// coefficients of (a - c_i)^j), degree 7.
// kGeluPieces: Phi(-a), relative error <= 2^-25.9.
// kGeluSlopePieces: D(a) = Phi(-a) - a phi(a), error <= 2^-26.1 of Phi(-a) +
// a phi(a) (D crosses zero at a = 0.7518, where only that measure is bounded).
NNF_TABLE float kGeluPieces[9][32] = {
    {2.377094030e-01f, 8.645269275e-01f, 1.510038972e+00f, 2.037136078e+00f, 2.494329453e+00f, 2.901412249e+00f, 3.272970200e+00f, 3.623360872e+00f, 3.947229624e+00f, 4.259215832e+00f, 4.543602943e+00f, 4.817208767e+00f, 5.085265160e+00f, 5.345992565e+00f, 5.589462280e+00f, 5.825680733e+00f,
     6.059386730e+00f, 6.280345440e+00f, 6.499866009e+00f, 6.712460995e+00f, 6.917081833e+00f, 7.116100311e+00f, 7.318639278e+00f, 7.508007050e+00f, 7.697960377e+00f, 7.880796432e+00f, 8.063111305e+00f, 8.240556717e+00f, 8.414196968e+00f, 8.585559845e+00f, 8.751437187e+00f, 8.922951698e+00f},  // centre c_i
    {4.060532451e-01f, 1.936492473e-01f, 6.551674008e-02f, 2.081820369e-02f, 6.309767719e-03f, 1.857424038e-03f, 5.321184872e-04f, 1.453998266e-04f, 3.953036139e-05f, 1.025726579e-05f, 2.765038971e-06f, 7.279017495e-07f, 1.835564092e-07f, 4.496144967e-08f, 1.138869177e-08f, 2.844013247e-09f,
     6.832075461e-10f, 1.689107881e-10f, 4.019579114e-11f, 9.568448464e-12f, 2.305208975e-12f, 5.551175296e-13f, 1.252489730e-13f, 3.001713664e-14f, 6.912761243e-15f, 1.626504535e-15f, 3.718837274e-16f, 8.570559278e-17f, 1.977977607e-17f, 4.519756640e-18f, 1.053262929e-18f, 2.270113956e-19f},  // c_i0
    {-3.878287375e-01f, -2.745445073e-01f, -1.275754422e-01f, -5.009168759e-02f, -1.777827181e-02f, -5.928197410e-03f, -1.882592449e-03f, -5.623925244e-04f, -1.650521008e-04f, -4.588380762e-05f, -1.312354834e-05f, -3.646697223e-06f, -9.671624639e-07f, -2.482680657e-07f, -6.558080656e-08f, -1.703124042e-08f,
     -4.247130203e-09f, -1.086496115e-09f, -2.671882715e-10f, -6.559610494e-11f, -1.626591917e-11f, -4.025466592e-12f, -9.331794235e-13f, -2.292362264e-13f, -5.408413788e-14f, -1.301837378e-14f, -3.043341099e-15f, -7.163763681e-16f, -1.687195531e-16f, -3.931768122e-17f, -9.334963169e-18f, -2.050450871e-18f},  // c_i1
    {4.609525949e-02f, 1.186755225e-01f, 9.632195532e-02f, 5.102179572e-02f, 2.217243239e-02f, 8.600072004e-03f, 3.080834402e-03f, 1.018875511e-03f, 3.257492790e-04f, 9.771452460e-05f, 2.981409671e-05f, 8.783452358e-06f, 2.459138841e-06f, 6.636198009e-07f, 1.832807470e-07f, 4.960930156e-08f,
     1.286750528e-08f, 3.411786187e-09f, 8.683444519e-10f, 2.201557686e-10f, 5.625637803e-11f, 1.432281897e-11f, 3.414803596e-12f, 8.605539241e-13f, 2.081689042e-13f, 5.129760955e-14f, 1.226940861e-14f, 2.951672440e-15f, 7.098203331e-16f, 1.687822468e-16f, 4.084719443e-17f, 9.148045166e-18f},  // c_i2
    {6.098467112e-02f, 1.155842748e-02f, -2.722072043e-02f, -2.629728988e-02f, -1.547210105e-02f, -7.329463493e-03f, -3.047392471e-03f, -1.136848354e-03f, -4.010930425e-04f, -1.310817024e-04f, -4.296706538e-05f, -1.349609465e-05f, -4.007236384e-06f, -1.141187909e-06f, -3.305482323e-07f, -9.349709984e-08f,
     -2.528186371e-08f, -6.961272447e-09f, -1.836836017e-09f, -4.816609334e-10f, -1.269984534e-10f, -3.330303741e-11f, -8.174994535e-12f, -2.115458199e-12f, -5.251416164e-13f, -1.325846442e-13f, -3.246911746e-14f, -7.988366879e-15f, -1.962722723e-15f, -4.764724970e-16f, -1.176000030e-16f, -2.686728621e-17f},  // c_i3
    {-1.130571123e-02f, -2.227436565e-02f, -5.778609775e-03f, 4.888722673e-03f, 5.952840671e-03f, 3.883175086e-03f, 1.980053261e-03f, 8.599924040e-04f, 3.415076644e-04f, 1.232887298e-04f, 4.383672058e-05f, 1.478895592e-05f, 4.684509804e-06f, 1.414514713e-06f, 4.313310740e-07f, 1.278946087e-07f,
     3.615140187e-08f, 1.036053998e-08f, 2.839814384e-09f, 7.715175721e-10f, 2.102187591e-10f, 5.685482987e-11f, 1.438687277e-11f, 3.826950909e-12f, 9.758273833e-13f, 2.526405734e-13f, 6.339777336e-14f, 1.596318123e-14f, 4.009880654e-15f, 9.944547966e-16f, 2.504583781e-16f, 5.840098942e-17f},  // c_i4
    {-8.578853682e-03f, 2.112844493e-03f, 5.827336572e-03f, 1.946181757e-03f, -6.477001589e-04f, -1.151734497e-03f, -8.390726289e-04f, -4.529423313e-04f, -2.094895754e-04f, -8.536686801e-05f, -3.340508192e-05f, -1.222762967e-05f, -4.166682174e-06f, -1.341589495e-06f, -4.328539944e-07f, -1.350479835e-07f,
     -4.002547982e-08f, -1.197683908e-08f, -3.417396366e-09f, -9.638847498e-10f, -2.718932302e-10f, -7.597942414e-11f, -1.984072628e-11f, -5.433056349e-12f, -1.424278447e-12f, -3.785587024e-13f, -9.741606664e-14f, -2.512356473e-14f, -6.457584796e-15f, -1.637432319e-15f, -4.211849625e-16f, -1.002342923e-16f},  // c_i5
    {1.820100471e-03f, 2.615723293e-03f, -6.709720474e-04f, -1.300846925e-03f, -5.275560543e-04f, 3.596523311e-05f, 1.924113894e-04f, 1.586671424e-04f, 9.244146349e-05f, 4.432412970e-05f, 1.953105311e-05f, 7.895556337e-06f, 2.922964086e-06f, 1.015520866e-06f, 3.485398281e-07f, 1.151732292e-07f,
     3.595209819e-08f, 1.126501115e-08f, 3.362893075e-09f, 9.873251106e-10f, 2.889094242e-10f, 8.349763936e-11f, 2.257221667e-11f, 6.365826269e-12f, 1.720251003e-12f, 4.697926618e-13f, 1.242101311e-13f, 3.284553551e-14f, 8.643518911e-15f, 2.240919259e-15f, 5.885270680e-16f, 1.434684157e-16f},  // c_i6
    {6.822494324e-04f, -5.482345005e-04f, -5.355537287e-04f, 2.052835043e-04f, 2.510010090e-04f, 9.167163807e-05f, 9.949456398e-06f, -2.355358811e-05f, -2.600967673e-05f, -1.663005969e-05f, -8.263443306e-06f, -3.844764706e-06f, -1.507650609e-06f, -6.019628813e-07f, -2.166409274e-07f, -7.702745819e-08f,
     -2.591774440e-08f, -8.301615395e-09f, -2.650967890e-09f, -8.119487305e-10f, -2.455577131e-10f, -7.212568737e-11f, -2.079133567e-11f, -5.933965992e-12f, -1.678581970e-12f, -4.660987850e-13f, -1.278588238e-13f, -3.468223159e-14f, -9.287928025e-15f, -2.444540262e-15f, -6.440847531e-16f, -1.677182543e-16f},  // c_i7
};
NNF_TABLE float kGeluSlopePieces[9][32] = {
    {2.364811599e-01f, 8.610751033e-01f, 1.505672216e+00f, 2.035223246e+00f, 2.489120245e+00f, 2.904783726e+00f, 3.273498297e+00f, 3.626271009e+00f, 3.951128006e+00f, 4.251536369e+00f, 4.548838615e+00f, 4.818475723e+00f, 5.086561680e+00f, 5.342442989e+00f, 5.589426041e+00f, 5.824653149e+00f,
     6.056958675e+00f, 6.279743671e+00f, 6.495427132e+00f, 6.714857101e+00f, 6.920582771e+00f, 7.114902496e+00f, 7.315553665e+00f, 7.508388042e+00f, 7.694410801e+00f, 7.878715992e+00f, 8.062984467e+00f, 8.239321709e+00f, 8.414925575e+00f, 8.582709312e+00f, 8.756533623e+00f, 8.921265602e+00f},  // centre c_i
    {3.147887588e-01f, -4.251020402e-02f, -1.272800863e-01f, -8.143140376e-02f, -3.842740878e-02f, -1.521487348e-02f, -5.620894488e-03f, -1.874216017e-03f, -6.032870151e-04f, -1.909414423e-04f, -5.559560304e-05f, -1.674129635e-05f, -4.704892035e-06f, -1.305907631e-06f, -3.552422356e-07f, -9.693508218e-08f,
     -2.541229271e-08f, -6.679184317e-09f, -1.744887457e-09f, -4.240269524e-10f, -1.076267409e-10f, -2.832599086e-11f, -6.854447565e-12f, -1.686347893e-12f, -4.205632153e-13f, -1.026095441e-13f, -2.419124912e-14f, -5.876232626e-15f, -1.391427375e-15f, -3.411780684e-16f, -7.716848667e-17f, -1.833938662e-17f},  // c_i0
    {-7.541884184e-01f, -3.465584815e-01f, 3.429393098e-02f, 1.077218354e-01f, 7.556716353e-02f, 3.779264539e-02f, 1.637994312e-02f, 6.204788107e-03f, 2.212269930e-03f, 7.621104596e-04f, 2.395345509e-04f, 7.690369966e-05f, 2.293742546e-05f, 6.715648851e-06f, 1.918081580e-06f, 5.470138831e-07f,
     1.495021564e-07f, 4.082717808e-08f, 1.105268055e-08f, 2.781385566e-09f, 7.286504733e-10f, 1.974008873e-10f, 4.917267288e-11f, 1.242931712e-11f, 3.179509390e-12f, 7.949943330e-13f, 1.919623721e-13f, 4.768224932e-14f, 1.153879611e-14f, 2.887414615e-15f, 6.666886743e-16f, 1.615037985e-16f},  // c_i1
    {1.809165478e-01f, 3.863143921e-01f, 1.675382257e-01f, -7.273379248e-03f, -4.921748862e-02f, -3.783732280e-02f, -2.065783739e-02f, -9.232133627e-03f, -3.728301963e-03f, -1.418513246e-03f, -4.865092633e-04f, -1.678147091e-04f, -5.344911915e-05f, -1.658722795e-05f, -4.993854873e-06f, -1.493286618e-06f,
     -4.266583744e-07f, -1.213433620e-07f, -3.410966087e-08f, -8.904867066e-09f, -2.411467914e-09f, -6.733583136e-10f, -1.728801269e-10f, -4.494581096e-11f, -1.180455993e-11f, -3.027504896e-12f, -7.493317490e-13f, -1.904719736e-13f, -4.713799338e-14f, -1.204511514e-14f, -2.840767875e-15f, -7.018396416e-16f},  // c_i2
    {2.335197031e-01f, -2.938972041e-02f, -1.440383196e-01f, -6.568921357e-02f, -2.951456700e-03f, 1.578291319e-02f, 1.372484863e-02f, 7.871576585e-03f, 3.750007832e-03f, 1.613422181e-03f, 6.136458251e-04f, 2.298774925e-04f, 7.883504441e-05f, 2.609658441e-05f, 8.323342627e-06f, 2.620069836e-06f,
     7.852293606e-07f, 2.332231759e-07f, 6.823405840e-08f, 1.851940468e-08f, 5.193304453e-09f, 1.496896940e-09f, 3.966658113e-10f, 1.061990704e-10f, 2.866795690e-11f, 7.548984007e-12f, 1.916942733e-12f, 4.990342449e-13f, 1.263947307e-13f, 3.300252460e-14f, 7.955408827e-15f, 2.005637859e-15f},  // c_i3
    {-6.646022201e-02f, -1.026581824e-01f, 1.447192952e-02f, 4.437584057e-02f, 2.197903022e-02f, 2.572324360e-03f, -3.833614988e-03f, -3.890657565e-03f, -2.407921944e-03f, -1.225251588e-03f, -5.308170803e-04f, -2.195215056e-04f, -8.202488971e-05f, -2.921253872e-05f, -9.935197340e-06f, -3.309058229e-06f,
     -1.044588430e-06f, -3.251166447e-07f, -9.927885003e-08f, -2.808238087e-08f, -8.171664234e-09f, -2.435545321e-09f, -6.671955766e-10f, -1.842052205e-10f, -5.117114024e-11f, -1.385016147e-11f, -3.611871002e-12f, -9.638423957e-13f, -2.500456981e-13f, -6.676267612e-14f, -1.645997961e-14f, -4.237255214e-15f},  // c_i4
    {-4.913436994e-02f, 2.618896402e-02f, 2.892346866e-02f, -4.267385695e-03f, -1.174411178e-02f, -6.149508525e-03f, -1.232657698e-03f, 7.369466475e-04f, 9.265683475e-04f, 6.254725158e-04f, 3.252401075e-04f, 1.527089189e-04f, 6.334581121e-05f, 2.457697519e-05f, 8.994489690e-06f, 3.191304813e-06f,
     1.066703248e-06f, 3.495666476e-07f, 1.117750088e-07f, 3.304031537e-08f, 1.000030014e-08f, 3.090227629e-09f, 8.764619031e-10f, 2.499370433e-10f, 7.156632925e-11f, 1.993888735e-11f, 5.344746781e-12f, 1.463641816e-12f, 3.892646567e-13f, 1.063872094e-13f, 2.683535563e-14f, 7.060755687e-15f},  // c_i5
    {1.425943896e-02f, 1.492646150e-02f, -1.025636867e-02f, -7.080353796e-03f, 8.344476228e-04f, 2.701972844e-03f, 1.574866124e-03f, 3.946682555e-04f, -1.036924878e-04f, -1.889330888e-04f, -1.375101274e-04f, -7.783601177e-05f, -3.713097249e-05f, -1.602533666e-05f, -6.403438874e-06f, -2.444194479e-06f,
     -8.721008840e-07f, -3.022963426e-07f, -1.018070179e-07f, -3.164030815e-08f, -9.989611804e-09f, -3.205480770e-09f, -9.447991278e-10f, -2.789212472e-10f, -8.240323701e-11f, -2.365725497e-11f, -6.539628214e-12f, -1.839216062e-12f, -5.020610121e-13f, -1.404612510e-13f, -3.637238419e-14f, -9.778369419e-15f},  // c_i6
    {7.158855442e-03f, -5.861744285e-03f, -2.195885638e-03f, 2.782211173e-03f, 1.384389354e-03f, -4.163451667e-04f, -4.654154473e-04f, -2.666579385e-04f, -1.218310063e-04f, -3.209373517e-06f, 3.518204176e-05f, 2.796528679e-05f, 1.589032763e-05f, 7.884184924e-06f, 3.504026608e-06f, 1.446925353e-06f,
     5.626809525e-07f, 2.003194624e-07f, 7.247716383e-08f, 2.462041238e-08f, 8.152758468e-09f, 2.601971305e-09f, 8.197045265e-10f, 2.511950370e-10f, 7.538455971e-11f, 2.211940006e-11f, 6.435917337e-12f, 1.846365725e-12f, 5.199068173e-13f, 1.463188972e-13f, 4.027461077e-14f, 1.089321809e-14f},  // c_i7
};
// key = 1.5 2^23 + i for piece i = round(0.2915 a (a + 3)) (the outer fma
// rounds to an integer), 0 <= i <= 31 for 0 <= a <= 9.
template <class V>
NNF_HD V gelu_piece_key(V a) {
  return fma(fma(a, V(0.2915f), V(0.8745f)), a, V(vmath::kIntegerShift));
}
// GELU-tanh's pieces, the same way for its gate S(a) = sigmoid(-w(a)), w =
// 2u = 2 sqrt(2/pi) (a + 0.044715 a^3), whose logarithm falls like w: the
// pieces are uniform in w, i = round(0.7475 w), and 32 of them reach a = 7.5.
// kGeluTanhPieces: S(a), relative error <= 2^-27.1.
// kGeluTanhSlopePieces: S(a) - a w'(a) S(a) (1 - S(a)), error <= 2^-25.5 of
// the sum of the magnitudes of its terms (zero at a = 0.7518).
NNF_TABLE float kGeluTanhPieces[9][32] = {
    {2.040944993e-01f, 8.022695780e-01f, 1.514991522e+00f, 2.097890615e+00f, 2.567055702e+00f, 2.985175133e+00f, 3.340690136e+00f, 3.662940025e+00f, 3.949069738e+00f, 4.205782890e+00f, 4.446398735e+00f, 4.668508053e+00f, 4.877118111e+00f, 5.068576813e+00f, 5.254499435e+00f, 5.426447868e+00f,
     5.594676495e+00f, 5.748042107e+00f, 5.902238369e+00f, 6.043001652e+00f, 6.187052727e+00f, 6.320378780e+00f, 6.448334694e+00f, 6.574993610e+00f, 6.693253517e+00f, 6.814812183e+00f, 6.927537918e+00f, 7.038658142e+00f, 7.145503521e+00f, 7.253736019e+00f, 7.356578827e+00f, 7.457294941e+00f},  // centre c_i
    {4.191425443e-01f, 2.113040984e-01f, 6.502839178e-02f, 1.787041500e-02f, 4.949587863e-03f, 1.277196337e-03f, 3.382868890e-04f, 8.678235463e-05f, 2.262832095e-05f, 6.023350124e-06f, 1.564349304e-06f, 4.087293632e-07f, 1.059265458e-07f, 2.832040202e-08f, 7.289703507e-09f, 1.939038929e-09f,
     4.966396738e-10f, 1.352474105e-10f, 3.449950048e-11f, 9.406304728e-12f, 2.359332781e-12f, 6.246241588e-13f, 1.667465265e-13f, 4.314962694e-14f, 1.172548387e-14f, 2.946848588e-15f, 7.878470495e-16f, 2.068557160e-16f, 5.520770168e-17f, 1.397717521e-17f, 3.663635045e-18f, 9.558943620e-19f},  // c_i0
    {-3.906801641e-01f, -2.889040112e-01f, -1.268944293e-01f, -4.454280436e-02f, -1.480681635e-02f, -4.468757659e-03f, -1.347540645e-03f, -3.877012059e-04f, -1.116487038e-04f, -3.241910963e-05f, -9.116891306e-06f, -2.559174845e-06f, -7.083907008e-07f, -2.009385014e-07f, -5.471679287e-08f, -1.531682337e-08f,
     -4.120158881e-09f, -1.172386188e-09f, -3.123242498e-10f, -8.854104949e-11f, -2.309804605e-11f, -6.338087607e-12f, -1.750302811e-12f, -4.681687438e-13f, -1.311586880e-13f, -3.399861501e-14f, -9.350869349e-15f, -2.523867651e-15f, -6.915051515e-16f, -1.797343298e-16f, -4.828955677e-17f, -1.290472728e-17f},  // c_i1
    {4.005437344e-02f, 1.159663424e-01f, 9.548024088e-02f, 4.662048072e-02f, 1.933090389e-02f, 6.992715877e-03f, 2.441170858e-03f, 7.979141083e-04f, 2.563039889e-04f, 8.182033343e-05f, 2.507721183e-05f, 7.603402082e-06f, 2.258115273e-06f, 6.821202874e-07f, 1.971537102e-07f, 5.824279725e-08f,
     1.649578429e-08f, 4.914974205e-09f, 1.370148439e-09f, 4.045482005e-10f, 1.099410563e-10f, 3.131133200e-11f, 8.956110159e-12f, 2.479058625e-12f, 7.167560816e-13f, 1.918268875e-13f, 5.432390242e-14f, 1.508531290e-14f, 4.246285432e-15f, 1.133910830e-15f, 3.124776540e-16f, 8.558204509e-17f},  // c_i2
    {6.264720112e-02f, 1.674537547e-02f, -2.705524303e-02f, -2.474468760e-02f, -1.394151524e-02f, -6.313974503e-03f, -2.620017156e-03f, -9.914620314e-04f, -3.602017532e-04f, -1.277619158e-04f, -4.304241156e-05f, -1.419314594e-05f, -4.548281595e-06f, -1.469931362e-06f, -4.527700526e-07f, -1.416334783e-07f,
     -4.236267870e-08f, -1.324969734e-08f, -3.874035315e-09f, -1.193635080e-09f, -3.385499936e-10f, -1.002333425e-10f, -2.973796556e-11f, -8.529626658e-12f, -2.548033399e-12f, -7.048617874e-13f, -2.057329594e-13f, -5.883190663e-14f, -1.702766448e-14f, -4.675301267e-15f, -1.322462376e-15f, -3.714577228e-16f},  // c_i3
    {-1.004683133e-02f, -2.287878655e-02f, -5.315054208e-03f, 5.153526552e-03f, 5.530578550e-03f, 3.477615071e-03f, 1.802145969e-03f, 8.145885076e-04f, 3.418784763e-04f, 1.368075318e-04f, 5.126468386e-05f, 1.855421215e-05f, 6.463283171e-06f, 2.248012152e-06f, 7.416545031e-07f, 2.466799742e-07f,
     7.820131032e-08f, 2.575167102e-08f, 7.918703027e-09f, 2.551905354e-09f, 7.570014060e-10f, 2.334117344e-10f, 7.194675411e-11f, 2.141560540e-11f, 6.618668287e-12f, 1.894843006e-12f, 5.706408111e-13f, 1.682124085e-13f, 5.010697600e-14f, 1.415821755e-14f, 4.113973803e-15f, 1.185968734e-15f},  // c_i4
    {-9.237060323e-03f, 1.331160427e-03f, 5.642135162e-03f, 1.401185757e-03f, -7.188096642e-04f, -1.058993395e-03f, -7.825487992e-04f, -4.501319199e-04f, -2.264596260e-04f, -1.046870238e-04f, -4.442377758e-05f, -1.788956615e-05f, -6.841000868e-06f, -2.581525450e-06f, -9.182956546e-07f, -3.264780162e-07f,
     -1.101484841e-07f, -3.833779161e-08f, -1.244125070e-08f, -4.207663551e-09f, -1.307912778e-09f, -4.208766669e-10f, -1.350353024e-10f, -4.177979490e-11f, -1.338578120e-11f, -3.970973723e-12f, -1.235131897e-12f, -3.757875359e-13f, -1.153630549e-13f, -3.356338577e-14f, -1.002658734e-14f, -2.969089979e-15f},  // c_i5
    {1.706336509e-03f, 2.878094325e-03f, -7.942428929e-04f, -1.122047775e-03f, -3.845164611e-04f, 5.046143997e-05f, 1.744340407e-04f, 1.561428799e-04f, 1.027049075e-04f, 5.744180817e-05f, 2.847299947e-05f, 1.304602756e-05f, 5.563441846e-06f, 2.304481313e-06f, 8.925040333e-07f, 3.417711127e-07f,
     1.234518265e-07f, 4.562169664e-08f, 1.570555952e-08f, 5.580885976e-09f, 1.828136087e-09f, 6.159310839e-10f, 2.060766280e-10f, 6.644409328e-11f, 2.207405439e-11f, 6.804558219e-12f, 2.190393049e-12f, 6.889216302e-13f, 2.178971928e-13f, 6.551028031e-14f, 2.014489649e-14f, 6.133554883e-15f},  // c_i6
    {2.215688117e-03f, -5.300123594e-04f, -4.666932218e-04f, 1.881554635e-04f, 1.796100260e-04f, 7.023185753e-05f, 1.645140401e-05f, -1.868183062e-05f, -2.672609844e-05f, -2.290837256e-05f, -1.356310622e-05f, -6.959433904e-06f, -3.501463198e-06f, -1.575611009e-06f, -6.711537708e-07f, -2.778955377e-07f,
     -1.119710404e-07f, -4.299398526e-08f, -1.577250508e-08f, -5.567927897e-09f, -2.048716974e-09f, -7.247943357e-10f, -2.521866604e-10f, -8.583619232e-11f, -2.846831278e-11f, -9.345781961e-12f, -3.141841171e-12f, -1.016839933e-12f, -3.241297205e-13f, -1.046003833e-13f, -3.328417999e-14f, -1.042462422e-14f},  // c_i7
};
NNF_TABLE float kGeluTanhSlopePieces[9][32] = {
    {2.158659101e-01f, 8.117399216e-01f, 1.508274436e+00f, 2.095921755e+00f, 2.569556236e+00f, 2.992170334e+00f, 3.342228174e+00f, 3.659523487e+00f, 3.942630529e+00f, 4.203972340e+00f, 4.446072578e+00f, 4.667146683e+00f, 4.877642632e+00f, 5.070312977e+00f, 5.250074863e+00f, 5.423994064e+00f,
     5.591513634e+00f, 5.749331951e+00f, 5.898780346e+00f, 6.047843456e+00f, 6.183178902e+00f, 6.317614079e+00f, 6.447593212e+00f, 6.571868420e+00f, 6.693110466e+00f, 6.814080238e+00f, 6.927503109e+00f, 7.040508747e+00f, 7.145740509e+00f, 7.252682209e+00f, 7.356893539e+00f, 7.455224037e+00f},  // centre c_i
    {3.304239810e-01f, -2.414986119e-02f, -1.274467260e-01f, -7.578530908e-02f, -3.288652375e-02f, -1.183504052e-02f, -4.142532591e-03f, -1.350765349e-03f, -4.300235014e-04f, -1.314575784e-04f, -3.903982724e-05f, -1.162880562e-05f, -3.338185024e-06f, -9.789054047e-07f, -2.890320161e-07f, -8.266569296e-08f,
     -2.311871405e-08f, -6.534176755e-09f, -1.863460497e-09f, -5.033038430e-10f, -1.457309412e-10f, -4.050763544e-11f, -1.120314258e-11f, -3.135597467e-12f, -8.674888607e-13f, -2.306186654e-13f, -6.401620905e-14f, -1.717820256e-14f, -4.871910743e-15f, -1.306834407e-15f, -3.501685820e-16f, -9.790319810e-17f},  // c_i0
    {-7.611781955e-01f, -3.843845427e-01f, 3.329937160e-02f, 1.065855920e-01f, 6.938648969e-02f, 3.231625259e-02f, 1.355716027e-02f, 5.128390156e-03f, 1.846577507e-03f, 6.283649709e-04f, 2.050984913e-04f, 6.635547470e-05f, 2.054679317e-05f, 6.442733138e-06f, 2.021195314e-06f, 6.120142189e-07f,
     1.805692449e-07f, 5.360949373e-08f, 1.600142774e-08f, 4.518442509e-09f, 1.361147084e-09f, 3.932393022e-10f, 1.128195107e-10f, 3.268402562e-11f, 9.346574729e-12f, 2.566862304e-12f, 7.342462142e-13f, 2.029283452e-13f, 5.913393148e-14f, 1.629927713e-14f, 4.483205629e-15f, 1.284406880e-15f},  // c_i1
    {1.670285165e-01f, 3.879598975e-01f, 1.663089842e-01f, -1.554308925e-02f, -4.936433211e-02f, -3.522467613e-02f, -1.887185872e-02f, -8.583257906e-03f, -3.575660521e-03f, -1.376303262e-03f, -4.996418720e-04f, -1.771593379e-04f, -5.960349154e-05f, -2.009923082e-05f, -6.731087524e-06f, -2.166499598e-06f,
     -6.766882166e-07f, -2.116579338e-07f, -6.628861371e-08f, -1.961513085e-08f, -6.159405430e-09f, -1.852789477e-09f, -5.522901025e-10f, -1.658455179e-10f, -4.908562792e-11f, -1.394273325e-11f, -4.114266653e-12f, -1.172304224e-12f, -3.513084734e-13f, -9.958599565e-14f, -2.813988463e-14f, -8.266767127e-15f},  // c_i2
    {2.395020723e-01f, -1.056842227e-02f, -1.408395171e-01f, -5.605097115e-02f, 1.205346431e-03f, 1.630901732e-02f, 1.357691176e-02f, 8.026385680e-03f, 4.031219985e-03f, 1.801500330e-03f, 7.405522629e-04f, 2.914891229e-04f, 1.076151821e-04f, 3.932338223e-05f, 1.414313829e-05f, 4.863397407e-06f,
     1.615034080e-06f, 5.341092333e-07f, 1.760530495e-07f, 5.474021236e-08f, 1.795827309e-08f, 5.636152434e-09f, 1.748774570e-09f, 5.452039376e-10f, 1.672554456e-10f, 4.920527527e-11f, 1.499616056e-11f, 4.410226091e-12f, 1.360464801e-12f, 3.969910067e-13f, 1.153414658e-13f, 3.477232540e-14f},  // c_i3
    {-6.263101846e-02f, -1.079762354e-01f, 1.527469326e-02f, 4.051177949e-02f, 1.826771535e-02f, 1.371459337e-03f, -4.063820932e-03f, -4.180198070e-03f, -2.795785433e-03f, -1.526086009e-03f, -7.324175094e-04f, -3.265021369e-04f, -1.342138276e-04f, -5.370847430e-05f, -2.091510214e-05f, -7.734889550e-06f,
     -2.745894790e-06f, -9.644461443e-07f, -3.358373135e-07f, -1.100863898e-07f, -3.783422642e-08f, -1.241897785e-08f, -4.019510502e-09f, -1.303474439e-09f, -4.151750888e-10f, -1.266987210e-10f, -3.993467709e-11f, -1.213696765e-11f, -3.858288255e-12f, -1.160194770e-12f, -3.469168854e-13f, -1.074189091e-13f},  // c_i4
    {-5.182726681e-02f, 2.313908003e-02f, 2.671906725e-02f, -5.719012581e-03f, -1.016596425e-02f, -5.291323178e-03f, -1.185414731e-03f, 7.218068931e-04f, 1.072628307e-03f, 8.225488709e-04f, 4.925428075e-04f, 2.575667459e-04f, 1.208328977e-04f, 5.382428208e-05f, 2.296270031e-05f, 9.219030289e-06f,
     3.520619202e-06f, 1.321172249e-06f, 4.882425628e-07f, 1.694356655e-07f, 6.125858931e-08f, 2.108519581e-08f, 7.136075286e-09f, 2.412520850e-09f, 7.994929163e-10f, 2.534184529e-10f, 8.274809310e-11f, 2.602050519e-11f, 8.538245631e-12f, 2.649805072e-12f, 8.159858423e-13f, 2.597936243e-13f},  // c_i5
    {1.391563192e-02f, 1.674939692e-02f, -1.041446812e-02f, -5.023831967e-03f, 9.963755729e-04f, 2.250326797e-03f, 1.506773639e-03f, 5.253917188e-04f, -4.145923231e-05f, -2.241881884e-04f, -2.102575963e-04f, -1.407746749e-04f, -7.901521894e-05f, -4.031654680e-05f, -1.921316107e-05f, -8.494953363e-06f,
     -3.527738500e-06f, -1.426555741e-06f, -5.625356607e-07f, -2.082353774e-07f, -7.935552304e-08f, -2.878940819e-08f, -1.023065455e-08f, -3.615472366e-09f, -1.248946169e-09f, -4.126568809e-10f, -1.399040883e-10f, -4.561737793e-11f, -1.545996664e-11f, -4.956055098e-12f, -1.576361871e-12f, -5.164428997e-13f},  // c_i6
    {8.373672143e-03f, -5.803416483e-03f, -1.429546741e-03f, 2.426742809e-03f, 8.350122371e-04f, -2.268705284e-04f, -4.254599917e-04f, -3.691067395e-04f, -1.783094049e-04f, -2.558330607e-06f, 2.751581633e-05f, 5.332001456e-05f, 3.310998363e-05f, 2.006754767e-05f, 1.114822044e-05f, 5.463235993e-06f,
     2.787757921e-06f, 1.208184585e-06f, 5.149376534e-07f, 2.065109470e-07f, 7.667247104e-08f, 3.048010555e-08f, 1.155051788e-08f, 4.256611508e-09f, 1.523468351e-09f, 5.476265552e-10f, 1.912804082e-10f, 6.616886900e-11f, 2.240492861e-11f, 7.307525245e-12f, 2.485412483e-12f, 8.249578863e-13f},  // c_i7
};
// key = 1.5 2^23 + round(0.7475 w(a)), w(a) as a (k1 + k2 a^2) with k1, k2
// the products rounded to float; 0 <= i <= 31 for 0 <= a <= 7.5.
template <class V>
NNF_HD V gelu_tanh_piece_key(V a) {
  return fma(fma(a * a, V(0.053337727f), V(1.1928375f)), a, V(vmath::kIntegerShift));
}

// Both GELUs are y = x G(x) with a gate G(x) = 1 - G(-x), so with a = |x|
// and the gate's tail G(-a) from a table (P): y = -a P for x < 0, x - a P
// for x >= 0. On the far pieces a P changes by up to e^(+-0.74) across a
// piece, so the last Horner steps are not small corrections and their
// roundings add up (GELU with P rounded once: 2.27 ulp at x = -7.6 simulated
// on 4 million points, 2.15 measured on 3 million inputs). For x < 0 the
// last step is carried as hi + lo (lo its rounding error, to first order
// where c0 - hi is inexact) and y = -(a hi + a lo) is rounded once: 1.52
// ulp on the same simulation, 1.79 over every float (at a piece's edge).
// For x >= 0, a P <= x / 2 weighs P's error by at most 1, and x - a hi is
// rounded once (x = -0 gives -0). The caller clamps a at the pieces' end
// for large positive x, where a P(a) is far below half an ulp of x, so y =
// x (+inf too).
template <class V>
NNF_HD V gate_pieces_forward(const float (*table)[32], V x, V a, V key) {
  V d = a - vmath::row_lookup(table[0], key);
  V q = vmath::table_horner<2, 8>(table, key, d);
  V c0 = vmath::row_lookup(table[1], key);
  V hi = fma(q, d, c0);
  V lo = fma(q, d, c0 - hi);
  return fma(-a, hi, select(x < V(0.0f), -a * lo, x));
}
// y' = G(x) + x G'(x) = D(a) for x < 0, 1 - D(a) for x >= 0, D(a) = G(-a) -
// a G'(-a) from a table: g D, or g (1 - D) with 1 - D >= 1/2 rounded before
// the product (fma(-g, D, g) would give inf - inf for g = inf).
template <class V>
NNF_HD V gate_pieces_backward(const float (*table)[32], V g, V x, V a, V key) {
  V d = a - vmath::row_lookup(table[0], key);
  V D = vmath::table_horner<1, 8>(table, key, d);
  return g * select(x < V(0.0f), D, V(1.0f) - D);
}
}  // namespace act_detail

// Gelu (exact): y = x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2;
// y' = Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi).
// With a = |x|, E = e^(-a^2/2) (exact square) and R(a) = Phi(-a) e^(a^2/2):
// Phi(-a) = E R, so y = x<0 ? x E R : x - x E R, and with D = E (R - a/sqrt(2 pi)),
// y' = x<0 ? D : 1 - D. No 1 + erf(x) cancellation anywhere. y' has an interior
// zero at x = -0.7518 where R - a/sqrt(2 pi) cancels.
// float32 inputs x >= -9 (nearly every input of a network; 99.9% of a normal
// sample with standard deviation 3) skip the exponential: Phi(-a) and D(a)
// come from polynomial pieces (kGeluPieces, kGeluSlopePieces), with a clamped
// to 9 for x > 9, where y = x and y' = 1 already (Phi(-9) < 2^-62). The
// formulas above serve x < -9 and NaN, lane by lane, so each lane's bits
// depend on its x alone. 2^20 elements, 1 thread, ns per element: AVX-512
// forward 0.557 -> 0.442, backward 0.572 -> 0.470; the AVX2 path, whose
// 32-entry lookup takes seven operations a row, pays for it (1.16 -> 1.43
// both ways), which every ISA must share to return the same bits.
struct Gelu {
  static constexpr bool has_bwd_from_y = false;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    if constexpr (std::is_same_v<scalar_t<V>, float>) {
      auto fast = x >= V(-kPiecesEnd);
      V y = fwd_pieces(x);
      return all_lanes(fast) ? y : select(fast, y, fwd_impl<false>(x));
    } else {
      return fwd_impl<false>(x);
    }
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>&) {
    if constexpr (std::is_same_v<scalar_t<V>, float>) {
      auto fast = x >= V(-kPiecesEnd);
      V y = bwd_pieces(g, x);
      return all_lanes(fast) ? y : select(fast, y, bwd_impl<false>(g, x));
    } else {
      return bwd_impl<false>(g, x);
    }
  }
  // float16 / bfloat16 outputs: the same formulas with the tails of
  // vmath::gelu_tail_narrow (relative error <= 2^-15, see there), which are
  // cheaper than the float32 pieces (bfloat16, 2^20 elements, 1 thread:
  // forward 0.46 ns per element against 0.57 through the pieces).
  template <class V>
  NNF_HD static V fwd_narrow(V x, const ActArgs<V>&) {
    return fwd_impl<true>(x);
  }
  template <class V>
  NNF_HD static V bwd_narrow(V g, V x, const ActArgs<V>&) {
    return bwd_impl<true>(g, x);
  }

 private:
  static constexpr float kPiecesEnd = 9.0f;
  template <class V>
  NNF_HD static V fwd_pieces(V x) {
    V a = vmin(V(kPiecesEnd), vabs(x));
    return act_detail::gate_pieces_forward(act_detail::kGeluPieces, x, a, act_detail::gelu_piece_key(a));
  }
  template <class V>
  NNF_HD static V bwd_pieces(V g, V x) {
    V a = vmin(V(kPiecesEnd), vabs(x));
    return act_detail::gate_pieces_backward(act_detail::kGeluSlopePieces, g, x, a, act_detail::gelu_piece_key(a));
  }
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
// float32 inputs x >= -7.5 (99.4% of a normal sample with standard
// deviation 3) skip the exponential and the division: the gate's tail and
// the derivative's come from polynomial pieces (kGeluTanhPieces,
// kGeluTanhSlopePieces) as GELU's, a clamped to 7.5 for x > 7.5, where y = x
// and y' = 1 already (S(7.5) < 2^-60); the formulas below serve x < -7.5
// and NaN, lane by lane. 2^20 elements, 1 thread, ns per element: AVX-512
// forward 0.704 -> 0.516, backward 1.030 -> 0.590; AVX2 1.66 -> 1.55 and
// 2.06 -> 1.62.
struct GeluTanh {
  static constexpr bool has_bwd_from_y = false;
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    if constexpr (std::is_same_v<scalar_t<V>, float>) {
      auto fast = x >= V(-kPiecesEnd);
      V y = fwd_pieces(x);
      return all_lanes(fast) ? y : select(fast, y, fwd_exp(x));
    } else {
      return fwd_exp(x);
    }
  }
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>&) {
    if constexpr (std::is_same_v<scalar_t<V>, float>) {
      auto fast = x >= V(-kPiecesEnd);
      V y = bwd_pieces(g, x);
      return all_lanes(fast) ? y : select(fast, y, bwd_impl(g, x));
    } else {
      return bwd_impl(g, x);
    }
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
 private:
  static constexpr float kPiecesEnd = 7.5f;
  template <class V>
  NNF_HD static V fwd_pieces(V x) {
    V a = vmin(V(kPiecesEnd), vabs(x));
    return act_detail::gate_pieces_forward(act_detail::kGeluTanhPieces, x, a, act_detail::gelu_tanh_piece_key(a));
  }
  template <class V>
  NNF_HD static V bwd_pieces(V g, V x) {
    V a = vmin(V(kPiecesEnd), vabs(x));
    return act_detail::gate_pieces_backward(act_detail::kGeluTanhSlopePieces, g, x, a,
                                            act_detail::gelu_tanh_piece_key(a));
  }
  template <class V>
  NNF_HD static V fwd_exp(V x) {
    V a = vmin(V(vmath::Limits<scalar_t<V>>::gelu_tanh), vabs(x));
    act_detail::TanhGeluArg<V> w = act_detail::tanh_gelu_arg(a);
    V m = vmax(V(-vmath::Limits<scalar_t<V>>::gelu_tanh), x);
    return vmath::mul_sigmoid_abs<true>(m, x <= V(0.0f), w.w, w.wl);
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

// Mish's float32 pieces (docs/fits/activation_pieces.py fits and prints them): on
// piece i, row 0 holds its centre c_i and row j + 1 the coefficient of
// (x - c_i)^j. c_i is a float near the piece's middle where the function is
// within 1e-3 ulp of a float, so the constant term is all but exact; not on
// the last pieces (x > 8.4), where the function is within 2^-20 of 1 and too
// flat for such a float to exist: there up to 0.25 ulp.
// kMishPieces: f(x) = tanh(softplus(x)), 32 pieces of width 5/8 covering
// [-9.6875, 10.3125), degree 6, relative error <= 2^-26.0.
// kMishSlopePieces: mish'(x), 32 pieces of width 3/4 covering [-9.375,
// 14.625), degree 7, error <= 2^-25.0 of |f| + |x f'| (mish' crosses zero
// at x = -1.1924, where only that measure is bounded).
NNF_TABLE float kMishPieces[8][32] = {
    {-9.386750221e+00f, -8.743719101e+00f, -8.119912148e+00f, -7.505587578e+00f, -6.868412495e+00f, -6.243806362e+00f, -5.619731426e+00f, -5.008887291e+00f, -4.375231266e+00f, -3.745325089e+00f, -3.128781319e+00f, -2.498762608e+00f, -1.876437545e+00f, -1.257437468e+00f, -6.244062781e-01f, 2.206250094e-03f,
     6.338312626e-01f, 1.253487468e+00f, 1.870818734e+00f, 2.490881205e+00f, 3.134706259e+00f, 3.756343842e+00f, 4.373624802e+00f, 4.990043640e+00f, 5.631193638e+00f, 6.260418892e+00f, 6.871543884e+00f, 7.512499809e+00f, 8.114737511e+00f, 8.737500191e+00f, 9.387499809e+00f, 1.001249981e+01f},  // centre c_i
    {8.382392116e-05f, 1.594470232e-04f, 2.975105308e-04f, 5.498513347e-04f, 1.039586030e-03f, 1.940561226e-03f, 3.619042225e-03f, 6.656030659e-03f, 1.250604354e-02f, 2.334888279e-02f, 4.281403124e-02f, 7.881981879e-02f, 1.415275782e-01f, 2.451795340e-01f, 4.044080675e-01f, 6.007059216e-01f,
     7.854577899e-01f, 9.059833884e-01f, 9.650069475e-01f, 9.883636236e-01f, 9.965285659e-01f, 9.989576340e-01f, 9.996901155e-01f, 9.999086261e-01f, 9.999744892e-01f, 9.999927282e-01f, 9.999978542e-01f, 9.999994040e-01f, 9.999998212e-01f, 9.999999404e-01f, 1.000000000e+00f, 1.000000000e+00f},  // c_i0
    {8.382040687e-05f, 1.594343194e-04f, 2.974662639e-04f, 5.497001112e-04f, 1.039045164e-03f, 1.938674715e-03f, 3.612469882e-03f, 6.633732002e-03f, 1.242686808e-02f, 2.306996845e-02f, 4.185867310e-02f, 7.547315210e-02f, 1.301386356e-01f, 2.081054151e-01f, 2.917385101e-01f, 3.199286163e-01f,
     2.502726316e-01f, 1.393956840e-01f, 5.958554149e-02f, 2.136733010e-02f, 6.641814951e-03f, 2.036065562e-03f, 6.119594909e-04f, 1.815044379e-04f, 5.083873111e-05f, 1.451574735e-05f, 4.287080628e-06f, 1.191444539e-06f, 3.575187577e-07f, 1.029327734e-07f, 2.805858479e-08f, 8.039862109e-09f},  // c_i1
    {4.190668915e-05f, 7.970444858e-05f, 1.486888505e-04f, 2.746988030e-04f, 5.189817166e-04f, 9.674507310e-04f, 1.799662714e-03f, 3.294568742e-03f, 6.134276744e-03f, 1.125629339e-02f, 1.997650042e-02f, 3.441889212e-02f, 5.398230627e-02f, 6.971655041e-02f, 5.384342372e-02f, -1.630348898e-02f,
     -8.505848795e-02f, -8.276192844e-02f, -4.585148394e-02f, -1.868582703e-02f, -6.204290781e-03f, -1.964250579e-03f, -6.003452581e-04f, -1.796474680e-04f, -5.056725058e-05f, -1.447407158e-05f, -4.280067060e-06f, -1.190718194e-06f, -3.571721550e-07f, 1.269680865e-06f, -2.396890523e-06f, -6.867748539e-07f},  // c_i2
    {1.396649986e-05f, 2.655909884e-05f, 4.953308235e-05f, 9.146374214e-05f, 1.726295159e-04f, 3.212231968e-04f, 5.955015076e-04f, 1.083326526e-03f, 1.992006786e-03f, 3.566647647e-03f, 6.026959978e-03f, 9.298656136e-03f, 1.097388938e-02f, 3.460859414e-03f, -2.325110696e-02f, -4.585955665e-02f,
     -1.865803823e-02f, 1.642717049e-02f, 1.913334802e-02f, 1.000538189e-02f, 3.717264393e-03f, 1.239184989e-03f, 3.887105267e-04f, 1.179058454e-04f, 3.343590652e-05f, 9.606977983e-06f, 2.846831421e-06f, 7.926429930e-07f, 2.380695747e-07f, 6.859882973e-08f, 1.873495847e-08f, 5.368864020e-09f},  // c_i3
    {3.490449899e-06f, 6.635306818e-06f, 1.236903336e-05f, 2.281520938e-05f, 4.297418491e-05f, 7.968029240e-05f, 1.466851536e-04f, 2.634069533e-04f, 4.716565600e-04f, 7.992293686e-04f, 1.193934120e-03f, 1.272444497e-03f, -4.339305451e-04f, -6.498876959e-03f, -1.330208313e-02f, -2.892066841e-04f,
     1.787141711e-02f, 7.325460669e-03f, -3.038434777e-03f, -3.381887916e-03f, -1.562850433e-03f, -5.684694042e-04f, -1.858862233e-04f, -5.759331907e-05f, -1.646069541e-05f, -4.772419743e-06f, -1.427149073e-06f, -3.890449989e-07f, -1.237161626e-07f, -3.441072113e-05f, 5.931801934e-05f, 1.699621862e-05f},  // c_i4
    {6.998329809e-07f, 1.333540581e-06f, 2.476744612e-06f, 4.568145414e-06f, 8.575227184e-06f, 1.574142516e-05f, 2.855457751e-05f, 4.979424193e-05f, 8.390405856e-05f, 1.224356383e-04f, 1.142019973e-04f, -1.488891285e-04f, -1.134561026e-03f, -2.686548047e-03f, -4.587433432e-05f, 7.618281990e-03f,
     8.492033230e-04f, -5.001988728e-03f, -1.343750395e-03f, 5.262990016e-04f, 4.614431818e-04f, 1.995711355e-04f, 7.021256170e-05f, 2.252318518e-05f, 6.549302725e-06f, 1.915965413e-06f, 5.699990311e-07f, 1.593019476e-07f, 4.796141084e-08f, 1.357948509e-08f, 3.336518839e-09f, 9.584066873e-10f},  // c_i5
    {1.168140784e-07f, 2.240563646e-07f, 4.063475387e-07f, 7.580782722e-07f, 1.429906320e-06f, 2.514010248e-06f, 4.452162102e-06f, 7.280036698e-06f, 1.043588236e-05f, 7.942124284e-06f, -2.033229794e-05f, -1.420923072e-04f, -4.000776098e-04f, -2.271832636e-04f, 1.899349503e-03f, 8.252654807e-04f,
     -3.198279068e-03f, 3.256412747e-04f, 9.543061024e-04f, 1.231129427e-04f, -7.981585804e-05f, -5.260126636e-05f, -2.087768371e-05f, -6.978775218e-06f, -2.462239991e-06f, -6.351747857e-07f, -1.325158649e-07f, -9.573845716e-08f, 1.502831637e-08f, 2.152750676e-04f, -3.715337662e-04f, -1.064544849e-04f},  // c_i6
};
NNF_TABLE float kMishSlopePieces[9][32] = {
    {-8.998185158e+00f, -8.235210419e+00f, -7.499992371e+00f, -6.751432419e+00f, -5.997660160e+00f, -5.251912594e+00f, -4.503382683e+00f, -3.751859903e+00f, -3.003585100e+00f, -2.249392509e+00f, -1.488389969e+00f, -7.409175038e-01f, -1.449749991e-02f, 7.601400018e-01f, 1.504147530e+00f, 2.254192591e+00f,
     2.998192549e+00f, 3.759390116e+00f, 4.512502670e+00f, 5.256945133e+00f, 6.004559994e+00f, 6.745222569e+00f, 7.513147354e+00f, 8.242087364e+00f, 9.015000343e+00f, 9.765000343e+00f, 1.051500034e+01f, 1.126500034e+01f, 1.201500034e+01f, 1.276500034e+01f, 1.351500034e+01f, 1.426500034e+01f},  // centre c_i
    {-9.887175402e-04f, -1.917880727e-03f, -3.592930268e-03f, -6.716049742e-03f, -1.238304377e-02f, -2.213900909e-02f, -3.829697520e-02f, -6.280644238e-02f, -9.324987233e-02f, -1.125234589e-01f, -6.228126213e-02f, 1.649638116e-01f, 5.907120705e-01f, 9.890193343e-01f, 1.088477135e+00f, 1.054433465e+00f,
     1.021161675e+00f, 1.006573319e+00f, 1.001866579e+00f, 1.000508428e+00f, 1.000133038e+00f, 1.000034451e+00f, 1.000008345e+00f, 1.000002146e+00f, 1.000000477e+00f, 1.000000119e+00f, 1.000000000e+00f, 1.000000000e+00f, 1.000000000e+00f, 1.000000000e+00f, 1.000000000e+00f, 1.000000000e+00f},  // c_i0
    {-8.649689262e-04f, -1.652256004e-03f, -3.038006136e-03f, -5.539667327e-03f, -9.870721027e-03f, -1.679860801e-02f, -2.685751952e-02f, -3.809432313e-02f, -3.998087719e-02f, 7.643681020e-04f, 1.583208442e-01f, 4.664249420e-01f, 6.412761211e-01f, 3.186211586e-01f, -3.080367576e-03f, -5.752353743e-02f,
     -3.033217788e-02f, -1.063557994e-02f, -3.203075612e-03f, -9.016719996e-04f, -2.408855507e-04f, -6.326109724e-05f, -1.548539512e-05f, -4.012631052e-06f, -9.471444855e-07f, -2.311819429e-07f, -5.600551134e-08f, -1.348243472e-08f, -3.228222800e-09f, -7.693616300e-10f, -1.826156726e-10f, -4.320033914e-11f},  // c_i1
    {-3.705605050e-04f, -6.931140088e-04f, -1.240776270e-03f, -2.178736497e-03f, -3.668404417e-03f, -5.691373255e-03f, -7.586482912e-03f, -6.349856500e-03f, 7.213427685e-03f, 5.507116765e-02f, 1.605478823e-01f, 2.207372636e-01f, -4.002553225e-02f, -2.931849658e-01f, -1.115516722e-01f, 1.009174250e-02f,
     1.818088070e-02f, 8.039792068e-03f, 2.657236997e-03f, 7.840992766e-04f, 2.153722889e-04f, 5.757656982e-05f, 1.427591269e-05f, 3.732363211e-06f, 4.279521363e-06f, 6.020330829e-07f, 3.843138984e-06f, 9.218773016e-07f, 2.200547300e-07f, 5.230367250e-08f, 1.238512759e-08f, 2.922946774e-09f},  // c_i2
    {-1.028495753e-04f, -1.865786326e-04f, -3.203964443e-04f, -5.274993018e-04f, -7.943314849e-04f, -9.739079978e-04f, -5.202393513e-04f, 2.249537967e-03f, 1.141855679e-02f, 3.325529024e-02f, 5.397307873e-02f, -3.037450090e-02f, -1.832599491e-01f, 1.509504486e-02f, 9.265317023e-02f, 1.901064254e-02f,
     -4.148165695e-03f, -3.574507311e-03f, -1.394831459e-03f, -4.422706843e-04f, -1.262766746e-04f, -3.455532351e-05f, -8.707099369e-06f, -2.301674158e-06f, 1.458781611e-07f, -5.743708087e-08f, 7.466821899e-07f, 1.789928774e-07f, 4.270084020e-08f, 1.014384932e-08f, 2.401061128e-09f, 5.669463232e-10f},  // c_i3
    {-2.053059143e-05f, -3.547513552e-05f, -5.659633462e-05f, -8.144948515e-05f, -8.890053869e-05f, -4.696586075e-06f, 3.923066251e-04f, 1.673180028e-03f, 4.858275875e-03f, 9.365651757e-03f, -1.817144454e-03f, -5.943318084e-02f, -5.192134529e-03f, 8.221036941e-02f, -2.077390254e-02f, -1.694470644e-02f,
     -1.608605380e-03f, 8.765885723e-04f, 5.018529482e-04f, 1.796071301e-04f, 5.425749259e-05f, 1.533298928e-05f, 3.955043212e-06f, 1.070660232e-06f, -6.458349526e-05f, -7.278438261e-06f, -7.243916480e-05f, -1.737449202e-05f, -4.146940682e-06f, -9.855815506e-07f, -2.333611206e-07f, -5.507069645e-08f},  // c_i4
    {-3.048040071e-06f, -4.826022632e-06f, -6.475978807e-06f, -6.011063761e-06f, 5.184311249e-06f, 4.909198833e-05f, 1.865331724e-04f, 5.449638120e-04f, 1.179365674e-03f, 6.427856279e-04f, -9.026387706e-03f, -1.423771959e-02f, 4.632442445e-02f, -2.220556512e-02f, -1.256015059e-02f, 6.280668080e-03f,
     1.821998274e-03f, 1.102291390e-05f, -1.195732693e-04f, -5.456682629e-05f, -1.807676927e-05f, -5.340193638e-06f, -1.408413596e-06f, -3.881008297e-07f, -2.667588706e-05f, -3.033761686e-06f, -2.970922651e-05f, -7.125803677e-06f, -1.700789085e-06f, -4.042155410e-07f, -9.571036941e-08f, -2.259271170e-08f},  // c_i5
    {-3.322148814e-07f, -4.160342257e-07f, -2.533787438e-07f, 8.073977824e-07f, 4.935292509e-06f, 1.715438157e-05f, 4.926815018e-05f, 1.151750330e-04f, 1.301988377e-04f, -6.879575667e-04f, -3.683012677e-03f, 6.871690974e-03f, 6.302571855e-03f, -1.557253767e-02f, 9.501274675e-03f, -2.531667415e-04f,
     -8.062295383e-04f, -1.211794806e-04f, 1.123795846e-05f, 1.202546173e-05f, 4.945256933e-06f, 1.536109266e-06f, 3.700142486e-07f, 5.193264840e-08f, 3.113491111e-04f, 3.526038927e-05f, 3.478850413e-04f, 8.344035450e-05f, 1.991559839e-05f, 4.733249625e-06f, 1.120718480e-06f, 2.644782455e-07f},  // c_i6
    {-8.307070232e-08f, -5.212485732e-08f, -1.788473014e-07f, 5.978875492e-07f, 5.547778414e-07f, 3.776346603e-06f, 1.029562918e-05f, 1.481216623e-05f, -2.637985926e-05f, -3.588887048e-04f, -3.983628994e-04f, 4.809841048e-03f, -9.480878711e-03f, 7.244178094e-03f, -1.123058377e-03f, -8.581798756e-04f,
     1.863618527e-04f, 6.122257037e-05f, 5.117028195e-06f, -1.635550234e-06f, -9.645675618e-07f, -3.649645066e-07f, -1.324449102e-07f, -7.628949028e-09f, 1.897529000e-04f, 2.148598651e-05f, 2.120470162e-04f, 5.085955127e-05f, 1.213915766e-05f, 2.885041567e-06f, 6.831136261e-07f, 1.612285701e-07f},  // c_i7
};
}  // namespace act_detail

// Mish: y = x tanh(softplus(x)) = x n / (n + 2), n = e (e + 2), e = e^x;
// y' = tanh(sp) + x sech^2(sp) sigmoid(x) = e [(e + 2) + 4x (e + 1) / D] / D,
// D = n + 2 = e(e + 2) + 2. For x < 0 the factor e is applied last (x e^x tail
// rounded once); sums and quotients are carried as double-floats (mish_den),
// so each result is rounded about once or twice (was 3.25 / 4.77 ulp with six
// roundings). x is clamped to [-Limits::tail, 20], beyond which y = x or 0
// already (y' = 1 / 0). Interior zero of y' near x = -1.1924.
// float32 inputs x >= -9.6875 (forward) or x >= -9.375 (backward), nearly
// every input of a network, skip the exponential and both divisions: y = x f(x)
// and y' from polynomial pieces (kMishPieces, kMishSlopePieces); the formulas
// above serve the rest, lane by lane, so each lane's bits depend on its x alone.
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
  // key = 1.5 2^23 + i, i = round(1.6 x + 15) (the fma rounds to an integer),
  // picks piece i, about (x + 9.6875) / (5/8) - 1/2. Lanes where i < 0 (x <
  // -9.6875 or within 2^-22 above it; NaN) take the exponential formulas
  // (fwd_exp, bwd_exp).
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    V key = fma(x, V(1.6f), V(12582927.0f));
    auto fast = key >= V(12582912.0f);
    V y = fwd_pieces(x, key);
    return all_lanes(fast) ? y : select(fast, y, fwd_exp(x));
  }
  // key = 1.5 2^23 + i, i = round(4x / 3 + 12): piece i, about (x + 9.375) /
  // (3/4) - 1/2; lanes where i < 0 take the exponential formulas.
  template <class V>
  NNF_HD static V bwd(V g, V x, const ActArgs<V>&) {
    V key = fma(x, V(1.33333337f), V(12582924.0f));
    auto fast = key >= V(12582912.0f);
    V y = bwd_pieces(g, x, key);
    return all_lanes(fast) ? y : select(fast, y, bwd_exp(g, x));
  }
 private:
  // y = x P(d): over every float the worst error is 1.611 ulp (at x = -0.236;
  // docs/exhaustive.md). Carrying P's last Horner step as hi + lo gave 1.484
  // but took 0.31 -> 0.41 ns per element (2^20, 1 thread). x = -0 gives -0
  // (P > 0). x >= 10.3125: 2 / D < 2^-28.7, y = x.
  template <class V>
  NNF_HD static V fwd_pieces(V x, V key) {
    using act_detail::kMishPieces;
    V d = x - vmath::row_lookup(kMishPieces[0], key);
    return select(x >= V(10.3125f), x, x * vmath::table_horner<1, 7>(kMishPieces, key, d));
  }
  // y' = g P(d): worst 1.557 floor ulp over every float, and that on the
  // exponential side (docs/exhaustive.md). x >= 14.625: y' - 1 < 2^-34, y' = 1.
  template <class V>
  NNF_HD static V bwd_pieces(V g, V x, V key) {
    using act_detail::kMishSlopePieces;
    V d = x - vmath::row_lookup(kMishSlopePieces[0], key);
    return select(x >= V(14.625f), g, g * vmath::table_horner<1, 8>(kMishSlopePieces, key, d));
  }
  template <class V>
  NNF_HD static V fwd_exp(V x) {
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
  NNF_HD static V bwd_exp(V g, V x) {
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
 public:
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

namespace act_detail {
// L(a) = log1p(e^-a) for float32 0 <= a < 15.75 (NaN and larger a give
// garbage, for the caller to replace): 32 degree-6 pieces of width 1/2, piece
// i = round(2a) centred near i / 2 (docs/fits/activation_pieces.py; relative
// error <= 2^-28.9, rows as kMishPieces'), its index in the low bits of
// 1.5 2^23 + 2a. L > 0.
NNF_TABLE float kLog1pExpNegPieces[8][32] = {
    {7.255000062e-03f, 5.009499788e-01f, 1.005390048e+00f, 1.508584976e+00f, 1.994315028e+00f, 2.509999990e+00f, 3.002475023e+00f, 3.496994972e+00f, 4.002854824e+00f, 4.496099949e+00f, 4.993859768e+00f, 5.503139973e+00f, 6.008359909e+00f, 6.503624916e+00f, 7.009544849e+00f, 7.490654945e+00f,
     7.997294903e+00f, 8.498185158e+00f, 9.008020401e+00f, 9.503760338e+00f, 9.991845131e+00f, 1.049029541e+01f, 1.100411034e+01f, 1.149427986e+01f, 1.200701523e+01f, 1.249887466e+01f, 1.299230957e+01f, 1.350559044e+01f, 1.400459957e+01f, 1.449818039e+01f, 1.500642967e+01f, 1.550660038e+01f},  // centre c_i
    {6.895262599e-01f, 4.737184346e-01f, 3.118149340e-01f, 1.998526454e-01f, 1.276073754e-01f, 7.813464850e-02f, 4.847010970e-02f, 2.983863093e-02f, 1.809865236e-02f, 1.109067723e-02f, 6.756569725e-03f, 4.065683112e-03f, 2.455100184e-03f, 1.496878336e-03f, 9.028119384e-04f, 5.581214209e-04f,
     3.363147553e-04f, 2.038171951e-04f, 1.224164735e-04f, 7.456810999e-05f, 4.577062646e-05f, 2.780459363e-05f, 1.663305375e-05f, 1.018815328e-05f, 6.101241524e-06f, 3.730842309e-06f, 2.277776730e-06f, 1.363315278e-06f, 8.277124834e-07f, 5.052660867e-07f, 3.039417322e-07f, 1.843185231e-07f},  // c_i0
    {-4.981862605e-01f, -3.773174584e-01f, -2.678830028e-01f, -1.811485887e-01f, -1.198011041e-01f, -7.516010851e-02f, -4.731418565e-02f, -2.939785458e-02f, -1.793585531e-02f, -1.102940273e-02f, -6.733795628e-03f, -4.057429265e-03f, -2.452088986e-03f, -1.495758537e-03f, -9.024045430e-04f, -5.579657154e-04f,
     -3.362582065e-04f, -2.037964296e-04f, -1.224089792e-04f, -7.456533058e-05f, -4.576957872e-05f, -2.780420800e-05f, -1.663291550e-05f, -1.018810144e-05f, -6.101222880e-06f, -3.730835260e-06f, -2.277774229e-06f, -1.363314368e-06f, -8.277121424e-07f, -5.052659731e-07f, -3.039416754e-07f, -1.843185089e-07f},  // c_i1
    {1.249983534e-01f, 1.174745038e-01f, 9.806085378e-02f, 7.416688651e-02f, 5.272440240e-02f, 3.475553170e-02f, 2.253777720e-02f, 1.426681038e-02f, 8.807079867e-03f, 5.453877617e-03f, 3.344225930e-03f, 2.020483138e-03f, 1.223038184e-03f, 7.467605756e-04f, 4.507951089e-04f, 2.788272104e-04f,
     1.680725691e-04f, 1.018774492e-04f, 6.119699538e-05f, 3.727988587e-05f, 2.288374162e-05f, 1.390171838e-05f, 8.316319509e-06f, 5.093998880e-06f, 3.050592795e-06f, 1.865410582e-06f, 1.138884613e-06f, 6.816562745e-07f, 4.138557301e-07f, 2.526328444e-07f, 1.519707808e-07f, 9.215924024e-08f},  // c_i2
    {-1.509771973e-04f, -9.607106447e-03f, -1.517373882e-02f, -1.576583460e-02f, -1.336368266e-02f, -9.843831882e-03f, -6.801667623e-03f, -4.475956317e-03f, -2.830388490e-03f, -1.777834725e-03f, -1.099714311e-03f, -6.680371589e-04f, -4.056730832e-04f, -2.481772681e-04f, -1.499924110e-04f, -9.283742838e-05f,
     -5.598646749e-05f, -3.394498344e-05f, -2.039405808e-05f, -1.242469989e-05f, -7.627215837e-06f, -4.633574918e-06f, -2.772003427e-06f, -1.697958510e-06f, -1.016851343e-06f, -6.218030535e-07f, -3.796193084e-07f, -2.272162902e-07f, -1.379512753e-07f, -8.420973074e-08f, -5.065745157e-08f, -3.071948029e-08f},  // c_i3
    {-5.207930226e-03f, -4.011230543e-03f, -1.444564201e-03f, 6.799871917e-04f, 1.613538945e-03f, 1.688467804e-03f, 1.370162470e-03f, 9.853258962e-04f, 6.563752540e-04f, 4.247245961e-04f, 2.674863790e-04f, 1.643014257e-04f, 1.004186925e-04f, 6.167535321e-05f, 3.736226427e-05f, 2.315632082e-05f,
     1.397792494e-05f, 8.479203643e-06f, 5.096099358e-06f, 3.105204996e-06f, 1.906505759e-06f, 1.158191480e-06f, 6.929510619e-07f, 4.244742229e-07f, 2.542075208e-07f, 1.554553961e-07f, 9.489662034e-08f, 5.680249870e-08f, 3.448763763e-08f, 2.105259966e-08f, 1.266487359e-08f, 7.679684444e-09f},  // c_i4
    {1.288879957e-05f, 8.567525656e-04f, 1.014749170e-03f, 6.193463923e-04f, 1.767432113e-04f, -7.869637193e-05f, -1.558413060e-04f, -1.475057506e-04f, -1.115733830e-04f, -7.760182052e-05f, -5.081883137e-05f, -3.172161814e-05f, -1.980529305e-05f, -1.218314628e-05f, -7.448280030e-06f, -4.634665402e-06f,
     -2.792994565e-06f, -1.700009534e-06f, -1.019188971e-06f, -6.226507594e-07f, -3.817523861e-07f, -2.329461495e-07f, -1.389271205e-07f, -8.509996263e-08f, -5.092838506e-08f, -3.108661417e-08f, -1.910498426e-08f, -1.140276940e-08f, -6.913686956e-09f, -4.232057371e-09f, -2.530000875e-09f, -1.541727634e-09f},  // c_i5
    {3.436225234e-04f, 1.937449415e-04f, -6.801472773e-05f, -1.666391909e-04f, -1.169289026e-04f, -5.018758020e-05f, -6.562879662e-06f, 1.004452679e-05f, 1.225527831e-05f, 1.069839891e-05f, 7.695647582e-06f, 4.838606856e-06f, 3.202266043e-06f, 1.954561185e-06f, 1.227959615e-06f, 7.837602993e-07f,
     4.602341335e-07f, 2.843527511e-07f, 1.691772553e-07f, 1.042305016e-07f, 6.270005315e-08f, 3.992272113e-08f, 2.319160863e-08f, 1.412156703e-08f, 8.492155423e-09f, 5.085698085e-09f, 3.292983886e-09f, 1.915576142e-09f, 1.153500073e-09f, 7.065524832e-10f, 4.172793777e-10f, 2.590923587e-10f},  // c_i6
};
template <class V>
NNF_HD V log1p_exp_neg_horner(V key, V d) {
  return vmath::table_horner<1, 7>(kLog1pExpNegPieces, key, d);
}
template <class V>
NNF_HD V log1p_exp_neg_pieces(V a) {
  V key = fma(a, V(2.0f), V(12582912.0f));
  return log1p_exp_neg_horner(key, a - vmath::row_lookup(kLog1pExpNegPieces[0], key));
}
// L(a + a_lo) for a tiny a_lo (a product's rounding error): the piece of a,
// a_lo added to d = a - c_i (rounding d by at most 2^-26, as L moves by less
// than 2^-26 relative).
template <class V>
NNF_HD V log1p_exp_neg_pieces(V a, V a_lo) {
  V key = fma(a, V(2.0f), V(12582912.0f));
  return log1p_exp_neg_horner(key, (a - vmath::row_lookup(kLog1pExpNegPieces[0], key)) + a_lo);
}
}  // namespace act_detail

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
  // float32, beta x > -15.75 (nearly every input of a network): y = max(x, 0)
  // + L(|x|) from act_detail::log1p_exp_neg_pieces, no exponential or
  // logarithm; beta x >= 15.75 gives x (L < 2^-22.7, below half an ulp of
  // beta x). For beta != 1, z = beta x and its exact residual ze enter as L(|z|
  // + ze sign(z)) / beta, so softplus(2x, beta = 1/2) is still exactly 2
  // softplus(x). The rest, lane by lane, take the formulas of fwd_exp.
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>& a) {
    if constexpr (std::is_same_v<scalar_t<V>, float>) {
      V z, y;
      if (all_lanes(a.p0 == V(1.0f))) {
        z = x;
        y = vmax(x, V(0.0f)) + act_detail::log1p_exp_neg_pieces(vabs(x));
      } else {
        V a_lo = abs_product_residual(x, a, z);
        V l = act_detail::log1p_exp_neg_pieces(vabs(z), a_lo) / a.p0;
        y = select(z > V(0.0f), x, V(0.0f)) + l;
      }
      y = select(z >= V(15.75f), x, y);
      // A threshold of 15.75 or more changes nothing above.
      if (!all_lanes(a.p1 >= V(15.75f))) y = select(z > a.p1, x, y);
      auto fast = z > V(-15.75f);
      return all_lanes(fast) ? y : select(fast, y, fwd_exp(x, a));
    } else {
      return fwd_exp(x, a);
    }
  }
  template <class V>
  NNF_HD static V fwd_exp(V x, const ActArgs<V>& a) {
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
  // z = beta x rounded (returned in z), and a_lo with |beta x| = |z| + a_lo
  // exactly: the product's exact residual ze times sign(z) (at z = 0 it is at
  // most 2^-149 and vanishes in what follows).
  template <class V>
  NNF_HD static V abs_product_residual(V x, const ActArgs<V>& a, V& z) {
    z = a.p0 * x;
    V ze = fma(a.p0, x, -z);
    return select(z > V(0.0f), ze, -ze);
  }
  // e^-|z| for z = beta x (returned in z): z = x for beta = 1 (see above),
  // else the exponent is corrected by the residual (-|z| - a_lo).
  template <class V>
  NNF_HD static vmath::ExpParts<V> exp_neg_abs(V x, const ActArgs<V>& a, V& z) {
    if (all_lanes(a.p0 == V(1.0f))) {
      z = x;
      return vmath::exp_parts_nonpositive(-vabs(x));
    }
    V a_lo = abs_product_residual(x, a, z);
    return vmath::exp_parts_nonpositive(-vabs(z), -a_lo);
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
  // float32 x < 15.75: y = min(x, 0) - L(|x|) from
  // act_detail::log1p_exp_neg_pieces (-softplus(-x) to the bit); x <= -15.75
  // gives x. The rest, lane by lane, take fwd_exp.
  template <class V>
  NNF_HD static V fwd(V x, const ActArgs<V>&) {
    if constexpr (std::is_same_v<scalar_t<V>, float>) {
      auto fast = x < V(15.75f);
      V y = select(x <= V(-15.75f), x, vmin(x, V(0.0f)) - act_detail::log1p_exp_neg_pieces(vabs(x)));
      return all_lanes(fast) ? y : select(fast, y, fwd_exp(x));
    } else {
      return fwd_exp(x);
    }
  }
  template <class V>
  NNF_HD static V fwd_exp(V x) {
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
