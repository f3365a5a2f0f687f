"""Float64 reference formulas for the activations (forward and backward).

These are the oracle against which every kernel's ULP error is measured, so they favour accuracy
over speed: every formula is written in a form without cancellation in its tails (sigmoid through
``exp(-|x|)``, softplus as ``max(x, 0) + log1p(exp(-|x|))``, the exact GELU through ``erfc``,
``sech^2`` as ``4e / (1 + e)^2`` with ``e = exp(-2|z|)`` ...). Only NumPy (and the standard
library's ``math.erfc``) is used.

Conventions shared by every function:

* Names, parameters and defaults follow ``torch.nn.functional``; the forward is ``name(x, ...)``,
  the backward ``name_backward(grad, x, ...)`` returns ``dL/dx = grad * f'(x)``.
* Inputs are converted to float64; outputs are float64 arrays of the broadcast shape.
* Kinks take PyTorch's one-sided derivative (e.g. ``relu'(0) = 0``, ``leaky_relu'(0) = slope``,
  ``elu'(0) = alpha``, ``hardswish'(-3) = 0``, ``hardswish'(3) = 1``).
* NaN in ``x`` or ``grad`` gives NaN (forward and backward, every op; PyTorch does not always).
* ``x = +-inf`` gives the mathematical limits of ``f`` and ``f'`` (``gelu(-inf) = 0``,
  ``silu(-inf) = 0``, ``softsign(inf) = 1``, ``gelu'(inf) = 1`` ...) where PyTorch often
  computes ``inf * 0 = NaN``.
* The backward is the IEEE product ``grad * f'(x)``: an infinite ``grad`` where ``f'(x) = 0`` gives
  NaN. Parity tests should draw finite gradients.
"""

from __future__ import annotations

import math

import numpy as np

from .philox import philox_uniform

__all__ = [
    "SELU_ALPHA",
    "SELU_SCALE",
    "celu",
    "celu_backward",
    "elu",
    "elu_backward",
    "gelu",
    "gelu_backward",
    "hardsigmoid",
    "hardsigmoid_backward",
    "hardswish",
    "hardswish_backward",
    "hardtanh",
    "hardtanh_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "logsigmoid",
    "logsigmoid_backward",
    "mish",
    "mish_backward",
    "prelu",
    "prelu_backward",
    "relu",
    "relu6",
    "relu6_backward",
    "relu_backward",
    "rrelu",
    "rrelu_backward",
    "rrelu_slopes",
    "selu",
    "selu_backward",
    "sigmoid",
    "sigmoid_backward",
    "silu",
    "silu_backward",
    "softplus",
    "softplus_backward",
    "softsign",
    "softsign_backward",
    "tanh",
    "tanh_backward",
]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

# Constants as double-double pairs (hi + lo, lo = the rounding error of hi; from 200-bit mpmath).
_SQRT1_2 = float.fromhex("0x1.6a09e667f3bcdp-1")  # 1/sqrt(2)
_SQRT1_2_LO = float.fromhex("-0x1.bdd3413b26456p-55")
_SQRT_2_OVER_PI = float.fromhex("0x1.9884533d43651p-1")  # sqrt(2/pi)
_SQRT_2_OVER_PI_LO = float.fromhex("-0x1.cbc0d30ebfd15p-55")
_GELU_TANH_C = 0.044715  # the decimal constant of the tanh approximation
_GELU_TANH_C_LO = float.fromhex("0x1.441355475a31ap-59")
_INV_SQRT_2PI = 0.39894228040143267793994605993438  # 1/sqrt(2*pi)
_TWO_OVER_SQRT_PI = 1.1283791670955125738961589031215  # 2/sqrt(pi)
_SPLIT = 134217729.0  # 2^27 + 1, Veltkamp splitting constant

# Beyond |x| = _BIG every smooth op below has reached its float64 limit: e^-1000 underflows to 0,
# so e.g. silu(-1000) = -1000 * 0 = -0 exactly, and the derivative terms like x * sigmoid'(x) are
# exactly 0. Clamping to +-_BIG before those products turns inf * 0 into the limit 0 without
# changing any finite result.
_BIG = 1.0e3

