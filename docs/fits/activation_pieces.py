"""Fit the piecewise tables of the activations' float32 polynomial pieces (csrc/include/nnfuse/ops/activations.h).

Mish forward: f(x) = tanh(softplus(x)) on 32 pieces of width 5/8 covering [-9.6875, 10.3125),
degree 6, minimax of the relative error (mish(x) = x f(x), f > 0 everywhere).
Mish backward: mish'(x) = f(x) + x f'(x) on 32 pieces of width 3/4 covering [-9.375, 14.625),
degree 7, minimax of the error relative to |f| + |x f'| (the accuracy table's floor
measure: mish' crosses zero near x = -1.1924, where a relative fit is impossible).
Softplus and logsigmoid: L(a) = log1p(e^-a) on 32 pieces of width 1/2 covering
[-0.25, 15.75) (a = |x| >= 0 reaches the first piece's upper half only), degree 6,
relative error: softplus(x) = max(x, 0) + L(|x|), logsigmoid(x) = min(x, 0) - L(|x|).
GELU: for a = |x|, the pieces are uniform in t = a (a + 3), i = round(t / w) with w = 1 /
0.2915 (piece 0 covers t in [0, w/2)): as a grows they narrow like 1 / (2a + 3), as the
relative change of the Gaussian factor e^(-a^2/2) does, so 32 pieces reach a = 9.
Forward: Phi(-a) (the normal tail), degree 7, relative error: gelu(x) = max(x, 0) - a Phi(-a).
Backward: D(a) = Phi(-a) - a phi(a), degree 7, error relative to Phi(-a) + a phi(a) (D
crosses zero at a = 0.7518): gelu'(x) = D(|x|) for x < 0, 1 - D(|x|) for x >= 0.
GELU-tanh: the same with the gate S(a) = sigmoid(-w(a)), w = 2 sqrt(2/pi) (a + 0.044715 a^3),
whose logarithm falls like w: the pieces are uniform in w, i = round(0.7475 w) (the key's
constants rounded to float, as the kernel computes it), 32 of them reaching a = 7.5.
Forward S(a); backward S(a) - a w'(a) S(a) (1 - S(a)), relative to the sum of the magnitudes.

For the uniform pieces a lane's piece is i = round((x - low) / width - 1/2), which the
kernel reads from the low five bits of the float fma(x, 1 / width, 1.5 2^23 - low / width -
1/2) (a float in [2^23, 2^24) is an integer), the same on every ISA (GELU's keys likewise
from their t and w); the fit covers each piece widened by 0.2% a side for that rounding.
Each piece is centred as in gauss_tail.py (Gal's accurate tables), here on the floats within
2% of the piece's middle.

Run:  python docs/fits/activation_pieces.py > /tmp/table.txt   (needs mpmath)
Prints the C++ initializers and, on stderr, each piece's measured error.
"""

import sys

import mpmath as mp
import numpy as np

from gauss_tail import fit_centred_piece, print_table

PIECES = 32


def tanh_softplus(x):
    return mp.tanh(mp.log1p(mp.exp(x)))


def mish_slope(x):
    t = tanh_softplus(x)
    return t + x * (1 - t * t) / (1 + mp.exp(-x))


def mish_slope_terms(x):
    t = tanh_softplus(x)
    return abs(t) + abs(x * (1 - t * t) / (1 + mp.exp(-x)))


def log1p_exp_neg(a):
    return mp.log1p(mp.exp(-a))


GELU_KEY_SCALE = 0.2915  # 1 / w, a float32
GELU_KEY_OFFSET = 3.0


def normal_tail(a):
    return mp.erfc(a / mp.sqrt(2)) / 2


def normal_density_term(a):
    return a * mp.exp(-a * a / 2) / mp.sqrt(2 * mp.pi)


def gelu_slope_tail(a):
    return normal_tail(a) - normal_density_term(a)


def gelu_slope_terms(a):
    return normal_tail(a) + normal_density_term(a)


