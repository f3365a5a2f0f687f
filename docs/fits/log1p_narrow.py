"""Fit the polynomial log1p(t) = t Q(t), 0 <= t <= 1, of degree 7 used for float16 and
bfloat16 outputs (log1p_unit_narrow in csrc/include/nnfuse/vec/math.h).

Minimax of the relative error (Lawson's iteration from gauss_tail.py on 400 Chebyshev
nodes of [0, 1], widened by 0.2%), the constant term fixed at 0, the coefficients rounded
to float one at a time with the later ones refitted.

Run:  python docs/fits/log1p_narrow.py   (prints the coefficients and the measured error)
"""

import numpy as np

from gauss_tail import lawson

DEGREE = 7


def main():
    t = (np.cos(np.linspace(0, np.pi, 400)) * 1.002 + 1.0) / 2
    t = t[t > 0]
    y = np.log1p(t)
    coefs = [0.0]
    for j in range(1, DEGREE + 1):
        coefs.append(float(np.float32(lawson(t, y, 1 / y, coefs, DEGREE)[j])))
    dense = np.linspace(1e-6, 1.001, 20001)
    approx = sum(c * dense**j for j, c in enumerate(coefs))
    err = np.max(np.abs(approx / np.log1p(dense) - 1))
    print("coefficients of t^1 .. t^%d:" % DEGREE, ", ".join(f"{c:.9e}f" for c in coefs[1:]))
    print(f"relative error 2^{np.log2(err):.2f}")


if __name__ == "__main__":
    main()