_erfc = np.frompyfunc(math.erfc, 1, 1)


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _finish(out, x) -> np.ndarray:
    """Forward epilogue: float64 array, NaN wherever x is NaN."""
    out = np.asarray(out, dtype=np.float64)
    return np.where(np.isnan(x), np.nan, out)


def _nonpositive(x):
    """min(x, 0) that keeps -0 (np.minimum(-0.0, 0.0) is +0): the elu family's
    x <= 0 side, so that elu(-0) = -0 as PyTorch's."""
    return np.where(x > 0, 0.0, x)


def _backward(grad, x, dfdx):
    """grad * f'(x), with f'(NaN) = NaN, on the broadcast shape."""
    g, x = np.broadcast_arrays(_f64(grad), _f64(x))
    with np.errstate(all="ignore"):
        d = np.where(np.isnan(x), np.nan, np.asarray(dfdx(x), dtype=np.float64))
        return np.asarray(g * d, dtype=np.float64)


def _backward_flat(grad, x, dfdx, flat):
    """_backward where f' is 0 on the pieces flat(x) selects: there the result is
    grad - grad, +0 for finite grad as PyTorch's where(..., 0, grad) (grad * 0
    would be -0 for grad < 0), NaN for an infinite or NaN grad."""
    g, x = np.broadcast_arrays(_f64(grad), _f64(x))
    with np.errstate(all="ignore"):
        d = np.where(np.isnan(x), np.nan, np.asarray(dfdx(x), dtype=np.float64))
        return np.asarray(np.where(flat(x) & ~np.isnan(x), g - g, g * d), dtype=np.float64)


def _scale(x, s):
    """x * s with the limit 0 (not NaN) for inf * 0."""
    with np.errstate(all="ignore"):
        return np.where(np.isinf(x) & (s == 0), 0.0, x * s)


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _dsigmoid(z):
    e = np.exp(-np.abs(z))
    return e / ((1.0 + e) * (1.0 + e))


def _softplus(z):
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def _sech2(z):
    e = np.exp(-2.0 * np.abs(z))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


def _erfc_arr(t):
    return np.asarray(_erfc(t), dtype=np.float64)


# Error-free transformations (Dekker / Knuth), used where a rounding error would be amplified:
# exp(z) turns an absolute error d in z into a relative error d, and in GELU's tails |z| reaches
# several hundred, so z is carried as an unevaluated sum hi + lo. Valid for |a|, |b| < 2^995.


def _two_prod(a, b):
    """(p, e) with p = fl(a * b) and a * b = p + e exactly (Veltkamp split, no fma needed)."""
    p = a * b
    t = _SPLIT * a
    ah = t - (t - a)
    al = a - ah
    t = _SPLIT * b
    bh = t - (t - b)
    bl = b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _two_sum(a, b):
    """(s, e) with s = fl(a + b) and a + b = s + e exactly."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def _exp_neg_abs_dd(zh, zl):
    """exp(-|zh + zl|) for a double-double z (|zl| <= ulp(zh)): exp(-|zh|) * (1 -+ zl)."""
    return np.exp(-np.abs(zh)) * (1.0 - np.sign(zh) * zl)


def _sigmoid_dd(zh, zl):
    e = _exp_neg_abs_dd(zh, zl)
    return np.where(zh >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _dsigmoid_dd(zh, zl):
    e = _exp_neg_abs_dd(zh, zl)
    return e / ((1.0 + e) * (1.0 + e))


# --------------------------------------------------------------------------------------------
# sigmoid, tanh, logsigmoid, softplus, softsign


def sigmoid(x):
    """sigmoid(x) = 1 / (1 + e^-x), as e/(1+e) for x < 0 with e = e^-|x| (no cancellation)."""
    x = _f64(x)
    with np.errstate(all="ignore"):
        return _finish(_sigmoid(x), x)


def sigmoid_backward(grad, x):
    """sigmoid'(x) = s (1 - s) = e / (1 + e)^2 with e = e^-|x|; 0 at +-inf."""
    return _backward(grad, x, _dsigmoid)


def tanh(x):
    """tanh(x)."""
    x = _f64(x)
    with np.errstate(all="ignore"):
        return _finish(np.tanh(x), x)


def tanh_backward(grad, x):
    """tanh'(x) = 1 - tanh^2(x) = sech^2(x) = 4e / (1 + e)^2 with e = e^-2|x| (accurate in tails)."""
    return _backward(grad, x, _sech2)


