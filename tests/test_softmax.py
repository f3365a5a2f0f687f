"""Softmax family against nnfuse.reference: every dtype and ISA, every tail
length, special values, masks, axes, threads, cross-ISA bit identity, the
fused cross-entropy (smoothing, ignore_index, z-loss, reductions, in place)
and argument errors."""

import functools
import itertools
import warnings

import numpy as np
import pytest

import nnfuse as nf
import nnfuse.reference as ref
from nnfuse._array import BFLOAT16, DTYPE_CODES
from nnfuse.accuracy import SOFTMAX_BOUNDS, softmax_floor

from conftest import SUPPORTED_ISAS, assert_within_ulp
from samples import STREAM_BYTES, large_outputs, sample

DTYPES = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), BFLOAT16]
# Row lengths around every vector width (1, 8, 16), the 16-lane group and the
# 1024-element block of the online normaliser.
ROW_LENGTHS = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1023, 1024, 1025, 2049]


def _key(dtype):
    return "bfloat16" if dtype == BFLOAT16 else np.dtype(dtype).name


@functools.lru_cache(maxsize=None)
def _rows(dtype_key):
    """Rows of many kinds: sample() values (the whole finite range), normal
    logits at scales 1e-30 .. 1e30, all-equal rows, rows with -inf."""
    dtype = BFLOAT16 if dtype_key == "bfloat16" else np.dtype(dtype_key)
    rng = np.random.default_rng(7)
    big = float(np.finfo(np.float16).max) / 4 if dtype == np.float16 else 1e30
    tiny = 1e-30 if dtype != np.float16 else 1e-7
    parts = [sample(dtype, n=40 * 257, seed=3, finite_only=True).reshape(40, 257).astype(np.float64)]
    for s in (1.0, 3.0, 30.0, big, tiny):
        parts.append(rng.standard_normal((12, 257)) * s)
    parts.append(np.full((3, 257), 2.5))
    with_inf = rng.standard_normal((6, 257)) * 4
    with_inf[:, ::5] = -np.inf
    parts.append(with_inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.concatenate(parts).astype(dtype)


def _check_forward(x, label, **kw):
    x64 = x.astype(np.float64)
    bounds = SOFTMAX_BOUNDS[_key(x.dtype)]
    y = nf.softmax(x, **kw)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert_within_ulp(label + " softmax", y, ref.softmax(x64, **kw), bounds["softmax"], {"x": x})
    ly = nf.log_softmax(x, **kw)
    expected = ref.log_softmax(x64, **kw)
    assert_within_ulp(label + " log_softmax", ly, expected, bounds["log_softmax"], {"x": x},
                      floor=softmax_floor("log_softmax", x.dtype, expected))
    return y, ly


@pytest.mark.parametrize("dtype", DTYPES, ids=_key)
def test_forward_matches_reference(dtype, isa):
    x = _rows(_key(dtype))
    _check_forward(x, f"{_key(dtype)} {isa}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_key)
def test_backward_matches_reference(dtype, isa):
    x = _rows(_key(dtype))
    x = np.where(np.isfinite(x.astype(np.float64)), x, 0).astype(dtype)
    rng = np.random.default_rng(1)
    g = (rng.standard_normal(x.shape) * 2).astype(dtype)
    bounds = SOFTMAX_BOUNDS[_key(dtype)]
    g64 = g.astype(np.float64)
    for name in ("softmax", "log_softmax"):
        y = getattr(nf, name)(x)
        y64 = y.astype(np.float64)
        dx = getattr(nf, name + "_backward")(g, y)
        expected = getattr(ref, name + "_backward")(g64, y64)
        floor = softmax_floor(name + "_backward", dtype, expected, g=g64, y=y64)
        assert_within_ulp(f"{_key(dtype)} {isa} {name}_backward", dx, expected, bounds["backward"],
                          {"grad": g, "y": y}, floor=floor)


@pytest.mark.parametrize("shape", [(1, 1 << 18), (8, 4096), (64, 100)])
def test_backward_sums_that_cancel_stay_accurate(shape, isa):
    # The backward's row sums (sum g y, sum g) where they cancel: g is +1 on
    # the first half of a row and -1 on the second (with noise), shifted so
    # that the exact sum is about 0, so each lane's running sum climbs and
    # falls back. On the 2^18-element row, a float running sum per lane
    # (float32 additions, lanes combined in double) puts softmax backward
    # 5.59 floor ULPs off, past the bound of 4; the kernels' double lanes
    # 0.50.
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    g = rng.standard_normal(shape) * 0.1 + np.where(np.arange(shape[1]) < shape[1] // 2, 1.0, -1.0)
    y = nf.softmax(x)
    y64 = y.astype(np.float64)
    g_soft = (g - np.sum(g * y64, axis=-1, keepdims=True)).astype(np.float32)
    g_log = (g - np.mean(g, axis=-1, keepdims=True)).astype(np.float32)
    ly = nf.log_softmax(x)
    bound = SOFTMAX_BOUNDS["float32"]["backward"]
    for name, grad, out in (("softmax", g_soft, y), ("log_softmax", g_log, ly)):
        g64, o64 = grad.astype(np.float64), out.astype(np.float64)
        expected = getattr(ref, name + "_backward")(g64, o64)
        floor = softmax_floor(name + "_backward", x.dtype, expected, g=g64, y=o64)
        assert_within_ulp(f"{shape} {isa} {name}_backward", getattr(nf, name + "_backward")(grad, out), expected,
                          bound, {"grad": grad, "y": out}, floor=floor)


@pytest.mark.parametrize("n", ROW_LENGTHS)
def test_every_row_length(n, isa):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((3, n)) * 5).astype(np.float32)
    _check_forward(x, f"n={n} {isa}")
    g = rng.standard_normal(x.shape).astype(np.float32)
    y = nf.softmax(x)
    expected = ref.softmax_backward(g.astype(np.float64), y.astype(np.float64))
    floor = softmax_floor("softmax_backward", x.dtype, expected, g=g.astype(np.float64), y=y.astype(np.float64))
    assert_within_ulp(f"n={n} {isa} softmax_backward", nf.softmax_backward(g, y), expected,
                      SOFTMAX_BOUNDS["float32"]["backward"], {"grad": g, "y": y}, floor=floor)
    ly = nf.log_softmax(x)
    expected = ref.log_softmax_backward(g.astype(np.float64), ly.astype(np.float64))
    floor = softmax_floor("log_softmax_backward", x.dtype, expected, g=g.astype(np.float64), y=ly.astype(np.float64))
    assert_within_ulp(f"n={n} {isa} log_softmax_backward", nf.log_softmax_backward(g, ly), expected,
                      SOFTMAX_BOUNDS["float32"]["backward"], {"grad": g, "y": ly}, floor=floor)


def test_row_logarithm_on_every_table_piece(isa):
    """The float32 kernels take log S, S = sum e^(z - M) >= 1, from a
    16-entry table on the leading significand bits of S: rows whose sums sit
    just below, on and just above every piece boundary 1 + j/16 of S's binade
    (each binade from 2^0 up to the row length, at most 2^10), through the
    column (2, 16 columns), batch (17, 100) and row (1000) kernels, match the
    reference within the bounds."""
    bounds = SOFTMAX_BOUNDS["float32"]
    targets = np.array([2.0**k * (1 + j / 16) * (1 + d) for k in range(11) for j in range(16)
                        for d in (-2e-6, 0.0, 2e-6)])
    for cols in (2, 16, 17, 100, 1000):
        # One logit 0 (the maximum), the others equal: S = 1 + (cols - 1) e^z.
        wanted = targets[(targets > 1) & (targets < cols)]
        x = np.zeros((wanted.size, cols), np.float32)
        x[:, 1:] = np.log((wanted - 1) / (cols - 1)).astype(np.float32)[:, None]
        label = f"{cols} columns {isa}"
        expected = ref.log_softmax(x.astype(np.float64))
        assert_within_ulp(label + " log_softmax", nf.log_softmax(x), expected, bounds["log_softmax"], {"x": x},
                          floor=softmax_floor("log_softmax", x.dtype, expected))
        labels = np.arange(wanted.size) % cols
        loss, _ = nf.softmax_cross_entropy(x, labels, reduction="none")
        rloss, _ = ref.softmax_cross_entropy(x.astype(np.float64), labels, reduction="none")
        assert_within_ulp(label + " loss", loss, rloss, bounds["cross_entropy_loss"], {"logits": x},
                          floor=softmax_floor("cross_entropy_loss", x.dtype, rloss))


def test_short_rows_give_identical_bits_on_every_isa_and_thread_count():
    # Rows of at most 16 float32 elements take their own loops: one row per
    # lane (16 rows a block on AVX-512, 8 on AVX2, one row on the scalar
    # path, whose transpose is the identity) and, for backward rows of 11 to
    # 16, four rows at a time; the cross-entropy's blocks include ignored
    # rows and one row they leave to the row kernel. 11 rows leave a partial
    # block of each; 37 rows give full blocks too, and a partial one on each
    # thread.
    rng = np.random.default_rng(31)
    for rows, cols in itertools.product((11, 37), (1, 2, 3, 5, 7, 8, 9, 10, 11, 13, 15, 16)):
        x = (rng.standard_normal((rows, cols)) * 4).astype(np.float32)
        g = rng.standard_normal(x.shape).astype(np.float32)
        labels = rng.integers(0, cols, rows)
        labels[::5] = -100
        x[3, -1] = np.inf  # a row the cross-entropy's block leaves to the row kernel

        def run():
            y, ly = nf.softmax(x), nf.log_softmax(x, scale=0.7)
            loss, grad = nf.softmax_cross_entropy(x, labels, reduction="none")
            smooth_loss, smooth_grad = nf.softmax_cross_entropy(x, labels, label_smoothing=0.1, z_loss=1e-3,
                                                                reduction="none")
            return [y, ly, nf.softmax_backward(g, y), nf.log_softmax_backward(g, ly, scale=0.7),
                    loss, grad, smooth_loss, smooth_grad]

        _assert_same_bits(_run_on_every_isa_and_thread_count(run))


def test_rows_of_17_to_512_give_identical_bits_on_every_isa_and_thread_count():
    # Forward rows of 17 to 256 (softmax) and 512 (log-softmax, cross-entropy)
    # elements are taken 16 at a time on AVX-512 with batched reductions;
    # AVX2 and the scalar path take them row by row. Lengths end full and
    # partial vectors; 11 rows leave a partial block, 37 rows full ones and a
    # partial one on each thread. Rows the blocks leave to the row kernel: a
    # NaN (found through the softmax sum), +inf, all -inf (an ignored row for
    # the cross-entropy, which keeps its block), a spread beyond exp_near's
    # range; and rows of -0 and of mixed zeros. Backward rows of 17 to 32
    # elements, and those up to 64 that end in a partial vector, are taken
    # four at a time, the others one at a time, on every ISA.
    rng = np.random.default_rng(37)
    for rows, cols in itertools.product((11, 37), (17, 24, 31, 32, 33, 47, 64, 65, 100, 128, 200, 256, 257, 300, 512, 513)):
        x = (rng.standard_normal((rows, cols)) * 4).astype(np.float32)
        x[1, cols // 2] = np.nan
        x[3, -1] = np.inf
        x[5] = -np.inf
        x[7, 0] = -200.0
        x[9] = -0.0
        x[10, ::2], x[10, 1::2], x[10, ::3] = 0.0, -0.0, -1.5  # a zero maximum of either sign
        labels = rng.integers(0, cols, rows)
        labels[::5] = -100
        g = rng.standard_normal(x.shape).astype(np.float32)
        g[2, 0] = np.inf

        def run():
            # The sign of a NaN row's NaNs differs between ISAs (row kernel
            # included), so NaNs are compared by position.
            outs = [nf.softmax(x), nf.softmax(x, scale=0.7), nf.log_softmax(x), nf.log_softmax(x, scale=0.7)]
            outs += nf.softmax_cross_entropy(x, labels, reduction="none")
            outs += nf.softmax_cross_entropy(x[9:], labels[9:], label_smoothing=0.1, z_loss=1e-3, reduction="none")
            in_place = x[9:].copy()
            outs += nf.softmax_cross_entropy(in_place, labels[9:], label_smoothing=0.2, inplace=True)
            y, ly = outs[0], outs[3]
            outs += [nf.softmax_backward(g, y), nf.softmax_backward(g, y, scale=0.7),
                     nf.log_softmax_backward(g, ly), nf.log_softmax_backward(g, ly, scale=0.7)]
            return [np.where(np.isnan(y), np.float32(np.nan), y) for y in outs]

        _assert_same_bits(_run_on_every_isa_and_thread_count(run))


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


@pytest.mark.parametrize("dtype", DTYPES, ids=_key)
def test_isas_and_threads_give_identical_bits(dtype):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((64, 1537)) * 6).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    labels = rng.integers(0, x.shape[1], x.shape[0])
    labels[::5] = -100
    mask = rng.random(x.shape) > 0.3

    def run():
        y = nf.softmax(x, scale=0.3, mask=mask)
        ly = nf.log_softmax(x)
        loss, grad = nf.softmax_cross_entropy(x, labels, label_smoothing=0.1, z_loss=1e-3)
        return [y, ly, nf.softmax_backward(g, y), nf.log_softmax_backward(g, ly), loss, grad]

    results = _run_on_every_isa_and_thread_count(run)
    _assert_same_bits(results)


def _run_on_every_isa_and_thread_count(run):
    results = []
    for isa in SUPPORTED_ISAS:
        for threads in (1, 2, 3):
            with nf.cpu_isa(isa):
                nf.set_num_threads(threads)
                results.append(((isa, threads), run()))
    return results


def _assert_same_bits(results):
    """results: [(configuration, [outputs])]; every configuration must give
    the bits of the first."""
    (first_key, first), rest = results[0], results[1:]
    for key, outs in rest:
        for i, (a, b) in enumerate(zip(first, outs)):
            np.testing.assert_array_equal(_bits(a), _bits(b), err_msg=f"output {i}: {first_key} vs {key}")


def test_isas_agree_across_the_exp_near_boundary():
    # Float32 rows with a logit spread below 87 and lanes of y in [-87, 0] take
    # a shorter exp (exp_near) that must equal the general one to the bit:
    # rows and vectors that straddle the boundary, on every ISA.
    rng = np.random.default_rng(11)
    rows, n = 24, 211
    x = rng.standard_normal((rows, n)).astype(np.float32)
    x *= np.linspace(1.0, 40.0, rows, dtype=np.float32)[:, None]  # spreads from ~6 to ~240
    x[3, 7] = x[3].max() - 86.999
    x[4, 9] = x[4].max() - 87.001
    ly = rng.uniform(-120.0, 0.5, (rows, n)).astype(np.float32)
    ly[5, :40] = -87.0
    ly[6, ::3] = -87.00001
    g = rng.standard_normal((rows, n)).astype(np.float32)

    def run():
        return [nf.softmax(x), nf.log_softmax(x), nf.softmax(x, scale=2.5), nf.log_softmax_backward(g, ly)]

    results = []
    for isa in SUPPORTED_ISAS:
        with nf.cpu_isa(isa):
            results.append((isa, run()))
    _assert_same_bits(results)


def _near_rows(cols, rng):
    """Float32 rows whose spread is below 87 (the shorter term forms), with
    maxima and minima on both sides of the Fast2Sum condition (no |z| with a
    larger exponent than a positive maximum), zero and negative maxima, tiny
    logits, and small logits under a large maximum (z - M inexact)."""
    rows = []
    for m, lo in ((5.0, -7.99), (5.0, -8.0), (5.0, -8.01), (7.9, -7.9), (60.0, -26.0), (1.0, -1.999),
                  (1.0, -2.0), (0.0, -30.0), (-0.0, -1.0), (-3.0, -40.0), (1e-30, -1e-30), (80.0, 1e-3)):
        row = rng.uniform(lo, m, cols)
        row[0], row[-1] = m, lo
        rows.append(row)
    rows.append(np.concatenate([[5.0], rng.uniform(-1e-3, 1e-3, cols - 1)]))
    return np.array(rows, np.float32)


@pytest.mark.parametrize("cols", [1, 9, 16, 100, 1000])
def test_near_rows_give_the_bits_of_the_general_path(cols, isa):
    # A mask of all True sends rows to the general term form (TwoSum and the
    # clamped exp); unmasked rows with a spread below 87 take exp_near, with z - M
    # by Fast2Sum where the row allows it. The same d + dlo and the same exp, so
    # the same bits, for every row length (tiny, short and single rows) and
    # scale; and the fused cross-entropy's gradient away from the label is the
    # softmax's own product e * (1 / S). Softmax rows of more than 16 elements
    # take e^(z - K ln2) instead (test_shifted_softmax_rows).
    x = _near_rows(cols, np.random.default_rng(cols))
    keep = np.ones(x.shape, bool)
    ops = (nf.softmax, nf.log_softmax) if cols <= 16 else (nf.log_softmax,)
    for scale in (1.0, 0.7):
        for f in ops:
            np.testing.assert_array_equal(_bits(f(x, scale=scale)), _bits(f(x, scale=scale, mask=keep)),
                                          err_msg=f"{f.__name__} scale={scale}")
    if 1 < cols <= 16:
        labels = np.zeros(len(x), np.int64)
        _, grad = nf.softmax_cross_entropy(x, labels, reduction="sum")
        np.testing.assert_array_equal(_bits(grad[:, 1:]), _bits(nf.softmax(x)[:, 1:]))


def _shifted_boundary_rows(cols, rng):
    """Float32 rows on both sides of the range of softmax's shifted terms
    (every |z| <= 256, z - M >= -86): maxima and minima at and just beyond
    +-256, spreads of 86, just above it and below 87 (exp_near without the
    shift), negative and zero maxima, and the Fast2Sum rows of _near_rows."""
    above, below = np.nextafter(np.float32(256), np.float32(np.inf)), np.float32(-86.0)
    rows = []
    for m, lo in ((256.0, 170.0), (above, 171.0), (-170.0, -256.0), (-171.0, -np.float64(above)), (10.0, -76.0),
                  (10.0, -76.001), (10.0, -76.99), (0.0, -86.0), (-0.0, -86.5), (-3.0, -40.0), (255.9, 255.8)):
        row = rng.uniform(lo, m, cols)
        row[0], row[-1] = m, lo
        rows.append(row)
    row = rng.uniform(-5.0, 5.0, cols)
    row[cols // 2] = below
    rows.append(row)
    return np.concatenate([np.array(rows, np.float32), _near_rows(cols, rng)])


def test_shifted_softmax_rows():
    # Softmax rows of more than 16 elements whose logits allow it take their
    # terms as e^(z - K ln2), 2^K the power of two nearest e^M (one rounding
    # in the reduction, no z - M). Rows at and beyond the edges of that range,
    # for the row kernel (every ISA; rows written in place), the 16-row blocks
    # of AVX-512 (17 to 256 elements) and the shorter rows of four: the same
    # bits on every ISA and thread count, within the published bound. A long
    # row whose segments take different forms (one shifted, one beyond |z| =
    # 256) combines their sums through each segment's offset.
    rng = np.random.default_rng(41)
    blocks = {cols: _shifted_boundary_rows(cols, rng) for cols in (17, 31, 64, 100, 256, 257, 1000)}
    seg = 32768
    long_row = rng.uniform(200.0, 256.0, (1, 2 * seg + 5)).astype(np.float32)
    long_row[0, seg:] += np.float32(4.5)  # the second segment's maximum beyond 256

    def run():
        outs = []
        for x in blocks.values():
            outs.append(nf.softmax(x))
            outs.append(nf.softmax(x, scale=0.7))
            inplace = x.copy()
            nf.softmax(inplace, out=inplace)
            outs.append(inplace)
        outs.append(nf.softmax(long_row))
        return outs

    results = _run_on_every_isa_and_thread_count(run)
    _assert_same_bits(results)
    bound = SOFTMAX_BOUNDS["float32"]["softmax"]
    outs = iter(results[0][1])
    for cols, x in blocks.items():
        for scale in (1.0, 0.7, 1.0):
            z = (x * np.float32(scale)).astype(np.float64)  # the kernel's float32 logits
            assert_within_ulp(f"shifted softmax cols={cols} scale={scale}", next(outs), ref.softmax(z), bound,
                              {"x": x})
    assert_within_ulp("shifted softmax segments", next(outs), ref.softmax(long_row.astype(np.float64)), bound,
                      {"x": long_row})


def test_long_rows_split_across_threads():
    # Float32 rows longer than a segment (2^15 elements) are split across
    # threads when there are fewer rows than threads; the segments combine in
    # a fixed order, so every thread count and ISA gives the same bits, and
    # the result stays within the published bound.
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((2, 3 * 32768 + 37)) * 4).astype(np.float32)
    x[1, 40000] = 60.0  # the maximum in a later segment
    wide = x.copy()
    wide[0, 70000] = -200.0  # a spread over 87 in one segment only
    mask = rng.random(x.shape) > 0.2
    x64 = x.astype(np.float64)

    def run():
        return [nf.softmax(x), nf.log_softmax(x), nf.softmax(wide), nf.softmax(x, scale=1.5, mask=mask),
                nf.softmax(x[:1]), nf.log_softmax(x[1:])]

    results = _run_on_every_isa_and_thread_count(run)
    _assert_same_bits(results)
    first = results[0][1]
    bounds = SOFTMAX_BOUNDS["float32"]
    assert_within_ulp("long rows softmax", first[0], ref.softmax(x64), bounds["softmax"], {"x": x})
    expected = ref.log_softmax(x64)
    assert_within_ulp("long rows log_softmax", first[1], expected, bounds["log_softmax"], {"x": x},
                      floor=softmax_floor("log_softmax", x.dtype, expected))
    z = (x * np.float32(1.5)).astype(np.float64)  # the kernel's float32 logits
    assert_within_ulp("long rows masked softmax", first[3], ref.softmax(z, mask=mask), bounds["softmax"], {"x": x})
    assert_within_ulp("long rows wide softmax", first[2], ref.softmax(wide.astype(np.float64)), bounds["softmax"],
                      {"x": wide})


def test_long_rows_with_segments_far_apart():
    # Each segment of a long float32 row is reduced against its own maximum
    # and scaled by e^(m_s - M) / S at the end: segments whose maximum lies
    # more than 87 (and more than 103: a scale in float's denormals) below the
    # row's, a segment that is all -inf (the fast maximum's redo) and one
    # that is all masked, on every ISA and thread count, within the bound.
    seg = 32768
    rng = np.random.default_rng(14)
    x = (rng.standard_normal((3, 3 * seg + 11)) * 2).astype(np.float32)
    x[0, seg:2 * seg] += np.float32(95.0)
    x[1, 2 * seg:] += np.float32(110.0)
    x[2, seg:2 * seg] = -np.inf
    mask = np.ones(x.shape, dtype=bool)
    mask[0, :seg] = False
    x64 = x.astype(np.float64)

    def run():
        return [nf.softmax(x), nf.log_softmax(x), nf.softmax(x, mask=mask), nf.softmax(x[1:2]), nf.softmax(x[2:])]

    results = _run_on_every_isa_and_thread_count(run)
    _assert_same_bits(results)
    first = results[0][1]
    bounds = SOFTMAX_BOUNDS["float32"]
    expected = ref.softmax(x64)
    assert (expected[1, :seg] > 0).any() and (expected[1, :seg] < np.finfo(np.float32).tiny).all()
    assert_within_ulp("far segments softmax", first[0], expected, bounds["softmax"], {"x": x})
    expected_log = ref.log_softmax(x64)
    assert_within_ulp("far segments log_softmax", first[1], expected_log, bounds["log_softmax"], {"x": x},
                      floor=softmax_floor("log_softmax", x.dtype, expected_log))
    assert_within_ulp("far segments masked softmax", first[2], ref.softmax(x64, mask=mask), bounds["softmax"],
                      {"x": x})
    assert (first[0][2, seg:2 * seg] == 0).all() and (first[2][0, :seg] == 0).all()
    np.testing.assert_array_equal(_bits(first[3][0]), _bits(first[0][1]))
    np.testing.assert_array_equal(_bits(first[4][0]), _bits(first[0][2]))


def test_tail_prefix_rows_match_long_rows(isa):
    # A row's result does not depend on its neighbours: rows computed alone are
    # bit-identical to the same rows inside a batch.
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((17, 77)) * 3).astype(np.float32)
    y = nf.softmax(x)
    for r in range(x.shape[0]):
        np.testing.assert_array_equal(_bits(nf.softmax(x[r])), _bits(y[r]))


def test_special_values(isa):
    inf, nan = np.inf, np.nan
    x = np.array([[0.0, 1.0, -inf, 2.0],       # -inf -> 0
                  [1.0, nan, 2.0, 3.0],        # NaN -> row NaN
                  [1.0, inf, 2.0, 3.0],        # +inf -> row NaN (as PyTorch)
                  [-inf, -inf, -inf, -inf],    # no position left
                  [5.0, 5.0, 5.0, 5.0],        # all equal -> uniform, exactly
                  [1e30, -1e30, 1e30, 0.0],
                  [1e-30, -1e-30, 0.0, 1e-30]], dtype=np.float32)
    y = nf.softmax(x)
    np.testing.assert_array_equal(y[0, 2], 0.0)
    assert np.isnan(y[1]).all() and np.isnan(y[2]).all()
    np.testing.assert_array_equal(y[3], 0.0)
    np.testing.assert_array_equal(y[4], 0.25)
    np.testing.assert_array_equal(y[5], [0.5, 0, 0.5, 0])
    ly = nf.log_softmax(x)
    np.testing.assert_array_equal(ly[3], -inf)
    np.testing.assert_array_equal(ly[0, 2], -inf)
    assert np.isnan(nf.softmax(x, masked_rows="nan")[3]).all()
    assert np.isnan(nf.log_softmax(x, masked_rows="nan")[3]).all()
    _check_forward(x[[0, 4, 5, 6]], f"specials {isa}")


def _bits_nan_canonical(a):
    # Which NaN a NaN row gets (sign, payload) follows the operand order the
    # compiler picked for each ISA; only the other values' bits are compared.
    a = np.array(a, copy=True)
    a[np.isnan(a)] = np.nan
    return _bits(a)


def test_nan_rows_out_of_place_match_in_place():
    # Float32 rows written elsewhere take a pass 1 that may skip a NaN and
    # are redone when the sum is NaN or the maximum -inf; rows written in
    # place always take the NaN-aware pass. Both give the same results for
    # rows with NaN, +-inf, all -inf, all NaN and signed zeros, short
    # (grouped) and long (split across threads), on every ISA and thread count.
    inf, nan = np.inf, np.nan
    rng = np.random.default_rng(13)
    for cols in (1, 6, 100, 1000, 2 * 32768 + 5):
        x = (rng.standard_normal((12, cols)) * 3).astype(np.float32)
        x[0, cols // 2] = nan
        x[1, -1] = nan
        x[2, 0] = inf
        x[3] = -inf
        x[4] = nan
        x[5, ::2] = nan
        x[5, 1::2] = -inf
        x[6, :] = -0.0
        x[6, 1::3] = 0.0
        x[7, 0] = -inf
        x[7, -1] = inf
        x[8] = -0.0
        calls = {"softmax": lambda a, **kw: nf.softmax(a, **kw),
                 "log_softmax": lambda a, **kw: nf.log_softmax(a, **kw),
                 "scaled": lambda a, **kw: nf.softmax(a, scale=0.5, **kw),
                 "log nan rows": lambda a, **kw: nf.log_softmax(a, masked_rows="nan", **kw)}
        results = {name: [] for name in calls}
        for threads in (1, 2):
            nf.set_num_threads(threads)
            for isa in SUPPORTED_ISAS:
                with nf.cpu_isa(isa):
                    for name, f in calls.items():
                        y = f(x)
                        inplace = x.copy()
                        f(inplace, out=inplace)
                        np.testing.assert_array_equal(_bits_nan_canonical(y), _bits_nan_canonical(inplace),
                                                      err_msg=f"{name} {cols} {isa} {threads}")
                        results[name].append(((isa, threads), [_bits_nan_canonical(y)]))
                        rows_nan = [0, 1, 2, 4, 5, 7] + ([3] if name == "log nan rows" else [])
                        assert np.isnan(y[rows_nan]).all() and not np.isnan(np.delete(y, rows_nan, 0)).any()
        for same in results.values():
            _assert_same_bits(same)
        y = nf.softmax(x)
        np.testing.assert_array_equal(y[8], np.float32(1.0 / cols))
        # The cross-entropy's float32 rows take the fast pass 1 (a skipped NaN
        # makes the row's loss and gradient NaN), in place and out of place.
        labels = np.arange(12) % cols
        labels[9] = -100
        ce_results = []
        for threads in (1, 2):
            nf.set_num_threads(threads)
            for isa in SUPPORTED_ISAS:
                with nf.cpu_isa(isa):
                    loss, grad = nf.softmax_cross_entropy(x, labels, label_smoothing=0.1, reduction="none")
                    buf = x.copy()
                    loss_in, grad_in = nf.softmax_cross_entropy(buf, labels, label_smoothing=0.1, reduction="none",
                                                                inplace=True)
                    got = [_bits_nan_canonical(loss), _bits_nan_canonical(grad)]
                    for a, b in zip(got, (loss_in, grad_in)):
                        np.testing.assert_array_equal(a, _bits_nan_canonical(b), err_msg=f"ce {cols} {isa} {threads}")
                    assert np.isnan(loss[[0, 1, 4]]).all() and np.isnan(grad[[0, 1, 4]]).all()
                    assert np.isfinite(loss[[6, 8, 9, 10, 11]]).all() and np.isfinite(grad[[6, 8, 9, 10, 11]]).all()
                    ce_results.append(((isa, threads), got))
        _assert_same_bits(ce_results)
        np.testing.assert_array_equal(y[3], 0.0)
        np.testing.assert_array_equal(_bits(nf.log_softmax(x[8:9, :1])), _bits(np.float32([[0.0]])))


def test_rows_of_one_group_match_the_general_path(isa):
    # Unmasked float32 rows of at most 16 elements written elsewhere are
    # taken a block of rows at a time, one row per lane
    # (softmax_column_rows_f32); rows written in place take the general path. Same operations, so the same bits, for every length,
    # scale and spread (rows beyond exp_near's range go back to the general path).
    rng = np.random.default_rng(29)
    for cols in range(1, 17):
        x = (rng.standard_normal((37, cols)) * rng.choice([0.01, 1.0, 40.0, 300.0], size=(37, 1))).astype(np.float32)
        for name, f in (("softmax", nf.softmax), ("log_softmax", nf.log_softmax)):
            for scale in (1.0, 0.3):
                y = f(x, scale=scale)
                inplace = x.copy()
                f(inplace, scale=scale, out=inplace)
                np.testing.assert_array_equal(_bits(y), _bits(inplace), err_msg=f"{name} cols={cols} scale={scale}")


def test_short_cross_entropy_rows_match_the_row_kernel(isa):
    # Float32 cross-entropy rows of at most 16 elements are taken a block of
    # rows at a time, one row per lane; a block holding a row that is not
    # near (here +inf) goes row by row through the row kernel instead. The
    # same rows in both kinds of block must give the same bits: rows 16-31
    # repeat rows 0-15 with one logit of row 16 made +inf (1 thread, so the
    # blocks start at rows 0 and 16 with 16 or 8 lanes).
    rng = np.random.default_rng(37)
    nf.set_num_threads(1)  # the fixture in conftest.py restores the count
    for cols in range(1, 17):
        block = (rng.standard_normal((16, cols)) * rng.choice([0.01, 1.0, 30.0], size=(16, 1))).astype(np.float32)
        x = np.concatenate([block, block])
        x[16, 0] = np.inf
        labels = np.tile(rng.integers(0, cols, 16), 2)
        labels[5::16] = -100
        for kw in ({}, {"label_smoothing": 0.2, "z_loss": 1e-3}):
            loss, grad = nf.softmax_cross_entropy(x, labels, reduction="none", **kw)
            np.testing.assert_array_equal(_bits(grad[17:]), _bits(grad[1:16]), err_msg=f"cols={cols} {kw}")
            np.testing.assert_array_equal(_bits(loss[17:]), _bits(loss[1:16]), err_msg=f"cols={cols} {kw}")
            assert np.isnan(loss[16]) and not np.isnan(np.delete(loss, 16)).any()


# Softmax backward rows of 4096 elements or more, in a call whose output is
# 16 MiB or more and already backed by memory, are written with streaming
# stores after an aligning head (csrc/cpu/kernels/softmax.cpp,
# stream_backward_rows); fresh outputs and smaller calls store plainly. The
# row results must not depend on which: the big call, into either output one
# element off alignment, against the same rows in small calls.
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.7])
def test_streamed_backward_matches_plain_stores(scale, log, isa):
    cols = 4099
    rows = STREAM_BYTES // (4 * cols) + 1
    rng = np.random.default_rng(41)
    forward, backward = (nf.log_softmax, nf.log_softmax_backward) if log else (nf.softmax, nf.softmax_backward)
    y = forward((rng.standard_normal((rows, cols)) * 3).astype(np.float32))
    g = rng.standard_normal((rows, cols)).astype(np.float32)
    g[5, 7] = np.nan
    plain = np.concatenate([backward(g[i:i + 64], y[i:i + 64], scale=scale) for i in range(0, rows, 64)])
    for kind, out in large_outputs((rows, cols), np.float32).items():
        backward(g, y, scale=scale, out=out)
        np.testing.assert_array_equal(_bits(out), _bits(plain), err_msg=f"output in {kind}")
        assert np.isnan(out[5]).all() and not np.isnan(out[6]).any()


