"""Softmax, log-softmax, their backward passes and the fused softmax
cross-entropy, on NumPy arrays of float32, float64, float16 or bfloat16.

16-bit inputs are computed in float32 and rounded to nearest even once;
float64 is computed in float64. Rows are reduced in a fixed order that does not
depend on the thread count or on the CPU ISA: scalar, AVX2 and AVX-512 give
identical bits. Any axis works; when it is not the last one (or the input is
not C-contiguous) the input is copied first.

Every function also takes PyTorch tensors, CuPy arrays and other CUDA arrays
(see ``nnfuse._interop``) and returns the caller's array type. CUDA arrays run
on the CUDA kernels (csrc/cuda/softmax.cu) on the caller's current stream with
no synchronisation, except softmax_cross_entropy, which validates the labels
and counts the rows that are not ignored with the caller's library before the
launch (a device-to-host read, hence a sync of the current stream). On a
torch tensor that requires grad (while autograd records), softmax and
log_softmax record their backward functions for autograd, and the
cross-entropy's loss records the gradient it computed (``nnfuse._autograd``).
"""

from __future__ import annotations

import math

import numpy as np

from . import _C, _autograd, _interop
from . import _softmax_cuda as _cuda
from ._array import (DTYPE_CODES, FLOAT32_MAX, as_input, bool_option, check_same, integer_option, kernel_option,
                     prepare_out, real_option, refuse_grad_option, refuse_masked)

_MASKED_ROWS = ("zero", "nan")
_REDUCTIONS = ("mean", "sum", "none")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _axis(axis, ndim, func):
    axis = integer_option(func, "axis", axis)
    size = max(ndim, 1)
    if not -size <= axis < size:
        raise ValueError(f"{func}(): 'axis' {axis} is out of range for an array of {ndim} dimension(s)")
    return axis % size


def _rows_view(a, axis):
    """``a`` with ``axis`` moved last, C-contiguous (a copy unless it already was)."""
    if axis == a.ndim - 1:
        return a
    return np.ascontiguousarray(np.moveaxis(a, axis, -1))


def _keep_bytes(mask, shape, axis, func):
    refuse_masked(mask, "mask", func)
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        raise TypeError(f"{func}(): 'mask' must be a boolean array (True keeps a position), got dtype {m.dtype}")
    try:
        m = np.broadcast_to(m, shape)
    except ValueError:
        raise ValueError(f"{func}(): 'mask' of shape {m.shape} does not broadcast to the shape of 'x' {shape}") from None
    return np.ascontiguousarray(np.moveaxis(m, axis, -1) if len(shape) and axis != len(shape) - 1 else m).view(np.uint8)


def _run_rows(xa, axis, target, launch):
    """Runs launch(rows_output, rows, cols) on the axis-last layout of xa and
    leaves the result in target.buffer (xa's layout). A 0-d array is one row
    of one element."""
    if xa.ndim == 0:
        launch(target.buffer.reshape(1), 1, 1)
        return
    cols = xa.shape[axis]
    rows = xa.size // cols
    if axis == xa.ndim - 1:
        launch(target.buffer, rows, cols)
    else:
        buffer = np.empty(np.moveaxis(xa, axis, -1).shape, xa.dtype)
        launch(buffer, rows, cols)
        np.copyto(target.buffer, np.moveaxis(buffer, -1, axis))


def _host(value):
    return value is None or type(value) is np.ndarray


def _check_aux(func, arrays, aux_name, aux):
    """The interop ValueError for an array argument the interop layer does not
    describe (a mask, labels) on the other side of the host/device line."""
    if aux is None:
        return
    others = [name for name, v in arrays if v is not None]
    others_on_gpu = any(_interop.is_device(v) for _, v in arrays if v is not None)
    if others_on_gpu != _interop.is_device(aux):
        where = ("on a GPU", "in host memory")
        raise ValueError(
            f"{func}(): '{aux_name}' is {where[0] if not others_on_gpu else where[1]} but "
            f"{', '.join(repr(n) for n in others)} {'are' if len(others) > 1 else 'is'} "
            f"{where[0] if others_on_gpu else where[1]}; pass all array arguments on the same device")