def logsigmoid(x):
    """logsigmoid(x) = -softplus(-x) = min(x, 0) - log1p(e^-|x|); -inf at -inf, 0 at +inf."""
    x = _f64(x)
    with np.errstate(all="ignore"):
        return _finish(np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x))), x)


def logsigmoid_backward(grad, x):
    """logsigmoid'(x) = sigmoid(-x) = 1 - sigmoid(x); 1 at -inf, 0 at +inf."""
    return _backward(grad, x, lambda v: _sigmoid(-v))


def softplus(x, beta=1.0, threshold=20.0):
    """softplus(x) = x if beta*x > threshold else log1p(e^(beta x)) / beta.

    The log1p branch is evaluated as (max(z, 0) + log1p(e^-|z|)) / beta, z = beta*x.
    """
    x = _f64(x)
    with np.errstate(all="ignore"):
        z = beta * x
        return _finish(np.where(z > threshold, x, _softplus(z) / beta), x)


def softplus_backward(grad, x, beta=1.0, threshold=20.0):
    """softplus'(x) = 1 if beta*x > threshold else sigmoid(beta x)."""

    def d(v):
        z = beta * v
        return np.where(z > threshold, 1.0, _sigmoid(z))

    return _backward(grad, x, d)


def softsign(x):
    """softsign(x) = x / (1 + |x|); +-1 at +-inf."""
    x = _f64(x)
    with np.errstate(all="ignore"):
        return _finish(np.where(np.isinf(x), np.sign(x), x / (1.0 + np.abs(x))), x)


def softsign_backward(grad, x):
    """softsign'(x) = 1 / (1 + |x|)^2; 0 at +-inf."""

    def d(v):
        a = 1.0 + np.abs(v)
        return 1.0 / (a * a)

    return _backward(grad, x, d)


# --------------------------------------------------------------------------------------------
# relu family


def relu(x):
    """relu(x) = x if x > 0 else 0 (relu(-0) = -0, as PyTorch)."""
    x = _f64(x)
    return _finish(np.where(x < 0, 0.0, x), x)


def relu_backward(grad, x):
    """relu'(x) = 1 if x > 0 else 0 (relu'(0) = 0)."""
    return _backward_flat(grad, x, lambda v: np.where(v > 0, 1.0, 0.0), lambda v: ~(v > 0))


def leaky_relu(x, negative_slope=0.01):
    """leaky_relu(x) = x if x > 0 else negative_slope * x."""
    x = _f64(x)
    return _finish(np.where(x > 0, x, _scale(x, negative_slope)), x)


def leaky_relu_backward(grad, x, negative_slope=0.01):
    """leaky_relu'(x) = 1 if x > 0 else negative_slope (slope at 0)."""
    return _backward(grad, x, lambda v: np.where(v > 0, 1.0, float(negative_slope)))


def _prelu_weight(x: np.ndarray, weight) -> np.ndarray:
    """The weight broadcast against x (PyTorch's rule: channels are axis 1; x.ndim < 2 has 1)."""
    w = _f64(weight)
    if w.ndim > 1:
        raise ValueError(f"prelu weight must be 0-d or 1-d, got shape {w.shape}")
    if w.size == 1:
        return w.reshape(())
    channels = x.shape[1] if x.ndim >= 2 else 1
    if w.size != channels:
        raise ValueError(
            f"prelu: weight has {w.size} elements but the input has {channels} channels "
            "(axis 1; inputs with fewer than 2 dimensions have one)"
        )
    return w.reshape((1, channels) + (1,) * (x.ndim - 2))


def prelu(x, weight):
    """prelu(x) = x if x > 0 else w_c * x, w_c the weight of x's channel (axis 1).

    ``weight`` holds 1 element (shared) or one per channel, channels being axis 1 of x; as in
    PyTorch, an input with fewer than 2 dimensions has a single channel, so it needs a 1-element
    weight.
    """
    x = _f64(x)
    w = _prelu_weight(x, weight)
    return _finish(np.where(x > 0, x, _scale(x, w)), x)


