"""The CUDA side of nnfuse.softmax: device arrays described by
``nnfuse._interop.DeviceCall``, kernels from ``nnfuse._cuda`` queued on the
caller's current stream. Axis moves, mask broadcasts and label conversions are
done with the caller's library (PyTorch or CuPy) on that same stream."""

from __future__ import annotations

import numpy as np

from ._array import kernel_option

_REDUCTION_CODES = {"mean": 0, "sum": 1, "none": 2}


def _need_library(call, what):
    if call.lib not in ("torch", "cupy"):
        raise ValueError(f"{call.func}(): {what} with a bare CUDA array needs CuPy or PyTorch installed; "
                         f"pass a CuPy array or a torch tensor")


def _ptr(lib, obj):
    return obj.data_ptr() if lib == "torch" else obj.data.ptr


def _moved_last(call, obj, axis):
    """``obj`` (of the call's library) with ``axis`` moved last, C-contiguous."""
    _need_library(call, "an axis other than the last")
    if call.lib == "torch":
        return obj.movedim(axis, -1).contiguous()
    import cupy

    return call._on_device(lambda: cupy.ascontiguousarray(cupy.moveaxis(obj, axis, -1)))


def _copy_back(call, target_obj, rows_obj, axis):
    """target[...] = rows_obj with its last axis moved back to ``axis``."""
    if call.lib == "torch":
        target_obj.copy_(rows_obj.movedim(-1, axis))
    else:
        import cupy

        call._on_device(lambda: cupy.copyto(target_obj, cupy.moveaxis(rows_obj, -1, axis)))


def _apart_from(call, obj, written):
    """``obj`` (a C-contiguous read-only operand of the call's library: a mask,
    labels), or a copy of it where it shares bytes with ``written`` (the
    kernel's output, a DeviceArg): the kernels read it while they write."""
    span = written.span()
    ptr = _ptr(call.lib, obj)
    nbytes = obj.numel() * obj.element_size() if call.lib == "torch" else obj.nbytes
    if span is None or nbytes == 0 or ptr + nbytes <= span[0] or span[1] <= ptr:
        return obj
    return obj.clone() if call.lib == "torch" else call._on_device(obj.copy)


def _workspace(call, doubles):
    """(holder, pointer) of device scratch of `doubles` float64 (0: none)."""
    if doubles <= 0:
        return None, 0
    ws = call.empty((int(doubles),), np.float64)
    return ws, ws.ptr


def _keep(call, mask, shape, axis, func):
    """The mask as a C-contiguous device array of one byte per element (axis
    last)."""
    _need_library(call, "'mask'")
    last = len(shape) == 0 or axis == len(shape) - 1
    if call.lib == "torch":
        import torch

        m = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(mask, device=f"cuda:{call.device}")
        if m.dtype != torch.bool:
            raise TypeError(f"{func}(): 'mask' must be a boolean array (True keeps a position), got dtype {m.dtype}")
        if m.device.type == "cuda" and (m.device.index if m.device.index is not None else call.device) != call.device:
            raise ValueError(f"{func}(): 'mask' is on {m.device}, but 'x' is on cuda:{call.device}")
        try:
            m = m.expand(shape)
        except RuntimeError:
            raise ValueError(f"{func}(): 'mask' of shape {tuple(m.shape)} does not broadcast to the shape of 'x' "
                             f"{tuple(shape)}") from None
        return (m if last else m.movedim(axis, -1)).contiguous()
    import cupy

    def build():
        m = cupy.asarray(mask)
        if m.dtype != np.bool_:
            raise TypeError(f"{func}(): 'mask' must be a boolean array (True keeps a position), got dtype {m.dtype}")
        if m.device.id != call.device:
            raise ValueError(f"{func}(): 'mask' is on cuda:{m.device.id}, but 'x' is on cuda:{call.device}")
        try:
            m = cupy.broadcast_to(m, shape)
        except ValueError:
            raise ValueError(f"{func}(): 'mask' of shape {m.shape} does not broadcast to the shape of 'x' "
                             f"{tuple(shape)}") from None
        return cupy.ascontiguousarray(m if last else cupy.moveaxis(m, axis, -1))

    return call._on_device(build)


def forward(call, log, axis, scale, mask, masked_rows, func):
    from .softmax import _MASKED_ROWS, _axis

    x = call.input("x")
    ax = _axis(axis, x.ndim, func)
    scale = kernel_option(func, "scale", scale)
    if masked_rows not in _MASKED_ROWS:
        raise ValueError(f"{func}(): 'masked_rows' must be 'zero' or 'nan', got {masked_rows!r}")
    target = call.output("out", x.shape, x.dtype, ("x",))
    if x.size == 0:
        return target.finish()
    keep_holder = _apart_from(call, _keep(call, mask, x.shape, ax, func), target.buffer) if mask is not None else None
    keep = _ptr(call.lib, keep_holder) if keep_holder is not None else 0
    cols = x.shape[ax] if x.ndim else 1
    rows = x.size // cols
    ws, ws_ptr = _workspace(call, call.cuda.softmax_workspace_size(rows, cols))
    if x.ndim == 0 or ax == x.ndim - 1:
        call.cuda.softmax_forward(log, x.code, x.ptr, keep, target.ptr, rows, cols, scale, masked_rows == "nan",
                                  ws_ptr, call.stream, call.device)
    else:
        moved = _moved_last(call, x.obj, ax)
        buffer = call.empty(tuple(moved.shape), x.dtype)
        call.cuda.softmax_forward(log, x.code, _ptr(call.lib, moved), keep, buffer.ptr, rows, cols, scale,
                                  masked_rows == "nan", ws_ptr, call.stream, call.device)
        _copy_back(call, target.buffer.obj, buffer.obj, ax)
    del keep_holder, ws  # freed in stream order by the caller's allocator
    return target.finish()


