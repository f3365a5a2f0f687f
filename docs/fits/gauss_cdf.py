"""Fit the piecewise table of Phi(-a), the normal lower tail, used by GELU's float32 forward
(kGaussCdfPieces in csrc/include/nnfuse/vec/math.h).

The pieces are the eighth octaves of a^2 + 2: the exponent's two low bits and the
mantissa's top three bits of the float a^2 + 2 select one of 32 pieces covering
0 <= a^2 < 30, so one 32-entry permute finds a lane's piece. Pieces of equal width
in a^2 keep e^(-a^2/2) within a factor of e^(1/2) of its value at the piece's
centre, which is what lets a polynomial of low degree follow Phi(-a) to float
precision without the exponential, and keeps every value of a piece within a
factor of 2 of its constant term (the compensated last Horner step needs that).

On piece i, Phi(-a) = P_i(a - c_i) with P_i of degree DEGREE:
  - piece 0 (a < 1/2) has c_0 = 0 and constant term 1/2, both exact;
  - elsewhere c_i is the float within 3000 steps of the piece's middle where
    Phi(-c_i) is closest to a float (gauss_tail.gal_centre), so the constant term
    is all but exact, and a - c_i is exact (the piece spans less than a factor 2);
  - the other coefficients are a minimax fit of the relative error (Lawson's
    iteration from gauss_tail.py on 600 Chebyshev nodes of the piece, widened by
    0.2% on each side for the rounding of a^2 + 2), rounded to float one at a
    time with the later ones refitted.

Run:  python docs/fits/gauss_cdf.py > /tmp/table.txt   (needs mpmath; ~1 minute)
Prints the C++ initializer and, on stderr, each piece's measured relative error and
the range of P_i / c_i0 over the piece.
"""

import argparse
import sys

import mpmath as mp
import numpy as np

from gauss_tail import gal_centre, lawson

mp.mp.dps = 40
PIECES = 32


def lower_tail(a):
    return mp.erfc(a / mp.sqrt(2)) / 2


def piece_bounds(i):
    octave, eighth = divmod(i, 8)
    key_lo = 2.0 ** (octave + 1) * (1 + eighth / 8)
    key_hi = 2.0 ** (octave + 1) * (1 + (eighth + 1) / 8)
    return float(np.sqrt(key_lo - 2)), float(np.sqrt(key_hi - 2))


def fit_piece(i, degree):
    lo, hi = piece_bounds(i)
    if i == 0:
        offset, c, c0 = 0.0, 0.0, 0.5
    else:
        offset, c, c0 = gal_centre(lo, hi, lower_tail)
    widen = 0.002 * (hi - lo)
    dlo, dhi = max(lo - widen, 0.0) - c, hi - c + widen
    d = np.cos(np.linspace(0, np.pi, 600)) * (dhi - dlo) / 2 + (dhi + dlo) / 2
    y = np.array([float(lower_tail(mp.mpf(c) + mp.mpf(v))) for v in d])
    coefs = [c0]
    for j in range(1, degree + 1):
        coefs = coefs + [float(np.float32(lawson(d, y, 1 / y, coefs, degree)[j]))]
    dense = np.linspace(dlo, dhi, 5000)
    exact = np.array([float(lower_tail(mp.mpf(c) + mp.mpf(v))) for v in dense])
    err = np.max(np.abs(sum(cf * dense**j for j, cf in enumerate(coefs)) / exact - 1))
    print(f"piece {i:2d}: a in [{lo:.4f}, {hi:.4f}), c = {c!r}, constant term off by {offset:.1e} ulp, "
          f"relative error 2^{np.log2(err):.2f}, P / c0 in [{exact.min() / c0:.3f}, {exact.max() / c0:.3f}]",
          file=sys.stderr)
    return c, coefs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degree", type=int, default=7)
    degree = parser.parse_args().degree
    pieces = [fit_piece(i, degree) for i in range(PIECES)]
    rows = [[p[0] for p in pieces]] + [[p[1][j] for p in pieces] for j in range(degree + 1)]
    names = ["centre c_i"] + [f"c_i{j}" for j in range(degree + 1)]
    for name, row in zip(names, rows):
        print(f"    {{{', '.join(f'{v:.9e}f' for v in np.float32(row).astype(float))}}},  // {name}")


if __name__ == "__main__":
    main()