def prelu_backward(grad, x, weight):
    """Returns (grad_x, grad_weight).

    d/dx = 1 if x > 0 else w_c;  d/dw_c = 0 if x > 0 else x, summed over every axis but the
    channel axis (everything for a 1-element weight); grad_weight has weight's shape.
    """
    g, x = np.broadcast_arrays(_f64(grad), _f64(x))
    w_in = _f64(weight)
    w = _prelu_weight(x, w_in)
    with np.errstate(all="ignore"):
        d = np.where(np.isnan(x), np.nan, np.where(x > 0, 1.0, w))
        gx = np.asarray(g * d, dtype=np.float64)
        dw = np.where(x > 0, 0.0, x)  # NaN x stays NaN
        contrib = g * dw
        if w.ndim == 0:
            gw = np.sum(contrib, dtype=np.float64)
        else:
            axes = (0,) + tuple(range(2, x.ndim))
            gw = np.sum(contrib, axis=axes, dtype=np.float64)
    return gx, np.asarray(gw, dtype=np.float64).reshape(w_in.shape)


def rrelu_slopes(shape, lower=1.0 / 8.0, upper=1.0 / 3.0, training=False, seed=0, offset=0):
    """The negative-side slope of every element of a tensor of ``shape``.

    Eval: (lower + upper) / 2 everywhere. Training: lower + (upper - lower) * u_i, u_i the Philox
    uniform of the element's flat (C-order) index i (``philox_uniform(seed, offset, size)``).
    """
    shape = np.empty(shape, dtype=np.bool_).shape
    if not training:
        return np.full(shape, (lower + upper) / 2.0, dtype=np.float64)
    n = int(np.prod(shape, dtype=np.int64))
    u = philox_uniform(seed, offset, n).reshape(shape)
    return lower + (upper - lower) * u


def rrelu(x, lower=1.0 / 8.0, upper=1.0 / 3.0, training=False, seed=0, offset=0):
    """rrelu(x) = x * r if x <= 0 else x (PyTorch's convention: 0 and -0 take the slope branch).

    r = (lower + upper) / 2 in eval mode; in training mode r_i = lower + (upper - lower) * u_i
    with u_i the Philox uniform of the element's flat index (see ``rrelu_slopes``).
    """
    x = _f64(x)
    r = rrelu_slopes(x.shape, lower, upper, training, seed, offset)
    return _finish(np.where(x <= 0, _scale(x, r), x), x)


def rrelu_backward(grad, x, lower=1.0 / 8.0, upper=1.0 / 3.0, training=False, seed=0, offset=0):
    """rrelu'(x) = r if x <= 0 else 1, r drawn exactly as in the forward (indices of x's shape)."""
    x = _f64(x)
    r = rrelu_slopes(x.shape, lower, upper, training, seed, offset)
    return _backward(grad, x, lambda v: np.where(v <= 0, r, 1.0))


def relu6(x):
    """relu6(x) = min(max(x, 0), 6) = hardtanh(x, 0, 6)."""
    return hardtanh(x, 0.0, 6.0)


def relu6_backward(grad, x):
    """relu6'(x) = 1 on the open interval (0, 6), else 0 (0 at both kinks, as PyTorch)."""
    return hardtanh_backward(grad, x, 0.0, 6.0)


def hardtanh(x, min_val=-1.0, max_val=1.0):
    """hardtanh(x) = min_val if x < min_val, max_val if x > max_val, else x."""
    x = _f64(x)
    return _finish(np.where(x < min_val, min_val, np.where(x > max_val, max_val, x)), x)


def hardtanh_backward(grad, x, min_val=-1.0, max_val=1.0):
    """hardtanh'(x) = 1 if min_val < x < max_val else 0 (0 at both kinks)."""
    def inside(v):
        return (v > min_val) & (v < max_val)

    return _backward_flat(grad, x, lambda v: np.where(inside(v), 1.0, 0.0), lambda v: ~inside(v))


def hardsigmoid(x):
    """hardsigmoid(x) = 0 if x <= -3, 1 if x >= 3, else x / 6 + 1/2 = (x + 3) / 6."""
    x = _f64(x)
    # (x + 3) / 6 rather than x / 6 + 1/2: x + 3 is exact near -3 (Sterbenz), so no cancellation.
    return _finish(np.where(x <= -3.0, 0.0, np.where(x >= 3.0, 1.0, (x + 3.0) / 6.0)), x)


