"""The CUDA side of nnfuse.optim: lists of PyTorch CUDA tensors, CuPy arrays or
other CUDA arrays (through nnfuse._interop) updated by csrc/cuda/optim.cu.

One step queues a few kernels on the caller's current stream (PyTorch's or
CuPy's) and returns without synchronising: the gradient pass (sum of squares
and non-finite check), a finalize kernel (global norm, skip flag, clip factors,
step count and the step-dependent hyper-parameters, all in device memory) and
the fused multi-tensor update, which reads the skip flag and the factors from
device memory. The step count therefore lives on the device (a float64 scalar),
and so does the learning rate when it is given as a device scalar
(``capturable=True`` in the classes): then a whole step can be captured in a
CUDA graph and replayed.

The returned :class:`StepRecord` holds float64 device scalars (0-d arrays of the
caller's library): ``grad_norm`` (None when no gradient pass ran), ``clip_factor``,
``skipped`` (1.0 or 0.0) and ``step``. Reading them is the caller's choice (and
synchronises); the classes reuse one record buffer, so copy a value to keep it
past the next step.
"""

from __future__ import annotations

import numpy as np

from .. import _C, _interop
from .._array import DTYPE_CODES, check_compute_range

_KINDS = {"adam": 0, "sgd": 1, "rmsprop": 2, "adagrad": 3}
_NONFINITE = {"skip": 0, "zero": 1, "propagate": 2}
_TORCH_DTYPES = None


def on_device(arrays) -> bool:
    """True when the first array of the list lives on a GPU."""
    return bool(arrays) and not isinstance(arrays[0], np.ndarray) and _interop.is_device(arrays[0])


class Info:
    """Pointer, shape, dtype (NumPy), device and library of one device array."""

    __slots__ = ("ptr", "shape", "dtype", "device", "contiguous", "lib", "obj")


def _torch_dtypes():
    global _TORCH_DTYPES
    if _TORCH_DTYPES is None:
        _TORCH_DTYPES = _interop._torch_dtype_map()
    return _TORCH_DTYPES


def describe(value, name, func) -> Info:
    info = Info()
    if _interop._torch_tensor(value) and value.is_cuda:
        dtype = _torch_dtypes().get(value.dtype)
        if dtype is None:
            raise TypeError(f"{func}(): '{name}' has dtype {value.dtype}, which nnfuse does not support")
        info.ptr, info.shape, info.dtype = value.data_ptr(), tuple(value.shape), dtype
        info.device, info.contiguous, info.lib, info.obj = value.get_device(), value.is_contiguous(), "torch", value
        return info
    if _interop._cupy_array(value):
        info.ptr, info.shape, info.dtype = value.data.ptr, tuple(value.shape), value.dtype
        info.device, info.contiguous, info.lib, info.obj = value.device.id, value.flags.c_contiguous, "cupy", value
        return info
    if not _interop.is_device(value):
        raise ValueError(f"{func}(): '{name}' is in host memory but 'params[0]' is on a GPU; pass all arrays on "
                         "the same device")
    arg = _interop._describe(name, value, func)
    info.ptr, info.shape, info.dtype, info.device = arg.ptr, arg.shape, arg.dtype, arg.device
    info.contiguous, info.lib, info.obj = arg.contiguous, arg.lib, arg.obj
    return info


# ---- allocation with the caller's library -----------------------------------------------------

def _torch_dtype(dtype):
    for t, n in _torch_dtypes().items():
        if n == dtype:
            return t
    raise TypeError(f"dtype {dtype} has no torch equivalent")


def full(like: Info, shape, dtype, value):
    """A new array of the library of `like`, on its device, filled with `value` (a fill kernel, no copy
    from the host)."""
    dtype = np.dtype(dtype)
    if like.lib == "torch":
        import torch

        return torch.full(tuple(shape), float(value), dtype=_torch_dtype(dtype), device=f"cuda:{like.device}")
    import cupy

    with cupy.cuda.Device(like.device):
        return cupy.full(tuple(shape), value, dtype)


def astype_copy(like: Info, value, dtype):
    """A copy of the device array `value` converted to `dtype` (master weights)."""
    if like.lib == "torch":
        return value.to(dtype=_torch_dtype(np.dtype(dtype)), copy=True)
    import cupy

    with cupy.cuda.Device(like.device):
        return cupy.array(value, dtype=dtype, copy=True)


