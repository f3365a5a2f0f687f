"""Array handling shared by every public function: dtype codes, validation of
inputs and of ``out=``, and the copies that non-contiguous inputs need
(elementwise functions take dense arrays of any axis order as they are).

Every check raises a Python exception that names the offending argument; the
compiled kernels only ever see C-contiguous arrays of one supported dtype.
"""

from __future__ import annotations

import math
import operator
import sys
from typing import Optional, Tuple

import numpy as np
import ml_dtypes

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)

# dtype -> code understood by the kernels (csrc/cpu/cpu_api.h: DType)
DTYPE_CODES = {
    np.dtype(np.float32): 0,
    np.dtype(np.float64): 1,
    np.dtype(np.float16): 2,
    BFLOAT16: 3,
}
SUPPORTED_DTYPES = tuple(DTYPE_CODES)
_SUPPORTED_NAMES = ", ".join(dtype.name for dtype in SUPPORTED_DTYPES)


def is_bool(value) -> bool:
    """A Python or NumPy bool, or a 0-d array or tensor of booleans."""
    if isinstance(value, (bool, np.bool_)):
        return True
    return str(getattr(value, "dtype", "")) in ("bool", "torch.bool")


def bool_option(func: str, name: str, value) -> bool:
    """``value`` as a bool where it is one (Python or NumPy, a 0-d bool array or
    tensor), else a TypeError naming the option: the string 'False' or a
    number would otherwise count by its truthiness."""
    if not is_bool(value) or np.ndim(value) != 0:
        raise TypeError(f"{func}(): '{name}' must be a bool, got {type(value).__name__}")
    return bool(value)


def as_real(value):
    """``value`` as a float where float() takes it (Python and NumPy numbers,
    0-d arrays and tensors), else None. Strings are refused although
    ``float("2")`` would take them, and so are bools, though float(True) is 1:
    ``lr=True`` or ``negative_slope=False`` is a mistake, not a number."""
    if isinstance(value, (str, bytes)) or is_bool(value):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond the float range: +-inf, as the literal 1e400 is
        return math.inf if value > 0 else -math.inf
    except (TypeError, ValueError):
        return None


