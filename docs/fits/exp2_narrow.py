"""Fit the polynomial 2^f = 1 + f P(f), |f| <= 1/2, of degree 4 used for float16 and
bfloat16 outputs (exp2_reduced_narrow in csrc/include/nnfuse/vec/math.h).

Minimax of the relative error (Lawson's iteration from gauss_tail.py on 400 Chebyshev
nodes of [-1/2, 1/2], widened by 0.2% for the rounding of the reduced argument), the
constant term fixed at 1, the coefficients rounded to float one at a time with the
later ones refitted.

Run:  python docs/fits/exp2_narrow.py   (prints the coefficients and the measured error)
"""

import numpy as np

from gauss_tail import lawson

DEGREE = 4


def main():
    f = np.cos(np.linspace(0, np.pi, 400)) * 0.5 * 1.002
    y = 2.0**f
    coefs = [1.0]
    for j in range(1, DEGREE + 1):
        coefs.append(float(np.float32(lawson(f, y, 1 / y, coefs, DEGREE)[j])))
    dense = np.linspace(-0.501, 0.501, 20001)
    approx = sum(c * dense**j for j, c in enumerate(coefs))
    err = np.max(np.abs(approx / 2.0**dense - 1))
    print("coefficients of f^1 .. f^%d:" % DEGREE, ", ".join(f"{c:.9e}f" for c in coefs[1:]))
    print(f"relative error 2^{np.log2(err):.2f}")


if __name__ == "__main__":
    main()