def hardsigmoid_backward(grad, x):
    """hardsigmoid'(x) = 1/6 on the open interval (-3, 3), else 0."""
    def inside(v):
        return (v > -3.0) & (v < 3.0)

    return _backward_flat(grad, x, lambda v: np.where(inside(v), 1.0 / 6.0, 0.0), lambda v: ~inside(v))


def hardswish(x):
    """hardswish(x) = x * relu6(x + 3) / 6: -0 if x <= -3, x if x >= 3, else x (x + 3) / 6.

    The left piece is -0 (= x * 0 for finite x, as PyTorch), also at -inf where PyTorch gives NaN.
    """
    x = _f64(x)
    with np.errstate(all="ignore"):
        mid = x * (x + 3.0) / 6.0
    return _finish(np.where(x <= -3.0, -0.0, np.where(x >= 3.0, x, mid)), x)


def hardswish_backward(grad, x):
    """hardswish'(x) = 0 if x <= -3, x/3 + 1/2 if x < 3, else 1.

    This is PyTorch's convention at the kinks (checked against torch 2.13 autograd):
    hardswish'(-3) = 0 and hardswish'(3) = 1, i.e. the closed ends belong to the outer pieces.
    """

    def d(v):
        # (x + 3/2) / 3 rather than x / 3 + 1/2: exact sum near the root x = -3/2 (Sterbenz).
        return np.where(v <= -3.0, 0.0, np.where(v < 3.0, (v + 1.5) / 3.0, 1.0))

    return _backward_flat(grad, x, d, lambda v: v <= -3.0)


# --------------------------------------------------------------------------------------------
# exponential linear units


def elu(x, alpha=1.0):
    """elu(x) = x if x > 0 else alpha * expm1(x); -alpha at -inf."""
    x = _f64(x)
    with np.errstate(all="ignore"):
        return _finish(np.where(x > 0, x, alpha * np.expm1(_nonpositive(x))), x)


def elu_backward(grad, x, alpha=1.0):
    """elu'(x) = 1 if x > 0 else alpha * e^x (so elu'(0) = alpha, as PyTorch)."""
    return _backward(grad, x, lambda v: np.where(v > 0, 1.0, alpha * np.exp(np.minimum(v, 0.0))))


def selu(x):
    """selu(x) = scale * (x if x > 0 else alpha * expm1(x)), alpha/scale = SELU_ALPHA/SELU_SCALE."""
    x = _f64(x)
    with np.errstate(all="ignore"):
        neg = SELU_ALPHA * np.expm1(_nonpositive(x))
        return _finish(SELU_SCALE * np.where(x > 0, x, neg), x)


def selu_backward(grad, x):
    """selu'(x) = scale if x > 0 else scale * alpha * e^x."""

    def d(v):
        return SELU_SCALE * np.where(v > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(v, 0.0)))

    return _backward(grad, x, d)


def celu(x, alpha=1.0):
    """celu(x) = max(0, x) + min(0, alpha * expm1(x / alpha)) = x if x > 0 else alpha*expm1(x/alpha)."""
    x = _f64(x)
    with np.errstate(all="ignore"):
        return _finish(np.where(x > 0, x, alpha * np.expm1(_nonpositive(x) / alpha)), x)


def celu_backward(grad, x, alpha=1.0):
    """celu'(x) = 1 if x > 0 else e^(x / alpha) (celu'(0) = 1)."""
    return _backward(grad, x, lambda v: np.where(v > 0, 1.0, np.exp(np.minimum(v, 0.0) / alpha)))


# --------------------------------------------------------------------------------------------
# gelu, silu, mish


