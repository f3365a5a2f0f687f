"""Array interop for every public function, in this one module.

Accepted: NumPy arrays (the fast path, handled by the callers before they get
here), PyTorch tensors on the CPU or a GPU, CuPy arrays, and any object with
``__cuda_array_interface__`` or a CUDA ``__dlpack__``. Results have the type
the caller gave:

* host values (NumPy, torch CPU tensors, lists ...) run on the CPU kernels
  through zero-copy NumPy views; if any array argument was a torch tensor the
  results are torch CPU tensors (sharing memory with the NumPy results);
* device values run on the CUDA kernels with no implicit synchronisation, on the
  current stream of the library of the first device argument (PyTorch's
  ``torch.cuda.current_stream()``, CuPy's ``cupy.cuda.get_current_stream()``),
  and results are allocated by that library (``torch.empty``, ``cupy.empty``),
  so their memory is the caller's. A bare ``__cuda_array_interface__`` object is
  viewed as a CuPy array when CuPy is installed, else results are
  :class:`CudaArray` (memory owned by nnfuse, exposing the interface); a CUDA
  DLPack object is imported with CuPy, else PyTorch.

Mixing host and device arrays in one call is a ValueError naming the
arguments. Arrays on a GPU other than the current one are processed on their
own GPU (all arguments must share it). Non-contiguous device inputs are copied
to contiguous memory with the caller's library, and a non-contiguous ``out``
receives a copy of a contiguous result; a bare interface object without CuPy
must be C-contiguous.

PyTorch and CuPy are never imported here unless the caller's arrays come from
them (``sys.modules`` tells), or CuPy/PyTorch is needed to consume a bare
interface/DLPack object.
"""

from __future__ import annotations

import sys

import numpy as np

from ._array import BFLOAT16, DTYPE_CODES, check_output_layout, dtype_code

try:
    from . import _cuda
except ImportError:  # built without a CUDA compiler
    _cuda = None

_DLPACK_CPU = 1
_DLPACK_CUDA = 2
_DLPACK_CUDA_MANAGED = 13


# ---- recognising values --------------------------------------------------------

def _torch_tensor(value):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _cupy_array(value):
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(value, cupy.ndarray)


def _dlpack_device_type(value):
    try:
        return value.__dlpack_device__()[0]
    except Exception:
        return None


def is_device(value) -> bool:
    """True for arrays in GPU memory (whatever library they come from)."""
    if isinstance(value, np.ndarray) or value is None:
        return False
    if _torch_tensor(value):
        return value.device.type == "cuda"
    if _cupy_array(value) or hasattr(value, "__cuda_array_interface__"):
        return True
    if hasattr(value, "__dlpack_device__"):
        return _dlpack_device_type(value) in (_DLPACK_CUDA, _DLPACK_CUDA_MANAGED)
    return False


def dispatch(func, arrays, host_impl, device_impl):
    """Runs one public function on the right device.

    arrays: sequence of (argument name, value) for every array argument,
    ``out`` included (None values take no part in the device check).
    host_impl(values) gets a dict of the values, None included, with torch CPU
    tensors replaced by NumPy views, and returns NumPy results;
    device_impl(call) gets a :class:`DeviceCall`.
    """
    present = [(name, value) for name, value in arrays if value is not None]
    device = [name for name, value in present if is_device(value)]
    if device and len(device) != len(present):
        host = [name for name, _ in present if name not in device]
        raise ValueError(
            f"{func}(): {_names(device)} {'is' if len(device) == 1 else 'are'} on a GPU but {_names(host)} "
            f"{'is' if len(host) == 1 else 'are'} in host memory; pass all array arguments on the same device"
        )
    if device:
        return device_impl(DeviceCall(func, present))
    return _run_host(func, arrays, host_impl)


def _names(names):
    quoted = ", ".join(repr(n) for n in names)
    return f"argument{'s' if len(names) > 1 else ''} {quoted}"


# ---- host: torch CPU tensors as NumPy views --------------------------------------