def backward(call, log, axis, scale, func):
    from .softmax import _axis

    call.check_same("grad", "y")
    g = call.input("grad")
    y = call.input("y")
    ax = _axis(axis, g.ndim, func)
    scale = kernel_option(func, "scale", scale)
    target = call.output("out", g.shape, g.dtype, ("grad", "y"))
    if g.size == 0:
        return target.finish()
    cols = g.shape[ax] if g.ndim else 1
    rows = g.size // cols
    ws, ws_ptr = _workspace(call, call.cuda.softmax_workspace_size(rows, cols))
    if g.ndim == 0 or ax == g.ndim - 1:
        call.cuda.softmax_backward(log, g.code, g.ptr, y.ptr, target.ptr, rows, cols, scale, ws_ptr, call.stream,
                                   call.device)
    else:
        moved_g = _moved_last(call, g.obj, ax)
        moved_y = _moved_last(call, y.obj, ax)
        buffer = call.empty(tuple(moved_g.shape), g.dtype)
        call.cuda.softmax_backward(log, g.code, _ptr(call.lib, moved_g), _ptr(call.lib, moved_y), buffer.ptr, rows,
                                   cols, scale, ws_ptr, call.stream, call.device)
        _copy_back(call, target.buffer.obj, buffer.obj, ax)
    del ws
    return target.finish()


def _labels64(call, labels, shape, func):
    """labels as a flat C-contiguous int64 device array of the call's library."""
    _need_library(call, "softmax_cross_entropy")
    if call.lib == "torch":
        import torch

        lab = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(labels, device=f"cuda:{call.device}")
        if lab.dtype.is_floating_point or lab.dtype.is_complex or lab.dtype == torch.bool:
            raise TypeError(f"{func}(): 'labels' must be an integer array, got dtype {lab.dtype}")
        if lab.device.type == "cuda" and (lab.device.index if lab.device.index is not None else call.device) \
                != call.device:
            raise ValueError(f"{func}(): 'labels' is on {lab.device}, but 'logits' is on cuda:{call.device}")
        if tuple(lab.shape) != tuple(shape):
            raise ValueError(f"{func}(): 'labels' has shape {tuple(lab.shape)}, expected {tuple(shape)} "
                             f"(the shape of 'logits' without its last axis)")
        return lab.to(torch.int64).contiguous().reshape(-1)
    import cupy

    def build():
        lab = cupy.asarray(labels)
        if lab.dtype.kind not in "iu":
            raise TypeError(f"{func}(): 'labels' must be an integer array, got dtype {lab.dtype}")
        if lab.device.id != call.device:
            raise ValueError(f"{func}(): 'labels' is on cuda:{lab.device.id}, but 'logits' is on cuda:{call.device}")
        if tuple(lab.shape) != tuple(shape):
            raise ValueError(f"{func}(): 'labels' has shape {tuple(lab.shape)}, expected {tuple(shape)} "
                             f"(the shape of 'logits' without its last axis)")
        return cupy.ascontiguousarray(lab.astype(cupy.int64)).reshape(-1)

    return call._on_device(build)


def cross_entropy(call, labels, ignore_index, label_smoothing, z_loss, reduction, inplace, func):
    """The options come checked (softmax._ce_options)."""
    original = call.args["logits"]
    if inplace and ((original.size and not original.contiguous) or original.readonly):
        raise ValueError(f"{func}(): inplace=True needs 'logits' to be C-contiguous and writeable")
    la = call.input("logits")
    if la.ndim < 1:
        raise ValueError(f"{func}(): 'logits' must have at least 1 dimension (the classes), got a 0-d array")
    classes = la.shape[-1]
    lab_shape = la.shape[:-1]
    lab64 = _labels64(call, labels, lab_shape, func)
    rows = int(np.prod(lab_shape, dtype=np.int64))
    target = None if inplace else call.output("out", la.shape, la.dtype, ("logits",))
    grad = la if inplace else target.buffer
    lab64 = _apart_from(call, lab64, grad)
    loss = call.empty(lab_shape if reduction == "none" else (), la.dtype)
    # The kernels check the labels on the device (a bad one is never read) and
    # hand back the first bad row after the launches: the one synchronisation.
    ws, ws_ptr = _workspace(call, call.cuda.cross_entropy_workspace_size(rows, classes))
    first_bad = call.cuda.softmax_cross_entropy(la.code, la.ptr, _ptr(call.lib, lab64), grad.ptr, loss.ptr,
                                                _REDUCTION_CODES[reduction], rows, classes, ignore_index,
                                                label_smoothing, z_loss, ws_ptr, call.stream, call.device)
    del ws
    if first_bad >= 0:
        where = [int(i) for i in np.unravel_index(first_bad, lab_shape)] if lab_shape else []
        value = int(call._on_device(lambda: lab64[first_bad].item()))
        raise ValueError(f"{func}(): labels{where} = {value} is outside [0, {classes}) "
                         f"and is not ignore_index ({ignore_index})")
    return loss.obj, (original.original if inplace else target.finish())