# Forward rows of a segment (32768) or more (log-softmax) and of more than one
# (softmax), in a call of 16 MiB or more into an output backed by memory, are
# written with streaming stores, softmax's terms stashed and scaled a row
# later (softmax_stream_output, softmax_long_rows_f32): the same bits as the
# plain stores of small calls, NaN, infinite and -inf rows included (which NaN
# aside; a NaN row is redone after its predecessor's output was written), on
# one thread and on all, and in place. Softmax rows longer than the stash's
# limit (2^19) take each term a second time instead: the same bits again.
@pytest.mark.parametrize("log,cols", [(False, 2 * 32768 + 3), (False, 2**19 + 3), (True, 32768 + 5)])
@pytest.mark.parametrize("scale", [1.0, 0.7])
def test_streamed_forward_matches_plain_stores(scale, log, cols, isa):
    rows = STREAM_BYTES // (4 * cols) + 1
    rng = np.random.default_rng(43)
    x = (rng.standard_normal((rows, cols)) * 3).astype(np.float32)
    x[1, 100] = np.nan
    x[2, 7] = np.inf
    x[3] = -np.inf
    x[4, 5:] = -200.0  # a spread beyond exp_near's range
    x[5] = rng.standard_normal(cols).astype(np.float32) * 1e-3 - 50.0  # a negative maximum
    forward = nf.log_softmax if log else nf.softmax
    x[rows - 1, 3] = np.nan  # the last row redone, its predecessor pending
    plain = np.concatenate([forward(x[i:i + 8], scale=scale) for i in range(0, rows, 8)])
    for threads in (1, nf.get_num_threads()):  # the fixture in conftest.py restores the count
        nf.set_num_threads(threads)
        for kind, out in large_outputs((rows, cols), np.float32).items():
            forward(x, scale=scale, out=out)
            np.testing.assert_array_equal(_bits_nan_canonical(out), _bits_nan_canonical(plain),
                                          err_msg=f"output in {kind}, {threads} threads")
    inplace = x.copy()
    forward(inplace, scale=scale, out=inplace)
    np.testing.assert_array_equal(_bits_nan_canonical(inplace), _bits_nan_canonical(plain), err_msg="in place")
    assert np.isnan(plain[1]).all() and not np.isnan(plain[6]).any()