def _torch_to_numpy(tensor):
    """A NumPy view of a CPU tensor's memory, or for a tensor with a negation
    or conjugation bit a read-only copy of its values: writing the copy would
    leave the tensor unchanged, so as ``out=``, in-place logits or an optimizer
    parameter it is refused as read-only. Detaching and resolving only where
    needed: the optimizers view every gradient of a step, and doing all three
    always took 2 us a tensor where ``numpy()`` takes 1."""
    torch = sys.modules["torch"]  # imported: the tensor is one of its
    if tensor.requires_grad:
        tensor = tensor.detach()
    if tensor.is_neg() or tensor.is_conj():
        values = _torch_to_numpy(tensor.resolve_conj().resolve_neg())
        values.flags.writeable = False
        return values
    if tensor.dtype is torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(BFLOAT16)
    return tensor.numpy()


def torch_cpu_view(tensor, func, name, index=None):
    """``_torch_to_numpy`` of a CPU tensor, or a TypeError naming the argument
    (``name[index]`` for an element of a list) for a tensor on another device:
    meta, mps, xla have no memory nnfuse can read, and a CUDA tensor among
    host arrays has none on the host. Sparse layouts and dtypes NumPy has no
    type for (float8, quantized) are TypeErrors naming the argument too."""
    shown = name if index is None else f"{name}[{index}]"
    if not tensor.is_cpu:
        raise TypeError(f"{func}(): '{shown}' is a torch tensor on device '{tensor.device.type}'; nnfuse runs on "
                        f"CPU and CUDA tensors, all arguments on one device")
    torch = sys.modules["torch"]
    if tensor.layout is not torch.strided:
        raise TypeError(f"{func}(): '{shown}' is a torch tensor of layout {tensor.layout}; nnfuse reads dense "
                        f"tensors: pass {shown}.to_dense()")
    try:
        return _torch_to_numpy(tensor)
    except TypeError:  # numpy() has no NumPy type for this dtype
        raise TypeError(f"{func}(): argument '{shown}' has dtype {tensor.dtype}, which nnfuse does not "
                        f"support") from None


def _numpy_to_torch(array):
    import torch

    if array.dtype == BFLOAT16:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def _run_host(func, arrays, host_impl):
    values = {}  # None stays None: host_impl refuses it where the argument is required
    originals = {}  # id(NumPy view) -> the tensor it views (returned as is when it comes back)
    any_torch = False
    for name, value in arrays:
        if value is not None and _torch_tensor(value):
            any_torch = True
            view = torch_cpu_view(value, func, name)
            originals[id(view)] = value
            values[name] = view
        elif hasattr(value, "__dlpack_device__") and not isinstance(value, np.ndarray) \
                and _dlpack_device_type(value) == _DLPACK_CPU and not hasattr(value, "__array__"):
            values[name] = np.from_dlpack(value)
        else:
            values[name] = value
    result = host_impl(values)
    if not any_torch:
        return result

    def wrap(r):
        if isinstance(r, np.ndarray):
            original = originals.get(id(r))
            return original if original is not None else _numpy_to_torch(r)
        return r

    if isinstance(result, tuple):
        return tuple(wrap(r) for r in result)
    return wrap(result)


# ---- device ------------------------------------------------------------------

class CudaArray:
    """A C-contiguous device array allocated by nnfuse: the result type for
    inputs that were bare ``__cuda_array_interface__`` objects while CuPy is not
    installed. Exposes ``__cuda_array_interface__`` (version 3, with the stream
    the result was written on), so CuPy, PyTorch, Numba ... can consume it."""

    def __init__(self, shape, dtype, device, stream):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self._buffer = _cuda.Buffer(self.size * self.dtype.itemsize, int(device))
        self.device = int(device)
        self._stream = int(stream)

    @property
    def __cuda_array_interface__(self):
        # Stream 0 (the legacy default stream) is spelled 1 by the interface.
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self._buffer.address, False),
                "strides": None, "version": 3, "stream": self._stream if self._stream != 0 else 1}

    def __repr__(self):
        return f"nnfuse.CudaArray(shape={self.shape}, dtype={self.dtype}, device={self.device})"