def clone(value):
    if _interop._torch_tensor(value):
        return value.clone()
    return value.copy()


def copy_into(dst, src):
    """dst[...] = src, on the device (src may be a host array or scalar)."""
    if _interop._torch_tensor(dst):
        import torch

        dst.copy_(torch.as_tensor(np.asarray(src) if not _interop._torch_tensor(src) and not
                                  _interop.is_device(src) else src))
        return
    import cupy

    cupy.copyto(dst, cupy.asarray(src))


def stream_of(info: Info) -> int:
    if info.lib == "torch":
        import torch

        return torch.cuda.current_stream(info.device).cuda_stream
    if info.lib == "cupy":
        import cupy

        with cupy.cuda.Device(info.device):
            return cupy.cuda.get_current_stream().ptr
    return int(getattr(info.obj, "__cuda_array_interface__", {}).get("stream") or 0)


# ---- checks ------------------------------------------------------------------------------------

def _check_list(values, name, n, func):
    if isinstance(values, np.ndarray) or not isinstance(values, (list, tuple)):
        raise TypeError(f"{func}(): '{name}' must be a list of arrays, got {type(values).__name__}")
    if len(values) != n:
        raise ValueError(f"{func}(): '{name}' has {len(values)} arrays but 'params' has {n}")
    return list(values)


def check_params(params, func, state_dtype_for, master):
    """Infos of the parameters (same device, dtype, C-contiguous) and the state dtype."""
    infos = [describe(p, f"params[{i}]", func) for i, p in enumerate(params)]
    first = infos[0]
    for i, info in enumerate(infos):
        if info.dtype != first.dtype:
            raise TypeError(f"{func}(): 'params[{i}]' has dtype {info.dtype} but 'params[0]' has dtype "
                            f"{first.dtype} (one optimizer updates one dtype)")
        if info.device != first.device:
            raise ValueError(f"{func}(): 'params[{i}]' is on cuda:{info.device} but 'params[0]' on "
                             f"cuda:{first.device}; one step updates arrays of one GPU")
        if not info.contiguous:
            raise ValueError(f"{func}(): 'params[{i}]' must be C-contiguous")
    return infos, state_dtype_for(first.dtype, master, func)


def _contiguous_copy(info: Info):
    """A C-contiguous copy of a strided torch or CuPy array, made with its own library on the current
    stream; None for a bare __cuda_array_interface__ object, which cannot be copied."""
    if info.lib == "torch":
        return info.obj.contiguous()
    if info.lib == "cupy":
        import cupy

        with cupy.cuda.Device(info.device):
            return cupy.ascontiguousarray(info.obj)
    return None


def check_like(values, name, params, dtype, func, why, copies=None):
    """Pointers of arrays that must match the parameters' shapes, `dtype` and device. With `copies`
    (the gradients, only read), a strided array is replaced by a contiguous copy, as the host step
    copies one, and the copy appended there: the caller keeps it until the kernels are enqueued
    (both allocators reuse freed memory only in stream order, after the kernels that read it)."""
    values = _check_list(values, name, len(params), func)
    ptrs = []
    for i, (v, p) in enumerate(zip(values, params)):
        info = describe(v, f"{name}[{i}]", func)
        if info.shape != p.shape:
            raise ValueError(f"{func}(): '{name}[{i}]' has shape {info.shape} but 'params[{i}]' has shape {p.shape}")
        if info.dtype != dtype:
            raise TypeError(f"{func}(): '{name}[{i}]' has dtype {info.dtype}, expected {dtype} ({why})")
        if info.device != p.device:
            raise ValueError(f"{func}(): '{name}[{i}]' is on cuda:{info.device} but 'params[{i}]' on "
                             f"cuda:{p.device}")
        if not info.contiguous and copies is not None:
            copy = _contiguous_copy(info)
            if copy is not None:
                copies.append(copy)
                info = describe(copy, f"{name}[{i}]", func)
        if not info.contiguous:
            raise ValueError(f"{func}(): '{name}[{i}]' must be C-contiguous")
        ptrs.append(info.ptr)
    return ptrs


def _scalar_ptr(value, name, first: Info, func):
    info = describe(value, name, func)
    if info.dtype != np.float64 or int(np.prod(info.shape, dtype=np.int64)) != 1:
        raise TypeError(f"{func}(): '{name}' must be a float64 device scalar (one element), got dtype "
                        f"{info.dtype} shape {info.shape}")
    if info.device != first.device:
        raise ValueError(f"{func}(): '{name}' is on cuda:{info.device} but 'params[0]' on cuda:{first.device}")
    return info.ptr