def test_masks(isa):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((6, 40)) * 3).astype(np.float32)
    x[0, 3] = np.nan  # masked-out NaN and +inf are ignored
    x[0, 4] = np.inf
    mask = rng.random(x.shape) > 0.4
    mask[0, 3:5] = False
    mask[2] = False  # a fully masked row
    y, ly = _check_forward(x, f"mask {isa}", mask=mask)
    assert (y[~mask] == 0).all() and (ly[~mask] == -np.inf).all()
    np.testing.assert_array_equal(y[2], 0.0)
    assert np.isnan(nf.softmax(x, mask=mask, masked_rows="nan")[2]).all()
    # Broadcast masks: per column (key padding) and per row.
    col_mask = rng.random((1, 40)) > 0.5
    _check_forward(x[1:], f"column mask {isa}", mask=col_mask)
    _check_forward(x[1:], f"row mask {isa}", mask=np.array([True, False, True, True, True])[:, None])


def test_scale(isa):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((5, 300)) * 8).astype(np.float32)
    scale = 0.125  # exact: scale * x is rounded once in float32 as the reference's product
    _check_forward(x, f"scale {isa}", scale=scale)
    # An inexact scale multiplies in float32: the reference takes the rounded logits.
    s = 1 / np.sqrt(96.0)
    z = (x * np.float32(s)).astype(np.float32)
    np.testing.assert_array_equal(_bits(nf.softmax(x, scale=s)), _bits(nf.softmax(z)))
    g = rng.standard_normal(x.shape).astype(np.float32)
    y = nf.softmax(x, scale=s)
    expected = ref.softmax_backward(g.astype(np.float64), y.astype(np.float64), scale=float(np.float32(s)))
    floor = softmax_floor("softmax_backward", x.dtype, expected, g=g, y=y, scale=s)
    assert_within_ulp("scaled softmax_backward", nf.softmax_backward(g, y, scale=s), expected,
                      SOFTMAX_BOUNDS["float32"]["backward"], {"grad": g, "y": y}, floor=floor)