def _torch_dtype_map():
    import torch

    return {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64),
            torch.float16: np.dtype(np.float16), torch.bfloat16: BFLOAT16}


def _to_torch_dtype(dtype):
    for t, n in _torch_dtype_map().items():
        if n == dtype:
            return t
    raise TypeError(f"dtype {dtype} has no torch equivalent")


def _is_c_contiguous(shape, strides, itemsize):
    if strides is None:
        return True
    expected = itemsize
    for n, s in zip(reversed(shape), reversed(strides)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def _byte_span(ptr, shape, strides, itemsize):
    """[lo, hi) bytes an array touches, or None when it is empty."""
    if any(n == 0 for n in shape):
        return None
    lo = hi = ptr
    for n, s in zip(shape, strides):
        if s >= 0:
            hi += s * (n - 1)
        else:
            lo += s * (n - 1)
    return lo, hi + itemsize


class DeviceArg:
    """One device argument: the caller's object, the library object nnfuse
    works with (a CuPy view of a bare interface object, for example), and its
    pointer, shape, byte strides, dtype and device."""

    __slots__ = ("name", "original", "obj", "lib", "ptr", "shape", "strides", "dtype", "device", "readonly",
                 "stream")

    def __init__(self, name="", original=None, obj=None, lib=""):
        self.name, self.original, self.obj, self.lib = name, original, obj, lib
        self.ptr, self.shape, self.strides, self.dtype = 0, (), None, None
        self.device, self.readonly, self.stream = 0, False, 0

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def code(self):
        return DTYPE_CODES[self.dtype]

    @property
    def contiguous(self):
        return _is_c_contiguous(self.shape, self.strides, self.dtype.itemsize)

    def span(self):
        strides = self.strides
        if strides is None:
            strides = tuple(int(s) for s in _c_strides(self.shape, self.dtype.itemsize))
        return _byte_span(self.ptr, self.shape, strides, self.dtype.itemsize)


def _c_strides(shape, itemsize):
    strides = []
    step = itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def _describe(name, value, func):
    arg = DeviceArg(name, value)
    if _torch_tensor(value):
        dtypes = _torch_dtype_map()
        if value.dtype not in dtypes:
            raise TypeError(f"{func}(): argument '{name}' has dtype {value.dtype}, which nnfuse does not support "
                            f"(supported: float32, float64, float16, bfloat16)")
        arg.obj, arg.lib = value, "torch"
        arg.dtype = dtypes[value.dtype]
        arg.ptr = value.data_ptr()
        arg.shape = tuple(value.shape)
        arg.strides = tuple(s * arg.dtype.itemsize for s in value.stride())
        arg.device = value.device.index if value.device.index is not None else _current_device()
        return arg
    if not _cupy_array(value):
        value = _import_foreign(name, value, func)
        if value is None:  # bare interface object, no CuPy
            return _describe_raw(arg, name, arg.original, func)
        if _torch_tensor(value):
            described = _describe(name, value, func)
            described.original = arg.original
            return described
    arg.obj, arg.lib = value, "cupy"
    dtype_code(value.dtype, name, func)
    arg.dtype = value.dtype
    arg.ptr = value.data.ptr
    arg.shape = tuple(value.shape)
    arg.strides = tuple(value.strides)
    arg.device = value.device.id
    return arg


def _try_import_cupy():
    try:
        import cupy
    except Exception:
        return None
    return cupy


def _import_foreign(name, value, func):
    """A CuPy (else torch) view of a bare interface / DLPack object, or None for
    an interface object when CuPy is not installed."""
    cupy = _try_import_cupy()
    if hasattr(value, "__cuda_array_interface__"):
        return cupy.asarray(value) if cupy is not None else None
    if cupy is not None:
        return cupy.from_dlpack(value)
    try:
        import torch
    except Exception:
        torch = None
    if torch is not None:
        return torch.from_dlpack(value)
    raise TypeError(f"{func}(): argument '{name}' is a CUDA DLPack object; nnfuse needs CuPy or PyTorch "
                    f"installed to import it (or pass an object with __cuda_array_interface__)")


def _describe_raw(arg, name, value, func):
    cai = value.__cuda_array_interface__
    dtype = np.dtype(cai["typestr"])
    if dtype.str == "<V2" or dtype.kind == "V":
        raise TypeError(f"{func}(): argument '{name}' has typestr {cai['typestr']!r}, which nnfuse does not "
                        f"support (supported: float32, float64, float16; bfloat16 only from PyTorch)")
    dtype_code(dtype, name, func)
    arg.obj, arg.lib = value, "raw"
    arg.dtype = dtype
    arg.ptr, arg.readonly = int(cai["data"][0]), bool(cai["data"][1])
    arg.shape = tuple(int(s) for s in cai["shape"])
    strides = cai.get("strides")
    arg.strides = tuple(int(s) for s in strides) if strides is not None else _c_strides(arg.shape, dtype.itemsize)
    _require_cuda(func, name)
    arg.device = _cuda.pointer_device(arg.ptr) if arg.ptr else _current_device()
    # Version 3 of the interface names the stream the producer wrote on (1 and
    # 2: the legacy and per-thread default streams, which are also those
    # handles' values); work queued on it is ordered after the producer's.
    stream = cai.get("stream")
    arg.stream = int(stream) if stream is not None else 0
    return arg


def _require_cuda(func, name):
    if _cuda is None:
        raise RuntimeError(
            f"{func}(): argument '{name}' is a CUDA array, but this nnfuse was built without its CUDA "
            f"extension (no nvcc at build time); rebuild with the CUDA toolkit, or pass NumPy arrays")
    if _cuda.device_count() == 0:
        raise RuntimeError(
            f"{func}(): argument '{name}' is a CUDA array, but the CUDA runtime sees no usable GPU "
            f"(no device or no driver; nnfuse.cuda_available() is False)")


def _current_device():
    return _cuda.current_device()


class DeviceCall:
    """The device side of one call: the arguments (described), the device and
    stream to run on, and allocation with the caller's library."""

    def __init__(self, func, present):
        self.func = func
        first_name = present[0][0]
        _require_cuda(func, first_name)
        self.args = {name: _describe(name, value, func) for name, value in present}
        first = self.args[first_name]
        devices = {a.device for a in self.args.values()}
        if len(devices) != 1:
            listing = ", ".join(f"'{a.name}' on cuda:{a.device}" for a in self.args.values())
            raise ValueError(f"{func}(): all arrays must be on the same GPU; got {listing}")
        self.lib = first.lib
        self.device = first.device
        self.cuda = _cuda
        self.stream = self._stream(first)

    def _stream(self, first):
        if self.lib == "torch":
            import torch

            return torch.cuda.current_stream(self.device).cuda_stream
        if self.lib == "cupy":
            import cupy

            with cupy.cuda.Device(self.device):
                return cupy.cuda.get_current_stream().ptr
        return first.stream

    def _on_device(self, fn):
        if self.lib == "cupy":
            import cupy

            with cupy.cuda.Device(self.device):
                return fn()
        return fn()

    # -- allocation and copies with the caller's library --

    def empty(self, shape, dtype):
        """A new C-contiguous array of the caller's library; returns a DeviceArg."""
        dtype = np.dtype(dtype)
        if self.lib == "torch":
            import torch

            obj = torch.empty(tuple(shape), dtype=_to_torch_dtype(dtype), device=f"cuda:{self.device}")
        elif self.lib == "cupy":
            import cupy

            obj = self._on_device(lambda: cupy.empty(tuple(shape), dtype))
        else:
            obj = CudaArray(shape, dtype, self.device, self.stream)
        return self._wrap_new(obj, shape, dtype)

    def _wrap_new(self, obj, shape, dtype):
        arg = DeviceArg("", obj, obj, self.lib)
        arg.shape, arg.dtype, arg.device = tuple(shape), dtype, self.device
        if self.lib == "torch":
            arg.ptr = obj.data_ptr()
        elif self.lib == "cupy":
            arg.ptr = obj.data.ptr
        else:
            arg.ptr = obj.__cuda_array_interface__["data"][0]
        return arg

    def _contiguous_copy(self, arg):
        if arg.lib == "torch":
            obj = arg.obj.contiguous()
        elif arg.lib == "cupy":
            import cupy

            obj = self._on_device(lambda: cupy.ascontiguousarray(arg.obj))
        else:
            raise ValueError(
                f"{self.func}(): argument '{arg.name}' is a non-contiguous CUDA array and CuPy is not installed "
                f"to make a contiguous copy; pass a C-contiguous array")
        copy = DeviceArg(arg.name, arg.original, obj, arg.lib)
        copy.shape, copy.dtype, copy.device = arg.shape, arg.dtype, arg.device
        copy.ptr = obj.data_ptr() if arg.lib == "torch" else obj.data.ptr
        return copy

    def _copy_into(self, target, source):
        if target.lib == "torch":
            target.obj.copy_(source.obj)
        elif target.lib == "cupy":
            import cupy

            self._on_device(lambda: cupy.copyto(target.obj, source.obj))
        else:
            raise ValueError(
                f"{self.func}(): '{target.name}' is a non-contiguous CUDA array and CuPy is not installed; "
                f"pass a C-contiguous 'out'")

    # -- arguments --

    def input(self, name):
        """The argument as a C-contiguous device array (copied if it was not)."""
        arg = self.args[name]
        return arg if arg.contiguous else self._contiguous_copy(arg)

    def check_same(self, ref, other):
        a, b = self.args[ref], self.args[other]
        if a.shape != b.shape:
            raise ValueError(f"{self.func}(): '{other}' has shape {b.shape} but '{ref}' has shape {a.shape}")
        if a.dtype != b.dtype:
            raise TypeError(f"{self.func}(): '{other}' has dtype {b.dtype} but '{ref}' has dtype {a.dtype}")

    def output(self, name, shape, dtype, inputs):
        """Where a kernel writes: ``out`` (argument `name`) itself when it is
        C-contiguous, else a new array copied into it by finish(). ``out`` must
        match shape and dtype and either be exactly one of ``inputs`` (in
        place) or share no memory with any of them."""
        dtype = np.dtype(dtype)
        shape = tuple(shape)
        out = self.args.get(name)
        if out is None:
            return _DeviceOutput(self, None, self.empty(shape, dtype))
        if out.shape != shape:
            raise ValueError(f"{self.func}(): '{name}' has shape {out.shape}, expected {shape}")
        if out.dtype != dtype:
            raise TypeError(f"{self.func}(): '{name}' has dtype {out.dtype}, expected {dtype}")
        if out.readonly:
            raise ValueError(f"{self.func}(): '{name}' is read-only")
        if not out.contiguous:
            check_output_layout(out.shape, out.strides, out.dtype.itemsize, self.func, name)
        out_span = out.span()
        for other in inputs:
            arg = self.args.get(other)
            if arg is None or out_span is None:
                continue
            span = arg.span()
            if span is None or span[1] <= out_span[0] or out_span[1] <= span[0]:
                continue
            same_view = (arg.ptr == out.ptr and arg.shape == out.shape and arg.dtype == out.dtype
                         and (arg.strides or _c_strides(arg.shape, arg.dtype.itemsize))
                         == (out.strides or _c_strides(out.shape, out.dtype.itemsize)))
            if not same_view:
                raise ValueError(
                    f"{self.func}(): '{name}' partially overlaps '{other}'; pass the same array for an "
                    f"in-place update or a non-overlapping one")
        if out.contiguous:
            return _DeviceOutput(self, out, out)
        return _DeviceOutput(self, out, self.empty(shape, dtype))


class _DeviceOutput:
    __slots__ = ("call", "target", "buffer")

    def __init__(self, call, target, buffer):
        self.call, self.target, self.buffer = call, target, buffer

    @property
    def ptr(self):
        return self.buffer.ptr

    def finish(self):
        """The result in the caller's type: the caller's ``out`` object, or the new array."""
        if self.target is None:
            return self.buffer.obj
        if self.buffer is not self.target:
            self.call._copy_into(self.target, self.buffer)
        return self.target.original