def _host_aux(func, name, value):
    """A mask or labels argument as NumPy on the host path: a torch tensor
    through the interop's CPU view (detached where it requires grad; another
    device, a sparse layout or a dtype NumPy lacks named in a TypeError),
    anything else by np.asarray."""
    if _interop._torch_tensor(value):
        return _interop.torch_cpu_view(value, func, name)
    return np.asarray(value)


def _direct_args(x, axis, scale, out):
    """x's dtype code when a call on x along ``axis`` may take the direct
    binding (NumPy arrays, the last axis, a plain scale within the float32
    range: not NaN, inf or one that kernel_option refuses), else None."""
    if (type(x) is np.ndarray and (out is None or type(out) is np.ndarray) and type(axis) is int
            and (axis == -1 or axis == x.ndim - 1) and (type(scale) is float or type(scale) is int)
            and -FLOAT32_MAX <= scale <= FLOAT32_MAX):
        return DTYPE_CODES.get(x.dtype)
    return None


def _forward(log, x, axis, scale, mask, masked_rows, out, func):
    if mask is None and type(masked_rows) is str and masked_rows in _MASKED_ROWS:
        code = _direct_args(x, axis, scale, out)
        if code is not None:  # the common case: checked and run in one call (false: nothing ran)
            target = np.empty_like(x) if out is None else out
            if _C.softmax_forward_direct(log, code, x, target, float(scale), masked_rows == "nan"):
                return target
    if not _host(x) or not _host(out) or not (mask is None or isinstance(mask, np.ndarray)):
        if _autograd.grad_needed(x, out):
            refuse_grad_option(func, "scale", scale)  # checked here: autograd runs the forward without grad
            return _autograd.run(func, _autograd.Rule(
                lambda xt: _forward(log, xt, axis, scale, mask, masked_rows, None, func),
                lambda g, yt: _backward(log, g, yt, axis, scale, None, func + "_backward"), save_output=True),
                (x,), out)
        arrays = (("x", x), ("out", out))
        _check_aux(func, arrays, "mask", mask)
        return _interop.dispatch(
            func, arrays,
            lambda v: _forward_host(log, v["x"], axis, scale, None if mask is None else _host_aux(func, "mask", mask),
                                    masked_rows, v.get("out"), func),
            lambda call: _cuda.forward(call, log, axis, scale, mask, masked_rows, func))
    return _forward_host(log, x, axis, scale, mask, masked_rows, out, func)


def _forward_host(log, x, axis, scale, mask, masked_rows, out, func):
    xa = as_input(x, "x", func)
    ax = _axis(axis, xa.ndim, func)
    scale = kernel_option(func, "scale", scale)
    if masked_rows not in _MASKED_ROWS:
        raise ValueError(f"{func}(): 'masked_rows' must be 'zero' or 'nan', got {masked_rows!r}")
    target = prepare_out(out, xa.shape, xa.dtype, (("x", x),), func)
    keep = _keep_bytes(mask, xa.shape, ax, func) if mask is not None else None
    if keep is not None and np.may_share_memory(keep, target.buffer):
        keep = keep.copy()  # a mask in the output's memory, read while the output is written
    if xa.size == 0:
        return target.finish()
    rows_x = _rows_view(xa.reshape(-1) if xa.ndim == 0 else xa, ax)
    if keep is not None and xa.ndim == 0:
        keep = keep.reshape(1)
    code = DTYPE_CODES[xa.dtype]
    _run_rows(xa, ax, target, lambda buf, rows, cols: _C.softmax_forward(
        log, code, rows_x, keep, buf, rows, cols, scale, masked_rows == "nan"))
    return target.finish()