class Workspace:
    """Device buffers of one step: scratch (sums, flags, factors, hyper-parameters) and the record.
    The classes keep one per optimizer so that steady-state steps allocate nothing (graph capture)."""

    def __init__(self, first: Info, sizes):
        from .. import _cuda

        self.sizes = np.ascontiguousarray(sizes, dtype=np.int64)
        self.scratch = full(first, (int(_cuda.optim_workspace_doubles(self.sizes)),), np.float64, 0.0)
        self.record = full(first, (4,), np.float64, 0.0)
        self.local_sum = self.scratch[int(_cuda.optim_local_sum_index)]
        self.reduced = None  # keeps the reducer's result alive until the next step

    def ptr(self, value):
        return value.data_ptr() if _interop._torch_tensor(value) else value.data.ptr


def run(func, kind, params, grads, states, state_names, masters, *, base, lr, flags, step, clip_mode, clip,
        clipvalue, nonfinite, keras, reduce, state_dtype_for, prepared=None, named=None):
    """One step on the device. `prepared` (from the classes): (infos, state dtype, pointer table,
    Workspace) of arrays already checked; only the gradients are then looked at. `named`: the
    hyper-parameters by name, checked against the compute type's range."""
    from .. import _cuda

    if prepared is None:
        prepared = prepare(params, states, state_names, masters, func, state_dtype_for)
    infos, sdtype, table, ws = prepared
    check_compute_range(func, sdtype, named or {})
    first = infos[0]
    grad_copies = []  # strided gradients' contiguous copies, kept until the step is enqueued
    table[:, 1] = check_like(grads, "grads", infos, first.dtype, func, "gradients have their parameter's dtype",
                             grad_copies)
    # The CPU step's overlap rule and message (written arrays must not overlap
    # each other or a gradient), on the pointer table.
    _C.check_table_overlap(func, table, ws.sizes, np.dtype(first.dtype).itemsize, np.dtype(sdtype).itemsize,
                           list(state_names))

    if isinstance(step, (int, np.integer)):  # checked by the caller (_functional._step_number)
        counter = full(first, (), np.float64, step - 1)
    else:
        counter = step
    step_ptr = _scalar_ptr(counter, "step", first, func)
    if isinstance(lr, (int, float, np.floating, np.integer)):
        lr_value, lr_ptr = float(lr), 0
    else:
        lr_value, lr_ptr = 0.0, _scalar_ptr(lr, "lr", first, func)

    has_norm_pass = clip_mode in (2, 3) or nonfinite == "skip"
    reducer = None
    if reduce is not None and has_norm_pass:
        def reducer():
            out = reduce(ws.local_sum)
            ws.reduced = out
            return _scalar_ptr(out, "global_norm_reduce() result", first, func)

    _cuda.optim_step(_KINDS[kind], int(_code(first.dtype)), table, ws.sizes, int(flags), int(clip_mode),
                     float(clip), float(clipvalue), _NONFINITE[nonfinite], bool(keras), has_norm_pass, lr_value,
                     lr_ptr, [float(b) for b in base], step_ptr, ws.ptr(ws.scratch), ws.ptr(ws.record), reducer,
                     stream_of(first), int(first.device))
    from ._functional import StepRecord

    rec = ws.record
    return StepRecord(rec[0] if has_norm_pass else None, rec[1], rec[2], rec[3])


def _code(dtype):
    return DTYPE_CODES[np.dtype(dtype)]


def prepare(params, states, state_names, masters, func, state_dtype_for):
    """The `prepared` tuple of :func:`run` for arrays owned by an optimizer."""
    infos, sdtype = check_params(params, func, state_dtype_for, masters is not None)
    table = np.zeros((len(params), 6), dtype=np.int64)
    table[:, 0] = [i.ptr for i in infos]
    for k, (values, name) in enumerate(zip(states, state_names)):
        if values is not None:
            table[:, 2 + k] = check_like(values, name, infos, sdtype, func,
                                         "optimizer state is float64 for float64 parameters, float32 otherwise")
    if masters is not None:
        table[:, 5] = check_like(masters, "master_params", infos, sdtype, func, "master weights are float32")
    ws = Workspace(infos[0], [int(np.prod(i.shape, dtype=np.int64)) for i in infos])
    return infos, sdtype, table, ws
