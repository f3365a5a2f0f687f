"""Deterministic input samples: normal values, extremal values and the
neighbourhoods of each op's special points (kinks, thresholds, saturation)."""

import mmap

import numpy as np

from nnfuse._array import BFLOAT16

# The size from which a call's output may be written with streaming stores
# (csrc/cpu/cpu_api.h, kStreamBytes).
STREAM_BYTES = 1 << 24

_FINFO = {np.dtype(np.float16): np.finfo(np.float16), np.dtype(np.float32): np.finfo(np.float32),
          np.dtype(np.float64): np.finfo(np.float64)}


def _finfo(dtype):
    dtype = np.dtype(dtype)
    if dtype == BFLOAT16:
        import ml_dtypes
        return ml_dtypes.finfo(BFLOAT16)
    return _FINFO[dtype]


def special_values(dtype):
    info = _finfo(dtype)
    tiny = float(info.tiny)
    smallest_subnormal = float(info.smallest_subnormal)
    big = float(info.max)
    return np.array([0.0, -0.0, np.inf, -np.inf, np.nan, tiny, -tiny, smallest_subnormal, -smallest_subnormal,
                     tiny / 3, -tiny / 3, big, -big, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0], dtype=np.float64)


def sample(dtype, special_points=(), n=70_000, seed=0, finite_only=False):
    """n values of `dtype` in a fixed order that mixes every kind of input."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    parts = [special_values(dtype)]
    for p in special_points:
        parts.append(p + np.linspace(-1e-3, 1e-3, 41))
        parts.append(p + np.linspace(-0.5, 0.5, 101))
    parts.append(rng.standard_normal(n // 3) * 3)
    parts.append(rng.standard_normal(n // 6) * 30)
    parts.append(rng.uniform(-120, 120, n // 6))
    # Random bit patterns: magnitudes spread over the whole exponent range.
    if dtype == np.float64:
        bits = rng.integers(0, 2**63 - 1, n // 6, dtype=np.int64)
        wide = bits.view(np.float64)
    else:
        bits = rng.integers(0, 2**31 - 1, n // 6, dtype=np.int64).astype(np.uint32)
        with np.errstate(invalid="ignore"):  # some bit patterns are NaNs; they are dropped below
            wide = bits.view(np.float32).astype(np.float64)
    wide = wide[np.isfinite(wide)]
    parts.append(np.concatenate([wide, -wide[: wide.size // 2]]))
    values = np.concatenate(parts)
    if finite_only:
        values = values[np.isfinite(values)]
    with np.errstate(over="ignore", invalid="ignore"):
        values = values.astype(dtype)
    order = rng.permutation(values.size)
    values = values[order]
    reps = -(-n // values.size)
    return np.tile(values, reps)[:n]


def grad_sample(dtype, n=70_000, seed=0):
    """Upstream gradients: magnitudes log-uniform over [1e-30, 1e30] (within
    the dtype's range), random signs, and some exact zeros. Every activation's
    derivative is bounded by 1.5 in magnitude, so no exact product overflows."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    info = _finfo(dtype)
    top = min(30.0, float(np.log10(float(info.max))) - 1)
    bottom = max(-30.0, float(np.log10(float(info.tiny))))
    magnitude = 10.0 ** rng.uniform(bottom, top, n)
    values = magnitude * rng.choice([-1.0, 1.0], n)
    values[rng.integers(0, n, n // 100)] = 0.0
    half = n // 2
    values[:half] = rng.standard_normal(half) * 2  # most gradients are O(1)
    return values[rng.permutation(n)].astype(dtype)


def large_outputs(shape, dtype):
    """Two outputs of `shape`, each one element past a 64-byte line: one in
    freshly mapped pages, never touched (the kernels store plainly into such
    an output), and one whose pages were written before (streaming stores
    once the call is STREAM_BYTES or more)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape)) + 1
    fresh = np.frombuffer(mmap.mmap(-1, count * dtype.itemsize), dtype)[1:].reshape(shape)
    written = np.empty(count, dtype)
    written.fill(0)  # np.zeros may hand out untouched calloc pages, which are not backed yet
    written = written[1:].reshape(shape)
    return {"fresh pages": fresh, "written pages": written}
