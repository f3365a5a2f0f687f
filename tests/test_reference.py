"""Tests of the NumPy float64 reference (the oracle every kernel is measured against).

* backward == central finite differences of the forward (every op, default and other params);
* forward and backward == PyTorch float64 (when torch is importable), with the documented places
  where the reference is deliberately different (limits at +-inf, NaN, torch's own float64 error);
* forward and backward == 200-bit mpmath (when importable): the reference's own accuracy in ulp;
* special values: NaN propagation and the limits at +-inf, for every op;
* Philox4x32-10 known-answer vectors and the properties of the uniform stream.
"""

from __future__ import annotations

import importlib.util
import math
import pathlib
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest


def _load_reference():
    """The reference subpackage of this source tree, loaded on its own as ``nnfuse_reference``.

    python/nnfuse/__init__.py imports the compiled extension, so ``import nnfuse.reference``
    needs a build; and an installed (non-editable) nnfuse would hand us a copy that may be older
    than the tree under test. Hence the source tree first; ``nnfuse.reference`` only when the
    tests run without it.
    """
    pkg = pathlib.Path(__file__).resolve().parents[1] / "python" / "nnfuse" / "reference"
    if not (pkg / "__init__.py").is_file():
        import nnfuse.reference as mod

        return mod
    name = "nnfuse_reference"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, pkg / "__init__.py", submodule_search_locations=[str(pkg)]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


ref = _load_reference()

EPS = np.finfo(np.float64).eps
INF = np.inf
DBL_MAX = np.finfo(np.float64).max


# ---------------------------------------------------------------------------------------------
# The op table


@dataclass
class Op:
    name: str
    kwargs: dict = field(default_factory=dict)
    kinks: tuple = ()  # points where f or f' is not smooth (finite differences keep away)
    limits: tuple = (0.0, 0.0, 0.0, 0.0)  # f(-inf), f(+inf), f'(-inf), f'(+inf)
    torch: object = None  # (F, x) -> y, or None when torch has no counterpart
    # mpmath (mp, x) -> (f, f') in high precision, or None
    mp: object = None
    # roots of f' away from which relative accuracy is expected (cancellation near them)
    droots: tuple = ()

    @property
    def id(self):
        args = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.name}({args})"

    def fwd(self, x):
        return getattr(ref, self.name)(x, **self.kwargs)

    def bwd(self, g, x):
        return getattr(ref, self.name + "_backward")(g, x, **self.kwargs)


def _mp_sig(mp, x):
    return 1 / (1 + mp.exp(-x))


def _mp_softplus(mp, x):
    return mp.log1p(mp.exp(x)) if x < 0 else x + mp.log1p(mp.exp(-x))


def _mp_gelu_tanh(mp, x):
    k, c = mp.sqrt(2 / mp.pi), mp.mpf("0.044715")
    u = k * (x + c * x**3)
    s = _mp_sig(mp, 2 * u)
    return x * s, s + 2 * x * s * (1 - s) * k * (1 + 3 * c * x * x)


def _mp_elu(mp, x, alpha, scale=1, input_scale=1):
    if x > 0:
        return scale * x, mp.mpf(scale)
    return scale * alpha * mp.expm1(x * input_scale), scale * alpha * input_scale * mp.exp(x * input_scale)


A, S = ref.SELU_ALPHA, ref.SELU_SCALE
R_EVAL = (1 / 8 + 1 / 3) / 2

