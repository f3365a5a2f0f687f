"""Accuracy of every op in ULPs of the output dtype against the float64
reference, on every CPU ISA: the published bounds, the measurement, and the
table in docs/accuracy.md (``python -m nnfuse.accuracy --markdown docs/accuracy.md``).

Inputs: float32 covers its whole finite range by stepping through every bit
pattern with a fixed stride (both signs), plus a dense grid of [-20, 20], the
neighbourhood of each op's special points, and ±0, ±inf, NaN and subnormals;
float16 and bfloat16 are tested exhaustively (all 65536 values); float64 uses
random bit patterns plus the same grids.

The softmax family (softmax, log-softmax, their backward passes, the fused
cross-entropy loss and gradient) is measured on rows (see ``softmax_rows``)
against the bounds in ``SOFTMAX_BOUNDS``; where a result is a difference of
larger terms (backward passes, the cross-entropy gradient) or is near zero
(log-softmax of a dominant logit), ``softmax_floor`` gives the magnitude whose
ULP is the unit.

Backward measure: the derivative is multiplied by a random grad in
±[0.5, 2]. Where a derivative is a sum of terms that cancel at an interior zero
(gelu, gelu tanh, silu, mish, hardswish), the error is measured in ULPs of
|grad| * (sum of the terms' magnitudes) rather than of the (near-zero) result:
``backward_floor`` below gives that magnitude.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from . import reference as ref
from ._array import BFLOAT16
from ._optable import ACTIVATIONS, call_params
from ._ulp import ulp_error

# Published bounds in ULPs of the output dtype, enforced by tests/test_activations.py.
BOUNDS = {
    "float32": {"forward": 2.0, "backward": 4.0},
    "float16": {"forward": 1.0, "backward": 1.0},
    "bfloat16": {"forward": 1.0, "backward": 1.0},
    # float64 is compared with a float64 reference, whose own rounding errors
    # (a few ULP in composed formulas) are part of the measured distance.
    "float64": {"forward": 4.0, "backward": 8.0},
}


# Published bounds for the softmax family, in ULPs of the output dtype (of
# softmax_floor where one applies), enforced by tests/test_softmax.py.
SOFTMAX_BOUNDS = {
    "float32": {"softmax": 3.0, "log_softmax": 3.0, "backward": 4.0,
                "cross_entropy_loss": 2.0, "cross_entropy_grad": 3.0},
    "float16": {"softmax": 1.0, "log_softmax": 1.0, "backward": 1.0,
                "cross_entropy_loss": 1.0, "cross_entropy_grad": 1.0},
    "bfloat16": {"softmax": 1.0, "log_softmax": 1.0, "backward": 1.0,
                 "cross_entropy_loss": 1.0, "cross_entropy_grad": 1.0},
    "float64": {"softmax": 8.0, "log_softmax": 8.0, "backward": 8.0,
                "cross_entropy_loss": 4.0, "cross_entropy_grad": 8.0},
}

# log-softmax near 0 (a dominant logit): y = -log S with S = 1 + (small terms)
# held in float64, so the absolute error is a few 2^-53; the unit is the ULP of
# max(|y|, floor): 2^-30 for float32 and 16-bit outputs, 1 (the dominant term)
# for float64.
LOG_SOFTMAX_FLOOR = {"float64": 1.0, "float32": 2.0**-30, "float16": 2.0**-30, "bfloat16": 2.0**-30}


def softmax_floor(name, dtype, expected, g=None, y=None, scale=1.0, logits=None, labels=None,
                  reduction="mean", ignore_index=-100, label_smoothing=0.0, z_loss=0.0):
    """The magnitude whose ULP measures the error of a softmax-family result
    (None: the result's own ULP). log_softmax: LOG_SOFTMAX_FLOOR;
    cross_entropy_loss: 1 for float64 (none otherwise); softmax_backward: |scale| |y| (|g| + sum |g y|);
    log_softmax_backward: |scale| (|g| + e^y sum |g|); cross_entropy_grad: the
    sum of the magnitudes of p (1 + 2 z_loss lse), eps / C and (1 - eps) [label]."""
    if name == "log_softmax":
        return np.full(np.shape(expected), LOG_SOFTMAX_FLOOR[_dtype_name(dtype)])
    if name == "cross_entropy_loss":
        # log S again: float64 losses near 0 are measured in ULPs of max(|loss|, 1).
        return np.ones(np.shape(expected)) if _dtype_name(dtype) == "float64" else None
    scale = abs(float(np.float32(scale) if np.dtype(dtype) != np.float64 else scale))
    if name == "softmax_backward":
        g, y = np.abs(np.asarray(g, np.float64)), np.abs(np.asarray(y, np.float64))
        return scale * y * (g + np.sum(g * y, axis=-1, keepdims=True))
    if name == "log_softmax_backward":
        g, y = np.abs(np.asarray(g, np.float64)), np.asarray(y, np.float64)
        return scale * (g + np.exp(y) * np.sum(g, axis=-1, keepdims=True))
    if name == "cross_entropy_grad":
        z = np.asarray(logits, np.float64)
        labels = np.asarray(labels)
        valid = labels != ignore_index
        p = ref.softmax(z)
        lse = np.log(np.sum(np.exp(z - z.max(-1, keepdims=True)), -1, keepdims=True)) + z.max(-1, keepdims=True)
        onehot = np.zeros_like(z)
        np.put_along_axis(onehot, np.where(valid, labels, 0)[..., None], 1.0, axis=-1)
        counted = max(1, int(np.count_nonzero(valid)))
        w = 1.0 / counted if reduction == "mean" else 1.0
        terms = p * (1 + 2 * abs(z_loss) * np.abs(lse)) + label_smoothing / z.shape[-1] + (1 - label_smoothing) * onehot
        return np.where(valid[..., None], w * terms, 0.0)
    return None


def softmax_rows(dtype, rows_per_kind=32, cols=1000, seed=0):
    """Rows for the softmax measurements: accuracy_inputs() values (all
    magnitudes) cut into rows, normal logits scaled by 1, 3, 30, 1e30 and 1e-30
    (float16: its largest quarter and 1e-7), all-equal rows and rows with -inf."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    values = accuracy_inputs(dtype, (), 4 * rows_per_kind * cols).astype(np.float64)
    values = values[np.isfinite(values)]
    values = rng.permutation(values)[: (values.size // cols) * cols].reshape(-1, cols)[: 4 * rows_per_kind]
    big = float(np.finfo(np.float16).max) / 4 if dtype == np.float16 else 1e30
    tiny = 1e-7 if dtype == np.float16 else 1e-30
    parts = [values] + [rng.standard_normal((rows_per_kind, cols)) * s for s in (1.0, 3.0, 30.0, big, tiny)]
    parts.append(np.full((2, cols), 2.5))
    with_inf = rng.standard_normal((rows_per_kind, cols)) * 4
    with_inf[:, ::7] = -np.inf
    parts.append(with_inf)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.concatenate(parts).astype(dtype)


def measure_softmax(dtypes=("float32", "bfloat16", "float16", "float64"), isas=None, cols=1000):
    """Rows of (op, dtype, isa, max_ulp, measure) for the softmax family."""
    import nnfuse as nf

    isas = list(isas or nf._C.supported_isas())
    rows = []
    for dtype_name in dtypes:
        dtype = BFLOAT16 if dtype_name == "bfloat16" else np.dtype(dtype_name)
        x = softmax_rows(dtype, cols=cols)
        x64 = x.astype(np.float64)
        finite = np.where(np.isfinite(x64), x64, 0.0).astype(dtype)
        rng = np.random.default_rng(1)
        g = (rng.standard_normal(x.shape) * 2).astype(dtype)
        labels = rng.integers(0, cols, x.shape[0])
        labels[::5] = -100
        ce = dict(label_smoothing=0.1, z_loss=1e-4)
        with np.errstate(all="ignore"):
            expected = {"softmax": ref.softmax(x64), "log_softmax": ref.log_softmax(x64)}
            rloss, rgrad = ref.softmax_cross_entropy(finite.astype(np.float64), labels, reduction="none", **ce)
        for isa in isas:
            with nf.cpu_isa(isa), np.errstate(all="ignore"):
                got = {"softmax": nf.softmax(x), "log_softmax": nf.log_softmax(x)}
                y, ly = nf.softmax(finite), nf.log_softmax(finite)
                dx = nf.softmax_backward(g, y)
                dlx = nf.log_softmax_backward(g, ly)
                loss, grad = nf.softmax_cross_entropy(finite, labels, reduction="none", **ce)
                g64, y64, ly64 = g.astype(np.float64), y.astype(np.float64), ly.astype(np.float64)
                checks = [
                    ("softmax", got["softmax"], expected["softmax"], None),
                    ("log_softmax", got["log_softmax"], expected["log_softmax"],
                     softmax_floor("log_softmax", dtype, expected["log_softmax"])),
                    ("softmax_backward", dx, ref.softmax_backward(g64, y64),
                     softmax_floor("softmax_backward", dtype, None, g=g64, y=y64)),
                    ("log_softmax_backward", dlx, ref.log_softmax_backward(g64, ly64),
                     softmax_floor("log_softmax_backward", dtype, None, g=g64, y=ly64)),
                    ("cross_entropy_loss", loss, rloss, softmax_floor("cross_entropy_loss", dtype, rloss)),
                    ("cross_entropy_grad", grad, rgrad,
                     softmax_floor("cross_entropy_grad", dtype, rgrad, logits=finite, labels=labels,
                                   reduction="none", **ce)),
                ]
            for name, got_v, exp_v, floor in checks:
                err = ulp_error(got_v, exp_v, floor)
                bound_key = "backward" if name.endswith("_backward") else name
                rows.append({"op": name, "dtype": dtype_name, "isa": isa, "max_ulp": float(err.max()),
                             "bound": SOFTMAX_BOUNDS[dtype_name][bound_key], "points": int(err.size),
                             "measure": "floor" if floor is not None else "ulp"})
    return rows


def softmax_markdown(rows):
    lines = [
        "",
        "## Softmax family",
        "",
        "Rows of 1000 elements: the values above cut into rows, normal logits scaled by 1, 3, 30, 1e30 and",
        "1e-30, all-equal rows and rows with -inf; backward: grad ~ N(0, 4); cross-entropy with",
        "label_smoothing=0.1, z_loss=1e-4 and every fifth label ignored. *floor* rows measure in ULPs of",
        "`nnfuse.accuracy.softmax_floor`: log-softmax in ULPs of max(|y|, 2^-30) (float64: max(|y|, 1), as the",
        "float64 cross-entropy loss),",
        "backward passes and the cross-entropy gradient in ULPs of the sum of the magnitudes of their terms.",
        "Scalar, AVX2 and AVX-512 give identical bits (tested).",
        "",
        "| op | dtype | max ULP | bound | measure |",
        "|---|---|---|---|---|",
    ]
    worst = {}
    for r in rows:
        key = (r["op"], r["dtype"])
        if key not in worst or r["max_ulp"] > worst[key]["max_ulp"]:
            worst[key] = r
    for (op, dtype), r in worst.items():
        lines.append(f"| {op} | {dtype} | {r['max_ulp']:.3f} | {r['bound']:g} | {r['measure']} |")
    return "\n".join(lines) + "\n"


def _sigmoid(x):
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


_erfc = np.frompyfunc(math.erfc, 1, 1)


def backward_floor(name, params, x, g):
    """|grad| times the sum of the magnitudes of the derivative's terms, for
    the ops whose derivative crosses zero in the interior; None otherwise."""
    x = np.asarray(x, np.float64)
    g = np.abs(np.asarray(g, np.float64))
    with np.errstate(all="ignore"):
        if name == "silu":
            s = _sigmoid(x)
            terms = s + np.abs(x) * s * (1 - s)
        elif name == "gelu" and params.get("approximate", "none") == "none":
            phi = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
            cdf = 0.5 * _erfc(-x / math.sqrt(2)).astype(np.float64)
            terms = cdf + np.abs(x) * phi
        elif name == "gelu":
            c, k = math.sqrt(2 / math.pi), 0.044715
            u = c * (x + k * x**3)
            du = c * (1 + 3 * k * x * x)
            s = _sigmoid(2 * u)
            terms = s + np.abs(x) * 2 * du * s * (1 - s)
        elif name == "mish":
            sp = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
            t = np.tanh(sp)
            terms = np.abs(t) + np.abs(x) * (1 - t * t) * _sigmoid(x)
        elif name == "hardswish":
            terms = np.where(np.abs(x) <= 3, np.abs(x) / 3 + 0.5, 0.0)
        else:
            return None
    return np.where(np.isfinite(terms), g * terms, 0.0)


def _dtype_name(dtype):
    return "bfloat16" if np.dtype(dtype) == BFLOAT16 else np.dtype(dtype).name


def accuracy_inputs(dtype, special_points=(), points=1_000_000, seed=0):
    """The measurement's input set for one dtype (see the module docstring)."""
    dtype = np.dtype(dtype)
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan]
    grids = [np.linspace(-20, 20, points // 4)]
    for p in special_points:
        grids.append(p + np.linspace(-1e-2, 1e-2, 2001))
    if dtype in (np.dtype(np.float16), BFLOAT16):
        every = np.arange(1 << 16, dtype=np.uint16).view(dtype)
        return every
    if dtype == np.float32:
        stride = max(1, (1 << 32) // points)
        bits = np.arange(0, 1 << 32, stride, dtype=np.uint64).astype(np.uint32)
        with np.errstate(invalid="ignore"):  # signalling NaN patterns quieten in the cast
            pattern = bits.view(np.float32).astype(np.float64)
    else:
        rng = np.random.default_rng(seed)
        pattern = rng.integers(0, 2**64 - 1, points, dtype=np.uint64, endpoint=True).view(np.float64)
    values = np.concatenate([np.array(specials), pattern] + grids)
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(dtype)


def measure(names=None, dtypes=("float32", "bfloat16", "float16", "float64"), isas=None, points=1_000_000):
    """Rows of (op, params, dtype, direction, isa, max_ulp, worst_input, count)."""
    import nnfuse as nf

    isas = list(isas or nf._C.supported_isas())
    rows = []
    for activation in ACTIVATIONS:
        for params in ({},) + tuple(activation.test_params):
            if names and activation.name not in names:
                continue
            full = call_params(activation, params)
            for dtype_name in dtypes:
                dtype = BFLOAT16 if dtype_name == "bfloat16" else np.dtype(dtype_name)
                x = accuracy_inputs(dtype, activation.special_points, points)
                rng = np.random.default_rng(1)
                g = (rng.uniform(0.5, 2.0, x.size) * rng.choice([-1.0, 1.0], x.size)).astype(dtype)
                x64, g64 = x.astype(np.float64), g.astype(np.float64)
                forward_ref = getattr(ref, activation.name)(x64, **full)
                backward_ref = getattr(ref, activation.name + "_backward")(g64, x64, **full)
                floor = backward_floor(activation.name, params, x64, g64)
                for isa in isas:
                    with nf.cpu_isa(isa):
                        y = getattr(nf, activation.name)(x, **params)
                        dx = getattr(nf, activation.name + "_backward")(g, x, **params)
                    for direction, got, expected, fl in (("forward", y, forward_ref, None),
                                                         ("backward", dx, backward_ref, floor)):
                        err = ulp_error(got, expected, fl)
                        worst = int(np.argmax(err))
                        rows.append({
                            "op": activation.name, "params": params, "dtype": dtype_name,
                            "direction": direction, "isa": isa, "max_ulp": float(err[worst]),
                            "worst_input": float(x64[worst]), "points": int(x.size),
                            "measure": "floor" if fl is not None else "ulp",
                        })
    return rows


def markdown(rows):
    """The docs/accuracy.md table: one line per op/params/dtype/direction, the
    worst ISA's error and where it occurs."""
    lines = [
        "# Accuracy",
        "",
        "Maximum error in ULPs of the output dtype against the float64 reference (`nnfuse.reference`),",
        "measured by `python -m nnfuse.accuracy --markdown docs/accuracy.md` on every CPU ISA of the",
        "measuring machine. Published bounds (enforced by `tests/test_activations.py`):",
        "",
        "| dtype | forward | backward |",
        "|---|---|---|",
    ]
    for name, b in BOUNDS.items():
        lines.append(f"| {name} | {b['forward']:g} | {b['backward']:g} |")
    lines += [
        "",
        "Inputs: float32 — every 4096th bit pattern (all magnitudes, both signs), a dense grid of [-20, 20],",
        "±0.01 around each op's special points, ±0, ±inf, NaN; float16 and bfloat16 — all 65536 values;",
        "float64 — 10^6 random bit patterns plus the same grids. Backward: grad random in ±[0.5, 2].",
        "Backward rows marked *floor* (gelu, gelu tanh, silu, mish, hardswish, whose derivative crosses zero",
        "in the interior) measure the error in ULPs of |grad| × (sum of the magnitudes of the derivative's",
        "terms), because near the zero the result is a difference of larger terms and its own ULP is",
        "meaningless. 16-bit results are computed in float32 and rounded once; gelu (both forms), sigmoid,",
        "tanh, silu, mish, softplus, logsigmoid and the elu family use formulas accurate to 2^-15 relative",
        "there (enough for 11 significant bits, and fewer operations than the float32 ones), so their 16-bit",
        "errors may exceed 0.5. float64 results that are subnormal (below 2.2e-308) are formed with the",
        "reference's own roundings, which are no more accurate there; everywhere else float64 is computed",
        "independently (libm plus compensated arguments).",
        "All ISAs give identical bits (tested), so one column serves for scalar, AVX2 and AVX-512.",
        "The exp- and erf-based float32 activations are also checked on every float input of their",
        "range ([exhaustive.md](exhaustive.md)), which finds excursions that 10^6 samples can miss.",
        "",
        "| op | params | dtype | direction | max ULP | at input | measure |",
        "|---|---|---|---|---|---|---|",
    ]
    worst = {}
    for r in rows:
        key = (r["op"], tuple(sorted(r["params"].items())), r["dtype"], r["direction"])
        if key not in worst or r["max_ulp"] > worst[key]["max_ulp"]:
            worst[key] = r
    for (op, params, dtype, direction), r in worst.items():
        p = ", ".join(f"{k}={v}" for k, v in params) or "default"
        lines.append(f"| {op} | {p} | {dtype} | {direction} | {r['max_ulp']:.3f} | {r['worst_input']:.9g} | "
                     f"{r['measure']} |")
    return "\n".join(lines) + "\n"


def run(args):
    """``nnfuse accuracy``: measure, print (and save) the tables; 1 if a bound
    is missed, 2 for an unknown op name."""
    known = {activation.name for activation in ACTIVATIONS} | {"softmax"}
    unknown = [name for name in args.ops or () if name not in known]
    if unknown:
        print(f"nnfuse accuracy: unknown op(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})",
              file=sys.stderr)
        return 2
    start = time.perf_counter()
    ops = args.ops
    rows = measure(ops, args.dtypes, points=args.points)
    text = markdown(rows)
    softmax_rows_ = []
    if ops is None or "softmax" in ops:
        softmax_rows_ = measure_softmax(args.dtypes)
        text += softmax_markdown(softmax_rows_)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    print(text)
    print(f"measured in {time.perf_counter() - start:.1f} s")
    failed = [r for r in rows if r["max_ulp"] > BOUNDS[r["dtype"]][r["direction"]]]
    failed += [r for r in softmax_rows_ if not r["max_ulp"] <= r["bound"]]
    return 1 if failed else 0


def main(argv=None):
    from .cli import add_accuracy_arguments

    parser = argparse.ArgumentParser(prog="python -m nnfuse.accuracy", description=__doc__.split("\n")[0])
    add_accuracy_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
