"""Activation functions, forward and backward, generated from the op table.

Every function takes NumPy arrays of float32, float64, float16 or bfloat16
(``ml_dtypes.bfloat16``), of any shape, and returns an array of the same shape
and dtype (for scalar inputs, a NumPy scalar, as NumPy's ufuncs). 16-bit
inputs are computed in float32 and rounded to nearest even once; float64 is
computed in float64. A NaN input gives NaN. Dense inputs in
any axis order (Fortran order, a transpose, channels_last) run in their storage
order and a new result keeps their layout; other non-contiguous inputs are
copied to contiguous memory first (prelu and rrelu: C order). ``out=`` may be
the input itself (in place) but must not partially overlap any input.

Backward functions return dL/dx given ``grad`` (dL/dy). Values at kinks follow
PyTorch (e.g. relu'(0) = 0, hardtanh' = 0 at min_val and max_val).

A forward function on a torch tensor that requires grad (while autograd
records) returns a tensor whose ``grad_fn`` runs the matching backward
function (see ``nnfuse._autograd``).
"""

from __future__ import annotations

import numpy as np

from . import _C, _autograd, _interop
from ._array import (DTYPE_CODES, as_dense_input, as_input, bool_option, check_same, in_order, integer_option,
                     kernel_option, prepare_out)
from ._optable import ACTIVATIONS, OP_CODES, RRELU_DEFAULT_LOWER, RRELU_DEFAULT_UPPER

_FORWARD, _BACKWARD_FROM_X, _BACKWARD_FROM_Y = 0, 1, 2


def _host(value):
    """True when `value` can take the NumPy fast path without interop checks."""
    return type(value) is np.ndarray


def _forward(code, x, out, p0, p1, func):
    if type(x) is np.ndarray and (out is None or type(out) is np.ndarray):
        dtype = DTYPE_CODES.get(x.dtype)
        if dtype is not None:  # the common case: checked and run in one call (false: nothing ran)
            target = np.empty_like(x) if out is None else out
            if _C.activation_direct(code, _FORWARD, dtype, x, None, target, p0, p1):
                return target
    if not _host(x) or (out is not None and not _host(out)):
        if _autograd.grad_needed(x, out):
            return _autograd.run(func, _autograd.Rule(
                lambda xt: _forward(code, xt, None, p0, p1, func),
                lambda g, xt: _backward(code, g, xt, None, None, p0, p1, func + "_backward")), (x,), out)
        return _interop.dispatch(func, (("x", x), ("out", out)),
                                 lambda v: _forward_host(code, v["x"], v.get("out"), p0, p1, func),
                                 lambda call: _forward_cuda(call, code, p0, p1))
    return _forward_host(code, x, out, p0, p1, func)


# The elementwise host paths run dense inputs in their storage order, without
# a copy, and store a new result in that order, as PyTorch and NumPy's ufuncs
# keep a Fortran-ordered, transposed or channels_last layout.
def _forward_host(code, x, out, p0, p1, func):
    xa, order = as_dense_input(x, "x", func)
    target = prepare_out(out, xa.shape, xa.dtype, (("x", x),), func, order=order)
    _C.activation(code, _FORWARD, DTYPE_CODES[xa.dtype], in_order(xa, order), None, in_order(target.buffer, order),
                  p0, p1)
    return target.finish()


def _forward_cuda(call, code, p0, p1):
    x = call.input("x")
    target = call.output("out", x.shape, x.dtype, ("x",))
    call.cuda.activation(code, _FORWARD, x.code, x.ptr, 0, target.ptr, x.size, p0, p1, call.stream, call.device)
    return target.finish()