OPS = [
    Op(
        "sigmoid",
        limits=(0, 1, 0, 0),
        torch=lambda F, x: F.sigmoid(x),
        mp=lambda mp, x: (_mp_sig(mp, x), _mp_sig(mp, x) * _mp_sig(mp, -x)),
    ),
    Op(
        "tanh",
        limits=(-1, 1, 0, 0),
        torch=lambda F, x: F.tanh(x),
        mp=lambda mp, x: (mp.tanh(x), mp.sech(x) ** 2),
    ),
    Op("relu", kinks=(0,), limits=(0, INF, 0, 1), torch=lambda F, x: F.relu(x)),
    Op("leaky_relu", kinks=(0,), limits=(-INF, INF, 0.01, 1), torch=lambda F, x: F.leaky_relu(x)),
    Op(
        "leaky_relu",
        {"negative_slope": 0.2},
        kinks=(0,),
        limits=(-INF, INF, 0.2, 1),
        torch=lambda F, x: F.leaky_relu(x, 0.2),
    ),
    Op(
        "leaky_relu",
        {"negative_slope": 0.0},
        kinks=(0,),
        limits=(0, INF, 0, 1),
        torch=lambda F, x: F.leaky_relu(x, 0.0),
    ),
    Op("rrelu", kinks=(0,), limits=(-INF, INF, R_EVAL, 1), torch=lambda F, x: F.rrelu(x)),
    Op(
        "rrelu",
        {"lower": 0.1, "upper": 0.5},
        kinks=(0,),
        limits=(-INF, INF, 0.3, 1),
        torch=lambda F, x: F.rrelu(x, 0.1, 0.5),
    ),
    # training mode: per-element slopes from Philox (limits checked separately); no torch peer
    Op("rrelu", {"training": True, "seed": 1234, "offset": 7}, kinks=(0,), limits=None),
    Op(
        "elu",
        kinks=(0,),
        limits=(-1, INF, 0, 1),
        torch=lambda F, x: F.elu(x),
        mp=lambda mp, x: _mp_elu(mp, x, 1),
    ),
    Op(
        "elu",
        {"alpha": 0.5},
        kinks=(0,),
        limits=(-0.5, INF, 0, 1),
        torch=lambda F, x: F.elu(x, 0.5),
        mp=lambda mp, x: _mp_elu(mp, x, mp.mpf(0.5)),
    ),
    Op(
        "selu",
        kinks=(0,),
        limits=(-S * A, INF, 0, S),
        torch=lambda F, x: F.selu(x),
        mp=lambda mp, x: _mp_elu(mp, x, mp.mpf(A), mp.mpf(S)),
    ),
    Op(
        "celu",
        kinks=(0,),
        limits=(-1, INF, 0, 1),
        torch=lambda F, x: F.celu(x),
        mp=lambda mp, x: _mp_elu(mp, x, 1),
    ),
    Op(
        "celu",
        {"alpha": 2.0},
        kinks=(0,),
        limits=(-2, INF, 0, 1),
        torch=lambda F, x: F.celu(x, 2.0),
        mp=lambda mp, x: _mp_elu(mp, x, 2, 1, mp.mpf(0.5)),
    ),
    Op(
        "gelu",
        limits=(0, INF, 0, 1),
        torch=lambda F, x: F.gelu(x),
        droots=(-0.7518,),
        mp=lambda mp, x: (
            x / 2 * mp.erfc(-x / mp.sqrt(2)),
            mp.erfc(-x / mp.sqrt(2)) / 2 + x * mp.exp(-x * x / 2) / mp.sqrt(2 * mp.pi),
        ),
    ),
    Op(
        "gelu",
        {"approximate": "tanh"},
        limits=(0, INF, 0, 1),
        droots=(-0.7524,),
        torch=lambda F, x: F.gelu(x, approximate="tanh"),
        mp=_mp_gelu_tanh,
    ),
    Op(
        "silu",
        limits=(0, INF, 0, 1),
        torch=lambda F, x: F.silu(x),
        droots=(-1.2785,),
        mp=lambda mp, x: (x * _mp_sig(mp, x), _mp_sig(mp, x) * (1 + x * _mp_sig(mp, -x))),
    ),
    Op(
        "mish",
        limits=(0, INF, 0, 1),
        torch=lambda F, x: F.mish(x),
        droots=(-1.1924,),
        mp=lambda mp, x: (
            x * mp.tanh(_mp_softplus(mp, x)),
            mp.tanh(_mp_softplus(mp, x)) + x * mp.sech(_mp_softplus(mp, x)) ** 2 * _mp_sig(mp, x),
        ),
    ),
    Op("relu6", kinks=(0, 6), limits=(0, 6, 0, 0), torch=lambda F, x: F.relu6(x)),
    Op("hardtanh", kinks=(-1, 1), limits=(-1, 1, 0, 0), torch=lambda F, x: F.hardtanh(x)),
    Op(
        "hardtanh",
        {"min_val": -2.0, "max_val": 0.5},
        kinks=(-2, 0.5),
        limits=(-2, 0.5, 0, 0),
        torch=lambda F, x: F.hardtanh(x, -2.0, 0.5),
    ),
    Op("hardsigmoid", kinks=(-3, 3), limits=(0, 1, 0, 0), torch=lambda F, x: F.hardsigmoid(x)),
    Op("hardswish", kinks=(-3, 3), limits=(0, INF, 0, 1), torch=lambda F, x: F.hardswish(x)),
    Op(
        "softplus",
        kinks=(20,),
        limits=(0, INF, 0, 1),
        torch=lambda F, x: F.softplus(x),
        mp=lambda mp, x: (x, mp.mpf(1)) if x > 20 else (_mp_softplus(mp, x), _mp_sig(mp, x)),
    ),
    Op(
        "softplus",
        {"beta": 2.0, "threshold": 5.0},
        kinks=(2.5,),
        limits=(0, INF, 0, 1),
        torch=lambda F, x: F.softplus(x, 2.0, 5.0),
        mp=lambda mp, x: (x, mp.mpf(1)) if 2 * x > 5 else (_mp_softplus(mp, 2 * x) / 2, _mp_sig(mp, 2 * x)),
    ),
    Op(
        "softsign",
        limits=(-1, 1, 0, 0),
        torch=lambda F, x: F.softsign(x),
        mp=lambda mp, x: (x / (1 + abs(x)), 1 / (1 + abs(x)) ** 2),
    ),
    Op(
        "logsigmoid",
        limits=(-INF, 0, 1, 0),
        torch=lambda F, x: F.logsigmoid(x),
        mp=lambda mp, x: (-_mp_softplus(mp, -x), _mp_sig(mp, -x)),
    ),
]