GELU_TANH_KEY_SCALE = 0.7475
GELU_TANH_C1 = 2 * mp.sqrt(2 / mp.pi)
GELU_TANH_C2 = GELU_TANH_C1 * mp.mpf("0.044715")


def gelu_tanh_w(a):
    return a * (GELU_TANH_C1 + GELU_TANH_C2 * a * a)


def gelu_tanh_gate(a):
    return 1 / (1 + mp.exp(gelu_tanh_w(a)))


def gelu_tanh_slope_term(a):
    s = gelu_tanh_gate(a)
    return a * (GELU_TANH_C1 + 3 * GELU_TANH_C2 * a * a) * s * (1 - s)


def gelu_tanh_slope_tail(a):
    return gelu_tanh_gate(a) - gelu_tanh_slope_term(a)


def gelu_tanh_slope_terms(a):
    return gelu_tanh_gate(a) + gelu_tanh_slope_term(a)


def gelu_tanh_bounds():
    """Piece i's range of a: a (k1 + k2 a^2) in [i - 1/2, i + 1/2), k1 and k2 the float32
    products of GELU_TANH_KEY_SCALE with the coefficients of w."""
    k1 = float(np.float32(GELU_TANH_KEY_SCALE * float(GELU_TANH_C1)))
    k2 = float(np.float32(GELU_TANH_KEY_SCALE * float(GELU_TANH_C2)))

    def a_of_t(t):
        if t <= 0:
            return 0.0
        roots = np.roots([k2, 0.0, k1, -t])
        return float(max(r.real for r in roots if abs(r.imag) < 1e-12))
    return [(a_of_t(i - 0.5), a_of_t(i + 0.5)) for i in range(PIECES)]


def uniform_bounds(low, width):
    return [(low + i * width, low + (i + 1) * width) for i in range(PIECES)]


def gelu_bounds():
    """Piece i's range of a: t = a (a + 3) in [(i - 1/2) w, (i + 1/2) w), w = 1 / GELU_KEY_SCALE."""
    width = 1 / float(np.float32(GELU_KEY_SCALE))
    k = GELU_KEY_OFFSET
    a_of_t = lambda t: (-k + np.sqrt(k * k + 4 * max(t, 0.0))) / 2  # noqa: E731
    return [(a_of_t((i - 0.5) * width), a_of_t((i + 0.5) * width)) for i in range(PIECES)]


def fit_table(name, function, scale, bounds, degree):
    pieces = []
    for i, (lo, hi) in enumerate(bounds):
        width = hi - lo
        middle = (lo + hi) / 2
        candidates = sorted({float(np.float32(middle + j * width * 1e-5)) for j in range(-2000, 2001)})
        c, coefs, offset, err = fit_centred_piece(function, scale, lo, hi, candidates, degree)
        print(f"{name} piece {i:2d}: [{lo:g}, {hi:g}), c = {c!r}, constant term off by "
              f"{offset:.1e} ulp, weighted error 2^{np.log2(err):.2f}", file=sys.stderr)
        pieces.append((c, coefs))
    print(f"// {name}")
    print_table(pieces, degree)


def main():
    fit_table("mish forward", tanh_softplus, tanh_softplus, uniform_bounds(-9.6875, 0.625), 6)
    fit_table("mish backward", mish_slope, mish_slope_terms, uniform_bounds(-9.375, 0.75), 7)
    fit_table("log1p(e^-a)", log1p_exp_neg, log1p_exp_neg, uniform_bounds(-0.25, 0.5), 6)
    fit_table("gelu forward", normal_tail, normal_tail, gelu_bounds(), 7)
    fit_table("gelu backward", gelu_slope_tail, gelu_slope_terms, gelu_bounds(), 7)
    fit_table("gelu-tanh forward", gelu_tanh_gate, gelu_tanh_gate, gelu_tanh_bounds(), 7)
    fit_table("gelu-tanh backward", gelu_tanh_slope_tail, gelu_tanh_slope_terms, gelu_tanh_bounds(), 7)


if __name__ == "__main__":
    main()