@pytest.mark.parametrize("axis", [0, 1, -1, 2])
def test_any_axis_and_non_contiguous(axis):
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((4, 6, 9)) * 3).astype(np.float32)
    for xv in (x, x[:, ::2, :], np.asfortranarray(x)):
        y = nf.softmax(xv, axis=axis)
        assert_within_ulp(f"axis {axis}", y, ref.softmax(xv.astype(np.float64), axis=axis), 3.0, {"x": xv})
        ly = nf.log_softmax(xv, axis=axis)
        g = np.ones_like(xv)
        dx = nf.log_softmax_backward(g, ly, axis=axis)
        np.testing.assert_allclose(dx, ref.log_softmax_backward(g, ly.astype(np.float64), axis=axis), atol=1e-5)


def test_shapes_edge_cases():
    assert nf.softmax(np.zeros((0, 5), np.float32)).shape == (0, 5)
    assert nf.softmax(np.zeros((3, 0), np.float32)).shape == (3, 0)
    np.testing.assert_array_equal(nf.softmax(np.array([[3.0], [-2.0]], np.float32)), 1.0)
    np.testing.assert_array_equal(nf.log_softmax(np.array([[3.0], [-2.0]], np.float32)), 0.0)
    assert nf.softmax(np.float32(4.0)).shape == () and nf.softmax(np.float32(4.0)) == 1
    np.testing.assert_array_equal(nf.softmax_backward(np.float32(2.0), np.float32(1.0)), 0.0)