from nnfuse.reference.softmax import __all__ as SOFTMAX_NAMES  # noqa: E402

ALL_NAMES = sorted({op.name for op in OPS} | {"prelu"})


def test_every_reference_function_is_in_the_table():
    exported = {n for n in ref.__all__ if callable(getattr(ref, n))}
    fwd = {n for n in exported if not n.endswith("_backward")}
    fwd -= {"philox4x32_10", "philox_uniform", "philox_words", "rrelu_slopes", "backward_from_y"}
    fwd -= set(SOFTMAX_NAMES)  # the softmax family is tested by tests/test_softmax.py
    assert fwd == set(ALL_NAMES)
    for n in ALL_NAMES:
        assert n + "_backward" in exported, n
        assert getattr(ref, n).__doc__ and getattr(ref, n + "_backward").__doc__


# ---------------------------------------------------------------------------------------------
# Backward == finite differences of the forward


def _fd_points(op, rng):
    x = np.concatenate(
        [
            rng.uniform(-12, 12, 600),
            rng.uniform(-4, 4, 600),
            np.outer([-1, 1], np.logspace(-4, math.log10(60), 60)).ravel(),
        ]
    )
    return x


def _central(f, x, h):
    xp, xm = x + h, x - h  # the step actually taken is (xp - xm) / 2, exact in float64
    fp, fm = f(xp), f(xm)
    return (fp - fm) / (xp - xm), np.abs(fp) + np.abs(fm), (xp - xm) / 2


def _check_fd(f, dfdx, x, h, what):
    """Compare the analytic derivative with Richardson-extrapolated central differences.

    D(h) = f'(x) + f'''(x) h^2 / 6 + O(h^4);  R = (4 D(h) - D(2h)) / 3 = f'(x) + O(h^4).
    Tolerance, per point, the sum of:
      * truncation: |D(h) - D(2h)| = f''' h^2 / 2 + ... bounds R's O(h^4) error with a huge margin
        for h ~ 1e-5 (the ratio is ~h^2 f^(5) / f''' ~ 1e-10) and is small itself;
      * rounding: each f value is accurate to a few ulp (the mpmath test measures <= ~4), so
        D(h) carries at most 4 eps (|f(x+h)| + |f(x-h)|) / (2h); R weighs D(h) by 4/3 and D(2h)
        by 1/3, and we allow 32 eps (...) / h, 8x that bound;
      * 1e-9 relative: slack for the analytic side (a few ulp) and the O(h^4) term.
    A wrong formula (a missing factor, a wrong constant, a kink on the wrong side) misses by
    orders of magnitude more; and since the rounding term scales with |f|, the check keeps its
    relative power in the tails where f and f' are tiny (e.g. silu'(-40) ~ 1e-16).
    """
    d1, mag1, h1 = _central(f, x, h)
    d2, mag2, h2 = _central(f, x, 2 * h)
    rich = (4 * d1 - d2) / 3
    an = dfdx(x)
    tol = 1e-9 * np.abs(an) + np.abs(d1 - d2) + 32 * EPS * (mag1 / h1 + mag2 / h2)
    err = np.abs(an - rich)
    bad = ~(err <= tol)
    if bad.any():
        with np.errstate(all="ignore"):
            i = np.flatnonzero(bad)[np.argmax((err / tol)[bad])]
        pytest.fail(
            f"{what}: {bad.sum()} of {x.size} points off; worst x={x.flat[i]!r} "
            f"analytic={an.flat[i]!r} finite-difference={rich.flat[i]!r} tol={tol.flat[i]:.3g}"
        )


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.id)
def test_backward_matches_finite_differences(op):
    rng = np.random.default_rng(1)
    x = _fd_points(op, rng)
    h = 2.0**-17 * np.maximum(1.0, np.abs(x))
    keep = np.ones(x.size, dtype=bool)
    for k in op.kinks:
        keep &= np.abs(x - k) > 8 * h
    # Differences of float64 subnormals (gelu(-38) ~ 1e-316) carry no relative information.
    keep &= np.abs(op.fwd(x)) > 1e-290
    x, h = x[keep], h[keep]
    g = rng.uniform(0.5, 2.0, x.size)
    # grad * f'(x): differentiate the scalar-valued g * f(x) pointwise (rrelu's training slopes
    # depend on the element index only, so x +- h keeps every slope).
    _check_fd(lambda v: g * op.fwd(v), lambda v: op.bwd(g, v), x, h, op.id)


