"""Fit the two polynomials in 2^f, |f| <= 1/2, used for float16 and bfloat16 outputs
(csrc/include/nnfuse/vec/math.h):

  exp2_reduced_narrow:   2^f = 1 + f P(f), P of degree 3, minimax of the relative error of 2^f;
  exp2m1_reduced_narrow: 2^f - 1 = f P1(f), P1 of degree 4, minimax of the relative error of
                         2^f - 1 (near f = 0 that is P1's own relative error, which P's fit
                         leaves at 2^-14.9).

Lawson's iteration from gauss_tail.py on 400 Chebyshev nodes of [-1/2, 1/2] (widened by
0.2% for the rounding of the reduced argument); coefficients rounded to float one at a time
with the later ones refitted.

Run:  python docs/fits/exp2_narrow.py   (prints the coefficients and the measured errors)
"""

import numpy as np

from gauss_tail import lawson


def fit(f, y, fixed, degree):
    coefs = list(fixed)
    for j in range(len(fixed), degree + 1):
        coefs.append(float(np.float32(lawson(f, y, 1 / y, coefs, degree)[j])))
    return coefs


def main():
    f = np.cos(np.linspace(0, np.pi, 400)) * 0.5 * 1.002
    dense = np.linspace(-0.501, 0.501, 20001)
    dense = dense[dense != 0]

    exp2 = fit(f, 2.0**f, [1.0], 4)
    approx = sum(c * dense**j for j, c in enumerate(exp2))
    err = np.max(np.abs(approx / 2.0**dense - 1))
    print("2^f: coefficients of f^1 .. f^4:", ", ".join(f"{c:.9e}f" for c in exp2[1:]))
    print(f"  relative error 2^{np.log2(err):.2f}")

    nodes = f[f != 0]
    ratio = np.expm1(nodes * np.log(2)) / nodes  # (2^f - 1) / f
    p1 = fit(nodes, ratio, [], 4)
    approx = dense * sum(c * dense**j for j, c in enumerate(p1))
    err = np.max(np.abs(approx / np.expm1(dense * np.log(2)) - 1))
    print("2^f - 1: coefficients of f^1 .. f^5:", ", ".join(f"{c:.9e}f" for c in p1))
    print(f"  relative error 2^{np.log2(err):.2f}")


if __name__ == "__main__":
    main()