def test_out_and_in_place():
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((7, 50)) * 3).astype(np.float32)
    expected = nf.softmax(x)
    out = np.empty_like(x)
    assert nf.softmax(x, out=out) is out
    np.testing.assert_array_equal(out, expected)
    inplace = x.copy()
    nf.softmax(inplace, out=inplace)
    np.testing.assert_array_equal(inplace, expected)
    strided = np.empty((7, 100), np.float32)[:, ::2]
    nf.softmax(x, out=strided)
    np.testing.assert_array_equal(strided, expected)
    g = rng.standard_normal(x.shape).astype(np.float32)
    dx = nf.softmax_backward(g, expected)
    nf.softmax_backward(g, expected, out=g)
    np.testing.assert_array_equal(g, dx)
    with pytest.raises(ValueError, match="overlaps"):
        nf.softmax(x[:, 1:], out=x[:, :-1])


def test_direct_binding_takes_only_ready_arrays():
    """The fast binding runs a call only when the arrays need no conversion or
    check beyond its own; everything else is left (False, nothing written) to
    the general path, which converts or raises."""
    code = DTYPE_CODES[np.dtype(np.float32)]
    x = np.ones((4, 8), np.float32)
    out = np.full_like(x, 7.0)
    assert nf._C.softmax_forward_direct(False, code, x, out, 1.0, False)
    np.testing.assert_array_equal(out, 0.125)
    readonly = np.full_like(x, 7.0)
    readonly.flags.writeable = False
    wide = np.full((4, 16), 7.0, np.float32)
    refused = [(x, readonly), (x[:, ::2], np.full((4, 4), 7.0, np.float32)), (x, wide[:, ::2]),
               (wide[:, 1:9], wide[:, :8]), (np.ones((4, 0), np.float32), np.ones((4, 0), np.float32)),
               (np.ones((), np.float32), np.full((), 7.0, np.float32)), (x, np.full((8, 4), 7.0, np.float32))]
    for arg, dest in refused:
        before = dest.copy()
        assert not nf._C.softmax_forward_direct(False, code, arg, dest, 1.0, False)
        np.testing.assert_array_equal(dest, before)
    g = np.full_like(x, 2.0)
    assert not nf._C.softmax_backward_direct(False, code, g, x[:, ::2].copy(), np.empty_like(x), 1.0)
    assert not nf._C.softmax_backward_direct(False, code, wide[:, :8], wide[:, 8:], wide[:, 4:12], 1.0)
    assert nf._C.softmax_backward_direct(False, code, g, x, x, 1.0)  # out is y: in place


