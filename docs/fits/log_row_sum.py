"""Tables and polynomial of log_row_sum (csrc/cpu/kernels/softmax.cpp): log s for the float32
softmax rows' sums s >= 1, without a division.

s = 2^k m, m in [1, 2); j = the top four significand bits of m (floor(16 (m - 1))) picks
r_j ~ 1 / (1 + (j + 1/2) / 16) (r_0 = 1, so that s near 1 keeps its relative accuracy:
f = m - 1 exactly there), and

  log s = k ln2 + L_j + log1p(f),  f = m r_j - 1 (one fma),  L_j = -log(r_j) rounded to double,
  log1p(f) = f + f^2 Q(f),  Q of degree 8,

with f in [-1/35, 1/16). Q is the Chebyshev interpolant of (log1p(f) - f) / f^2 on that range
widened by 0.2%, its coefficients rounded to double.

Run:  python docs/fits/log_row_sum.py   (needs mpmath; prints the C++ tables, the coefficients
and the relative error of log s measured with every double rounding of the kernel simulated)
"""

import random

import mpmath as mp

mp.mp.dps = 50
DEGREE = 8
LN2_HI = 6.93147180369123816490e-01  # 32 significant bits: k ln2_hi is exact
LN2_LO = 1.90821492927058770002e-10


def rn(x):
    """x rounded to the nearest double (mpmath rounds to nearest even)."""
    return float(mp.mpf(x))


def fma(a, b, c):
    return rn(mp.mpf(a) * mp.mpf(b) + mp.mpf(c))


def tables():
    r = [1.0] + [rn(1 / (1 + (mp.mpf(j) + mp.mpf(0.5)) / 16)) for j in range(1, 16)]
    log_inv_r = [rn(-mp.log(mp.mpf(v))) for v in r]
    return r, log_inv_r


def fit():
    lo, hi = mp.mpf(-1) / 35 * mp.mpf(1.002), mp.mpf(1) / 16 * mp.mpf(1.002)

    def q(f):
        return mp.mpf(-0.5) if f == 0 else (mp.log1p(f) - f) / f**2

    poly = mp.chebyfit(q, [lo, hi], DEGREE + 1)
    return [rn(c) for c in reversed(poly)]  # constant term first


def log_row_sum(s, r, log_inv_r, coefs):
    """The kernel's operations on a double s >= 1, each rounded to double."""
    m, k = mp.frexp(mp.mpf(s))  # s = m 2^k, m in [1/2, 1)
    m, k = float(m * 2), float(k - 1)
    j = int((m - 1) * 16)
    f = fma(m, r[j], -1.0)
    p = coefs[-1]
    for c in reversed(coefs[:-1]):
        p = fma(p, f, c)
    p = fma(rn(f * f), p, f)
    return rn(mp.mpf(fma(k, LN2_HI, log_inv_r[j])) + fma(k, LN2_LO, p))


def measured_error(r, log_inv_r, coefs, samples=20000):
    rng = random.Random(1)
    points = [1 + rng.random() * 2.0**-rng.randint(1, 50) for _ in range(samples // 2)]
    points += [2.0 ** rng.uniform(0, 40) for _ in range(samples // 2)]
    worst = (0.0, None)
    for s in points:
        exact = mp.log(mp.mpf(s))
        got = log_row_sum(s, r, log_inv_r, coefs)
        if s == 1.0:
            assert got == 0.0
            continue
        err = float(abs((got - exact) / exact))
        worst = max(worst, (err, s))
    return worst


def main():
    r, log_inv_r = tables()
    coefs = fit()
    print("r_j:       {" + ", ".join(f"{v!r}" for v in r) + "}")
    print("-log(r_j): {" + ", ".join(f"{v!r}" for v in log_inv_r) + "}")
    print("Q coefficients of f^0 .. f^8:", ", ".join(f"{c!r}" for c in coefs))
    err, s = measured_error(r, log_inv_r, coefs)
    print(f"relative error of log s: 2^{float(mp.log(err, 2)):.2f} (at s = {s!r})")


if __name__ == "__main__":
    main()