def _backward(code, grad, x, y, out, p0, p1, func):
    if (x is None) == (y is None):
        raise ValueError(f"{func}(): pass exactly one of 'x' (the input) and 'y' (the forward output)")
    if x is not None:
        name, direction, source = "x", _BACKWARD_FROM_X, x
    else:
        name, direction, source = "y", _BACKWARD_FROM_Y, y
    if type(grad) is np.ndarray and type(source) is np.ndarray and (out is None or type(out) is np.ndarray):
        dtype = DTYPE_CODES.get(grad.dtype)
        if dtype is not None:  # the common case: checked and run in one call (false: nothing ran)
            target = np.empty_like(grad) if out is None else out
            if _C.activation_direct(code, direction, dtype, source, grad, target, p0, p1):
                return target
    if not _host(grad) or not _host(source) or (out is not None and not _host(out)):
        _autograd.refuse_backward_input(func, grad, source, out)
        return _interop.dispatch(
            func, (("grad", grad), (name, source), ("out", out)),
            lambda v: _backward_host(code, direction, v["grad"], name, v[name], v.get("out"), p0, p1, func),
            lambda call: _backward_cuda(call, code, direction, name, p0, p1))
    return _backward_host(code, direction, grad, name, source, out, p0, p1, func)


def _backward_host(code, direction, grad, name, source, out, p0, p1, func):
    ga, order = as_dense_input(grad, "grad", func)
    sa, _ = as_dense_input(source, name, func)
    check_same(ga, "grad", sa, name, func)
    # Both in grad's storage order when the source is stored so too, else C order.
    if not in_order(sa, order).flags.c_contiguous:
        order, ga, sa = None, np.ascontiguousarray(ga), np.ascontiguousarray(sa)
    target = prepare_out(out, ga.shape, ga.dtype, (("grad", grad), (name, source)), func, order=order)
    _C.activation(code, direction, DTYPE_CODES[ga.dtype], in_order(sa, order), in_order(ga, order),
                  in_order(target.buffer, order), p0, p1)
    return target.finish()


def _backward_cuda(call, code, direction, name, p0, p1):
    call.check_same("grad", name)
    g = call.input("grad")
    s = call.input(name)
    target = call.output("out", g.shape, g.dtype, ("grad", name))
    call.cuda.activation(code, direction, g.code, s.ptr, g.ptr, target.ptr, g.size, p0, p1, call.stream,
                         call.device)
    return target.finish()


# The parameter whose negative values leave the sign of x out of y (leaky_relu:
# negative_slope * x > 0 for x < 0; elu: alpha (e^x - 1) >= 0 for x <= 0, while
# y = x > 0 above), so that the derivative cannot be taken from y.
_FROM_Y_SIGN_PARAM = {"leaky_relu": "negative_slope", "elu": "alpha"}


def _check_from_y(func, param, value):
    if value < 0:
        raise ValueError(f"{func}(): with a negative {param!r} the sign of y does not tell the sign of x; "
                         "pass x instead of y")


def _generate(activation, namespace):
    """Defines ``name`` and ``name_backward`` with real signatures."""
    name = activation.name
    params = activation.params
    param_list = "".join(f", {p}={d!r}" for p, d in params)
    param_names = ", ".join(p for p, _ in params)
    namespace[f"_args_{name}"] = activation.kernel_args
    forward_src = (
        f"def {name}(x{param_list}, *, out=None):\n"
        f"    code, p0, p1 = _args_{name}({name!r}, {param_names})\n"
        f"    return _forward(code, x, out, p0, p1, {name!r})\n"
    )
    if activation.from_y:
        sign_param = _FROM_Y_SIGN_PARAM.get(name)
        check_y = (f"    if y is not None: _check_from_y({name + '_backward'!r}, {sign_param!r}, p0)\n"
                   if sign_param else "")
        backward_src = (
            f"def {name}_backward(grad, x=None{param_list}, *, y=None, out=None):\n"
            f"    code, p0, p1 = _args_{name}({name + '_backward'!r}, {param_names})\n"
            f"{check_y}"
            f"    return _backward(code, grad, x, y, out, p0, p1, {name + '_backward'!r})\n"
        )
    else:
        backward_src = (
            f"def {name}_backward(grad, x{param_list}, *, out=None):\n"
            f"    code, p0, p1 = _args_{name}({name + '_backward'!r}, {param_names})\n"
            f"    return _backward(code, grad, x, None, out, p0, p1, {name + '_backward'!r})\n"
        )
    exec(forward_src, namespace)  # generated from the op table: real signatures, no per-call parsing
    exec(backward_src, namespace)
    forward, backward = namespace[name], namespace[f"{name}_backward"]
    params_doc = "".join(f"\n    {p}: default {d!r}" for p, d in params) or "\n    (none)"
    forward.__doc__ = (
        f"{name}(x): {activation.doc}\n\nParameters (as torch.nn.functional.{name}):{params_doc}\n"
        f"out: optional destination array (may be x itself).\n"
        f"On a torch tensor that requires grad, the result records {name}_backward for autograd."
    )
    y_doc = " or from the forward output y=" if activation.from_y else ""
    backward.__doc__ = (
        f"Gradient of {name}: grad * d{name}(x)/dx, computed from the input x{y_doc}.\n\n"
        f"{activation.doc}\nParameters as for {name}(); out may be grad itself."
    )
    forward.__module__ = backward.__module__ = __name__
    return forward, backward