@pytest.mark.parametrize("dtype", DTYPES, ids=_key)
def test_direct_and_general_paths_agree(dtype):
    """The same call through the direct binding (axis -1) and the general path
    (axis as a NumPy integer, which the direct path does not take) gives the
    same bits, out of place, into out= and in place; and the direct path's
    refusals still raise the general path's errors."""
    rng = np.random.default_rng(21)
    x = (rng.standard_normal((9, 37)) * 4).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    general = np.int64(-1)
    for forward, backward in ((nf.softmax, nf.softmax_backward), (nf.log_softmax, nf.log_softmax_backward)):
        for scale in (1.0, 2):
            y = forward(x, scale=scale)
            np.testing.assert_array_equal(_bits_nan_canonical(y), _bits_nan_canonical(forward(x, general, scale=scale)))
            inplace = x.copy()
            assert forward(inplace, scale=scale, out=inplace) is inplace
            np.testing.assert_array_equal(_bits_nan_canonical(inplace), _bits_nan_canonical(y))
            dx = backward(g, y, scale=scale)
            np.testing.assert_array_equal(_bits_nan_canonical(dx),
                                          _bits_nan_canonical(backward(g, y, general, scale=scale)))
            out = np.empty_like(x)
            assert backward(g, y, scale=scale, out=out) is out
            np.testing.assert_array_equal(_bits_nan_canonical(out), _bits_nan_canonical(dx))
    readonly = np.empty_like(x)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="'out' is read-only"):
        nf.softmax(x, out=readonly)
    with pytest.raises(TypeError, match="'out' has dtype"):
        nf.log_softmax(x, out=np.empty(x.shape, np.float64 if dtype != np.float64 else np.float32))
    with pytest.raises(ValueError, match="'out' has shape"):
        nf.softmax(x, out=np.empty((37, 9), dtype))
    wide = np.zeros((9, 80), dtype)
    with pytest.raises(ValueError, match="'out' partially overlaps 'y'"):
        nf.softmax_backward(g, wide[:, :37], out=wide[:, 1:38])


def test_cross_entropy_direct_binding_takes_only_ready_arrays():
    """The cross-entropy's fast binding runs only with int64 labels of the
    right shape, a ready gradient buffer and valid labels; otherwise it
    returns None having written nothing."""
    code = DTYPE_CODES[np.dtype(np.float32)]
    x = np.zeros((4, 8), np.float32)
    labels = np.array([0, 3, -100, 7])
    grad = np.full_like(x, 7.0)
    losses, total, counted = nf._C.softmax_cross_entropy_direct(code, x, labels, grad, -100, 0.0, 0.0, True)
    assert counted == 3 and total == pytest.approx(3 * np.log(8)) and losses[2] == 0
    assert grad[2].tolist() == [0.0] * 8 and grad[0, 0] == pytest.approx((1 / 8 - 1) / 3)
    readonly = np.full_like(x, 7.0)
    readonly.flags.writeable = False
    wide = np.full((4, 16), 7.0, np.float32)
    refused = [(x, labels.astype(np.int32), np.full_like(x, 7.0)), (x, labels[:, None], np.full_like(x, 7.0)),
               (x, labels[::-1], np.full_like(x, 7.0)), (x, np.array([0, 8, 1, 2]), np.full_like(x, 7.0)),
               (x, np.array([0, -1, 1, 2]), np.full_like(x, 7.0)), (x, labels, readonly), (x, labels, wide[:, ::2]),
               (wide[:, 1:9], labels, wide[:, :8]), (x[:, ::2], labels, np.full((4, 4), 7.0, np.float32)),
               (np.zeros((0, 8), np.float32), np.zeros(0, np.int64), np.zeros((0, 8), np.float32)),
               (np.zeros(8, np.float32), np.zeros((), np.int64), np.full(4, 7.0, np.float32))]
    for logits, lab, dest in refused:
        before = dest.copy()
        assert nf._C.softmax_cross_entropy_direct(code, logits, lab, dest, -100, 0.0, 0.0, True) is None
        np.testing.assert_array_equal(dest, before)


