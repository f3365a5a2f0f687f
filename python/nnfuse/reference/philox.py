"""Philox4x32-10 counter-based generator (Salmon et al., SC'11), vectorised NumPy.

This is the oracle for ``csrc/include/nnfuse/common/philox.h``; both must agree bit for bit.

Round (10 of them; the key is bumped between rounds, the first round uses the key as given)::

    (lo0, hi0) = mulhilo(M0, c0)          # 32x32 -> 64-bit product, split in halves
    (lo1, hi1) = mulhilo(M1, c2)
    c' = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
    k0 += W0; k1 += W1                     # mod 2^32

Element stream used by the ops (rrelu's training noise, dropout-like ops): element index ``i``
reads word ``i & 3`` of the block produced for counter
``(j & 0xffffffff, j >> 32, offset & 0xffffffff, offset >> 32)`` with ``j = i >> 2`` under key
``(seed & 0xffffffff, (seed >> 32) & 0xffffffff)``, and turns it into
``u_i = (word >> 8) * 2^-24`` in [0, 1) (24 random bits: exact in float32 and float64).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PHILOX_M0",
    "PHILOX_M1",
    "PHILOX_W0",
    "PHILOX_W1",
    "philox4x32_10",
    "philox_uniform",
    "philox_words",
]

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85

_MASK32 = 0xFFFFFFFF
_U32 = np.uint64(_MASK32)
_SHIFT32 = np.uint64(32)
_SHIFT8 = np.uint32(8)


def philox4x32_10(counter, key) -> np.ndarray:
    """Philox4x32-10 of ``counter`` (shape (n, 4) or (4,), uint32) under ``key`` (2 words).

    Returns uint32 of shape (n, 4) (or (4,) for a single counter). The 32x32 -> 64-bit products
    are exact in uint64, so no high-multiply intrinsic is needed.
    """
    c = np.asarray(counter)
    single = c.ndim == 1
    c = np.atleast_2d(c).astype(np.uint64)
    if c.shape[-1] != 4 or c.ndim != 2:
        raise ValueError(f"counter must have shape (n, 4), got {np.shape(counter)}")
    if np.any(c > _U32):
        raise ValueError("counter words must be 32-bit")
    k = [int(v) for v in np.asarray(key).reshape(-1)]
    if len(k) != 2 or any(not 0 <= v <= _MASK32 for v in k):
        raise ValueError("key must be two 32-bit words")
    k0, k1 = k
    m0, m1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
    c0, c1, c2, c3 = (c[:, i].copy() for i in range(4))
    for r in range(10):
        if r:
            k0 = (k0 + PHILOX_W0) & _MASK32
            k1 = (k1 + PHILOX_W1) & _MASK32
        p0 = m0 * c0
        p1 = m1 * c2
        hi0, lo0 = p0 >> _SHIFT32, p0 & _U32
        hi1, lo1 = p1 >> _SHIFT32, p1 & _U32
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
    out = np.stack([c0, c1, c2, c3], axis=1).astype(np.uint32)
    return out[0] if single else out


def philox_words(seed: int, offset: int, n: int, start: int = 0) -> np.ndarray:
    """The raw uint32 words of elements ``start .. start + n - 1`` (see the module docstring)."""
    seed, offset, n, start = int(seed), int(offset), int(n), int(start)
    if n < 0 or start < 0:
        raise ValueError("n and start must be non-negative")
    if n == 0:
        return np.zeros(0, dtype=np.uint32)
    key = (seed & _MASK32, (seed >> 32) & _MASK32)
    j0, j1 = start >> 2, (start + n - 1) >> 2
    j = np.arange(j0, j1 + 1, dtype=np.uint64)
    ctr = np.empty((j.size, 4), dtype=np.uint64)
    ctr[:, 0] = j & _U32
    ctr[:, 1] = j >> _SHIFT32
    ctr[:, 2] = offset & _MASK32
    ctr[:, 3] = (offset >> 32) & _MASK32
    words = philox4x32_10(ctr, key).reshape(-1)
    first = start - 4 * j0
    return words[first : first + n]


def philox_uniform(seed: int, offset: int, n: int, start: int = 0) -> np.ndarray:
    """Uniforms ``u_i = (word_i >> 8) * 2^-24`` in [0, 1), float64, for i in [start, start + n)."""
    words = philox_words(seed, offset, n, start)
    return (words >> _SHIFT8).astype(np.float64) * 2.0**-24