def _check_approximate(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def _gelu_tanh_z(x):
    """z = 2u = 2 sqrt(2/pi) (x + 0.044715 x^3) as a double-double (zh, zl), for |x| <= _BIG.

    Compensated throughout, so that sigmoid(z) ~ e^z keeps full accuracy where |z| is large.
    """
    p2, e2 = _two_prod(x, x)
    p3, e3 = _two_prod(p2, x)
    e3 = e3 + e2 * x
    q, eq = _two_prod(_GELU_TANH_C, p3)
    eq = eq + (_GELU_TANH_C * e3 + _GELU_TANH_C_LO * p3)
    v, ev = _two_sum(x, q)
    ev = ev + eq
    uh, ul = _two_prod(_SQRT_2_OVER_PI, v)
    ul = ul + (_SQRT_2_OVER_PI * ev + _SQRT_2_OVER_PI_LO * v)
    uh, ul = _two_sum(uh, ul)
    return 2.0 * uh, 2.0 * ul


def _erfc_neg_x_sqrt1_2(x):
    """erfc(-x / sqrt(2)) with the argument carried as th + tl (its rounding error corrected by
    the first Taylor term, erfc'(t) = -2/sqrt(pi) e^(-t^2)); relative error a few ulp even where
    erfc ~ e^(-x^2/2) is tiny."""
    th, tl = _two_prod(-x, _SQRT1_2)
    tl = tl + (-x) * _SQRT1_2_LO
    return _erfc_arr(th) - _TWO_OVER_SQRT_PI * np.exp(-th * th) * tl


def _x_phi(x):
    """x * e^(-x^2/2) / sqrt(2 pi), with x^2 = p + e exact: e^(-p/2) * (1 - e/2)."""
    p, e = _two_prod(x, x)
    return x * (np.exp(-0.5 * p) * (1.0 - 0.5 * e)) * _INV_SQRT_2PI


def gelu(x, approximate="none"):
    """GELU.

    "none":  gelu(x) = x * Phi(x) = x/2 * erfc(-x / sqrt(2))  (erfc: no cancellation for x < 0).
    "tanh":  gelu(x) = x/2 * (1 + tanh(u)) = x * sigmoid(2u),  u = sqrt(2/pi) (x + 0.044715 x^3).
    Limits: 0 at -inf, +inf at +inf. The arguments of erfc and of the exponential are carried in
    double-double, so the left tails are accurate to a few float64 ulp (not ~x^2 ulp).
    """
    _check_approximate(approximate)
    x = _f64(x)
    xm = np.maximum(x, -_BIG)  # gelu(x) is exactly -0 in float64 for x <= -_BIG
    xc = np.minimum(xm, _BIG)  # Phi and sigmoid(2u) are exactly 1 in float64 for x >= _BIG
    with np.errstate(all="ignore"):
        if approximate == "none":
            y = 0.5 * xm * _erfc_neg_x_sqrt1_2(xc)
        else:
            y = xm * _sigmoid_dd(*_gelu_tanh_z(xc))
        return _finish(y, x)


def gelu_backward(grad, x, approximate="none"):
    """GELU derivative.

    "none":  gelu'(x) = Phi(x) + x phi(x) = erfc(-x/sqrt(2)) / 2 + x e^(-x^2/2) / sqrt(2 pi).
    "tanh":  gelu'(x) = s + 2 x s (1 - s) u',  s = sigmoid(2u),  u' = sqrt(2/pi)(1 + 3*0.044715 x^2)
             (from d/dx [x/2 (1 + tanh u)] with 1 - tanh^2 u = 4 s (1 - s)).
    Limits: 0 at -inf, 1 at +inf. Near the root of gelu' (x ~ -0.75) the two terms cancel: the
    error there is a few ulp of the terms (~0.3), not of the result.
    """
    _check_approximate(approximate)

    def d(v):
        v = np.clip(v, -_BIG, _BIG)
        if approximate == "none":
            return 0.5 * _erfc_neg_x_sqrt1_2(v) + _x_phi(v)
        zh, zl = _gelu_tanh_z(v)
        du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_C * v * v)
        return _sigmoid_dd(zh, zl) + 2.0 * v * _dsigmoid_dd(zh, zl) * du

    return _backward(grad, x, d)


def silu(x):
    """silu(x) = x * sigmoid(x); 0 at -inf, +inf at +inf."""
    x = _f64(x)
    xm = np.maximum(x, -_BIG)
    with np.errstate(all="ignore"):
        return _finish(xm * _sigmoid(xm), x)


def silu_backward(grad, x):
    """silu'(x) = s (1 + x (1 - s)),  s = sigmoid(x), 1 - s = sigmoid(-x); 0 at -inf, 1 at +inf.

    Near the root of silu' (x ~ -1.278) 1 + x (1 - s) cancels: the error there is a few ulp of s,
    not of the result.
    """

    def d(v):
        v = np.clip(v, -_BIG, _BIG)
        return _sigmoid(v) * (1.0 + v * _sigmoid(-v))

    return _backward(grad, x, d)