@pytest.mark.parametrize("dtype", DTYPES, ids=_key)
def test_cross_entropy_direct_and_general_paths_agree(dtype):
    """The same cross-entropy through the direct binding (int64 labels) and the
    general path (int32 labels, which it does not take) gives the same bits,
    with a fresh gradient, into out= (contiguous or not) and in place."""
    rng = np.random.default_rng(22)
    for cols in (5, 37, 300):
        x = (rng.standard_normal((19, cols)) * 4).astype(dtype)
        labels = rng.integers(0, cols, 19)
        labels[3] = -100
        for kw in ({}, {"label_smoothing": 0.1, "z_loss": 1e-3}, {"reduction": "none"}, {"reduction": "sum"}):
            loss, grad = nf.softmax_cross_entropy(x, labels, **kw)
            general = nf.softmax_cross_entropy(x, labels.astype(np.int32), **kw)
            for a, b in zip((loss, grad), general):
                np.testing.assert_array_equal(_bits(a), _bits(b))
            out = np.full_like(x, 7)
            l2, g2 = nf.softmax_cross_entropy(x, labels, out=out, **kw)
            assert g2 is out
            np.testing.assert_array_equal(_bits(l2), _bits(loss))
            np.testing.assert_array_equal(_bits(out), _bits(grad))
            strided = np.full((19, 2 * cols), 7, dtype)[:, ::2]
            assert nf.softmax_cross_entropy(x, labels, out=strided, **kw)[1] is strided
            np.testing.assert_array_equal(_bits(strided), _bits(grad))
            buf = x.copy()
            l3, g3 = nf.softmax_cross_entropy(buf, labels, out=buf, **kw)
            assert g3 is buf
            np.testing.assert_array_equal(_bits(l3), _bits(loss))
            np.testing.assert_array_equal(_bits(buf), _bits(grad))


def test_cross_entropy_out_errors():
    x = np.zeros((3, 4), np.float32)
    labels = np.zeros(3, np.int64)
    readonly = np.empty_like(x)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="'out' is read-only"):
        nf.softmax_cross_entropy(x, labels, out=readonly)
    with pytest.raises(TypeError, match="'out' has dtype"):
        nf.softmax_cross_entropy(x, labels, out=np.empty(x.shape, np.float64))
    with pytest.raises(ValueError, match="'out' has shape"):
        nf.softmax_cross_entropy(x, labels, out=np.empty((4, 3), np.float32))
    with pytest.raises(TypeError, match="'out' must be a numpy.ndarray"):
        nf.softmax_cross_entropy(x, labels, out=[[0.0] * 4] * 3)
    wide = np.zeros((3, 8), np.float32)
    with pytest.raises(ValueError, match="'out' partially overlaps 'logits'"):
        nf.softmax_cross_entropy(wide[:, :4], labels, out=wide[:, 1:5])
    with pytest.raises(ValueError, match="either inplace=True or 'out'"):
        nf.softmax_cross_entropy(x, labels, inplace=True, out=x)
    bad = np.array([0, 4, 1])
    out = np.full_like(x, 7.0)
    with pytest.raises(ValueError, match=r"labels\[1\] = 4"):
        nf.softmax_cross_entropy(x, bad, out=out)
    assert (out == 7.0).all()


def test_argument_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="masked_rows"):
        nf.softmax(x, masked_rows="keep")
    with pytest.raises(ValueError, match="axis"):
        nf.softmax(x, axis=2)
    with pytest.raises(TypeError, match="mask"):
        nf.softmax(x, mask=np.ones((2, 3), np.int32))
    with pytest.raises(ValueError, match="mask"):
        nf.softmax(x, mask=np.ones((3, 3), bool))
    with pytest.raises(TypeError, match="'x'"):
        nf.softmax(np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="'y'"):
        nf.softmax_backward(x, np.zeros((3, 2), np.float32))


# ---- cross-entropy ------------------------------------------------------------------

CE_CASES = [dict(), dict(label_smoothing=0.1), dict(z_loss=1e-3), dict(label_smoothing=0.2, z_loss=1e-4),
            dict(ignore_index=3, label_smoothing=0.1)]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES, ids=_key)
def test_cross_entropy_matches_reference(dtype, reduction, isa):
    rng = np.random.default_rng(11)
    bounds = SOFTMAX_BOUNDS[_key(dtype)]
    for rows, classes, scale in ((64, 5, 3.0), (33, 1000, 5.0), (8, 2049, 1e-30), (8, 300, 30.0)):
        x = (rng.standard_normal((rows, classes)) * scale).astype(dtype)
        for kw in CE_CASES:
            labels = rng.integers(0, classes, rows)
            labels[::4] = kw.get("ignore_index", -100)
            label = f"{_key(dtype)} {isa} {reduction} {rows}x{classes} {kw}"
            loss, grad = nf.softmax_cross_entropy(x, labels, reduction=reduction, **kw)
            rloss, rgrad = ref.softmax_cross_entropy(x.astype(np.float64), labels, reduction=reduction, **kw)
            assert loss.dtype == x.dtype and grad.dtype == x.dtype
            assert_within_ulp(label + " loss", loss, rloss, bounds["cross_entropy_loss"], {"logits": x},
                              floor=softmax_floor("cross_entropy_loss", dtype, rloss))
            floor = softmax_floor("cross_entropy_grad", dtype, rgrad, logits=x, reduction=reduction,
                                  labels=labels, **kw)
            assert_within_ulp(label + " grad", grad, rgrad, bounds["cross_entropy_grad"], {"logits": x},
                              floor=floor)


@pytest.mark.parametrize("dtype", DTYPES, ids=_key)
def test_cross_entropy_smoothing_with_minus_inf_logits(dtype, isa):
    """A -inf logit (a class masked out) under label smoothing: the uniform
    target's term eps (lse - mean z) is +inf, so the loss is +inf (as the
    reference and PyTorch), not NaN, and the gradient stays finite. Row
    lengths reach the column (2, 16), batch (17, 100) and row (300) kernels."""
    rng = np.random.default_rng(21)
    bounds = SOFTMAX_BOUNDS[_key(dtype)]
    for cols in (2, 16, 17, 100, 300):
        x = (rng.standard_normal((40, cols)) * 2).astype(dtype)
        x[::3, 0] = -np.inf
        labels = rng.integers(1, cols, 40)
        label = f"{_key(dtype)} {isa} {cols} columns"
        for reduction in ("none", "mean"):
            loss, grad = nf.softmax_cross_entropy(x, labels, label_smoothing=0.1, reduction=reduction)
            rloss, rgrad = ref.softmax_cross_entropy(x.astype(np.float64), labels, label_smoothing=0.1,
                                                     reduction=reduction)
            assert np.isposinf(rloss).any(), label
            assert np.array_equal(np.isposinf(loss), np.isposinf(rloss)), f"{label} {reduction}: {loss}"
            assert_within_ulp(f"{label} {reduction} loss", loss, rloss, bounds["cross_entropy_loss"], {"logits": x},
                              floor=softmax_floor("cross_entropy_loss", dtype, rloss))
            floor = softmax_floor("cross_entropy_grad", dtype, rgrad, logits=x, reduction=reduction,
                                  labels=labels, label_smoothing=0.1)
            assert_within_ulp(f"{label} {reduction} grad", grad, rgrad, bounds["cross_entropy_grad"], {"logits": x},
                              floor=floor)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, BFLOAT16], ids=_key)