@pytest.mark.parametrize("weight", [[0.25], [0.1, -0.3, 0.7], [0.0, 2.0, -1.0]], ids=str)
def test_prelu_backward_matches_finite_differences(weight):
    rng = np.random.default_rng(2)
    w = np.array(weight)
    x = rng.uniform(-5, 5, (4, 3, 7))
    x[np.abs(x) < 1e-3] = 0.5  # away from the kink
    g = rng.standard_normal(x.shape)
    gx, gw = ref.prelu_backward(g, x, w)
    assert gx.shape == x.shape and gw.shape == w.shape

    h = 2.0**-17 * np.maximum(1.0, np.abs(x))
    _check_fd(lambda v: g * ref.prelu(v, w), lambda v: ref.prelu_backward(g, v, w)[0], x, h, "prelu dx")

    # d/dw_c sum(g * prelu(x, w)) by central differences in each weight (prelu is linear in w, so
    # the difference quotient is exact up to rounding: 64 eps times the size of the sum).
    for c in range(w.size):
        step = np.zeros_like(w)
        step[c] = 2.0**-10
        lp = np.sum(g * ref.prelu(x, w + step))
        lm = np.sum(g * ref.prelu(x, w - step))
        fd = (lp - lm) / (2 * step[c])
        scale = np.sum(np.abs(g * x))
        assert abs(fd - gw[c]) <= 64 * EPS * scale / step[c] + 1e-12 * abs(gw[c]), (c, fd, gw[c])


def test_prelu_weight_gradient_is_a_channel_sum():
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, (2, 3, 4, 5))
    g = rng.standard_normal(x.shape)
    w = np.array([0.1, 0.2, 0.3])
    _, gw = ref.prelu_backward(g, x, w)
    expect = [np.sum(np.where(x[:, c] > 0, 0.0, g[:, c] * x[:, c])) for c in range(3)]
    np.testing.assert_allclose(gw, expect, rtol=1e-13)
    _, gw1 = ref.prelu_backward(g, x, np.array([0.25]))
    assert gw1.shape == (1,)
    np.testing.assert_allclose(gw1[0], np.sum(np.where(x > 0, 0.0, g * x)), rtol=1e-13)
    # 1-D and 0-D inputs have a single channel (PyTorch's rule)
    assert ref.prelu(np.array([-2.0, 3.0]), [0.5]).tolist() == [-1.0, 3.0]
    assert ref.prelu(np.float64(-2.0), 0.5) == -1.0
    with pytest.raises(ValueError):
        ref.prelu(np.array([-2.0, 3.0]), [0.5, 0.5])
    with pytest.raises(ValueError):
        ref.prelu(np.zeros((2, 3)), [0.5, 0.5])


# ---------------------------------------------------------------------------------------------
# Against PyTorch (float64)

EXTREMAL = np.array(
    [
        0.0,
        5e-324,
        1e-310,
        1e-300,
        1e-8,
        0.5,
        1,
        2,
        3,
        6,
        10,
        20,
        20.5,
        30,
        50,
        100,
        700,
        800,
        1e10,
        1e150,
        1e300,
        DBL_MAX,
    ]
)