__all__ = []
for _activation in ACTIVATIONS:
    _generate(_activation, globals())
    __all__ += [_activation.name, f"{_activation.name}_backward"]


# ---- PReLU: leaky ReLU with a learned slope per channel (axis 1) ------------

# A single shared weight is processed in rows of this many elements, which also
# fixes the blocks of the weight-gradient reduction (same bits on any thread count).
_PRELU_SHARED_ROW = 1 << 16


def _prelu_layout(xa, wa, func):
    channels = xa.shape[1] if xa.ndim >= 2 else 1
    if not (wa.ndim == 0 or (wa.ndim == 1 and wa.size in (1, channels))):
        raise ValueError(
            f"{func}(): 'weight' must be 0-D, or 1-D with 1 element or one per channel "
            f"(x.shape[1] = {channels}), got shape {wa.shape}"
        )
    if wa.dtype != xa.dtype:
        raise TypeError(f"{func}(): 'weight' has dtype {wa.dtype} but 'x' has dtype {xa.dtype}")
    if wa.size == 1:
        rows = -(-xa.size // _PRELU_SHARED_ROW)
        return 1, _PRELU_SHARED_ROW, rows
    inner = int(np.prod(xa.shape[2:], dtype=np.int64)) if xa.ndim > 2 else 1
    return channels, inner, xa.shape[0]


def prelu(x, weight, *, out=None):
    """prelu(x, weight): x if x > 0 else weight[c] * x, with c the index along
    axis 1 (as torch.nn.functional.prelu). ``weight`` is 0-d, or 1-d with 1
    element or x.shape[1]; inputs with fewer than 2 dimensions have one channel."""
    if not _host(x) or not _host(weight) or (out is not None and not _host(out)):
        if _autograd.grad_needed(x, weight, out):
            return _autograd.run("prelu", _autograd.Rule(prelu, prelu_backward), (x, weight), out)
        return _interop.dispatch("prelu", (("x", x), ("weight", weight), ("out", out)),
                                 lambda v: _prelu_host(v["x"], v["weight"], v.get("out")), _prelu_cuda)
    return _prelu_host(x, weight, out)


def _prelu_host(x, weight, out):
    func = "prelu"
    xa = as_input(x, "x", func)
    wa = as_input(weight, "weight", func)
    channels, inner, rows = _prelu_layout(xa, wa, func)
    target = prepare_out(out, xa.shape, xa.dtype, (("x", x), ("weight", weight)), func)
    _C.prelu_forward(DTYPE_CODES[xa.dtype], xa, wa, target.buffer, channels, inner, rows)
    return target.finish()


def _prelu_cuda(call):
    x = call.input("x")
    w = call.input("weight")
    channels, inner, _ = _prelu_layout(x, w, "prelu")
    target = call.output("out", x.shape, x.dtype, ("x", "weight"))
    if x.size > 0:
        call.cuda.prelu_forward(x.code, x.ptr, w.ptr, target.ptr, x.size, channels, inner, call.stream, call.device)
    return target.finish()


def prelu_backward(grad, x, weight, *, out=None):
    """Gradients of prelu: returns ``(grad_x, grad_weight)``. grad_x is
    grad if x > 0 else weight[c] * grad (at 0: the weight, as PyTorch);
    grad_weight[c] sums grad * x over the elements of channel c with x <= 0:
    blocks of 64 elements in 16 lanes of the compute type (4 additions each),
    the lanes and blocks accumulated in float64, in an order fixed by the shape
    (the same bits for every thread count and CPU ISA; on a GPU, for every run),
    then rounded to weight's dtype."""
    if not _host(grad) or not _host(x) or not _host(weight) or (out is not None and not _host(out)):
        _autograd.refuse_backward_input("prelu_backward", grad, x, weight, out)
        return _interop.dispatch("prelu_backward", (("grad", grad), ("x", x), ("weight", weight), ("out", out)),
                                 lambda v: _prelu_backward_host(v["grad"], v["x"], v["weight"], v.get("out")),
                                 _prelu_backward_cuda)
    return _prelu_backward_host(grad, x, weight, out)


def _prelu_backward_host(grad, x, weight, out):
    func = "prelu_backward"
    ga = as_input(grad, "grad", func)
    xa = as_input(x, "x", func)
    check_same(ga, "grad", xa, "x", func)
    wa = as_input(weight, "weight", func)
    channels, inner, rows = _prelu_layout(xa, wa, func)
    target = prepare_out(out, ga.shape, ga.dtype, (("grad", grad), ("x", x), ("weight", weight)), func)
    weight_grad = _C.prelu_backward(DTYPE_CODES[xa.dtype], ga, xa, wa, target.buffer, channels, inner, rows)
    weight_grad = weight_grad.reshape(wa.shape).astype(wa.dtype)
    if target.scalar:  # scalars in, scalars out, as Output.finish gives grad_x
        weight_grad = weight_grad[()]
    return target.finish(), weight_grad


def _prelu_backward_cuda(call):
    call.check_same("grad", "x")
    g = call.input("grad")
    x = call.input("x")
    w = call.input("weight")
    channels, inner, _ = _prelu_layout(x, w, "prelu_backward")
    target = call.output("out", g.shape, g.dtype, ("grad", "x", "weight"))
    weight_grad = call.empty(w.shape, w.dtype)
    if w.size > 0:
        partials = call.empty((call.cuda.prelu_partials_size(x.size, channels),), np.float64)
        call.cuda.prelu_backward(x.code, g.ptr, x.ptr, w.ptr, target.ptr, weight_grad.ptr, partials.ptr, x.size,
                                 channels, inner, call.stream, call.device)
    return target.finish(), weight_grad.obj


# ---- RReLU: randomized leaky ReLU ---------------------------------------------

def _check_rrelu(lower, upper, func):
    """(lower, upper) as floats, lower <= upper."""
    lower, upper = kernel_option(func, "lower", lower), kernel_option(func, "upper", upper)
    if lower > upper:
        raise ValueError(f"{func}(): 'lower' ({lower}) must not be greater than 'upper' ({upper})")
    return lower, upper


def rrelu(x, lower=RRELU_DEFAULT_LOWER, upper=RRELU_DEFAULT_UPPER, training=False, *, seed=0, offset=0, out=None):
    """rrelu(x): x if x > 0 else slope * x.

    training=False: slope = (lower + upper) / 2 (as torch.nn.functional.rrelu).
    training=True: element i's slope is lower + (upper - lower) * u_i with u_i
    uniform in [0, 1) from the counter-based generator Philox4x32-10 keyed by
    (seed, offset, i), so rrelu_backward with the same seed and offset
    regenerates the slopes without a saved noise tensor. Change ``offset`` (or
    ``seed``) every step to draw new slopes. CPU and GPU draw the same slopes.
    """
    func = "rrelu"
    lower, upper = _check_rrelu(lower, upper, func)
    training = bool_option(func, "training", training)
    if not training:
        return _forward(OP_CODES["leaky_relu"], x, out, (lower + upper) / 2.0, 0.0, func)
    seed, offset = _u64(seed, "seed", func), _u64(offset, "offset", func)
    if not _host(x) or (out is not None and not _host(out)):
        if _autograd.grad_needed(x, out):
            return _autograd.run(func, _autograd.Rule(
                lambda xt: rrelu(xt, lower, upper, True, seed=seed, offset=offset),
                lambda g, xt: rrelu_backward(g, xt, lower, upper, True, seed=seed, offset=offset)), (x,), out)
        return _interop.dispatch(func, (("x", x), ("out", out)),
                                 lambda v: _rrelu_host(v["x"], None, v.get("out"), lower, upper, seed, offset, func),
                                 lambda call: _rrelu_cuda(call, False, lower, upper, seed, offset))
    return _rrelu_host(x, None, out, lower, upper, seed, offset, func)


def rrelu_backward(grad, x, lower=RRELU_DEFAULT_LOWER, upper=RRELU_DEFAULT_UPPER, training=False, *,
                   seed=0, offset=0, out=None):
    """Gradient of rrelu: grad if x > 0 else slope * grad, with the slopes of
    rrelu(x, lower, upper, training, seed=seed, offset=offset)."""
    func = "rrelu_backward"
    lower, upper = _check_rrelu(lower, upper, func)
    training = bool_option(func, "training", training)
    if not training:
        return _backward(OP_CODES["leaky_relu"], grad, x, None, out, (lower + upper) / 2.0, 0.0, func)
    seed, offset = _u64(seed, "seed", func), _u64(offset, "offset", func)
    if not _host(grad) or not _host(x) or (out is not None and not _host(out)):
        _autograd.refuse_backward_input(func, grad, x, out)
        return _interop.dispatch(
            func, (("grad", grad), ("x", x), ("out", out)),
            lambda v: _rrelu_host(v["x"], v["grad"], v.get("out"), lower, upper, seed, offset, func),
            lambda call: _rrelu_cuda(call, True, lower, upper, seed, offset))
    return _rrelu_host(x, grad, out, lower, upper, seed, offset, func)


def _rrelu_host(x, grad, out, lower, upper, seed, offset, func):
    xa = as_input(x, "x", func)
    inputs = (("x", x),)
    ga = None
    if grad is not None:
        ga = as_input(grad, "grad", func)
        check_same(ga, "grad", xa, "x", func)
        inputs = (("grad", grad), ("x", x))
    target = prepare_out(out, xa.shape, xa.dtype, inputs, func)
    _C.rrelu_training(DTYPE_CODES[xa.dtype], xa, ga, target.buffer, lower, upper, seed, offset)
    return target.finish()


def _rrelu_cuda(call, backward, lower, upper, seed, offset):
    x = call.input("x")
    g = None  # kept referenced until the launch: a contiguous copy must outlive it
    inputs = ("x",)
    if backward:
        call.check_same("grad", "x")
        g = call.input("grad")
        inputs = ("grad", "x")
    target = call.output("out", x.shape, x.dtype, inputs)
    call.cuda.rrelu_training(x.code, x.ptr, g.ptr if g is not None else 0, target.ptr, x.size, lower, upper, seed, offset,
                             call.stream, call.device)
    return target.finish()


def _u64(value, argname, func):
    value = integer_option(func, argname, value)
    if not 0 <= value < 2**64:
        raise ValueError(f"{func}(): '{argname}' must be in [0, 2**64), got {value}")
    return value


__all__ += ["prelu", "prelu_backward", "rrelu", "rrelu_backward"]