@pytest.mark.parametrize("inplace", [False, True])
def test_confident_cross_entropy_rows_keep_their_relative_accuracy(dtype, inplace, isa):
    """A row whose label holds the maximum by a wide margin has S = 1 + rest
    with rest tiny: the loss log S and the label's gradient p_t - 1 = -rest / S
    came out of S's rounding (about 2^-52 absolute), so a loss of 2e-13 was off
    by 1e-3 relative, and the reference's label gradient 1 / S - 1 as well.
    Each is now within the float32 bound of its own value. Rows of 3 (column
    kernel), 40 (batch kernel on AVX-512) and 1000 logits (row kernel), with
    and without a logit 200 below the rest (the general path), margins from
    10 to 40, the label first, last or inside; and the same bits on every ISA
    and whichever kernel takes a row."""
    bounds = SOFTMAX_BOUNDS[_key(dtype)]
    rng = np.random.default_rng(31)
    for cols in (3, 40, 1000):
        for far in (False, True):
            margins = np.linspace(10.0, 40.0, 32)
            x = rng.uniform(-1.0, 0.0, (margins.size, cols))
            labels = rng.integers(0, cols, margins.size)
            labels[:3] = [0, cols - 1, cols // 2]
            rows = np.arange(margins.size)
            x[rows, labels] = margins
            if far:
                x[rows, (labels + 1) % cols] = -200.0
            x = x.astype(dtype)
            buffer = x.copy()
            loss, grad = nf.softmax_cross_entropy(buffer, labels, reduction="none", inplace=inplace)
            rloss, rgrad = ref.softmax_cross_entropy(x.astype(np.float64), labels, reduction="none")
            label = f"{_key(dtype)} {isa} {cols} columns far={far} inplace={inplace}"
            tiny = rloss < 2.0 ** -20
            assert tiny.sum() >= margins.size // 2, label
            assert_within_ulp(label + " loss", loss, rloss, bounds["cross_entropy_loss"], {"logits": x})
            assert_within_ulp(label + " label grad", grad[rows, labels], rgrad[rows, labels],
                              bounds["cross_entropy_grad"], {"logits": x})
            # The reference's label gradient is -rest / S itself: the loss's first-order term.
            np.testing.assert_allclose(-rgrad[rows, labels][tiny], rloss[tiny], rtol=2.0 ** -18)
            with nf.cpu_isa("scalar"):
                scalar_loss, scalar_grad = nf.softmax_cross_entropy(x, labels, reduction="none")
            np.testing.assert_array_equal(_bits(loss), _bits(scalar_loss), err_msg=label)
            np.testing.assert_array_equal(_bits(grad), _bits(scalar_grad), err_msg=label)
            if cols <= 256 and not far and not inplace:
                # The column and batch kernels take rows 0-15 a block at a time;
                # rows 16-31 repeat them in a block that holds a row the row kernel
                # must take (an inf logit), so all go through it: the same bits.
                both = np.concatenate([x[:16], x[:16]])
                both[16, (labels[0] + 1) % cols] = np.inf
                nf.set_num_threads(1)  # the fixture in conftest.py restores the count
                loss, grad = nf.softmax_cross_entropy(both, np.tile(labels[:16], 2), reduction="none")
                np.testing.assert_array_equal(_bits(grad[17:]), _bits(grad[1:16]), err_msg=label)
                np.testing.assert_array_equal(_bits(loss[17:]), _bits(loss[1:16]), err_msg=label)


def test_published_softmax_table_bounds_hold():
    """docs/accuracy.md's softmax rows (their logits reach 6.6e37 scaled, with
    z_loss: a label gradient that cancels k - 1 against (rest / S) k would be
    off by 2^24 ULP there) are within their bounds on this CPU."""
    from nnfuse.accuracy import measure_softmax
    with np.errstate(invalid="ignore"):  # the table's inputs include NaN, cast to each dtype
        rows = measure_softmax()
    for row in rows:
        assert row["max_ulp"] <= row["bound"], row


def test_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((3, 5, 10)) * 2).astype(np.float32)
    labels = rng.integers(0, 10, (3, 5))
    labels[0, 1] = -100
    for kw in (dict(), dict(label_smoothing=0.15)):
        for reduction in ("mean", "sum", "none"):
            loss, grad = nf.softmax_cross_entropy(x, labels, reduction=reduction, **kw)
            tx = torch.from_numpy(x.reshape(-1, 10)).requires_grad_()
            tl = torch.nn.functional.cross_entropy(tx, torch.from_numpy(labels.reshape(-1)), reduction=reduction, **kw)
            tl.sum().backward()
            np.testing.assert_allclose(loss, tl.detach().numpy().reshape(loss.shape), rtol=2e-6, atol=1e-6)
            np.testing.assert_allclose(grad.reshape(-1, 10), tx.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_cross_entropy_in_place_and_deterministic():
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((999, 301)) * 4).astype(np.float32)
    labels = rng.integers(0, 301, 999)
    loss, grad = nf.softmax_cross_entropy(x, labels, label_smoothing=0.1)
    buf = x.copy()
    loss2, grad2 = nf.softmax_cross_entropy(buf, labels, label_smoothing=0.1, inplace=True)
    assert grad2 is buf
    np.testing.assert_array_equal(_bits(grad2), _bits(grad))
    np.testing.assert_array_equal(_bits(loss2), _bits(loss))
    for threads in (1, 2, 5):
        nf.set_num_threads(threads)
        l3, g3 = nf.softmax_cross_entropy(x, labels, label_smoothing=0.1)
        np.testing.assert_array_equal(_bits(l3), _bits(loss))
        np.testing.assert_array_equal(_bits(g3), _bits(grad))


def test_cross_entropy_total_takes_the_documented_order():
    # "sum" adds the per-row float64 losses with row i in partial sum i % 8,
    # then the eight pairwise: float64 logits, so that "none" returns those
    # very losses, at row counts with and without a remainder of 8.
    rng = np.random.default_rng(23)
    for rows in (1, 7, 8, 13, 1003):
        x = rng.standard_normal((rows, 5)) * 30
        labels = rng.integers(0, 5, rows)
        losses, _ = nf.softmax_cross_entropy(x, labels, reduction="none")
        partial = [0.0] * 8
        for i, v in enumerate(losses.tolist()):
            partial[i % 8] += v
        for width in (4, 2, 1):
            for j in range(width):
                partial[j] += partial[j + width]
        total, _ = nf.softmax_cross_entropy(x, labels, reduction="sum")
        assert total.item() == partial[0], rows


def test_cross_entropy_all_ignored_and_empty():
    x = np.zeros((3, 4), np.float32)
    loss, grad = nf.softmax_cross_entropy(x, np.full(3, -100))
    assert np.isnan(loss) and (grad == 0).all()
    loss, grad = nf.softmax_cross_entropy(x, np.full(3, -100), reduction="sum")
    assert loss == 0
    loss, grad = nf.softmax_cross_entropy(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), reduction="none")
    assert loss.shape == (0,) and grad.shape == (0, 4)


def test_cross_entropy_bad_labels():
    x = np.zeros((2, 3, 4), np.float32)
    labels = np.zeros((2, 3), np.int64)
    labels[1, 2] = 4
    labels[1, 0] = -5
    with pytest.raises(ValueError, match=r"labels\[1, 0\] = -5 is outside \[0, 4\)"):
        nf.softmax_cross_entropy(x, labels)
    labels[1, 0] = 0
    with pytest.raises(ValueError, match=r"labels\[1, 2\] = 4"):
        nf.softmax_cross_entropy(x, labels)
    with pytest.raises(ValueError, match="'labels' has shape"):
        nf.softmax_cross_entropy(x, np.zeros(2, np.int64))
    with pytest.raises(TypeError, match="integer"):
        nf.softmax_cross_entropy(x, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="reduction"):
        nf.softmax_cross_entropy(x, np.zeros((2, 3), np.int64), reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        nf.softmax_cross_entropy(x, np.zeros((2, 3), np.int64), label_smoothing=1.5)
    with pytest.raises(TypeError, match="'label_smoothing' must be a real number"):
        nf.softmax_cross_entropy(x, np.zeros((2, 3), np.int64), label_smoothing=None)
    with pytest.raises(ValueError, match="'z_loss' must not be NaN"):
        nf.softmax_cross_entropy(x, np.zeros((2, 3), np.int64), z_loss=float("nan"))
    for z_loss in (-1e-4, float("inf")):
        with pytest.raises(ValueError, match="'z_loss' must be a finite number >= 0"):
            nf.softmax_cross_entropy(x, np.zeros((2, 3), np.int64), z_loss=z_loss)
    with pytest.raises(ValueError, match="inplace"):
        nf.softmax_cross_entropy(np.zeros((4, 3), np.float32)[::2], np.zeros(2, np.int64), inplace=True)
