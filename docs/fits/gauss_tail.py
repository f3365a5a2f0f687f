"""Fit the piecewise tables of R(a) = Phi(-a) e^(a^2/2) used by GELU (csrc/include/nnfuse/vec/math.h).

The pieces are the quarter octaves of a + 2: the exponent's two low bits and the
mantissa's top two bits of the float a + 2 select one of 14 pieces covering
0 <= a < 22 (GELU clamps a at 20), so one 16-entry permute finds a lane's piece.

On piece i, R(a) = P_i(a - c_i) with P_i of degree 6 (kGaussTailPieces), or of
degree 4 with --degree 4 (kGaussTailNarrow, for float16 and bfloat16 outputs):
  - c_i is the float within 3000 steps of the piece's middle where R(c_i) is
    closest to a float (Gal's accurate-tables idea), so the constant term is
    R(c_i) rounded with an error of about 1e-4 ulp instead of up to 0.5 ulp;
  - the other coefficients are a minimax fit of the relative error (Lawson's
    iteratively reweighted least squares on 600 Chebyshev nodes of the piece,
    widened by 0.2% on each side for the rounding of a + 2), rounded to float
    one at a time with the later ones refitted.

Run:  python docs/fits/gauss_tail.py [--degree 4] > /tmp/table.txt   (needs mpmath; ~1 minute)
Prints the C++ initializer and, on stderr, each piece's measured relative error.
"""

import argparse
import sys

import mpmath as mp
import numpy as np

mp.mp.dps = 40
DEGREE = 6  # set from --degree in main()
A_MAX = 20.0
PIECES = 16


def scaled_tail(a):
    return mp.erfc(a / mp.sqrt(2)) * mp.exp(a * a / 2) / 2


def ulp32(v):
    return 2.0 ** (np.floor(np.log2(abs(v))) - 23)


def piece_bounds(i):
    octave, quarter = divmod(i, 4)
    lo = 2.0 ** (octave + 1) * (1 + quarter / 4) - 2
    hi = 2.0 ** (octave + 1) * (1 + (quarter + 1) / 4) - 2
    return lo, min(hi, A_MAX)


def lawson(d, y, weight, fixed, degree):
    """Minimax of |(P(d) - y) weight| over the nodes d for P of the given degree, the first
    len(fixed) coefficients given (Lawson's iteratively reweighted least squares)."""
    base = sum(c * d**j for j, c in enumerate(fixed))
    basis = np.stack([d**j for j in range(len(fixed), degree + 1)], 1) * weight[:, None]
    rhs = (y - base) * weight
    node_weights = np.full(len(d), 1.0 / len(d))
    for _ in range(400):
        sw = np.sqrt(node_weights)
        coefs, *_ = np.linalg.lstsq(basis * sw[:, None], rhs * sw, rcond=None)
        node_weights *= np.abs(basis @ coefs - rhs)
        node_weights /= node_weights.sum()
    return list(fixed) + list(coefs)


def gal_centre(function, candidates):
    """The candidate centre c where function(c) is closest to a float32, as
    (offset in ulp, c, function(c) rounded to float32)."""
    best = None
    for c in candidates:
        exact = function(mp.mpf(c))
        rounded = float(np.float32(float(exact)))
        offset = abs(float(exact - rounded)) / ulp32(rounded)
        if best is None or offset < best[0]:
            best = (offset, c, rounded)
    return best


def fit_centred_piece(function, scale, lo, hi, candidates, degree):
    """P(d), d = a - c, of the given degree on [lo, hi) widened by 0.2% a side: c from
    gal_centre, the constant term function(c) rounded, the others a minimax fit of
    |P - function| / scale(a), rounded to float one at a time with the later ones refitted.
    Returns (c, coefficients, constant term's offset in ulp, measured weighted error)."""
    offset, c, c0 = gal_centre(function, candidates)
    widen = 0.002 * (hi - lo)
    dlo, dhi = lo - c - widen, hi - c + widen
    d = np.cos(np.linspace(0, np.pi, 600)) * (dhi - dlo) / 2 + (dhi + dlo) / 2
    y = np.array([float(function(mp.mpf(c) + mp.mpf(v))) for v in d])
    weight = np.array([1 / float(scale(mp.mpf(c) + mp.mpf(v))) for v in d])
    coefs = [c0]
    for j in range(1, degree + 1):
        coefs = coefs + [float(np.float32(lawson(d, y, weight, coefs, degree)[j]))]
    dense = np.linspace(dlo, dhi, 5000)
    exact = np.array([float(function(mp.mpf(c) + mp.mpf(v))) for v in dense])
    dense_weight = np.array([1 / float(scale(mp.mpf(c) + mp.mpf(v))) for v in dense])
    err = np.max(np.abs(sum(cf * dense**j for j, cf in enumerate(coefs)) - exact) * dense_weight)
    return c, coefs, offset, err


def fit_piece(i):
    lo, hi = piece_bounds(i)
    middle = np.float32((lo + hi) / 2)
    candidates = [float(np.int32(bits).view(np.float32))
                  for bits in middle.view(np.int32) + np.arange(-3000, 3000, dtype=np.int32)]
    c, coefs, offset, err = fit_centred_piece(scaled_tail, scaled_tail, lo, hi, candidates, DEGREE)
    print(f"piece {i:2d}: a in [{lo:g}, {hi:g}), c = {c!r}, constant term off by "
          f"{offset:.1e} ulp, relative error 2^{np.log2(err):.2f}", file=sys.stderr)
    return c, coefs


def print_table(pieces, degree):
    """The C++ initializer: a row of centres, then one row per coefficient."""
    rows = [[p[0] for p in pieces]] + [[p[1][j] for p in pieces] for j in range(degree + 1)]
    names = ["centre c_i"] + [f"c_i{j}" for j in range(degree + 1)]
    for name, row in zip(names, rows):
        print(f"    {{{', '.join(f'{v:.9e}f' for v in np.float32(row).astype(float))}}},  // {name}")


def main():
    global DEGREE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degree", type=int, default=6)
    DEGREE = parser.parse_args().degree
    pieces = []
    for i in range(PIECES):
        if piece_bounds(i)[0] >= A_MAX:
            pieces.append(pieces[-1])  # unused entries repeat the last piece
        else:
            pieces.append(fit_piece(i))
    print_table(pieces, DEGREE)


if __name__ == "__main__":
    main()