def mish(x):
    """mish(x) = x * tanh(softplus(x)), softplus(x) = max(x, 0) + log1p(e^-|x|); 0 at -inf."""
    x = _f64(x)
    xm = np.maximum(x, -_BIG)
    with np.errstate(all="ignore"):
        return _finish(xm * np.tanh(_softplus(xm)), x)


def mish_backward(grad, x):
    """mish'(x) = tanh(sp) + x * sech^2(sp) * sigmoid(x),  sp = softplus(x) (sp' = sigmoid).

    sech^2 is 4e / (1 + e)^2 with e = e^(-2 sp), accurate where tanh(sp) is close to 1.
    Limits: 0 at -inf, 1 at +inf. Near the root of mish' (x ~ -1.192) the two terms cancel: the
    error there is a few ulp of the terms (~0.3), not of the result.
    """

    def d(v):
        v = np.clip(v, -_BIG, _BIG)
        sp = _softplus(v)
        return np.tanh(sp) + v * _sech2(sp) * _sigmoid(v)

    return _backward(grad, x, d)


def _split_exact_product(a: str, b: str):
    """hi + lo = a * b (decimal strings) to about 106 bits."""
    import decimal

    with decimal.localcontext() as ctx:
        ctx.prec = 60
        product = decimal.Decimal(a) * decimal.Decimal(b)
        hi = float(product)
        return hi, float(product - decimal.Decimal(hi))


_SELU_SCALE_ALPHA_HI, _SELU_SCALE_ALPHA_LO = _split_exact_product(
    "1.0507009873554804934193349852946", "1.6732632423543772848170429916717")


def backward_from_y(name, grad, y, **params):
    """dL/dx computed from the forward output y with the exact formula in y,
    for the ops whose derivative is a function of y (float64).

    sigmoid: y (1 - y); tanh: (1 - y)(1 + y); relu: y > 0; leaky_relu:
    y > 0 ? 1 : slope (slope >= 0); elu: y > 0 ? 1 : y + alpha; selu:
    y > 0 ? scale : y + scale alpha; celu: y > 0 ? 1 : y / alpha + 1; relu6 and
    hardtanh: 1 strictly inside (min, max); softplus: beta y > threshold ? 1 :
    1 - exp(-beta y). NaN in y or grad gives NaN."""
    g = np.asarray(grad, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(all="ignore"):
        if name == "sigmoid":
            d = y * (1.0 - y)
        elif name == "tanh":
            d = (1.0 - y) * (1.0 + y)
        elif name == "relu":
            d = np.where(y > 0, 1.0, 0.0)
        elif name == "leaky_relu":
            d = np.where(y > 0, 1.0, params.get("negative_slope", 0.01))
        elif name == "elu":
            d = np.where(y > 0, 1.0, y + params.get("alpha", 1.0))
        elif name == "selu":
            # y + scale*alpha cancels completely where selu saturates: the
            # product is carried as hi + lo (exact to ~2^-106) so the only
            # rounding left is y's own.
            d = np.where(y > 0, SELU_SCALE, (y + _SELU_SCALE_ALPHA_HI) + _SELU_SCALE_ALPHA_LO)
        elif name == "celu":
            alpha = params.get("alpha", 1.0)
            d = np.where(y > 0, 1.0, y / alpha + 1.0)
        elif name in ("relu6", "hardtanh"):
            lo, hi = (0.0, 6.0) if name == "relu6" else (params.get("min_val", -1.0), params.get("max_val", 1.0))
            d = np.where((y > lo) & (y < hi), 1.0, 0.0)
        elif name == "softplus":
            beta, threshold = params.get("beta", 1.0), params.get("threshold", 20.0)
            d = np.where(beta * y > threshold, 1.0, -np.expm1(-beta * y))
        else:
            raise ValueError(f"backward_from_y: {name} has no backward from its output")
        out = g * d
        out = np.where(np.isnan(y) | np.isnan(g), np.nan, out)
    return out


__all__.append("backward_from_y")
