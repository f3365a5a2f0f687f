"""Fit the polynomial 2^f = 1 + f P(f), |f| <= 1/2, of degree 4 used for float16 and
bfloat16 outputs (exp2_reduced_narrow in csrc/include/nnfuse/vec/math.h).

Minimax of the relative error (Lawson's iteratively reweighted least squares on
400 Chebyshev nodes of [-1/2, 1/2], widened by 0.2% for the rounding of the
reduced argument), the constant term fixed at 1, the coefficients rounded to
float one at a time with the later ones refitted.

Run:  python docs/fits/exp2_narrow.py   (prints the coefficients and the measured error)
"""

import numpy as np

DEGREE = 4


def lawson(f, y, fixed):
    """Coefficients c_1..c_DEGREE of 1 + sum c_j f^j minimising max |(P - y) / y|, the first given."""
    base = 1.0 + sum(c * f ** (j + 1) for j, c in enumerate(fixed))
    basis = np.stack([f**j for j in range(len(fixed) + 1, DEGREE + 1)], 1) / y[:, None]
    rhs = (y - base) / y
    node_weights = np.full(len(f), 1.0 / len(f))
    for _ in range(400):
        sw = np.sqrt(node_weights)
        coefs, *_ = np.linalg.lstsq(basis * sw[:, None], rhs * sw, rcond=None)
        node_weights *= np.abs(basis @ coefs - rhs)
        node_weights /= node_weights.sum()
    return list(fixed) + list(coefs)


def main():
    f = np.cos(np.linspace(0, np.pi, 400)) * 0.5 * 1.002
    y = 2.0**f
    coefs = []
    for j in range(DEGREE):
        coefs.append(float(np.float32(lawson(f, y, coefs)[j])))
    dense = np.linspace(-0.501, 0.501, 20001)
    approx = 1.0 + sum(c * dense ** (j + 1) for j, c in enumerate(coefs))
    err = np.max(np.abs(approx / 2.0**dense - 1))
    print("coefficients of f^1 .. f^%d:" % DEGREE, ", ".join(f"{c:.9e}f" for c in coefs))
    print(f"relative error 2^{np.log2(err):.2f}")


if __name__ == "__main__":
    main()