def _torch_points(rng, kinks):
    kinks = np.asarray(kinks, dtype=np.float64)
    near = np.concatenate([kinks, np.nextafter(kinks, INF), np.nextafter(kinks, -INF)])
    return np.concatenate([rng.uniform(-12, 12, 2000), EXTREMAL, -EXTREMAL, [-0.0], near])


def _assert_close(got, want, x, rtol, atol, what):
    ok = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True) | (got == want)
    if not ok.all():
        i = np.flatnonzero(~ok)
        j = i[0]
        pytest.fail(f"{what}: {i.size} mismatches; first x={x[j]!r} ours={got[j]!r} torch={want[j]!r}")


# Where our float64 values are deliberately (and, against mpmath, correctly) not torch's:
#  * sigmoid', tanh': torch computes s (1 - s) and 1 - t^2, which lose all relative accuracy in
#    the right tail (torch returns 0 for sigmoid'(50) = 1.9e-22); ours use e / (1 + e)^2 forms.
#  * gelu (exact): torch evaluates x/2 (1 + erf(x/sqrt2)), which cancels for x < -3 (torch gives
#    -0 for gelu(-11) = -1.75e-27); ours uses erfc. Same for gelu' and the tanh form's tail.
#  * hardsigmoid': torch's float64 kernel multiplies by 1/6 rounded to float32 (3e-8 relative).
#  * hardswish(DBL_MAX): torch overflows in x * 6 / 6.
#  * softsign' for |x| >= 1e10: torch's autograd of x / (1 + |x|) cancels.
#  * gelu' (tanh form) for |x| >= 1e100: torch's x^3 overflows and its derivative is NaN; ours
#    gives the limits 1 and 0.
#  * silu', mish', gelu' near their interior roots: both sides cancel there (differences ~1e-17).
# Hence the comparison uses a relative tolerance (1e-13) plus, for these ops, an absolute floor:
# eps times the size of the terms that cancel in torch's formulas (1 for sigmoid/tanh/silu/mish;
# up to ~30 for gelu tanh's x * u' * (1 - tanh^2 u)); 1e-8 for hardsigmoid's float32 1/6.
TORCH_ATOL = {
    "gelu": 1e-14,
    "sigmoid": 1e-15,
    "tanh": 1e-15,
    "hardsigmoid": 1e-8,
    "softsign": 1e-15,
    "silu": 1e-15,
    "mish": 1e-15,
}


@pytest.mark.parametrize("op", [o for o in OPS if o.torch is not None], ids=lambda o: o.id)
def test_forward_and_backward_match_torch(op):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(4)
    x = _torch_points(rng, op.kinks + (-3, 3, 0))
    if op.name == "hardswish":
        x = x[np.abs(x) < DBL_MAX]  # torch overflows in x * 6 / 6
    g = rng.uniform(-2, 2, x.size)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    yt = op.torch(F, xt)
    yt.backward(torch.tensor(g, dtype=torch.float64))
    atol = TORCH_ATOL.get(op.name, 0.0)
    _assert_close(op.fwd(x), yt.detach().numpy(), x, 1e-13, atol, op.id + " forward")
    big = np.ones(x.size, bool)
    if op.name == "softsign":
        big = np.abs(x) < 1e10
    elif op.name == "gelu":
        big = np.abs(x) < 1e100
    gx = xt.grad.numpy()
    ours = op.bwd(g, x)
    _assert_close(ours[big], gx[big], x[big], 1e-13, atol * 2, op.id + " backward")


