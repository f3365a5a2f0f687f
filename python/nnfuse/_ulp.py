"""Error in units in the last place (ULPs) of the output dtype, measured
against a float64 reference, and the mismatch report tests print.

ulp(r) for a reference value r is the spacing of the output dtype at r:
2^(max(floor(log2|r|), emin) - p) with p the dtype's stored mantissa bits, so a
correctly rounded result is within 0.5 ULP and subnormal results are measured
in units of the smallest subnormal. NaN against NaN, and equal infinities, are
0 ULP apart; NaN against a number, or a finite result against an infinite
reference (and vice versa), are infinitely far apart — except that a
reference beyond the dtype's range is compared with its rounding (inf).
"""

from __future__ import annotations

import numpy as np

from ._array import BFLOAT16

# dtype -> (stored mantissa bits, minimum normal exponent)
_FORMAT = {
    np.dtype(np.float64): (52, -1022),
    np.dtype(np.float32): (23, -126),
    np.dtype(np.float16): (10, -14),
    BFLOAT16: (7, -126),
}


def ulp_of(reference: np.ndarray, dtype) -> np.ndarray:
    """The spacing of ``dtype`` at each (float64) reference value."""
    mantissa_bits, emin = _FORMAT[np.dtype(dtype)]
    r = np.abs(np.asarray(reference, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        _, exponent = np.frexp(r)  # r = m * 2^exponent, m in [0.5, 1)
    exponent = np.maximum(exponent.astype(np.int64) - 1, emin)
    return np.ldexp(1.0, exponent - mantissa_bits)


def ulp_error(got: np.ndarray, reference: np.ndarray, floor: np.ndarray | None = None) -> np.ndarray:
    """|got - reference| in ULPs of got's dtype (float64 array, same shape).

    ``floor``: optional float64 magnitudes; the ULP unit is then taken at
    max(|reference|, floor) — the measure used near interior zeros of a
    derivative, where the result is a difference of larger terms."""
    got = np.asarray(got)
    dtype = got.dtype
    g = got.astype(np.float64)
    r = np.asarray(reference, dtype=np.float64)
    scale = np.abs(r) if floor is None else np.maximum(np.abs(r), np.abs(floor))
    with np.errstate(over="ignore", invalid="ignore"):
        r_rounded = r.astype(dtype).astype(np.float64)
        err = np.abs(g - r) / ulp_of(scale, dtype)
    both_nan = np.isnan(g) & np.isnan(r)
    same_inf = np.isinf(g) & (g == r_rounded)
    err = np.where(both_nan | same_inf, 0.0, err)
    err = np.where(np.isnan(err) | (np.isnan(g) != np.isnan(r)), np.inf, err)
    return err


def mismatch_report(label: str, inputs: dict, got: np.ndarray, reference: np.ndarray, err: np.ndarray,
                    bound: float) -> str:
    """Count, worst index, its inputs, got, expected, ULP distance."""
    flat_err = err.reshape(-1)
    bad = np.count_nonzero(~(flat_err <= bound))
    worst = int(np.argmax(np.where(np.isnan(flat_err), np.inf, flat_err))) if flat_err.size else 0
    index = np.unravel_index(worst, err.shape) if err.ndim else ()
    parts = [f"{label}: {bad} of {flat_err.size} elements exceed {bound} ULP;",
             f"worst at index {tuple(int(i) for i in index)}:"]
    for name, arr in inputs.items():
        arr = np.asarray(arr)
        value = arr.reshape(-1)[worst] if arr.size == err.size else arr
        parts.append(f"{name}={float(np.asarray(value, dtype=np.float64)) if np.size(value) == 1 else value!r}")
    parts.append(f"got={float(np.asarray(got, dtype=np.float64).reshape(-1)[worst])!r}")
    parts.append(f"expected={float(np.asarray(reference, dtype=np.float64).reshape(-1)[worst])!r}")
    parts.append(f"ulp={float(flat_err[worst])!r}")
    return " ".join(parts)
