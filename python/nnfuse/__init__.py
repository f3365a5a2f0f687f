"""nnfuse: fused CPU and CUDA kernels for neural-network training.

Activations and the softmax family (forward and backward) run on AVX-512, AVX2 or scalar code chosen
at run time from the CPU, and are checked against the float64 NumPy formulas
in :mod:`nnfuse.reference` within the ULP bounds published in
``docs/accuracy.md``.
"""

from __future__ import annotations

import contextlib

from . import _C
from . import optim
from ._array import integer_option as _integer_option
from .activations import *  # noqa: F401,F403 - the generated public API
from .activations import __all__ as _activation_names
from .softmax import *  # noqa: F401,F403
from .softmax import __all__ as _softmax_names

__version__ = _C.__version__

from ._interop import CudaArray, _cuda  # _cuda is None when built without a CUDA compiler


def cuda_available() -> bool:
    """True when the CUDA extension was built and a GPU is visible (the CUDA
    runtime is linked statically: without a GPU or driver this is False and
    importing nnfuse still works; passing a CUDA array then raises a
    RuntimeError saying why)."""
    return _cuda is not None and _cuda.device_count() > 0


def build_info() -> dict:
    """What this build contains and what it uses now.

    ``stream_mid_size``: whether elementwise outputs from one L2 per thread up
    to 16 MiB are written with streaming stores, as measured once per process
    on first use (environment variable NNFUSE_STREAM_MID_SIZE=1 or 0 sets it);
    larger ones stream when already backed by memory, smaller ones never.
    ``optim_prefetch``: whether the CPU optimizer update prefetches its
    arrays ahead in software, on unless the CPU is an AMD one, where it was
    measured slower (environment variable NNFUSE_OPTIM_PREFETCH=1 or 0 sets
    it). Either way the results are the same bits."""
    return {
        "version": __version__,
        "compiler": _C.compiler,
        "compiled_cpu_isas": list(_C.compiled_isas()),
        "supported_cpu_isas": list(_C.supported_isas()),
        "cpu_isa": _C.current_isa(),
        "cuda_compiled": _cuda is not None,
        "cuda_architectures": _cuda.architectures.split(",") if _cuda is not None else [],
        "cuda_devices": _cuda.device_count() if _cuda is not None else 0,
        "num_threads": _C.get_num_threads(),
        "stream_mid_size": _C.stream_mid_size(),
        "optim_prefetch": _C.optim_prefetch(),
    }


def get_cpu_isa() -> str:
    """The instruction set the CPU kernels use now: 'scalar', 'avx2' or 'avx512'."""
    return _C.current_isa()


def set_cpu_isa(name: str) -> None:
    """Use the CPU kernels of ``name`` ('scalar', 'avx2' or 'avx512') from now on.

    Raises ValueError if the name is unknown or this CPU cannot run it. The
    environment variable NNFUSE_CPU_ISA sets the initial choice."""
    if not isinstance(name, str):
        raise TypeError(f"set_cpu_isa(): 'name' must be a str, got {type(name).__name__}")
    _C.set_cpu_isa(name)


@contextlib.contextmanager
def cpu_isa(name: str):
    """Context manager: run the CPU kernels of ``name`` inside the block."""
    previous = get_cpu_isa()
    set_cpu_isa(name)
    try:
        yield
    finally:
        set_cpu_isa(previous)


def get_num_threads() -> int:
    """Threads the CPU kernels split large arrays across."""
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for large arrays (1 <= n <= 1024: each is an OS
    thread, started on first use); results are bit-identical for every
    thread count."""
    n = _integer_option("set_num_threads", "n", n)
    if not 1 <= n <= _C.max_threads:
        raise ValueError(f"set_num_threads(): 'n' must be between 1 and {_C.max_threads}, got {n}")
    _C.set_num_threads(n)


__all__ = list(_activation_names) + list(_softmax_names) + [
    "CudaArray",
    "build_info",
    "cuda_available",
    "get_cpu_isa",
    "set_cpu_isa",
    "cpu_isa",
    "get_num_threads",
    "set_num_threads",
    "optim",
]
