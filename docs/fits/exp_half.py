"""Fit the polynomial of e^(w/2), |w| <= ln 2, used for the Gaussian factor e^(-a^2/2) of
GELU's backward (exp_neg_half_square in csrc/include/nnfuse/vec/math.h):

  e^(w/2) = 1 + w P(w),  P(w) = 1/2 + c2 w + ... + c6 w^5,

minimax of the relative error of e^(w/2) (the factor multiplies the tail, so what matters is
its error relative to 1 + em1, not that of em1 itself). Lawson's iteration from gauss_tail.py
on 400 Chebyshev nodes of [-ln 2, ln 2] widened by 0.1% (the rounding of k ln2_lo and the
square's residual move w by < 3e-5); coefficients rounded to float one at a time with the
later ones refitted.

Run:  python docs/fits/exp_half.py   (prints the coefficients and the measured error)
"""

import numpy as np

from gauss_tail import lawson

DEGREE = 6


def main():
    half_width = np.log(2) * 1.001
    w = np.cos(np.linspace(0, np.pi, 400)) * half_width
    y = np.exp(w / 2)
    coefs = [1.0, 0.5]
    for j in range(len(coefs), DEGREE + 1):
        coefs.append(float(np.float32(lawson(w, y, 1 / y, coefs, DEGREE)[j])))
    dense = np.linspace(-half_width, half_width, 200001)
    approx = sum(c * dense**j for j, c in enumerate(coefs))
    err = np.max(np.abs(approx / np.exp(dense / 2) - 1))
    print("P(w) coefficients of w^0 .. w^5:", ", ".join(f"{c:.9e}f" for c in coefs[1:]))
    print(f"  relative error of e^(w/2): 2^{np.log2(err):.2f}")


if __name__ == "__main__":
    main()
