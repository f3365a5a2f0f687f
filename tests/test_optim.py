"""Clipped optimizers against nnfuse.reference.optim (NumPy float64): 20-step
trajectories of params and every state array, compared after every step, for
optimizer x clipping x semantics x dtype x ISA; non-finite policies; errors;
state_dict; thread-count determinism; torch.optim parity; sharded clipping
with torch.distributed (gloo)."""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nnfuse as nf
from nnfuse import optim
from nnfuse._array import BFLOAT16
from nnfuse.reference import optim as R

try:
    import torch
except ImportError:
    torch = None

STEPS = 20
SIZES = [1, 17, 100, 1029]

# name -> (class, kwargs). Every optimizer variant (amsgrad, nesterov, centered, ...) appears once.
CONFIGS = {
    "adam": (optim.Adam, dict(lr=0.01)),
    "adam-amsgrad-maximize-wd": (optim.Adam, dict(lr=0.01, amsgrad=True, maximize=True, weight_decay=0.1)),
    "adamw": (optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    "sgd": (optim.SGD, dict(lr=0.1)),
    "sgd-nesterov-wd": (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "sgd-dampening": (optim.SGD, dict(lr=0.1, momentum=0.8, dampening=0.3)),
    "rmsprop": (optim.RMSprop, dict(lr=0.01)),
    "rmsprop-centered-momentum-wd": (optim.RMSprop, dict(lr=0.01, centered=True, momentum=0.9, weight_decay=0.01)),
    "adagrad": (optim.Adagrad, dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, weight_decay=0.01)),
}
CLIPS = {"none": {}, "clipvalue": dict(clipvalue=0.5), "clipnorm": dict(clipnorm=1.0),
         "global_clipnorm": dict(global_clipnorm=2.0)}
DTYPES = {"float32": (np.dtype(np.float32), False), "float64": (np.dtype(np.float64), False),
          "float16": (np.dtype(np.float16), False), "bfloat16-master": (BFLOAT16, True),
          "float16-master": (np.dtype(np.float16), True)}


# ---- the float64 reference driven like the classes ---------------------------------------------

SQUARED_STATES = ("exp_avg_sqs", "max_exp_avg_sqs", "square_avgs", "state_sums")


def _ref_state(cls, kw, shapes):
    zeros = lambda: [np.zeros(s) for s in shapes]  # noqa: E731
    if cls in (optim.Adam, optim.AdamW):
        st = {"exp_avgs": zeros(), "exp_avg_sqs": zeros()}
        if kw.get("amsgrad"):
            st["max_exp_avg_sqs"] = zeros()
        return st
    if cls is optim.SGD:
        return {"momentum_buffers": zeros()} if kw.get("momentum", 0) else {}
    if cls is optim.RMSprop:
        st = {"square_avgs": zeros()}
        if kw.get("centered"):
            st["grad_avgs"] = zeros()
        if kw.get("momentum", 0) > 0:
            st["momentum_buffers"] = zeros()
        return st
    return {"state_sums": [np.full(s, kw.get("initial_accumulator_value", 0.0)) for s in shapes]}


def _ref_step(cls, kw, params, grads, st, step, opts):
    if cls in (optim.Adam, optim.AdamW):
        b1, b2 = kw.get("betas", (0.9, 0.999))
        wd = kw.get("weight_decay", 1e-2 if cls is optim.AdamW else 0.0)
        return R.adam_step(params, grads, st["exp_avgs"], st["exp_avg_sqs"], step=step, lr=kw.get("lr", 1e-3),
                           beta1=b1, beta2=b2, eps=kw.get("eps"), weight_decay=wd, decoupled=cls is optim.AdamW,
                           amsgrad=kw.get("amsgrad", False), max_exp_avg_sqs=st.get("max_exp_avg_sqs"),
                           maximize=kw.get("maximize", False), **opts)
    if cls is optim.SGD:
        return R.sgd_step(params, grads, st.get("momentum_buffers"), step=step, **kw, **opts)
    if cls is optim.RMSprop:
        return R.rmsprop_step(params, grads, st["square_avgs"], st.get("grad_avgs"), st.get("momentum_buffers"),
                              step=step, **kw, **opts)
    kw = {k: v for k, v in kw.items() if k != "initial_accumulator_value"}
    return R.adagrad_step(params, grads, st["state_sums"], step=step, **kw, **opts)


def _grads(rng, shapes, step, dtype):
    """Every third step large (clipping active), steps 2 and 4 small (clipping inactive), step 5 all
    zero, else moderate. Step 1 is moderate on purpose: at t = 1 Adam and RMSprop are scale-invariant
    in g, so where g + wd*p cancels to ~eps the float32 cancellation error is amplified by
    (|g| + wd|p|) / |g + wd*p| — an ill-conditioned input, not a kernel error."""
    scale = 0.0 if step == 5 else (3.0 if step % 3 == 0 else (0.01 if step in (2, 4) else 0.3))
    return [(rng.standard_normal(s) * scale).astype(np.float32).astype(dtype) for s in shapes]


def _tolerance(dtype, master, steps_done, magnitude, is_param):
    """Bound on |got - reference| after `steps_done` steps.

    The kernel computes each step in float32 (float64 for float64 parameters): every stored value
    carries at most a few roundings (about 8 for the longest chain, Adam's denominator and quotient)
    relative to the magnitudes it was computed from, and the recurrences never amplify an earlier
    error (m, v, buffers are scaled by factors < 1; p by 1 or 1 - lr*wd). So after t steps the error
    is below 16 t u M, u the unit roundoff, M the largest magnitude the element reached (running max
    of |x| plus the summed |step changes|). A 16-bit parameter stored without master weights is
    rounded every step; float32-vs-float64 differences can move that rounding by one storage ulp,
    which then persists: t ulps of the storage type on top (one ulp with master weights).
    """
    u = 2.0 ** -53 if dtype == np.float64 else 2.0 ** -24
    tol = 16 * steps_done * u * magnitude
    if is_param and dtype in (np.dtype(np.float16), BFLOAT16):
        storage_ulp = 2.0 ** -10 if dtype == np.float16 else 2.0 ** -7
        # with master weights the parameter is one rounding of the float32 master (checked to the bit)
        tol = tol + (1 if master else steps_done) * storage_ulp * magnitude
    return tol


def _compare(label, got, want, tol):
    got = np.asarray(got, dtype=np.float64)
    finite = np.isfinite(want)
    with np.errstate(invalid="ignore"):
        err = np.where(finite, np.abs(got - want), 0.0)
    # non-finite expected values must be matched exactly (NaN by NaN, inf by the same inf)
    same_special = np.isnan(got) & np.isnan(want) | (got == want)
    bad = np.where(finite, ~(err <= tol), ~same_special)
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        pytest.fail(f"{label}: {int(bad.sum())} of {bad.size} elements off; first at {i}: got "
                    f"{got.ravel()[i]!r}, expected {want.ravel()[i]!r}, |err| {err.ravel()[i]:.3g} > tol "
                    f"{np.broadcast_to(tol, want.shape).ravel()[i]:.3g}")


def _trajectory(cls, kw, opts, dtype, master, semantics, sizes=SIZES, nan_step=None, steps=STEPS, seed=0,
                make=None):
    """make(cls, params, **options): builds the optimizer under test (default cls itself; the CUDA
    tests pass a wrapper that runs it on the GPU and mirrors params and state to NumPy)."""
    rng = np.random.default_rng(seed)
    shapes = [(n,) for n in sizes]
    params = [rng.standard_normal(s).astype(np.float32).astype(dtype) for s in shapes]
    if make is None:
        opt = cls(params, **kw, **opts, semantics=semantics, master_weights=master)
    else:
        opt = make(cls, params, **kw, **opts, semantics=semantics, master_weights=master)
    ref_p = [p.astype(np.float64) for p in params]
    ref_st = _ref_state(cls, kw, shapes)
    mags = {k: [np.abs(a) for a in v] for k, v in ref_st.items()}
    mags["params"] = [np.abs(p) + kw.get("lr", 1e-3) for p in ref_p]
    ref_step_count = 0
    for t in range(1, steps + 1):
        grads = _grads(rng, shapes, t, dtype)
        if nan_step == t:
            grads[-1][len(grads[-1]) // 2] = np.nan
            grads[0][0] = np.inf
        before = {k: [a.copy() for a in v] for k, v in ref_st.items()}
        before_p = [p.copy() for p in ref_p]
        record = opt.step(grads)
        norm, factor, skipped = _ref_step(cls, kw, ref_p, [g.astype(np.float64) for g in grads], ref_st,
                                          ref_step_count + 1, dict(opts, semantics=semantics))
        if not skipped:
            ref_step_count += 1
            if dtype in (np.dtype(np.float16), BFLOAT16) and not master:
                for p in ref_p:
                    p[...] = p.astype(dtype).astype(np.float64)
        assert record.skipped == skipped, f"step {t}: skipped {record.skipped}, reference {skipped}"
        assert record.step == ref_step_count
        if record.grad_norm is not None and math.isfinite(norm):
            assert record.grad_norm == pytest.approx(norm, rel=1e-12, abs=1e-300)
        if not skipped and math.isfinite(factor):
            assert record.clip_factor == pytest.approx(factor, rel=1e-12)
        wd = kw.get("weight_decay", 1e-2 if cls is optim.AdamW else 0.0)
        for k in ref_st:
            for i, a in enumerate(ref_st[k]):
                # the increment's own operands: g and, with coupled decay, wd*p (they can cancel)
                g64 = np.nan_to_num(grads[i].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
                inc = np.abs(g64) + wd * np.abs(before_p[i])
                inc = inc * inc if k in SQUARED_STATES else inc
                if cls is optim.RMSprop and k == "momentum_buffers" and semantics == "torch":
                    # the increment is g / (sqrt(w) + eps), w = sq - ga^2: its operands' scale, and
                    # the relative error of w (cancellation) halved by the sqrt
                    sq = ref_st["square_avgs"][i]
                    ga = ref_st["grad_avgs"][i] if "grad_avgs" in ref_st else np.zeros_like(sq)
                    eps = kw.get("eps") or 1e-8
                    with np.errstate(all="ignore"):
                        w = np.abs(sq - ga * ga)
                        d = np.sqrt(w) + eps
                        inc = inc / d * (1 + np.nan_to_num((sq + ga * ga) / (2 * w * (1 + eps / np.sqrt(w))),
                                                           nan=0.0, posinf=0.0))
                with np.errstate(invalid="ignore"):
                    mags[k][i] = np.fmax(mags[k][i], np.abs(a)) + np.abs(a - before[k][i]) + inc
        for i, p in enumerate(ref_p):
            with np.errstate(invalid="ignore"):
                mags["params"][i] = np.fmax(mags["params"][i], np.abs(p)) + np.abs(p - before_p[i])
        for i in range(len(shapes)):
            tol = _tolerance(dtype, master, max(ref_step_count, 1), mags["params"][i], True)
            _compare(f"step {t} params[{i}]", opt.params[i], ref_p[i], tol)
            for k in ref_st:
                tol = _tolerance(dtype, master, max(ref_step_count, 1), mags[k][i], False)
                _compare(f"step {t} {k}[{i}]", opt.state[k][i], ref_st[k][i], tol)
            if master:
                m = opt.state["master_params"][i]
                _compare(f"step {t} master_params[{i}]", m, ref_p[i],
                         _tolerance(np.dtype(np.float32), False, max(ref_step_count, 1), mags["params"][i], True))
                np.testing.assert_array_equal(opt.params[i].view(np.uint16), m.astype(dtype).view(np.uint16))
    return opt


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("semantics", ["torch", "keras"])
@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("config", list(CONFIGS))
def test_trajectory(config, clip, semantics, dtype_name, isa):
    cls, kw = CONFIGS[config]
    dtype, master = DTYPES[dtype_name]
    _trajectory(cls, kw, dict(CLIPS[clip], nonfinite="zero" if clip == "none" else "skip"), dtype, master,
                semantics)


@pytest.mark.parametrize("policy", ["skip", "zero", "propagate"])
@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("config", ["adam", "sgd-nesterov-wd", "rmsprop-centered-momentum-wd", "adagrad"])
def test_nonfinite_policies(config, clip, policy, isa):
    cls, kw = CONFIGS[config]
    _trajectory(cls, kw, dict(CLIPS[clip], nonfinite=policy), np.dtype(np.float32), False, "torch", nan_step=7,
                steps=9)


def test_skip_changes_nothing(isa):
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(n).astype(np.float32) for n in (5, 70000)]
    opt = optim.Adam(params, lr=0.1)
    opt.step([np.ones_like(p) for p in params])
    before = opt.state_dict()
    before_params = [p.copy() for p in params]
    grads = [np.ones_like(p) for p in params]
    grads[1][69999] = np.inf
    record = opt.step(grads)
    assert record.skipped and record.step == 1 and opt.step_count == 1
    for p, q in zip(params, before_params):
        np.testing.assert_array_equal(p, q)
    for k, arrays in before["state"].items():
        for a, b in zip(arrays, opt.state[k]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("semantics", ["torch", "keras"])
def test_uneven_sizes_up_to_1e6(semantics, isa):
    _trajectory(optim.Adam, dict(lr=0.01, amsgrad=True), dict(global_clipnorm=5.0), np.dtype(np.float32), False,
                semantics, sizes=[1, 7, 33, 1000, 65537, 10 ** 6], steps=4)


@pytest.mark.parametrize("clip", ["clipnorm", "global_clipnorm", "none"])
def test_same_bits_for_every_thread_count(clip):
    rng = np.random.default_rng(5)
    sizes = [3, 1 << 16, 300001, 1 << 20]
    grads = [rng.standard_normal(n).astype(np.float32) * 7 for n in sizes]
    results = []
    for threads in (1, 2, 3, 7):
        nf.set_num_threads(threads)
        params = [np.linspace(-1, 1, n, dtype=np.float32) for n in sizes]
        opt = optim.Adam(params, lr=0.1, **CLIPS[clip])
        record = opt.step(grads)
        results.append((record, [p.copy() for p in params]))
    for record, params in results[1:]:
        assert record.grad_norm == results[0][0].grad_norm
        assert record.clip_factor == results[0][0].clip_factor
        for a, b in zip(params, results[0][1]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, BFLOAT16, np.float64])
@pytest.mark.parametrize("clip", ["clipnorm", "global_clipnorm"])
def test_same_bits_on_every_isa(clip, dtype):
    """The squares of each gradient block are summed in 16 virtual lanes on
    every ISA, so the norm, the clip factor and the update have the same bits
    on scalar, AVX2 and AVX-512, also for sizes that are no multiple of 8 or 16."""
    rng = np.random.default_rng(6)
    sizes = [3, 13, 100, 5000, 70001]
    grads = [(rng.standard_normal(n) * 7).astype(dtype) for n in sizes]
    results = []
    for isa in nf._C.supported_isas():
        with nf.cpu_isa(isa):
            params = [np.linspace(-1, 1, n).astype(dtype) for n in sizes]
            opt = optim.Adam(params, lr=0.1, master_weights=np.dtype(dtype).itemsize == 2, **CLIPS[clip])
            record = opt.step(grads)
            results.append((isa, record, [p.tobytes() for p in params]))
    for isa, record, params in results[1:]:
        assert record.grad_norm == results[0][1].grad_norm, f"{isa} vs {results[0][0]}: {record} {results[0][1]}"
        assert record.clip_factor == results[0][1].clip_factor
        assert params == results[0][2], f"{isa} updates differ from {results[0][0]}"


_PREFETCH_CHILD = textwrap.dedent("""
    import hashlib, numpy as np, nnfuse as nf
    from nnfuse import optim
    from nnfuse._array import BFLOAT16
    rng = np.random.default_rng(9)
    sizes = [5, 77, 4099, 70001]
    for isa in nf._C.supported_isas():
        digest = hashlib.sha256()
        with nf.cpu_isa(isa):
            for dtype in (np.float32, np.float16, BFLOAT16, np.float64):
                grads = [(rng.standard_normal(n) * 7).astype(dtype) for n in sizes]
                params = [np.linspace(-1, 1, n).astype(dtype) for n in sizes]
                opt = optim.Adam(params, lr=0.1, master_weights=np.dtype(dtype).itemsize == 2, global_clipnorm=1.0)
                for _ in range(3):
                    opt.step(grads)
                for a in params + [s for group in opt.state_dict()["state"].values() for s in group]:
                    digest.update(np.ascontiguousarray(a).tobytes())
        print(isa, nf.build_info()["optim_prefetch"], digest.hexdigest())
""")


def test_update_prefetch_does_not_change_the_bits():
    # The update loop prefetches or not by CPU vendor (NNFUSE_OPTIM_PREFETCH
    # sets it): both loops, on every ISA, must leave the same parameters and state.
    lines = {}
    for setting in ("1", "0"):
        env = dict(os.environ, NNFUSE_OPTIM_PREFETCH=setting)
        out = subprocess.run([sys.executable, "-c", _PREFETCH_CHILD], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        lines[setting] = [line.split() for line in out.stdout.splitlines()]
    assert [isa for isa, _, _ in lines["1"]] == nf._C.supported_isas()
    assert {flag for _, flag, _ in lines["1"]} == {"True"} and {flag for _, flag, _ in lines["0"]} == {"False"}
    assert [(isa, digest) for isa, _, digest in lines["1"]] == [(isa, digest) for isa, _, digest in lines["0"]]


def test_float64_norm_does_not_overflow(isa):
    g = [np.full(10, 1e200), np.array([3e-300])]
    params = [np.zeros(10), np.zeros(1)]
    record = optim.sgd_step(params, g, step=1, lr=1.0, global_clipnorm=1.0)
    assert record.grad_norm == pytest.approx(math.sqrt(10) * 1e200, rel=1e-15)
    np.testing.assert_allclose(params[0], -1 / math.sqrt(10), rtol=1e-14)


def test_float64_norm_adds_plain_sums_to_overflowed_ones(isa):
    # A sum of squares that overflows is kept scaled by 2^-1200; plain sums
    # joining it (another array, or another 64K block of the same array) must
    # be scaled down with it, not dropped: here they add 0.81% to the square.
    big, near_big = 1e155, 9e153  # squares 1e310 (overflows) and 8.1e307 (does not)
    expected = big * math.sqrt(1 + (near_big / big) ** 2)
    two_arrays = [np.array([big]), np.array([near_big])]
    record = optim.sgd_step([np.zeros(1), np.zeros(1)], two_arrays, step=1, lr=1.0, global_clipnorm=1.0)
    assert record.grad_norm == pytest.approx(expected, rel=1e-14)
    one_array = np.zeros(70000)
    one_array[0], one_array[69999] = big, near_big  # in two different blocks
    record = optim.sgd_step([np.zeros(70000)], [one_array], step=1, lr=1.0, global_clipnorm=1.0)
    assert record.grad_norm == pytest.approx(expected, rel=1e-14)


def test_state_dict_round_trip():
    rng = np.random.default_rng(9)
    params = [rng.standard_normal(n).astype(np.float16) for n in (3, 1000)]
    grads = [[rng.standard_normal(p.shape).astype(np.float16) for p in params] for _ in range(6)]
    opt = optim.AdamW(params, lr=0.01, amsgrad=True, global_clipnorm=1.0, master_weights=True)
    for g in grads[:3]:
        opt.step(g)
    saved = opt.state_dict()
    saved_params = [p.copy() for p in params]
    for g in grads[3:]:
        opt.step(g)
    after_a = [p.copy() for p in params]
    params2 = [p.copy() for p in saved_params]
    opt2 = optim.AdamW(params2, lr=0.5, amsgrad=True, global_clipnorm=1.0, master_weights=True)
    opt2.load_state_dict(saved)
    assert opt2.step_count == 3 and opt2.hyper["lr"] == 0.01
    for g in grads[3:]:
        opt2.step(g)
    for a, b in zip(after_a, params2):
        np.testing.assert_array_equal(a.view(np.uint16), b.view(np.uint16))
    for k in opt.state:
        for a, b in zip(opt.state[k], opt2.state[k]):
            np.testing.assert_array_equal(a, b)


# ---- errors -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls,kw", [CONFIGS["adam"], CONFIGS["sgd-nesterov-wd"]])
def test_strided_gradients_are_copied(cls, kw):
    """A gradient that is a strided view (every other element, a transpose)
    gives the same step as its contiguous copy; it was a ValueError."""
    rng = np.random.default_rng(5)
    start = [rng.standard_normal((6, 4)).astype(np.float32), rng.standard_normal(5).astype(np.float32)]
    wide = [rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal(10).astype(np.float32)]
    strided = [wide[0].T, wide[1][::2]]
    a, b = [x.copy() for x in start], [x.copy() for x in start]
    opt_a, opt_b = cls(a, global_clipnorm=1.0, **kw), cls(b, global_clipnorm=1.0, **kw)
    for _ in range(3):
        record_a = opt_a.step(strided)
        record_b = opt_b.step([np.ascontiguousarray(g) for g in strided])
        assert record_a == record_b
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], start[0])


def test_errors_name_the_argument():
    p = [np.zeros(4, np.float32), np.zeros(3, np.float32)]
    g = [np.zeros(4, np.float32), np.zeros(3, np.float32)]
    st = lambda: [np.zeros_like(x) for x in p]  # noqa: E731
    with pytest.raises(ValueError, match="at most one clipping option"):
        optim.Adam(p, clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="'grads' has 1 arrays"):
        optim.adam_step(p, g[:1], st(), st(), step=1)
    with pytest.raises(ValueError, match=r"'grads\[1\]' has shape \(2,\)"):
        optim.adam_step(p, [g[0], np.zeros(2, np.float32)], st(), st(), step=1)
    with pytest.raises(TypeError, match=r"'grads\[0\]' has dtype float64"):
        optim.adam_step(p, [g[0].astype(np.float64), g[1]], st(), st(), step=1)
    with pytest.raises(TypeError, match=r"'exp_avg_sqs\[1\]' has dtype float64"):
        optim.adam_step(p, g, st(), [st()[0], np.zeros(3)], step=1)
    ro = np.zeros(3, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"'params\[1\]' is read-only"):
        optim.adam_step([p[0], ro], g, st(), st(), step=1)
    with pytest.raises(ValueError, match=r"'exp_avgs\[0\]' must be C-contiguous"):
        optim.adam_step(p, g, [np.zeros(8, np.float32)[::2], st()[1]], st(), step=1)
    with pytest.raises(TypeError, match="master weights need float16 or bfloat16"):
        optim.Adam(p, master_weights=True)
    with pytest.raises(TypeError, match=r"'exp_avgs\[0\]' has dtype float16"):
        optim.adam_step([x.astype(np.float16) for x in p], [x.astype(np.float16) for x in g],
                        [x.astype(np.float16) for x in st()], st(), step=1)
    with pytest.raises(TypeError, match="int64"):
        optim.SGD([np.zeros(3, np.int64)])
    with pytest.raises(ValueError, match="nonfinite"):
        optim.SGD(p, nonfinite="ignore")
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(p, momentum=0.0, nesterov=True)
    with pytest.raises(TypeError, match=r"'grads\[0\]' must be a numpy.ndarray"):
        optim.sgd_step(p, [[0.0] * 4, g[1]], step=1, lr=0.1)
    with pytest.raises(ValueError, match="global_clipnorm"):
        optim.Adam(p, global_clipnorm=-1.0)


# ---- PyTorch parity (torch semantics) ----------------------------------------------------------------

TORCH_CASES = {
    "adam": (optim.Adam, "Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    "adamw": (optim.AdamW, "AdamW", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    "sgd": (optim.SGD, "SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "rmsprop": (optim.RMSprop, "RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.01)),
    "adagrad": (optim.Adagrad, "Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)),
}


@pytest.mark.skipif(torch is None, reason="torch not installed")
@pytest.mark.parametrize("clip", ["none", "clipvalue", "global_clipnorm"])
@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_torch_parity(case, clip, isa):
    """20 steps of torch.optim (foreach=False, float32) with clip_grad_norm_ / clip_grad_value_ beside
    ours: the two float32 computations each stay within the reference bound, so they agree within twice
    it; we check the float32 relative bound 32 t 2^-24 on M (see _tolerance)."""
    cls, tname, kw = TORCH_CASES[case]
    rng = np.random.default_rng(11)
    shapes = [(1,), (33,), (1000,)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt = cls(params, **kw, **CLIPS[clip], nonfinite="propagate")
    topt = getattr(torch.optim, tname)(tparams, **kw, foreach=False)
    mag = [np.abs(p.astype(np.float64)) + kw["lr"] for p in params]
    for t in range(1, STEPS + 1):
        grads = _grads(rng, shapes, t, np.float32)
        before = [p.astype(np.float64) for p in params]
        opt.step(grads)
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g)
        if clip == "clipvalue":
            torch.nn.utils.clip_grad_value_(tparams, 0.5)
        elif clip == "global_clipnorm":
            torch.nn.utils.clip_grad_norm_(tparams, 2.0)
        topt.step()
        for i, (p, tp) in enumerate(zip(params, tparams)):
            mag[i] = np.fmax(mag[i], np.abs(p)) + np.abs(p - before[i])
            _compare(f"step {t} params[{i}] vs torch", p, tp.detach().numpy().astype(np.float64),
                     2 * _tolerance(np.dtype(np.float32), False, t, mag[i], True))


@pytest.mark.skipif(torch is None, reason="torch not installed")
@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_torch_cpu_tensors_step_as_numpy_arrays(case):
    """Optimizers over a module's parameters (a generator of torch CPU tensors that require grad) take
    the steps of the same optimizer over NumPy copies, bit for bit: the tensors are updated in place,
    the state is torch tensors sharing memory with what the step writes, and state_dict round-trips."""
    cls, _, kw = TORCH_CASES[case]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    copies = [p.detach().numpy().copy() for p in model.parameters()]
    opt = cls(model.parameters(), **kw, global_clipnorm=1.0)
    mirror = cls(copies, **kw, global_clipnorm=1.0)
    x = torch.randn(16, 5)
    for _ in range(3):
        model.zero_grad()
        model(x).square().sum().backward()
        got = opt.step([p.grad for p in model.parameters()])
        expected = mirror.step([p.grad.numpy().copy() for p in model.parameters()])
        assert got == expected
    assert all(isinstance(p, torch.nn.Parameter) for p in opt.params)
    for p, q in zip(model.parameters(), mirror.params):
        np.testing.assert_array_equal(p.detach().numpy(), q)
    for k, arrays in opt.state.items():
        assert all(isinstance(a, torch.Tensor) for a in arrays)
        for a, b in zip(arrays, mirror.state[k]):
            np.testing.assert_array_equal(a.numpy(), b)
    saved = opt.state_dict()
    assert all(isinstance(a, torch.Tensor) for v in saved["state"].values() for a in v)
    for arrays in opt.state.values():
        for a in arrays:
            a.fill_(7.0)
    opt.load_state_dict(saved)
    for k, arrays in opt.state.items():
        for a, b in zip(arrays, mirror.state[k]):
            np.testing.assert_array_equal(a.numpy(), b)


@pytest.mark.skipif(torch is None, reason="torch not installed")
@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_step_without_grads_reads_the_torch_parameters_grad(case):
    """The torch training loop (backward, step(), zero_grad()) takes the same steps, bit for bit, as
    step() given the gradients; zero_grad() sets .grad to None or, with set_to_none=False, to zeros
    that no longer require grad."""
    cls, _, kw = TORCH_CASES[case]
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    opt = cls(model.parameters(), **kw, clipvalue=0.5)
    mirror = cls([p.detach().numpy().copy() for p in model.parameters()], **kw, clipvalue=0.5)
    x = torch.randn(16, 5)
    for t in range(3):
        model(x).square().sum().backward()
        expected = mirror.step([p.grad.numpy().copy() for p in model.parameters()])
        assert opt.step() == expected
        for p, q in zip(model.parameters(), mirror.params):
            np.testing.assert_array_equal(p.detach().numpy(), q)
        opt.zero_grad(set_to_none=t == 0)
        if t == 0:
            assert all(p.grad is None for p in model.parameters())
        else:
            assert all(not p.grad.requires_grad and not p.grad.any() for p in model.parameters())


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_step_without_grads_needs_every_gradient():
    """A parameter with no gradient is named and nothing is updated (torch.optim would pass over
    it, but one step count serves all parameters here); NumPy parameters hold no .grad."""
    frozen, live = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    live.grad = torch.ones(3)
    opt = optim.SGD([live, frozen], lr=0.5)
    with pytest.raises(ValueError, match=r"SGD.step\(\): 'params\[1\].grad' is None"):
        opt.step()
    assert opt.step_count == 0 and bool((live == 1).all())
    arrays = optim.Adam([np.ones(3, np.float32)])
    with pytest.raises(TypeError, match=r"Adam.step\(\): 'params\[0\]' \(ndarray\) holds no .grad"):
        arrays.step()
    with pytest.raises(TypeError, match=r"Adam.zero_grad\(\): no parameter is a torch tensor"):
        arrays.zero_grad()


_NO_TORCH_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import nnfuse.optim as optim
    assert "torch" not in sys.modules
    for call in (lambda: optim.Adam([np.ones(2, np.float32), None]),
                 lambda: optim.sgd_step([None], [np.ones(1, np.float32)], step=1, lr=1.0)):
        try:
            call()
        except TypeError as error:
            print(error)
""")


def test_parameters_that_are_not_arrays_are_named():
    """A parameter that is no array is a TypeError naming it, where it was an AttributeError when
    torch was not imported (host_arrays then looks for no tensors): checked here and in a process
    without torch."""
    for bad, shown in ((None, "NoneType"), ([1.0, 2.0], "list")):
        with pytest.raises(TypeError, match=rf"Adam\(\): 'params\[1\]' must be a numpy.ndarray .*got {shown}"):
            optim.Adam([np.ones(2, np.float32), bad])
        with pytest.raises(TypeError, match=rf"sgd_step\(\): 'params\[0\]' must be a numpy.ndarray .*got {shown}"):
            optim.sgd_step([bad], [np.ones(2, np.float32)], step=1, lr=1.0)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    printed = subprocess.run([sys.executable, "-c", _NO_TORCH_SCRIPT], env=env, capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert printed == ["Adam(): 'params[1]' must be a numpy.ndarray or a torch CPU tensor, got NoneType",
                       "sgd_step(): 'params[0]' must be a numpy.ndarray or a torch CPU tensor, got NoneType"]


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_torch_cpu_steps_advance_the_autograd_version():
    """As torch.optim's in-place updates: a graph that saved a parameter's old value refuses backward
    after the step, where it would silently have used the new value; a skipped step changes nothing."""
    w = torch.nn.Parameter(torch.ones(3))
    loss = (w * w).sum()
    opt = optim.SGD([w], lr=0.1)
    version = w._version
    assert opt.step([torch.full((3,), math.nan)]).skipped and w._version == version
    opt.step([torch.ones(3)])
    assert w._version > version
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    p, m = [torch.nn.Parameter(torch.ones(2))], [torch.zeros(2)]
    version = p[0]._version
    optim.sgd_step(p, [torch.ones(2)], m, step=1, lr=0.5, momentum=0.9)
    assert p[0]._version > version
    np.testing.assert_array_equal(p[0].detach().numpy(), np.full(2, 0.5, np.float32))
    np.testing.assert_array_equal(m[0].numpy(), np.ones(2, np.float32))


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_ndarray_subclasses_with_torch_imported(tmp_path):
    """np.memmap parameters beside a torch tensor: only the tensor is viewed (and its version
    advanced); the memmap is updated in place as an ndarray."""
    mapped = np.memmap(tmp_path / "p.bin", dtype=np.float32, mode="w+", shape=(4,))
    mapped[:] = 1.0
    tensor = torch.ones(3)
    version = tensor._version
    optim.sgd_step([mapped, tensor], [np.ones(4, np.float32), torch.ones(3)], step=1, lr=0.5)
    np.testing.assert_array_equal(np.asarray(mapped), np.full(4, 0.5, np.float32))
    np.testing.assert_array_equal(tensor.numpy(), np.full(3, 0.5, np.float32))
    assert tensor._version > version


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_torch_bfloat16_parameters_with_master_weights():
    rng = np.random.default_rng(5)
    start = rng.standard_normal(9).astype(BFLOAT16)
    grad = rng.standard_normal(9).astype(BFLOAT16)
    as_torch = lambda a: torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)  # noqa: E731
    tensor = as_torch(start)
    opt = optim.Adam([tensor], lr=0.01, master_weights=True)
    mirror = optim.Adam([start.copy()], lr=0.01, master_weights=True)
    opt.step([as_torch(grad)])
    mirror.step([grad])
    np.testing.assert_array_equal(tensor.view(torch.int16).numpy(), mirror.params[0].view(np.int16))
    assert opt.state["master_params"][0].dtype == torch.float32


@pytest.mark.parametrize("make", [
    lambda: optim.Adam(p for p in []), lambda: optim.SGD([], lr=0.1), lambda: optim.RMSprop([]),
], ids=["adam-empty-generator", "sgd-empty-list", "rmsprop-empty-list"])
def test_empty_params_are_refused(make):
    with pytest.raises(ValueError, match=r"\(\): 'params' is empty"):
        make()


@pytest.mark.skipif(torch is None, reason="torch not installed")
@pytest.mark.parametrize("call, error, message", [
    (lambda: optim.Adam(torch.ones(3)), TypeError, "'params' must be a list of arrays, got Tensor"),
    (lambda: optim.Adam(np.ones(3, np.float32)), TypeError, "'params' must be a list of arrays, got ndarray"),
    (lambda: optim.Adam([torch.ones(3), "x"]), TypeError,
     r"'params\[1\]' must be a numpy.ndarray or a torch CPU tensor, got str"),
    (lambda: optim.Adam([torch.ones(3)]).step([torch.ones(3, device="meta")]), TypeError,
     r"'grads\[0\]' is a torch tensor on device 'meta'"),
    (lambda: optim.Adam([torch.ones(6)[::2]]), ValueError, r"'params\[0\]' must be C-contiguous"),
    (lambda: optim.adam_step([torch.ones(3)], [torch.ones(3)], [torch.zeros(3)], [torch.zeros(3, dtype=torch.float64)],
                             step=1), TypeError, r"'exp_avg_sqs\[0\]' has dtype float64"),
], ids=["tensor", "array", "not-an-array", "meta-grad", "strided-param", "state-dtype"])
def test_torch_cpu_arguments_are_checked(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---- sharded clipping with torch.distributed ----------------------------------------------------------

_DIST_SCRIPT = textwrap.dedent("""
    import os, sys, numpy as np, torch, torch.distributed as dist
    import nnfuse.optim as optim
    rank, world, port = int(sys.argv[1]), 2, sys.argv[2]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    def reduce(local):
        t = torch.tensor([local], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())
    rng = np.random.default_rng(0)
    sizes = [10, 1000, 3, 70000]
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    steps = [[rng.standard_normal(n).astype(np.float32) * 5 for n in sizes] for _ in range(5)]
    mine = [i for i in range(len(sizes)) if i % world == rank]
    local = [params[i] for i in mine]
    opt = optim.Adam(local, lr=0.1, global_clipnorm=1.0, global_norm_reduce=reduce)
    norms = []
    for t, grads in enumerate(steps):
        g = [grads[i] for i in mine]
        if t == 3 and rank == 1:
            g[0][0] = np.nan   # one shard non-finite: every rank must skip
        norms.append(opt.step(g).grad_norm)
        norms[-1] = (norms[-1], opt.step_count)
    np.savez(sys.argv[3], *local, norms=np.array([n for n, _ in norms]), counts=np.array([c for _, c in norms]))
    dist.destroy_process_group()
""")


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_sharded_global_clipnorm_matches_unsharded(tmp_path):
    import socket

    script = tmp_path / "shard.py"
    script.write_text(_DIST_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(port), str(tmp_path / f"r{r}.npz")], env=env)
             for r in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    rng = np.random.default_rng(0)
    sizes = [10, 1000, 3, 70000]
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    steps = [[rng.standard_normal(n).astype(np.float32) * 5 for n in sizes] for _ in range(5)]
    opt = optim.Adam(params, lr=0.1, global_clipnorm=1.0)
    norms = []
    for t, grads in enumerate(steps):
        if t == 3:
            continue  # the sharded run skipped this step everywhere
        norms.append(opt.step(grads).grad_norm)
    shards = [np.load(tmp_path / f"r{r}.npz") for r in range(2)]
    for r, data in enumerate(shards):
        assert list(data["counts"]) == [1, 2, 3, 3, 4]
        got_norms = [n for t, n in enumerate(data["norms"]) if t != 3]
        # the gloo sum of two partial sums differs from one sum of four by rounding only
        np.testing.assert_allclose(got_norms, norms, rtol=1e-14)
        for j, i in enumerate(i for i in range(len(sizes)) if i % 2 == r):
            np.testing.assert_allclose(data[f"arr_{j}"], params[i], rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls,kwargs,name", [
    (optim.Adam, {"lr": -1e-3}, "lr"), (optim.AdamW, {"eps": -1.0}, "eps"),
    (optim.Adam, {"betas": (0.9, 1.0)}, "betas"), (optim.SGD, {"lr": 0.1, "momentum": -0.5}, "momentum"),
    (optim.RMSprop, {"alpha": -0.1}, "alpha"), (optim.Adagrad, {"lr_decay": float("nan")}, "lr_decay"),
    (optim.Adam, {"weight_decay": -1e-2}, "weight_decay")])
def test_hyper_parameter_ranges_are_checked(cls, kwargs, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        cls([np.zeros(3, np.float32)], **kwargs)


@pytest.mark.parametrize("cls,kwargs,name", [
    (optim.Adam, {"lr": None}, "lr"), (optim.SGD, {"lr": "0.1"}, "lr"), (optim.Adam, {"clipvalue": "0.5"}, "clipvalue"),
    (optim.RMSprop, {"momentum": None}, "momentum"), (optim.SGD, {"lr": 0.1, "momentum": "0.9"}, "momentum")])
def test_hyper_parameters_must_be_numbers(cls, kwargs, name):
    with pytest.raises(TypeError, match=f"'{name}' must be a real number"):
        cls([np.zeros(3, np.float32)], **kwargs)


def _zeros():
    return [np.zeros(3, np.float32)]


@pytest.mark.parametrize("call,error,message", [
    # A missing state list would run each step from zero state (no momentum).
    (lambda p, g: optim.adam_step(p, g, None, _zeros(), step=1), ValueError, "'exp_avgs' is required"),
    (lambda p, g: optim.adam_step(p, g, _zeros(), None, step=1), ValueError, "'exp_avg_sqs' is required"),
    (lambda p, g: optim.rmsprop_step(p, g, None, step=1), ValueError, "'square_avgs' is required"),
    (lambda p, g: optim.adagrad_step(p, g, None, step=1), ValueError, "'state_sums' is required"),
    # The step number is checked before the bias corrections and decays use it.
    (lambda p, g: optim.adam_step(p, g, _zeros(), _zeros(), step=0), ValueError, "'step' must be >= 1"),
    (lambda p, g: optim.adam_step(p, g, _zeros(), _zeros(), step=-1), ValueError, "'step' must be >= 1"),
    (lambda p, g: optim.adam_step(p, g, _zeros(), _zeros(), step=1.5), TypeError, "'step' must be an integer"),
    (lambda p, g: optim.adam_step(p, g, _zeros(), _zeros(), step=2**1100), ValueError, "at most 2\\^53"),
    (lambda p, g: optim.adagrad_step(p, g, _zeros(), step=2**53 + 1, lr_decay=0.1), ValueError, "at most 2\\^53"),
    (lambda p, g: optim.adagrad_step(p, g, _zeros(), step=0, lr_decay=1.0), ValueError, "'step' must be >= 1"),
    (lambda p, g: optim.sgd_step(p, g, step=0, lr=0.1), ValueError, "'step' must be >= 1"),
    (lambda p, g: optim.rmsprop_step(p, g, _zeros(), step=0), ValueError, "'step' must be >= 1"),
    # Hyper-parameters as the classes check them.
    (lambda p, g: optim.adam_step(p, g, _zeros(), _zeros(), step=1, beta1=1.0), ValueError, "'beta1'.*\\[0, 1\\)"),
    (lambda p, g: optim.adam_step(p, g, _zeros(), _zeros(), step=1, beta2=-0.1), ValueError, "'beta2'"),
    (lambda p, g: optim.sgd_step(p, g, step=1, lr=None), TypeError, "'lr' must be a real number"),
    (lambda p, g: optim.adagrad_step(p, g, _zeros(), step=1, lr_decay=-1.0), ValueError, "'lr_decay'"),
    (lambda p, g: optim.rmsprop_step(p, g, _zeros(), step=1, momentum=None), TypeError, "'momentum' must be a real"),
    (lambda p, g: optim.sgd_step(p, g, step=1, lr=0.1, momentum="0.9", nesterov=True), TypeError, "'momentum'"),
    (lambda p, g: optim.adam_step(p, g, _zeros(), _zeros(), step=1, eps="1e-8"), TypeError, "'eps' must be a real")])
def test_functional_steps_check_their_arguments_first(call, error, message):
    params, grads = [np.ones(3, np.float32)], [np.ones(3, np.float32)]
    with pytest.raises(error, match=message):
        call(params, grads)
    np.testing.assert_array_equal(params[0], np.ones(3, np.float32))


@pytest.mark.parametrize("opts", [dict(global_clipnorm=1.0), dict(clipnorm=1.0), dict(global_clipnorm=1.0,
                                  semantics="keras"), dict(nonfinite="zero", clipnorm=2.0), {},
                                  dict(global_clipnorm=1.0, global_norm_reduce=lambda total: total)])
def test_float64_gradients_whose_squares_overflow(opts):
    """float64 gradients of 1e200: the kernels keep the sum of squares scaled,
    so the norm is finite and the step is not skipped; the reference does the
    same (it skipped: its plain sum was inf). Under "zero" an infinite element
    is taken as 0 and the rest still summed scaled (the kernels returned the
    overflowed sum there). The reducer gets the plain sum, +inf, and both skip."""
    def grads():
        return [np.full(5, 1e200), np.array([1e-300, -3e199, np.inf if opts.get("nonfinite") == "zero" else 0.0])]

    params, want = [np.ones(5), np.ones(3)], [np.ones(5), np.ones(3)]
    record = optim.sgd_step(params, grads(), step=1, lr=0.1, **opts)
    expected = R.sgd_step(want, grads(), step=1, lr=0.1, **opts)
    assert (record.grad_norm, record.clip_factor, record.skipped) == expected
    assert record.skipped == ("global_norm_reduce" in opts)
    assert record.skipped or 2.25e200 < record.grad_norm < 2.26e200  # sqrt(5 + 0.09) 1e200
    for got, ref in zip(params, want):
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, BFLOAT16])
@pytest.mark.parametrize("call,name,problem", [
    (lambda p, g, z: optim.adam_step(p, g, z(), z(), step=1, eps=1e-50), "eps", "rounds to 0 in float32"),
    (lambda p, g, z: optim.adam_step(p, g, z(), z(), step=1, lr=1e39), "lr", "beyond the float32 range"),
    (lambda p, g, z: optim.adam_step(p, g, z(), z(), step=1, clipvalue=1e-60), "clipvalue", "rounds to 0"),
    (lambda p, g, z: optim.rmsprop_step(p, g, z(), step=1, weight_decay=1e39), "weight_decay", "beyond"),
    (lambda p, g, z: optim.adagrad_step(p, g, z(), step=1, eps=1e-46), "eps", "rounds to 0"),
])
def test_hyper_parameters_outside_the_float32_compute_range_are_refused(call, name, problem, dtype):
    """float32 and 16-bit parameters are updated in float32, where eps = 1e-50
    was 0 (0 / 0 = NaN where a moment is 0; the reference divides by 1e-50)
    and lr = 1e39 was inf. float64 parameters take the same values."""
    params, grads = [np.full(3, 0.5, dtype)], [np.array([0.0, 1e-3, -2.0], dtype)]
    with pytest.raises(ValueError, match=f"'{name}' = .*{problem}"):
        call(params, grads, lambda: [np.zeros(3, np.float32)])
    np.testing.assert_array_equal(params[0], np.full(3, 0.5, dtype))
    wide = [np.full(3, 0.5)]
    call(wide, [np.array([0.0, 1e-3, -2.0])], lambda: [np.zeros(3)])
    assert np.isfinite(wide[0]).all()


def test_step_constants_beyond_float32_are_refused():
    """Each hyper-parameter in range, but lr / (1 - beta1) or 1 - lr * weight_decay
    overflows float32."""
    params = [np.ones(3, np.float32)]
    with pytest.raises(ValueError, match="a constant of this step .* is 3e\\+39"):
        optim.adam_step(params, [np.ones(3, np.float32)], _zeros(), _zeros(), step=1, lr=3e38)
    with pytest.raises(ValueError, match="is -1e\\+40"):
        optim.sgd_step(params, [np.ones(3, np.float32)], step=1, lr=1e30, weight_decay=1e10)
    np.testing.assert_array_equal(params[0], np.ones(3, np.float32))


@pytest.mark.parametrize("cls,kwargs,name", [
    (optim.Adam, {"eps": 1e-50}, "eps"), (optim.SGD, {"lr": 1e39}, "lr"),
    (optim.Adagrad, {"initial_accumulator_value": 1e39}, "initial_accumulator_value"),
    (optim.RMSprop, {"clipvalue": 1e-50}, "clipvalue")])
def test_optimizers_check_the_compute_range_when_built(cls, kwargs, name):
    with pytest.raises(ValueError, match=f"{cls.__name__}\\(\\): '{name}' = "):
        cls([np.zeros(3, np.float32)], **kwargs)
    cls([np.zeros(3, np.float64)], **kwargs)


@pytest.mark.parametrize("change,error,message", [
    (lambda sd: sd["hyper"].update(lr="0.1"), TypeError, "'lr' must be a real number"),
    (lambda sd: sd["hyper"].update(eps=-1.0), ValueError, "'eps' must be a finite number >= 0"),
    (lambda sd: sd["hyper"].update(eps=1e-50), ValueError, "'eps' = 1e-50 rounds to 0"),
    (lambda sd: sd["hyper"].update(betas=(0.9, 1.5)), ValueError, "'betas' must be two numbers"),
    (lambda sd: sd["hyper"].pop("weight_decay"), ValueError, "'hyper' holds .* expected the keys"),
    (lambda sd: sd["options"].update(nonfinite="ignore"), ValueError, "'nonfinite' must be"),
    (lambda sd: sd["options"].update(clipnorm=1.0, clipvalue=1.0), ValueError, "at most one clipping option"),
    (lambda sd: sd.update(options=None), ValueError, "'options' holds None"),
])
def test_load_state_dict_checks_hyper_parameters_and_options(change, error, message):
    """A state dict is checked as the constructor checks its arguments, before
    anything is copied (before, a bad value surfaced at the next step, or never:
    a negative eps was used as given)."""
    params = [np.ones(3, np.float32)]
    opt = optim.Adam(params, lr=0.1)
    opt.step([np.ones(3, np.float32)])
    broken = opt.state_dict()
    broken["state"]["exp_avgs"][0][:] = 7.0
    broken["step"] = 9
    change(broken)
    with pytest.raises(error, match=f"Adam.load_state_dict\\(\\): {message}"):
        opt.load_state_dict(broken)
    assert opt.step_count == 1 and opt.hyper["lr"] == 0.1 and opt.hyper["eps"] is None
    assert not (opt.state["exp_avgs"][0] == 7.0).any()


@pytest.mark.parametrize("cls,kwargs,change,message", [
    (optim.SGD, dict(momentum=0.9), lambda sd: sd["hyper"].update(nesterov=True, dampening=0.1),
     "nesterov=True needs momentum > 0 and dampening = 0"),
    (optim.SGD, dict(momentum=0.0), lambda sd: sd["hyper"].update(momentum=0.9),
     "'momentum' = 0.9 but this optimizer was built without momentum"),
    (optim.Adam, dict(), lambda sd: sd["hyper"].update(amsgrad=True),
     "'amsgrad' = True but this optimizer was built with amsgrad=False"),
    (optim.RMSprop, dict(), lambda sd: sd["hyper"].update(centered=True),
     "'centered' = True but this optimizer was built without grad_avgs"),
    (optim.RMSprop, dict(momentum=0.5), lambda sd: sd["hyper"].update(momentum=0.0),
     "'momentum' = 0.0 but this optimizer was built with momentum_buffers"),
    (optim.Adam, dict(), lambda sd: sd.update(step=2 ** 53 + 1), "'step' must be a whole number"),
    (optim.Adam, dict(), lambda sd: sd.update(step=2.5), "'step' must be a whole number"),
    (optim.Adam, dict(), lambda sd: sd.pop("hyper"), "'state_dict' has no \\['hyper'\\]"),
    (optim.Adam, dict(), lambda sd: sd.update(state=[]), "state arrays \\[\\] do not match"),
])
def test_load_state_dict_checks_what_the_constructor_checks(cls, kwargs, change, message):
    """Settings the constructor refuses together, or that change which state
    arrays the optimizer keeps, passed load_state_dict and failed at the next
    step; a step of 2^53 + 1 passed as float(2^53); a missing key was a
    KeyError. Nothing is loaded."""
    params = [np.ones(3, np.float32)]
    opt = cls(params, lr=0.1, **kwargs)
    opt.step([np.ones(3, np.float32)])
    broken = opt.state_dict()
    change(broken)
    before = opt.state_dict()
    with pytest.raises(ValueError, match=f"{cls.__name__}.load_state_dict\\(\\): .*{message}"):
        opt.load_state_dict(broken)
    assert opt.step_count == 1 and opt.hyper == before["hyper"]
    opt.load_state_dict(before)
    opt.step([np.ones(3, np.float32)])
    assert opt.step_count == 2


def test_load_state_dict_takes_a_large_integer_step_exactly():
    opt = optim.Adam([np.ones(3, np.float32)], lr=0.1)
    saved = opt.state_dict()
    saved["step"] = np.int64(2 ** 53)
    opt.load_state_dict(saved)
    assert opt.step_count == 2 ** 53 and type(opt.step_count) is int
    saved["step"] = 7.0
    opt.load_state_dict(saved)
    assert opt.step_count == 7 and type(opt.step_count) is int


@pytest.mark.parametrize("returned,error,message", [
    (-4.0, ValueError, "'global_norm_reduce' returned -4.0, but a sum of squares is >= 0"),
    ("9", TypeError, "'global_norm_reduce' must return a number.*got str"),
    (None, TypeError, "'global_norm_reduce' must return a number.*got NoneType")])
def test_global_norm_reduce_result_is_checked(returned, error, message):
    """A reducer's result that is no sum of squares is refused before any array
    changes: a negative sum gave a NaN norm that 'skip' let through into the
    parameters."""
    params, grads = [np.ones(3, np.float32)], [np.ones(3, np.float32)]
    opt = optim.Adam(params, lr=0.1, global_clipnorm=1.0, global_norm_reduce=lambda local: returned)
    with pytest.raises(error, match=message):
        opt.step(grads)
    np.testing.assert_array_equal(params[0], np.ones(3, np.float32))
    assert opt.step_count == 0
    # NumPy scalars and other numbers float() takes are sums too.
    record = optim.sgd_step(params, grads, step=1, lr=0.1, global_clipnorm=1.0,
                            global_norm_reduce=lambda local: np.float64(local) * 4)
    assert record.grad_norm == pytest.approx(math.sqrt(12.0))


def test_parameters_must_not_share_memory():
    """The same array twice, or overlapping views of one buffer, would be updated
    twice a step with two states (PyTorch only warns)."""
    a = np.zeros(10, np.float32)
    b = np.ones(4, np.float32)
    for params, pair in (([a, b, a], "'params\\[0\\]' and 'params\\[2\\]'"),
                         ([b, a[:5], a[3:]], "'params\\[1\\]' and 'params\\[2\\]'")):
        with pytest.raises(ValueError, match=pair + " share memory"):
            optim.SGD(params, lr=0.1)
    opt = optim.SGD([a[:5], a[5:], b, np.zeros(0, np.float32)], lr=0.5)  # disjoint views are fine
    opt.step([np.ones(5, np.float32), np.ones(5, np.float32), np.ones(4, np.float32), np.zeros(0, np.float32)])
    np.testing.assert_array_equal(a, np.full(10, -0.5, np.float32))


def test_a_step_refuses_written_arrays_that_overlap_a_gradient_or_each_other():
    """A gradient that is, or overlaps, a parameter (its own or another's), or
    a state that overlaps a parameter, would let the update of one element read
    what the update of another wrote: a ValueError naming both arrays, raised
    before any array is written. Gradients may overlap each other."""
    buf = np.arange(1, 13, dtype=np.float32)
    other = np.ones(4, np.float32)
    cases = (
        (lambda: optim.sgd_step([buf[:8]], [buf[2:10]], step=1, lr=0.1), r"'params\[0\]' and 'grads\[0\]'"),
        (lambda: optim.sgd_step([buf[:8]], [buf[:8]], step=1, lr=0.1), r"'params\[0\]' and 'grads\[0\]'"),
        (lambda: optim.sgd_step([buf[:4], other], [np.ones(4, np.float32), buf[3:7]], step=1, lr=0.1),
         r"'params\[0\]' and 'grads\[1\]'"),
        (lambda: optim.adam_step([buf[:4]], [np.ones(4, np.float32)], [buf[2:6]], [np.zeros(4, np.float32)],
                                 step=1), r"'params\[0\]' and 'exp_avgs\[0\]'"),
        (lambda: optim.adam_step([buf[:4], other], [np.ones(4, np.float32)] * 2, [buf[4:8], buf[6:10]],
                                 [np.zeros(4, np.float32), np.zeros(4, np.float32)], step=1),
         r"'exp_avgs\[0\]' and 'exp_avgs\[1\]'"),
    )
    before = buf.copy()
    for call, pair in cases:
        with pytest.raises(ValueError, match=pair + " share memory; the arrays a step writes"):
            call()
        np.testing.assert_array_equal(buf, before)
        np.testing.assert_array_equal(other, np.ones(4, np.float32))
    opt = optim.Adam([buf[:6]], lr=0.1)
    with pytest.raises(ValueError, match=r"'params\[0\]' and 'grads\[0\]' share memory"):
        opt.step([buf[1:7]])
    assert opt.step_count == 0
    np.testing.assert_array_equal(buf, before)
    # One gradient array for two parameters is fine, and the same as two copies.
    g = np.full(4, 0.5, np.float32)
    shared = [np.zeros(4, np.float32), np.ones(4, np.float32)]
    separate = [a.copy() for a in shared]
    optim.sgd_step(shared, [g, g], step=1, lr=0.1)
    optim.sgd_step(separate, [g.copy(), g.copy()], step=1, lr=0.1)
    for a, b in zip(shared, separate):
        np.testing.assert_array_equal(a, b)
    # A step that passed is remembered by its ranges; the next one with an
    # overlap among the same number of arrays is still refused.
    params = [np.zeros(8, np.float32), np.zeros(8, np.float32)]
    grads = [np.ones(8, np.float32), np.ones(8, np.float32)]
    optim.sgd_step(params, grads, step=1, lr=0.1)
    optim.sgd_step(params, grads, step=2, lr=0.1)
    with pytest.raises(ValueError, match=r"'params\[1\]' and 'grads\[1\]' share memory"):
        optim.sgd_step(params, [grads[0], params[1]], step=3, lr=0.1)


def test_capturable_needs_cuda_arrays():
    with pytest.raises(ValueError, match="capturable=True needs CUDA arrays"):
        optim.Adam([np.zeros(3, np.float32)], capturable=True)