def test_kink_conventions_match_torch():
    """The one-sided derivatives at kinks, exactly as torch 2.x autograd."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for op in OPS:
        if op.torch is None:
            continue
        x = np.array(sorted(set(op.kinks) | {0.0, -3.0, 3.0, 6.0, -1.0, 1.0}), dtype=np.float64)
        xt = torch.tensor(x, requires_grad=True)
        op.torch(F, xt).backward(torch.ones(x.size, dtype=torch.float64))
        atol = TORCH_ATOL.get(op.name, 0.0)
        np.testing.assert_allclose(op.bwd(1.0, x), xt.grad.numpy(), rtol=1e-13, atol=atol, err_msg=op.id)
    # spelled out, since these are the conventions kernels must copy
    assert ref.relu_backward(1.0, 0.0) == 0.0
    assert ref.leaky_relu_backward(1.0, 0.0) == 0.01
    assert ref.elu_backward(1.0, 0.0, alpha=2.0) == 2.0
    assert ref.celu_backward(1.0, 0.0, alpha=2.0) == 1.0
    assert ref.relu6_backward(1.0, np.array([0.0, 6.0])).tolist() == [0.0, 0.0]
    assert ref.hardtanh_backward(1.0, np.array([-1.0, 1.0])).tolist() == [0.0, 0.0]
    assert ref.hardsigmoid_backward(1.0, np.array([-3.0, 3.0])).tolist() == [0.0, 0.0]
    assert ref.hardswish_backward(1.0, np.array([-3.0, 3.0])).tolist() == [0.0, 1.0]
    assert ref.rrelu_backward(1.0, np.array([0.0, -0.0])).tolist() == [R_EVAL, R_EVAL]
    assert ref.softplus_backward(1.0, 20.0) == pytest.approx(1 / (1 + math.exp(-20)), rel=1e-15)
    gx, gw = ref.prelu_backward(1.0, np.array([0.0]), np.array([0.25]))
    assert gx.tolist() == [0.25] and gw.tolist() == [0.0]


def test_prelu_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(5)
    cases = [
        ((2, 3, 4, 5), [0.1, -0.2, 0.3]),
        ((6, 4), [0.5, 0.0, -1.0, 2.0]),
        ((2, 3, 4), [0.25]),
        ((7,), [0.25]),
        ((), [0.25]),
    ]
    for shape, weight in cases:
        x = rng.uniform(-3, 3, shape)
        g = rng.standard_normal(shape)
        w = np.array(weight)
        xt = torch.tensor(x, requires_grad=True)
        wt = torch.tensor(w, requires_grad=True)
        F.prelu(xt, wt).backward(torch.tensor(g))
        np.testing.assert_allclose(ref.prelu(x, w), F.prelu(xt, wt).detach().numpy(), rtol=1e-15)
        gx, gw = ref.prelu_backward(g, x, w)
        np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-15)
        np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-12, atol=1e-13)
    # torch: a 1-D input has one channel, so a weight per element is refused, as by the reference
    with pytest.raises(RuntimeError):
        F.prelu(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError):
        ref.prelu(np.zeros(3), np.ones(3))


# ---------------------------------------------------------------------------------------------
# Accuracy against mpmath (200 bits)


def _ulps(got, exact, mp):
    """|got - exact| in float64 ulps of exact (the ulp of the smallest normal below DBL_MIN)."""
    if exact == 0:
        return 0.0 if got == 0 else math.inf
    e = max(int(mp.floor(mp.log(abs(exact), 2))), -1022)
    return float(abs(mp.mpf(float(got)) - exact) / mp.ldexp(1, e - 52))


@pytest.mark.parametrize("op", [o for o in OPS if o.mp is not None], ids=lambda o: o.id)
def test_accuracy_against_mpmath(op):
    """The oracle's own error: <= 4 float64 ulp, except within 1 of an interior root of f', where
    two terms of size <= 1 cancel (gelu': Phi(x) + x phi(x); silu': s + x s (1 - s); mish'): there
    the bound is 4 ulp or 2 eps absolute, the inherent cost of the cancellation (it makes the
    relative error grow like 1/|f'| toward the root; for float32 inputs, whose distance to the
    root is >= ~1e-9 unless by coincidence, that stays well under a float32 ulp).
    Results below 1e-300 are exempt (float64 subnormals; they are 0 in float32 anyway)."""
    mp = pytest.importorskip("mpmath")
    mp.mp.prec = 200
    rng = np.random.default_rng(6)
    x = np.concatenate(
        [
            rng.uniform(-40, 40, 150),
            rng.uniform(-4, 4, 150),
            np.sign(rng.standard_normal(100)) * np.exp(rng.uniform(-25, math.log(600), 100)),
        ]
    )
    x = x[np.all([np.abs(x - k) > 1e-6 for k in op.kinks], axis=0)] if op.kinks else x
    y, d = op.fwd(x), op.bwd(1.0, x)
    for xi, yi, di in zip(x, y, d):
        f, df = op.mp(mp, mp.mpf(float(xi)))
        if abs(f) > 1e-300:
            u = _ulps(yi, f, mp)
            assert u <= 4, (op.id, "forward", xi, yi, float(f), u)
        if abs(df) > 1e-300:
            u = _ulps(di, df, mp)
            if u > 4 and any(abs(xi - r) < 1 for r in op.droots):
                assert abs(mp.mpf(float(di)) - df) <= 2 * EPS, (op.id, "backward", xi, di, float(df))
            else:
                assert u <= 4, (op.id, "backward", xi, di, float(df), u)


# ---------------------------------------------------------------------------------------------
# Special values


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.id)
def test_nan_propagates(op):
    xs = np.array([-INF, -50.0, -3.0, -1.0, -0.0, 0.0, 0.5, 1.0, 3.0, 6.0, 25.0, INF])
    assert np.isnan(op.fwd(np.array([np.nan]))).all()
    assert np.isnan(op.bwd(1.0, np.array([np.nan]))).all()
    assert np.isnan(op.bwd(np.full(xs.size, np.nan), xs)).all()


def test_prelu_nan_propagates():
    w = np.array([0.25])
    assert np.isnan(ref.prelu(np.array([np.nan]), w)).all()
    gx, gw = ref.prelu_backward(1.0, np.array([np.nan, 1.0]), w)
    assert np.isnan(gx[0]) and gx[1] == 1.0 and np.isnan(gw).all()
    gx, gw = ref.prelu_backward(np.array([np.nan, np.nan]), np.array([-1.0, 1.0]), w)
    assert np.isnan(gx).all() and np.isnan(gw).all()


@pytest.mark.parametrize("op", [o for o in OPS if o.limits is not None], ids=lambda o: o.id)
def test_infinite_inputs_give_limits(op):
    f_lo, f_hi, d_lo, d_hi = op.limits
    y = op.fwd(np.array([-INF, INF]))
    d = op.bwd(np.array([1.0, 1.0]), np.array([-INF, INF]))
    assert y.tolist() == [f_lo, f_hi], (op.id, y)
    np.testing.assert_array_equal(d, [d_lo, d_hi], err_msg=op.id)
    d2 = op.bwd(np.array([-2.5, -2.5]), np.array([-INF, INF]))
    np.testing.assert_array_equal(d2, [-2.5 * d_lo, -2.5 * d_hi], err_msg=op.id)


def test_rrelu_training_limits_and_prelu_limits():
    x = np.array([-INF, INF, -1.0])
    r = ref.rrelu_slopes(x.shape, 0.1, 0.3, True, 5, 9)
    y = ref.rrelu(x, 0.1, 0.3, True, 5, 9)
    assert y.tolist() == [-INF, INF, -r[2]]
    assert ref.rrelu_backward(1.0, x, 0.1, 0.3, True, 5, 9).tolist() == [r[0], 1.0, r[2]]
    w = np.array([0.25])
    assert ref.prelu(np.array([-INF, INF]), w).tolist() == [-INF, INF]
    assert ref.prelu(np.array([-INF]), np.array([0.0])).tolist() == [0.0]  # limit, not inf * 0
    gx, gw = ref.prelu_backward(np.array([1.0, 1.0]), np.array([-INF, INF]), w)
    assert gx.tolist() == [0.25, 1.0] and gw.tolist() == [-INF]


def test_no_numpy_warnings_escape_and_dtypes():
    xs = np.array([-INF, -DBL_MAX, -1e300, -800.0, -0.0, 0.0, 5e-324, 800.0, 1e300, DBL_MAX, INF, np.nan])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for op in OPS:
            assert op.fwd(xs).dtype == np.float64
            assert op.bwd(np.ones_like(xs), xs).dtype == np.float64
            op.bwd(np.full(xs.size, INF), xs)
        ref.prelu(xs, [0.0])
        ref.prelu_backward(xs, xs, [0.0])


def test_inputs_are_widened_and_broadcast():
    x32 = np.array([-1.5, 0.25, 2.0], dtype=np.float32)
    y = ref.silu(x32)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, ref.silu(x32.astype(np.float64)))
    g = np.ones((2, 1), dtype=np.float16)
    d = ref.gelu_backward(g, x32)
    assert d.shape == (2, 3) and d.dtype == np.float64
    assert ref.relu([-1, 2]).tolist() == [0.0, 2.0]


# ---------------------------------------------------------------------------------------------
# Philox

KAT = [  # Random123 kat_vectors, philox4x32 10: counter, key, expected output
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    (
        [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
        [0xA4093822, 0x299F31D0],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ),
]


@pytest.mark.parametrize("ctr,key,expect", KAT)
def test_philox_known_answers(ctr, key, expect):
    out = ref.philox4x32_10(np.array(ctr, dtype=np.uint32), np.array(key, dtype=np.uint32))
    assert out.dtype == np.uint32 and out.tolist() == expect


def test_philox_batch_equals_single():
    ctrs = np.array([c for c, _, _ in KAT], dtype=np.uint32)
    batch = ref.philox4x32_10(ctrs, [0xA4093822, 0x299F31D0])
    for row, c in zip(batch, ctrs):
        assert row.tolist() == ref.philox4x32_10(c, [0xA4093822, 0x299F31D0]).tolist()


def test_philox_uniform_layout():
    seed, offset = 0x123456789ABCDEF1, 0xFEDCBA9876543211
    u = ref.philox_uniform(seed, offset, 40, start=0x1_0000_0000 * 4 - 20)  # j crosses 2^32
    j0 = (0x1_0000_0000 * 4 - 20) >> 2
    for k in range(40):
        i = 0x1_0000_0000 * 4 - 20 + k
        j = i >> 2
        ctr = np.array([j & 0xFFFFFFFF, j >> 32, offset & 0xFFFFFFFF, offset >> 32], dtype=np.uint32)
        word = int(ref.philox4x32_10(ctr, np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32))[i & 3])
        assert u[k] == (word >> 8) * 2.0**-24, (k, j - j0)


def test_philox_uniform_properties():
    u = ref.philox_uniform(42, 0, 100_000)
    assert u.dtype == np.float64 and u.shape == (100_000,)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert np.all(u * 2**24 == np.floor(u * 2**24))  # 24-bit grid: exact in float32
    assert np.array_equal(u.astype(np.float32).astype(np.float64), u)
    # mean and variance of U[0,1): within 6 standard errors
    n = u.size
    assert abs(u.mean() - 0.5) < 6 * math.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 6 * math.sqrt(1 / 180 / n)
    # deterministic; offset, seed (both key words) change the stream
    assert np.array_equal(u, ref.philox_uniform(42, 0, 100_000))
    for other in [
        ref.philox_uniform(42, 1, n),
        ref.philox_uniform(43, 0, n),
        ref.philox_uniform(42 + 2**32, 0, n),
        ref.philox_uniform(42, 2**32, n),
    ]:
        assert np.mean(other == u) < 1e-3
    # start / n slicing is consistent with one long draw
    full = ref.philox_uniform(7, 3, 103)
    for start, count in [(0, 103), (1, 7), (3, 10), (4, 4), (5, 0), (50, 53), (102, 1)]:
        assert np.array_equal(ref.philox_uniform(7, 3, count, start=start), full[start : start + count])
    with pytest.raises(ValueError):
        ref.philox_uniform(7, 3, -1)


def test_rrelu_training_slopes():
    lower, upper = 0.1, 0.4
    x = -np.ones((3, 5, 7))
    r = ref.rrelu_slopes(x.shape, lower, upper, True, seed=11, offset=2)
    u = ref.philox_uniform(11, 2, x.size).reshape(x.shape)
    np.testing.assert_array_equal(r, lower + (upper - lower) * u)
    assert r.min() >= lower and r.max() < upper
    np.testing.assert_array_equal(ref.rrelu(x, lower, upper, True, 11, 2), -r)
    np.testing.assert_array_equal(ref.rrelu_backward(2.0, x, lower, upper, True, 11, 2), 2 * r)
    np.testing.assert_array_equal(ref.rrelu(-x, lower, upper, True, 11, 2), -x)
    assert not np.array_equal(r, ref.rrelu_slopes(x.shape, lower, upper, True, seed=11, offset=3))
    assert np.all(ref.rrelu_slopes(x.shape, lower, upper) == (lower + upper) / 2)


@pytest.mark.parametrize("name,params", [("sigmoid", {}), ("tanh", {}), ("relu", {}), ("leaky_relu", {}),
                                         ("elu", {"alpha": 0.7}), ("selu", {}), ("celu", {"alpha": 2.0}),
                                         ("relu6", {}), ("hardtanh", {"min_val": -2.0, "max_val": 0.5}),
                                         ("softplus", {"beta": 2.0, "threshold": 10.0})])
def test_backward_from_y_equals_backward_from_x(name, params):
    # On [-3, 3] none of these derivatives is badly conditioned in y (the worst,
    # tanh at |x| = 3, amplifies y's 1/2 ULP by 2y^2/(1-y^2) < 200), so the two
    # float64 evaluations agree to 1e-12 relative to the derivative's scale 1.
    x = np.linspace(-3, 3, 6001)
    g = np.full_like(x, 0.5)
    y = getattr(ref, name)(x, **params)
    np.testing.assert_allclose(ref.backward_from_y(name, g, y, **params),
                               getattr(ref, name + "_backward")(g, x, **params), rtol=0, atol=1e-12)