def _backward(log, grad, y, axis, scale, out, func):
    code = _direct_args(grad, axis, scale, out)
    if code is not None and type(y) is np.ndarray:
        target = np.empty_like(grad) if out is None else out
        if _C.softmax_backward_direct(log, code, grad, y, target, float(scale)):
            return target
    if not _host(grad) or not _host(y) or not _host(out):
        _autograd.refuse_backward_input(func, grad, y, out)
        return _interop.dispatch(
            func, (("grad", grad), ("y", y), ("out", out)),
            lambda v: _backward_host(log, v["grad"], v["y"], axis, scale, v.get("out"), func),
            lambda call: _cuda.backward(call, log, axis, scale, func))
    return _backward_host(log, grad, y, axis, scale, out, func)


def _backward_host(log, grad, y, axis, scale, out, func):
    ga = as_input(grad, "grad", func)
    ya = as_input(y, "y", func)
    check_same(ga, "grad", ya, "y", func)
    ax = _axis(axis, ga.ndim, func)
    scale = kernel_option(func, "scale", scale)
    target = prepare_out(out, ga.shape, ga.dtype, (("grad", grad), ("y", y)), func)
    if ga.size == 0:
        return target.finish()
    rows_g = _rows_view(ga.reshape(-1) if ga.ndim == 0 else ga, ax)
    rows_y = _rows_view(ya.reshape(-1) if ya.ndim == 0 else ya, ax)
    code = DTYPE_CODES[ga.dtype]
    _run_rows(ga, ax, target, lambda buf, rows, cols: _C.softmax_backward(
        log, code, rows_g, rows_y, buf, rows, cols, scale))
    return target.finish()


def softmax(x, axis=-1, *, scale=1.0, mask=None, masked_rows="zero", out=None):
    """softmax(x)_i = exp(z_i - max z) / sum_j exp(z_j - max z) along ``axis``,
    with z = scale * x.

    scale: multiplies the logits inside the kernel, rounded to the compute type
        (float32 for 32- and 16-bit inputs) first: z = round(scale * x). A
        product beyond that type's range is an infinite z (a row with one
        beyond +3.4e38 in float32 is NaN, as in PyTorch; the float64 reference
        keeps it finite).
    mask: optional boolean array broadcastable to x; True keeps a position,
        False excludes it (its output is 0).
    masked_rows: what a row without any position left gives — all masked, or
        all -inf: "zero" gives zeros, "nan" gives NaN (PyTorch's behaviour).
    A NaN or +inf logit among a row's kept positions makes the whole row NaN
    (as PyTorch); -inf logits give 0.
    out: optional destination (may be x itself)."""
    return _forward(False, x, axis, scale, mask, masked_rows, out, "softmax")


def log_softmax(x, axis=-1, *, scale=1.0, mask=None, masked_rows="zero", out=None):
    """log_softmax(x)_i = (z_i - max z) - log sum_j exp(z_j - max z) along
    ``axis``, z = scale * x; arguments as for :func:`softmax`. Masked positions
    give -inf; a row without any position left gives -inf with
    masked_rows="zero" and NaN with "nan"."""
    return _forward(True, x, axis, scale, mask, masked_rows, out, "log_softmax")


def softmax_backward(grad, y, axis=-1, *, scale=1.0, out=None):
    """dL/dx of y = softmax(x, axis, scale=scale) from the forward output y and
    grad = dL/dy: scale * y * (grad - sum(grad * y, axis)). The row sum is
    compensated and kept in double. out may be grad or y itself."""
    return _backward(False, grad, y, axis, scale, out, "softmax_backward")


def log_softmax_backward(grad, y, axis=-1, *, scale=1.0, out=None):
    """dL/dx of y = log_softmax(x, axis, scale=scale) from the forward output y
    and grad = dL/dy: scale * (grad - exp(y) * sum(grad, axis)). out may be
    grad or y itself."""
    return _backward(True, grad, y, axis, scale, out, "log_softmax_backward")