def refuse_grad_option(func: str, name: str, value) -> None:
    """ValueError for an option given as a torch tensor that requires grad while
    autograd records: nnfuse reads it as a constant, so the gradient would
    silently stop there."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor) and value.requires_grad and torch.is_grad_enabled():
        raise ValueError(f"{func}(): '{name}' is a tensor that requires grad, but nnfuse takes it as a constant and "
                         f"would give it no gradient; pass a number or a detached tensor")


def real_option(func: str, name: str, value) -> float:
    """``value`` as a float, or a TypeError naming the option; NaN is a
    ValueError (no option means anything at NaN, and a NaN bound would silently
    drop a clamp)."""
    if not isinstance(value, float):
        refuse_grad_option(func, name, value)
    result = as_real(value)
    if result is None:
        raise TypeError(f"{func}(): '{name}' must be a real number, got {type(value).__name__}")
    if result != result:
        raise ValueError(f"{func}(): '{name}' must not be NaN")
    return result


# The largest finite float32. The kernels take their parameters (slopes,
# bounds, softmax's scale) in the compute type, float32 for float32 and 16-bit
# inputs, where a larger finite value would round to inf: a NaN result where
# the float64 reference is finite.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_float32_range(func: str, name: str, value: float, where: str, nonzero: bool) -> None:
    """ValueError naming the option where float32 cannot hold ``value``: a
    finite value beyond its range (infinities are kept: they are infinities in
    every type), and with ``nonzero`` a nonzero value that rounds to 0.
    ``where`` says what is computed in float32."""
    if math.isfinite(value) and abs(value) > FLOAT32_MAX:
        raise ValueError(f"{func}(): '{name}' = {value} is beyond the float32 range (+-3.4e38) in which {where}")
    if nonzero and value != 0 and np.float32(value) == 0:
        raise ValueError(f"{func}(): '{name}' = {value} rounds to 0 in float32, in which {where} (its smallest "
                         f"positive value is 1.4e-45)")


def kernel_option(func: str, name: str, value) -> float:
    """real_option for a parameter the kernels take in the compute type: a
    finite value beyond the float32 range is a ValueError, for every dtype
    alike."""
    result = real_option(func, name, value)
    _check_float32_range(func, name, result, "float32 and 16-bit inputs are computed", nonzero=False)
    return result


def check_compute_range(func: str, compute_dtype, values: dict) -> None:
    """Optimizer options the kernels round to their compute type, checked
    against it for float32 (the compute type of float32, float16 and bfloat16
    parameters): a finite value beyond its range would become inf, and a
    nonzero value below its smallest subnormal 0 (an Adam eps of 1e-50 made
    0 / 0 = NaN where a moment is 0; the float64 reference divides by 1e-50).
    ValueErrors naming the option; None and device scalars (a capturable lr)
    are passed over."""
    if np.dtype(compute_dtype) != np.float32:
        return
    for name, value in values.items():
        if isinstance(value, (int, float, np.integer, np.floating)):
            _check_float32_range(func, name, float(value), "float32 and 16-bit parameters are updated", nonzero=True)


def integer_option(func: str, name: str, value) -> int:
    """``value`` as a Python int (what operator.index takes: ints, NumPy
    integers), or a TypeError naming the argument. Bools are refused, though
    they are ints (rrelu(training='no')-like mistakes: step=True, axis=True);
    int() is not used, as it parses strings and truncates 1.7 to 1."""
    if not is_bool(value):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise TypeError(f"{func}(): '{name}' must be an integer, got {type(value).__name__}")


def dtype_code(dtype: np.dtype, argname: str, func: str) -> int:
    try:
        return DTYPE_CODES[dtype]
    except KeyError:
        raise TypeError(
            f"{func}(): argument '{argname}' has dtype {dtype}, which nnfuse does not support "
            f"(supported: {_SUPPORTED_NAMES})"
        ) from None


def storage_order(a: np.ndarray) -> Optional[Tuple[int, ...]]:
    """The axis order in which ``a`` is C-contiguous, for a dense array stored
    in another order (Fortran order, a transpose, PyTorch's channels_last), or
    None for a C-contiguous array or one that is not dense (gaps, repeated or
    reversed elements)."""
    if a.flags.c_contiguous:
        return None
    order = tuple(sorted(range(a.ndim), key=lambda k: a.strides[k], reverse=True))
    return order if a.transpose(order).flags.c_contiguous else None


def in_order(a: np.ndarray, order: Optional[Tuple[int, ...]]) -> np.ndarray:
    """``a`` with its axes in ``order`` (a view; ``a`` itself for None)."""
    return a if order is None else a.transpose(order)


def empty_in_order(shape, dtype, order: Optional[Tuple[int, ...]]) -> np.ndarray:
    """An uninitialised array of ``shape`` stored in ``order`` (storage_order's)."""
    if order is None:
        return np.empty(shape, dtype)
    return np.empty([shape[k] for k in order], dtype).transpose(np.argsort(order))


def refuse_masked(value, argname: str, func: str) -> None:
    """TypeError for a numpy.ma.MaskedArray: the kernels would compute the
    masked entries too and return no mask, silently."""
    if isinstance(value, np.ma.MaskedArray):
        hint = " (softmax: the 'mask' argument)" if argname == "x" else ""
        raise TypeError(f"{func}(): '{argname}' is a numpy.ma.MaskedArray, whose mask nnfuse would ignore; pass "
                        f"np.ma.getdata({argname}) or {argname}.filled(value){hint}")


def _as_array(value, argname: str, func: str) -> np.ndarray:
    """An ndarray of a supported dtype, as given where it already is one."""
    refuse_masked(value, argname, func)
    if not isinstance(value, np.ndarray):
        if value is None:
            raise TypeError(f"{func}(): '{argname}' must be an array, got None")
        if hasattr(value, "__cuda_array_interface__"):
            raise TypeError(
                f"{func}(): argument '{argname}' is a CUDA array; this build's CPU API takes NumPy arrays"
            )
        value = np.asarray(value)
    dtype_code(value.dtype, argname, func)
    return value


def as_input(value, argname: str, func: str) -> np.ndarray:
    """A C-contiguous ndarray of a supported dtype (copied only if it was not)."""
    value = _as_array(value, argname, func)
    return value if value.flags.c_contiguous else np.ascontiguousarray(value)


def as_dense_input(value, argname: str, func: str) -> Tuple[np.ndarray, Optional[Tuple[int, ...]]]:
    """(array, order) for an elementwise kernel: a dense array of a supported
    dtype as given, with its storage_order (None: C order), or a C-contiguous
    copy of any other array."""
    value = _as_array(value, argname, func)
    order = storage_order(value)
    if order is None and not value.flags.c_contiguous:
        value = np.ascontiguousarray(value)
    return value, order


def check_same(reference: np.ndarray, refname: str, other: np.ndarray, othername: str, func: str) -> None:
    if other.shape != reference.shape:
        raise ValueError(
            f"{func}(): '{othername}' has shape {other.shape} but '{refname}' has shape {reference.shape}"
        )
    if other.dtype != reference.dtype:
        raise TypeError(
            f"{func}(): '{othername}' has dtype {other.dtype} but '{refname}' has dtype {reference.dtype}"
        )


# NumPy >= 1.25 keeps it in numpy.exceptions, older versions at the top level.
_TooHardError = getattr(getattr(np, "exceptions", np), "TooHardError")


def _overlaps(a: np.ndarray, b: np.ndarray):
    """True or False, or None where NumPy's exact test gives up (strides too
    intricate to solve within its work limit)."""
    try:
        return bool(np.shares_memory(a, b, max_work=10_000))
    except _TooHardError:
        return None


# The most elements whose offsets _elements_overlap sorts (32 MiB of int64).
_MAX_OFFSETS_CHECKED = 1 << 22


def _elements_overlap(shape, strides, itemsize: int) -> Optional[bool]:
    """Whether two elements of this layout share a byte: a stride of 0 on an
    axis of two or more elements (a writeable broadcast view), or strides
    that make elements meet. Sufficient test first: with the axes of more
    than one element sorted by |stride|, each stride steps over everything
    the smaller axes span. Layouts that interleave their axes fail it without
    overlapping, and are decided exactly from their sorted element offsets
    (None: more than _MAX_OFFSETS_CHECKED of them, undecided)."""
    axes = sorted((abs(s), n) for n, s in zip(shape, strides) if n > 1)
    span = itemsize
    for stride, n in axes:
        if stride == 0:
            return True
        if stride < span:
            break
        span += stride * (n - 1)
    else:
        return False
    if np.prod([n for _, n in axes], dtype=np.int64) > _MAX_OFFSETS_CHECKED:
        return None
    offsets = np.zeros(1, np.int64)
    for stride, n in axes:
        offsets = (offsets[:, None] + np.arange(n, dtype=np.int64) * stride).reshape(-1)
    offsets.sort()
    return bool(np.any(np.diff(offsets) < itemsize))


def check_output_layout(shape, strides, itemsize: int, func: str, argname: str) -> None:
    """ValueError where an output's elements share memory: a kernel would
    write some of them twice, and what they hold would depend on the order."""
    overlap = False if any(n == 0 for n in shape) else _elements_overlap(shape, strides, itemsize)
    if overlap is None:
        raise ValueError(f"{func}(): '{argname}' interleaves its axes (shape {tuple(shape)}, strides "
                         f"{tuple(strides)}) over more than {_MAX_OFFSETS_CHECKED} elements, too many to check "
                         f"that none share memory; pass a contiguous array")
    if not overlap:
        return
    raise ValueError(f"{func}(): '{argname}' has elements that share memory (shape {tuple(shape)}, strides "
                     f"{tuple(strides)}); pass an array whose elements are distinct")


class Output:
    """Where a kernel writes: ``out`` itself when it is stored in the kernel's
    order (C-contiguous, or the inputs' storage_order), else a temporary that
    ``finish()`` copies into ``out``. With ``scalar`` (no out=, and every input
    a scalar rather than an array) a 0-d result is returned as a NumPy scalar,
    as NumPy's ufuncs return one for scalar inputs."""

    __slots__ = ("target", "buffer", "scalar")

    def __init__(self, target, buffer, scalar=False):
        self.target = target
        self.buffer = buffer
        self.scalar = scalar

    def finish(self):
        if self.target is None:
            return self.buffer[()] if self.scalar and self.buffer.ndim == 0 else self.buffer
        if self.buffer is not self.target:
            np.copyto(self.target, self.buffer)
        return self.target


def prepare_out(out, shape, dtype, inputs, func: str, argname: str = "out", order=None) -> Output:
    """Validate ``out=``: an ndarray of the result's shape and dtype, writeable,
    that is either exactly one of ``inputs`` (in place) or shares no memory with
    any of them. ``inputs`` is a sequence of (name, original array) pairs. Where
    the overlap cannot be decided, the kernel writes a temporary that is copied
    into ``out`` afterwards: right whether or not they overlap. ``order``: the
    storage order the kernel runs in (None: C order); a new result is stored so."""
    if out is None:
        scalar = all(not isinstance(value, np.ndarray) for _, value in inputs if value is not None)
        return Output(None, empty_in_order(shape, dtype, order), scalar)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{func}(): '{argname}' must be a numpy.ndarray, got {type(out).__name__}")
    refuse_masked(out, argname, func)
    if out.shape != tuple(shape):
        raise ValueError(f"{func}(): '{argname}' has shape {out.shape}, expected {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"{func}(): '{argname}' has dtype {out.dtype}, expected {np.dtype(dtype)}")
    if not out.flags.writeable:
        raise ValueError(f"{func}(): '{argname}' is read-only")
    if not out.flags.c_contiguous:
        check_output_layout(out.shape, out.strides, out.itemsize, func, argname)
    undecided = False
    for name, arr in inputs:
        if arr is None or not isinstance(arr, np.ndarray) or not np.may_share_memory(out, arr):
            continue
        same_view = (
            out.__array_interface__["data"][0] == arr.__array_interface__["data"][0]
            and out.strides == arr.strides
            and out.shape == arr.shape
            and out.dtype == arr.dtype
        )
        if same_view:
            continue
        overlap = _overlaps(out, arr)
        if overlap:
            raise ValueError(
                f"{func}(): '{argname}' partially overlaps '{name}'; pass the same array for an "
                f"in-place update or a non-overlapping one"
            )
        undecided = undecided or overlap is None
    if in_order(out, order).flags.c_contiguous and not undecided:
        return Output(out, out)
    return Output(out, empty_in_order(shape, dtype, order))