def softmax_cross_entropy(logits, labels, *, ignore_index=-100, label_smoothing=0.0, z_loss=0.0,
                          reduction="mean", inplace=False, out=None):
    """Fused softmax cross-entropy: ``(loss, grad_logits)`` in one pass over the
    logits, without materialising the log-probabilities.

    logits: shape (..., C); labels: integers of shape (...). As
    torch.nn.functional.cross_entropy (class-index targets, no class weights):
    rows whose label is ``ignore_index`` contribute 0 to the loss and get a zero
    gradient; ``label_smoothing`` eps mixes the one-hot target with the uniform
    distribution: loss = (1 - eps) * (lse - z_label) + eps * (lse - mean(z)),
    lse = logsumexp(row). ``z_loss`` (finite, >= 0) adds z_loss * lse^2 per row (PaLM).
    reduction: "mean" (over the rows that are not ignored; NaN if all are),
    "sum", or "none" (per-row losses, shape of labels). grad_logits is the
    gradient of the returned loss; for "none", of the sum of the per-row losses.
    The loss is accumulated in float64 in an order fixed by the row count (row i
    into partial sum i % 8, then the eight pairwise): the same bits for every
    thread count. The loss has the logits' dtype (a 0-d array unless "none").
    inplace=True writes grad_logits into the logits' own buffer (which must
    then be a writeable C-contiguous ndarray) and returns it. out: optional
    destination of grad_logits (the logits' shape and dtype, writeable, not
    partially overlapping them), returned; a training loop that passes the
    same buffer each step saves the allocation and the page faults of a
    fresh gradient. inplace=True and out together are a ValueError.
    A label outside [0, C) that is not ignore_index raises ValueError naming the
    first such index.

    CUDA arrays (logits and labels both on the GPU): the labels are checked and
    the rows that count are counted with the caller's library before the
    launch; reading those two numbers back synchronises the current stream.
    inplace=True then needs C-contiguous logits, whose buffer receives the
    gradient."""
    func = "softmax_cross_entropy"
    inplace = bool_option(func, "inplace", inplace)
    if inplace and out is not None:
        raise ValueError(f"{func}(): pass either inplace=True or 'out', not both")
    ignore_index, label_smoothing, z_loss = _ce_options(ignore_index, label_smoothing, z_loss, reduction, func)
    if type(logits) is np.ndarray and type(labels) is np.ndarray and (out is None or type(out) is np.ndarray):
        code = DTYPE_CODES.get(logits.dtype)
        if code is not None:  # the common case: checked and run in one call (None: nothing ran)
            grad = logits if inplace else np.empty_like(logits) if out is None else out
            done = _C.softmax_cross_entropy_direct(code, logits, labels, grad, ignore_index, label_smoothing, z_loss,
                                                   reduction == "mean")
            if done is not None:
                return _ce_loss(*done, reduction, labels.shape, logits.dtype), grad
    if not _host(logits) or not _host(out) or not (labels is None or isinstance(labels, np.ndarray)):
        if _autograd.grad_needed(logits, out):
            return _autograd.run(func, _autograd.CrossEntropyRule(
                lambda lt: softmax_cross_entropy(lt, labels, ignore_index=ignore_index, label_smoothing=label_smoothing,
                                                 z_loss=z_loss, reduction=reduction),
                reduction == "none"), (logits,), out, inplace)
        arrays = (("logits", logits), ("out", out))
        _check_aux(func, arrays, "labels", labels)
        return _interop.dispatch(
            func, arrays,
            lambda v: _cross_entropy_host(v["logits"], _host_aux(func, "labels", labels), ignore_index,
                                          label_smoothing, z_loss, reduction, inplace, v.get("out")),
            lambda call: _cuda.cross_entropy(call, labels, ignore_index, label_smoothing, z_loss, reduction,
                                             inplace, func))
    return _cross_entropy_host(logits, labels, ignore_index, label_smoothing, z_loss, reduction, inplace, out)


def _ce_loss(losses, total, counted, reduction, shape, dtype):
    """The returned loss from the kernel's float64 per-row losses and their
    sum (run_cross_entropy's fixed order)."""
    if reduction == "none":
        return losses.reshape(shape).astype(dtype)
    if reduction == "sum":
        return np.array(total, dtype=dtype)
    return np.array(total / counted if counted else np.nan, dtype=dtype)


def _ce_options(ignore_index, label_smoothing, z_loss, reduction, func):
    """The options checked, as (int, float, float); every path takes them from here."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{func}(): 'reduction' must be 'mean', 'sum' or 'none', got {reduction!r}")
    label_smoothing = real_option(func, "label_smoothing", label_smoothing)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{func}(): 'label_smoothing' must be in [0, 1], got {label_smoothing}")
    z_loss = real_option(func, "z_loss", z_loss)
    # A NaN, infinite or negative weight would make every loss NaN or inf, or
    # reward large logits: never what a training loop means.
    if not 0.0 <= z_loss < math.inf:
        raise ValueError(f"{func}(): 'z_loss' must be a finite number >= 0, got {z_loss}")
    ignore_index = integer_option(func, "ignore_index", ignore_index)
    if not _INT64_MIN <= ignore_index <= _INT64_MAX:  # the kernels compare it with int64 labels
        raise ValueError(f"{func}(): 'ignore_index' must fit in int64, got {ignore_index}")
    return ignore_index, label_smoothing, z_loss


def _cross_entropy_host(logits, labels, ignore_index, label_smoothing, z_loss, reduction, inplace, out):
    func = "softmax_cross_entropy"
    if inplace:
        if not isinstance(logits, np.ndarray):
            raise TypeError(f"{func}(): inplace=True needs 'logits' to be a numpy.ndarray, "
                            f"got {type(logits).__name__}")
        if not logits.flags.c_contiguous or not logits.flags.writeable:
            raise ValueError(f"{func}(): inplace=True needs 'logits' to be C-contiguous and writeable")
    la = as_input(logits, "logits", func)
    if la.ndim < 1:
        raise ValueError(f"{func}(): 'logits' must have at least 1 dimension (the classes), got a 0-d array")
    refuse_masked(labels, "labels", func)
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"{func}(): 'labels' must be an integer array, got dtype {lab.dtype}")
    if lab.shape != la.shape[:-1]:
        raise ValueError(f"{func}(): 'labels' has shape {lab.shape}, expected {la.shape[:-1]} "
                         f"(the shape of 'logits' without its last axis)")
    classes = la.shape[-1]
    with np.errstate(over="ignore"):
        lab64 = np.ascontiguousarray(lab, dtype=np.int64).reshape(-1)
    if lab.dtype.kind == "u" and lab.size:
        too_big = lab.reshape(-1) > np.iinfo(np.int64).max
    else:
        too_big = np.zeros(lab64.shape, bool)
    bad = too_big | ((lab64 != ignore_index) & ((lab64 < 0) | (lab64 >= classes)))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        where = tuple(int(i) for i in np.unravel_index(first, lab.shape)) if lab.ndim else ()
        raise ValueError(f"{func}(): labels{list(where)} = {lab.reshape(-1)[first]} is outside [0, {classes}) "
                         f"and is not ignore_index ({ignore_index})")
    counted = int(np.count_nonzero(lab64 != ignore_index))
    weight = 1.0 / counted if reduction == "mean" and counted else 1.0
    if inplace:
        target = None
        grad = la
    else:
        target = prepare_out(out, la.shape, la.dtype, (("logits", logits),), func)
        grad = target.buffer
    if np.may_share_memory(lab64, grad):
        # Labels stored in the gradient's memory: the kernels read a row's
        # label again after writing gradient rows, so they take a copy.
        lab64 = lab64.copy()
    rows = lab64.size
    if rows:
        losses, total = _C.softmax_cross_entropy(DTYPE_CODES[la.dtype], la, lab64, grad, rows, classes,
                                                 ignore_index, label_smoothing, z_loss, weight)
    else:
        losses, total = np.zeros(0), 0.0
    return _ce_loss(losses, total, counted, reduction, lab.shape, la.dtype), grad if inplace else target.finish()


__all__ = ["softmax", "log_softmax", "softmax_backward", "log_softmax_backward", "softmax_cross_entropy"]
