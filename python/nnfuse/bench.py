"""Microbenchmarks of the activations against the machine's memory floor,
NumPy formulas and PyTorch CPU, measured side by side in one run.

For each op, direction, dtype, size and thread count:
- ``nnfuse``: the kernel writing into a preallocated ``out=``;
- ``floor``: the same bytes moved by the fastest available copy — a forward
  reads one array and writes one (``np.copyto``; with several threads also
  PyTorch's threaded ``Tensor.copy_`` when installed, whichever is faster), a
  backward reads two and writes one (``np.add(a, b, out=c)``, or torch.add with
  ``out=``);
- ``numpy``: the op's formula in NumPy (float32 temporaries), where NumPy can
  express it;
- ``torch``: ``torch.nn.functional`` / ATen at the same thread count, writing
  into a preallocated output through the op's ATen ``.out`` / ``.grad_input``
  overload where one exists (else torch allocates; the row says so).

Times are medians after warm-up. GB/s counts the bytes the op must move
(inputs read once, output written once). ``floor_ratio`` = floor time / nnfuse
time (1.0 means running at the copy's speed).

A speed ratio means little without the error it buys, so each row with a
PyTorch call also carries the maximum error of both results against the
float64 reference (``nnfuse_max_ulp``, ``torch_max_ulp``), on the first
``ACCURACY_SAMPLE`` elements of the same inputs, in ULPs of the dtype (the
backward of ops whose derivative crosses zero takes the accuracy table's
floor measure, ``nnfuse.accuracy.backward_floor``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from ._array import BFLOAT16
from ._optable import ACTIVATIONS

try:
    import torch
except ImportError:  # PyTorch is an optional peer
    torch = None


@contextlib.contextmanager
def thread_counts_restored():
    """Benchmarks change nnfuse's and PyTorch's thread counts; this puts both back."""
    import nnfuse as nf

    previous = nf.get_num_threads()
    previous_torch = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        nf.set_num_threads(previous)
        if torch is not None:
            torch.set_num_threads(previous_torch)


def write_outputs(rows, text, json_path=None, markdown_path=None, machine_extra=None):
    """Prints a benchmark's table and writes it as JSON (with machine info, plus
    `machine_extra` such as the GPU) and markdown."""
    print(text)
    if json_path:
        save_json(rows, json_path, machine_extra)
    if markdown_path:
        with open(markdown_path, "w") as f:
            f.write(text)


def cuda_median_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    """Median device time of fn() in milliseconds: CUDA events on PyTorch's
    current stream around the call, after `warmup` calls.

    Before each timed call the stream is held busy (``torch.cuda._sleep``) for
    longer than the host needs to queue the call, so the start event, the
    call's kernels and the stop event run back to back: the time is the GPU's,
    without the Python and launch cost that an idle GPU would otherwise wait
    for (that cost is what `cuda_eager_ms` adds). A call that synchronises with
    the host inside (a device-to-host read) still counts what follows it."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    host_seconds = 0.0
    for _ in range(3):
        start = time.perf_counter()
        fn()
        host_seconds = max(host_seconds, time.perf_counter() - start)
        torch.cuda.synchronize()
    # Twice the slowest queueing time at up to 2.5 GHz, plus 0.1 ms.
    cycles = int((2 * host_seconds + 1e-4) * 2.5e9)
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(cycles)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return float(np.median(times))


def cuda_eager_ms(fn: Callable[[], object], calls: int = 50) -> float:
    """Wall time per call of `calls` back-to-back calls of fn() (then one
    synchronisation), in milliseconds: what an eager training loop sees, the
    larger of the host's cost per call and the GPU's time."""
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3 / calls


# Warm-up before timing, by time rather than by count: on the shared 2-vCPU
# machines we measure on, the first calls after another library's run (or an
# idle moment) were 2-7x slower for several calls (2^20 float32 hardtanh on two
# threads: 400, 200, 150, 120 us, then a steady 65 us), which a two-call
# warm-up let into the median. Every contender gets the same warm-up.
WARMUP_SECONDS = 0.02


def _sample_times(fn: Callable[[], object], min_time: float, max_repeats: int = 50, warmup: int = 2,
                  min_calls: int = 5) -> List[float]:
    """Times of back-to-back calls of fn after a warm-up: at least min_calls,
    more until min_time seconds or max_repeats calls."""
    start = time.perf_counter()
    calls = 0
    while calls < warmup or time.perf_counter() - start < WARMUP_SECONDS:
        fn()
        calls += 1
    times = []
    total = 0.0
    while len(times) < min_calls or (total < min_time and len(times) < max_repeats):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        total += elapsed
    return times


def _median_time(fn: Callable[[], object], min_time: float, max_repeats: int = 50, warmup: int = 2) -> float:
    return float(np.median(_sample_times(fn, min_time, max_repeats, warmup)))


# Contenders are timed in rounds: each round times every contender back to
# back (a block of calls each), the next round in the opposite order, and a
# contender's median is taken over the calls of all its rounds. A slow spell
# of the shared machine (bandwidth taken by a neighbour for a few seconds)
# then lands in every contender's samples instead of in one contender's.
ROUNDS = 3


def _medians(calls: Dict[str, Callable[[], object]], min_time: float) -> Dict[str, float]:
    """Median time of each call over ROUNDS rounds (see above), each call
    warmed up at the start of its block. Every row times its own floor next
    to its contenders: the memory bandwidth of the shared machines we measure
    on drifts by tens of percent over minutes (2^26 floor ratios of two full
    runs differed by 0.5-2.5x when one floor per block served every op).
    Interleaving the contenders call by call was tried and dropped: between
    the calls of a round the other cores idle, and on these virtual machines
    the next two-thread call then ran up to 2x slower (softmax 4096x1024:
    2.2 ms after a 2 ms pause against 1.2 ms back to back). NumPy formulas,
    5-20x slower than the kernels, get at most 10 repeats in all."""
    samples: Dict[str, List[float]] = {name: [] for name in calls}
    order = list(calls)
    for round_index in range(ROUNDS):
        for name in (order if round_index % 2 == 0 else order[::-1]):
            max_repeats = 10 if name == "numpy" else 50
            samples[name] += _sample_times(calls[name], min_time / ROUNDS, max_repeats=max_repeats // ROUNDS,
                                           min_calls=2)
    return {name: float(np.median(times)) for name, times in samples.items()}

# ---- NumPy formulas (float32 in, float32 out, temporaries allowed) ------------

def _np_softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


_C_GELU = np.float32(math.sqrt(2 / math.pi))
NUMPY_FORWARD: Dict[str, Callable] = {
    "sigmoid": _np_sigmoid,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
    "leaky_relu": lambda x: np.where(x > 0, x, x * np.float32(0.01)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: np.float32(1.0507009873554805) * np.where(x > 0, x, np.float32(1.6732632423543772) * np.expm1(x)),
    "celu": lambda x: np.maximum(x, 0) + np.minimum(0, np.expm1(x)),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(_C_GELU * (x + np.float32(0.044715) * x * x * x))),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "mish": lambda x: x * np.tanh(_np_softplus(x)),
    "relu6": lambda x: np.clip(x, 0, 6),
    "hardtanh": lambda x: np.clip(x, -1, 1),
    "hardsigmoid": lambda x: np.clip(x / 6 + 0.5, 0, 1),
    "hardswish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "softplus": _np_softplus,
    "softsign": lambda x: x / (1 + np.abs(x)),
    "logsigmoid": lambda x: -_np_softplus(-x),
}
NUMPY_BACKWARD: Dict[str, Callable] = {
    "sigmoid": lambda g, x: g * (s := _np_sigmoid(x)) * (1 - s),
    "tanh": lambda g, x: g * (1 - np.tanh(x) ** 2),
    "relu": lambda g, x: np.where(x > 0, g, 0),
    "leaky_relu": lambda g, x: np.where(x > 0, g, g * np.float32(0.01)),
    "elu": lambda g, x: np.where(x > 0, g, g * np.exp(x)),
    "silu": lambda g, x: g * (s := _np_sigmoid(x)) * (1 + x * (1 - s)),
    "relu6": lambda g, x: np.where((x > 0) & (x < 6), g, 0),
    "hardtanh": lambda g, x: np.where((x > -1) & (x < 1), g, 0),
    "softplus": lambda g, x: g * _np_sigmoid(x),
    "softsign": lambda g, x: g / (1 + np.abs(x)) ** 2,
}


# ---- PyTorch peers --------------------------------------------------------------

def _aten(name: str, overload: str):
    if torch is None:
        return None
    packet = getattr(torch.ops.aten, name, None)
    return getattr(packet, overload, None) if packet is not None else None


def torch_forward(name: str, params: dict):
    """(callable(x, out), writes_into_out) for torch, or None."""
    if torch is None:
        return None
    F = torch.nn.functional
    approximate = params.get("approximate", "none")
    table = {
        "sigmoid": ("sigmoid", "out", lambda x, o, f: f(x, out=o)),
        "tanh": ("tanh", "out", lambda x, o, f: f(x, out=o)),
        "relu": ("clamp_min", "out", lambda x, o, f: f(x, 0, out=o)),
        "leaky_relu": ("leaky_relu", "out", lambda x, o, f: f(x, 0.01, out=o)),
        "elu": ("elu", "out", lambda x, o, f: f(x, 1.0, 1.0, 1.0, out=o)),
        "selu": (None, None, lambda x, o, f: F.selu(x)),
        "celu": (None, None, lambda x, o, f: F.celu(x)),
        "gelu": ("gelu", "out", lambda x, o, f: f(x, approximate=approximate, out=o)),
        "silu": ("silu", "out", lambda x, o, f: f(x, out=o)),
        "mish": ("mish", "out", lambda x, o, f: f(x, out=o)),
        "relu6": ("hardtanh", "out", lambda x, o, f: f(x, 0.0, 6.0, out=o)),
        "hardtanh": ("hardtanh", "out", lambda x, o, f: f(x, -1.0, 1.0, out=o)),
        "hardsigmoid": ("hardsigmoid", "out", lambda x, o, f: f(x, out=o)),
        "hardswish": ("hardswish", "out", lambda x, o, f: f(x, out=o)),
        "softplus": ("softplus", "out", lambda x, o, f: f(x, 1.0, 20.0, out=o)),
        "softsign": (None, None, lambda x, o, f: F.softsign(x)),
        "logsigmoid": ("log_sigmoid", "out", lambda x, o, f: f(x, out=o)),
    }
    if name not in table:
        return None
    op_name, overload, call = table[name]
    fn = _aten(op_name, overload) if op_name else None
    return (lambda x, o: call(x, o, fn)), fn is not None


def torch_backward(name: str, params: dict):
    """(callable(g, x, y, out), writes_into_out) for torch, or None."""
    if torch is None:
        return None
    approximate = params.get("approximate", "none")
    table = {
        "sigmoid": ("sigmoid_backward", lambda g, x, y, o, f: f(g, y, grad_input=o)),
        "tanh": ("tanh_backward", lambda g, x, y, o, f: f(g, y, grad_input=o)),
        "relu": ("threshold_backward", lambda g, x, y, o, f: f(g, x, 0.0, grad_input=o)),
        "leaky_relu": ("leaky_relu_backward", lambda g, x, y, o, f: f(g, x, 0.01, False, grad_input=o)),
        "elu": ("elu_backward", lambda g, x, y, o, f: f(g, 1.0, 1.0, 1.0, False, x, grad_input=o)),
        "selu": ("elu_backward", lambda g, x, y, o, f: f(g, 1.6732632423543772, 1.0507009873554805, 1.0,
                                                         False, x, grad_input=o)),
        "celu": ("elu_backward", lambda g, x, y, o, f: f(g, 1.0, 1.0, 1.0, False, x, grad_input=o)),
        "gelu": ("gelu_backward", lambda g, x, y, o, f: f(g, x, approximate=approximate, grad_input=o)),
        "silu": ("silu_backward", lambda g, x, y, o, f: f(g, x, grad_input=o)),
        "mish": ("mish_backward", lambda g, x, y, o, f: f(g, x)),
        "relu6": ("hardtanh_backward", lambda g, x, y, o, f: f(g, x, 0.0, 6.0, grad_input=o)),
        "hardtanh": ("hardtanh_backward", lambda g, x, y, o, f: f(g, x, -1.0, 1.0, grad_input=o)),
        "hardsigmoid": ("hardsigmoid_backward", lambda g, x, y, o, f: f(g, x, grad_input=o)),
        "hardswish": ("hardswish_backward", lambda g, x, y, o, f: f(g, x, out=o)),
        "softplus": ("softplus_backward", lambda g, x, y, o, f: f(g, x, 1.0, 20.0, grad_input=o)),
        "logsigmoid": ("log_sigmoid_backward", None),
        "softsign": (None, None),
    }
    if name not in table or table[name][1] is None:
        return None
    op_name, call = table[name]
    packet = getattr(torch.ops.aten, op_name, None)
    if packet is None:
        return None
    fn = getattr(packet, "grad_input", None) or getattr(packet, "out", None)
    if fn is None:
        fn = packet.default
        return (lambda g, x, y, o: call(g, x, y, None, fn)), False
    return (lambda g, x, y, o: call(g, x, y, o, fn)), True


# ---- the run ------------------------------------------------------------------------

def _array(n, dtype, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n, dtype=np.float32) * 3).astype(dtype)


def _threads_floor_copy(src, dst, threads):
    """Fastest copy of src into dst at this thread count: np.copyto, or torch's
    threaded copy_ when installed."""
    candidates = [lambda: np.copyto(dst, src)]
    if torch is not None and threads > 1 and src.dtype != BFLOAT16:
        ts, td = torch.from_numpy(src), torch.from_numpy(dst)
        candidates.append(lambda: td.copy_(ts))
    return candidates


def _floor_add(a, b, c, threads):
    candidates = [lambda: np.add(a, b, out=c)] if a.dtype != BFLOAT16 else []
    if torch is not None and a.dtype != BFLOAT16:
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        candidates.append(lambda: torch.add(ta, tb, out=tc))
    elif a.dtype == BFLOAT16:
        # NumPy's bfloat16 add is not a memory-speed loop; the same bytes as
        # three uint16 streams through integer add is.
        ua, ub, uc = a.view(np.uint16), b.view(np.uint16), c.view(np.uint16)
        candidates.append(lambda: np.add(ua, ub, out=uc))
    return candidates


def run(ops: Optional[List[str]] = None, sizes=(1 << 16, 1 << 20, 1 << 26), dtypes=("float32",),
        thread_counts=None, directions=("forward", "backward"), min_time=0.2, peers=True,
        progress: Optional[Callable[[str], None]] = None) -> List[dict]:
    import nnfuse as nf

    thread_counts = list(thread_counts or sorted({1, nf._C.default_num_threads()}))
    names = ops or [a.name for a in ACTIVATIONS] + ["gelu_tanh"]
    rows = []
    errors = {}
    with thread_counts_restored():
        for dtype_name in dtypes:
            dtype = BFLOAT16 if dtype_name == "bfloat16" else np.dtype(dtype_name)
            for n in sizes:
                x, g = _array(n, dtype, 0), _array(n, dtype, 1)
                out, scratch = np.empty_like(x), np.empty_like(x)
                for threads in thread_counts:
                    nf.set_num_threads(threads)
                    if torch is not None:
                        torch.set_num_threads(threads)
                    floor_fwd = _threads_floor_copy(x, scratch, threads)
                    floor_bwd = _floor_add(x, g, scratch, threads)
                    for name in names:
                        params = {"approximate": "tanh"} if name == "gelu_tanh" else {}
                        base = "gelu" if name == "gelu_tanh" else name
                        fwd = getattr(nf, base)
                        bwd = getattr(nf, base + "_backward")
                        y = fwd(x, **params)
                        for direction in _directions(name, directions):
                            if progress:
                                progress(f"{name} {direction} {dtype_name} n=2^{int(math.log2(n))} threads={threads}")
                            if direction == "forward":
                                calls = {"nnfuse": lambda: fwd(x, out=out, **params)}
                                nbytes, floors = 2 * x.nbytes, floor_fwd
                            elif direction == "backward_from_y":
                                calls = {"nnfuse": lambda: bwd(g, y=y, out=out, **params)}
                                nbytes, floors = 3 * x.nbytes, floor_bwd
                            else:
                                calls = {"nnfuse": lambda: bwd(g, x, out=out, **params)}
                                nbytes, floors = 3 * x.nbytes, floor_bwd
                            for i, floor_call in enumerate(floors):
                                calls[f"floor{i}"] = floor_call
                            peer_calls, torch_out = ({}, None) if not peers else \
                                _peer_calls(name, params, direction, x, g, y, scratch)
                            calls.update(peer_calls)
                            medians = _medians(calls, min_time)
                            t = medians["nnfuse"]
                            floor = min(medians[f"floor{i}"] for i in range(len(floors)))
                            row = {"op": name, "direction": direction, "dtype": dtype_name, "n": n,
                                   "threads": threads, "time_s": t, "gbps": nbytes / t / 1e9,
                                   "floor_s": floor, "floor_ratio": floor / t}
                            if "numpy" in medians:
                                row["numpy_s"] = medians["numpy"]
                            if "torch" in medians:
                                row["torch_s"] = medians["torch"]
                                row["torch_out"] = torch_out
                                key = (name, direction, dtype_name, n)
                                if key not in errors:  # elementwise: the same bits at every thread count
                                    errors[key] = peer_max_ulp(name, params, direction, x, g)
                                row["nnfuse_max_ulp"], row["torch_max_ulp"] = errors[key]
                            rows.append(row)
    return rows


# PyTorch's sigmoid and tanh backward kernels take the forward output y: the
# like-for-like comparison is nnfuse's backward from y, reported as its own
# direction "backward_from_y"; the from-x row then has no PyTorch ratio.
TORCH_BACKWARD_FROM_Y = ("sigmoid", "tanh")


def _directions(name, directions):
    out = list(directions)
    if "backward" in directions and name in TORCH_BACKWARD_FROM_Y:
        out.insert(out.index("backward") + 1, "backward_from_y")
    return out


def count_rows(ops, sizes, dtypes, thread_counts, directions=("forward", "backward")):
    """How many rows (and progress calls) run() makes for these arguments."""
    per_op = sum(len(_directions(name, directions)) for name in ops)
    return per_op * len(sizes) * len(dtypes) * len(thread_counts)


def _peer_calls(name, params, direction, x, g, y, scratch):
    """The NumPy formula ("numpy") and PyTorch ("torch") calls that compute
    this op and direction, and whether PyTorch writes into a preallocated
    output (None without a PyTorch call)."""
    calls = {}
    torch_out = None
    formulas = {"forward": NUMPY_FORWARD, "backward": NUMPY_BACKWARD}.get(direction, {})
    # PyTorch's sigmoid and tanh kernels take y: compared in the backward_from_y row.
    peers_apply = not (direction == "backward" and name in TORCH_BACKWARD_FROM_Y)
    if x.dtype == np.float32 and name in formulas:
        f = formulas[name]

        def numpy_call():
            with np.errstate(all="ignore"):
                return f(x) if direction == "forward" else f(g, x)
        calls["numpy"] = numpy_call
    if torch is not None and peers_apply:
        base = "gelu" if name == "gelu_tanh" else name
        if x.dtype == BFLOAT16:
            tx, tg, ty, to = (torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) for a in (x, g, y, scratch))
        else:
            tx, tg, ty, to = (torch.from_numpy(a) for a in (x, g, y, scratch))
        peer = torch_forward(base, params) if direction == "forward" else torch_backward(base, params)
        if peer:
            fn, torch_out = peer
            calls["torch"] = (lambda: fn(tx, to)) if direction == "forward" else (lambda: fn(tg, tx, ty, to))
    return calls, torch_out


# Elements of the benchmark's inputs on which the peers' errors are measured:
# enough for the inputs' spread (x ~ 3 N(0, 1): |x| up to about 15), small
# enough that the float64 reference costs little beside the timings.
ACCURACY_SAMPLE = 1 << 16


def peer_max_ulp(name, params, direction, x, g):
    """(nnfuse's, PyTorch's) maximum error against the float64 reference on
    the first ACCURACY_SAMPLE elements, in ULPs of x's dtype. The backward
    from y is held to the exact derivative formula in the stored y
    (``reference.backward_from_y``), as the tests hold it: neither can know x
    more precisely than y does."""
    import nnfuse as nf

    from . import reference as ref
    from ._optable import call_params
    from ._ulp import ulp_error
    from .accuracy import backward_floor

    base = "gelu" if name == "gelu_tanh" else name
    xs, gs = np.ascontiguousarray(x[:ACCURACY_SAMPLE]), np.ascontiguousarray(g[:ACCURACY_SAMPLE])
    ys = getattr(nf, base)(xs, **params)
    scratch = np.empty_like(xs)
    calls, torch_out = _peer_calls(name, params, direction, xs, gs, ys, scratch)
    result = calls["torch"]()
    if torch_out:
        result = scratch
    elif xs.dtype == BFLOAT16:
        result = result.view(torch.int16).numpy().view(BFLOAT16)
    else:
        result = result.numpy()
    full = call_params(next(a for a in ACTIVATIONS if a.name == base), params)
    x64, g64 = xs.astype(np.float64), gs.astype(np.float64)
    if direction == "forward":
        got = ys
        expected, floor = getattr(ref, base)(x64, **full), None
    else:
        bwd = getattr(nf, base + "_backward")
        if direction == "backward_from_y":
            got = bwd(gs, y=ys, **params)
            expected, floor = ref.backward_from_y(base, g64, ys.astype(np.float64), **full), None
        else:
            got = bwd(gs, xs, **params)
            expected = getattr(ref, base + "_backward")(g64, x64, **full)
            floor = backward_floor(base, params, x64, g64)
    return float(ulp_error(got, expected, floor).max()), float(ulp_error(result, expected, floor).max())


_DIRECTION_LABELS = {"forward": "fwd", "backward": "bwd", "backward_from_y": "bwd (y)"}


def add_ratios(rows):
    """speedup_vs_numpy / speedup_vs_torch = peer time / nnfuse time."""
    for r in rows:
        if "numpy_s" in r:
            r["speedup_vs_numpy"] = r["numpy_s"] / r["time_s"]
        if "torch_s" in r:
            r["speedup_vs_torch"] = r["torch_s"] / r["time_s"]
    return rows


def markdown_table(title, columns, cells, note=None):
    """A titled Markdown table: `columns` the header names, `cells` one list of
    formatted values per row, `note` an optional paragraph above the table."""
    lines = [f"## {title}", ""] + ([note, ""] if note else [])
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def ratio_cell(r, key):
    """r[key] as a ratio cell ("1.23x"), or "—" where the row has none."""
    return f"{r[key]:.2f}x" if key in r else "—"


def markdown(rows, title="Activation benchmarks"):
    def cells(r):
        torch_note = " (alloc)" if "speedup_vs_torch" in r and not r.get("torch_out", True) else ""
        return [r["op"], _DIRECTION_LABELS[r["direction"]], r["dtype"], f"2^{int(math.log2(r['n']))}",
                str(r["threads"]), f"{r['time_s'] * 1e6:.0f} us", f"{r['gbps']:.1f}", f"{r['floor_ratio']:.2f}",
                ratio_cell(r, "speedup_vs_numpy"), ratio_cell(r, "speedup_vs_torch") + torch_note,
                ulp_cell(r)]
    return markdown_table(title, ["op", "dir", "dtype", "n", "threads", "time", "GB/s", "floor ratio", "vs NumPy",
                                   "vs PyTorch", "max ULP nnfuse / PyTorch"], [cells(r) for r in rows])


def ulp_cell(r):
    """"1.2 / 3.4e+06" from the row's two maximum errors, or "—" without a peer."""
    if "torch_max_ulp" not in r:
        return "—"
    return " / ".join(f"{v:.1f}" if v < 1e4 else f"{v:.1e}" for v in (r["nnfuse_max_ulp"], r["torch_max_ulp"]))


def machine_info():
    import platform

    import nnfuse as nf

    info = {"platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__ if torch is not None else None, "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        info["cpu"] = None
    info["nnfuse"] = nf.build_info()
    return info


def save_json(rows, path, machine_extra=None):
    with open(path, "w") as f:
        json.dump({"machine": {**machine_info(), **(machine_extra or {})}, "rows": rows}, f, indent=1)



# ---- optimizers ---------------------------------------------------------------------

def run_optim(layouts=((100, 1 << 20), (100, 1 << 24), (1000, 1000 * 1000)), thread_counts=None, min_time=0.3,
              clips=("global_clipnorm", "clipvalue"), progress: Optional[Callable[[str], None]] = None):
    """float32 Adam over `count` arrays totalling `total` parameters (uneven sizes), per clipping mode:

    - ``nnfuse``: ``nnfuse.optim.adam_step`` (global_clipnorm: gradient pass + update, floor 32 B/param;
      clipvalue with nonfinite="propagate": one pass, floor 28 B/param; clipvalue with the default
      "skip": the read-only pre-scan plus the update, reported as ``skip_prescan_s``);
    - ``floor``: ``np.add(a, b, out=c)`` (two reads, one write: 12 B per float32 element) over
      28/12 (or 32/12) times the parameter count: the bytes Adam must move, at the machine's own
      streaming speed in the same run; floor_ratio = floor time / nnfuse time;
    - ``torch``: ``torch.optim.Adam(fused=True)`` preceded by ``clip_grad_norm_`` / ``clip_grad_value_``;
    - ``torch_tensors``: ``nnfuse.optim.Adam`` built over torch CPU tensors of the same memory, stepped
      by ``step()`` from the parameters' ``.grad``, as a PyTorch training loop uses it (the class views
      its parameters and state as NumPy arrays once; each step views the gradients).
    """
    import nnfuse as nf

    thread_counts = list(thread_counts or sorted({1, nf._C.default_num_threads()}))
    rows = []
    with thread_counts_restored():
        for count, total in layouts:
            rng = np.random.default_rng(0)
            weights = rng.uniform(0.5, 1.5, count)
            sizes = np.maximum(1, (weights / weights.sum() * total).astype(np.int64))
            params = [rng.standard_normal(int(n), dtype=np.float32) for n in sizes]
            grads = [rng.standard_normal(int(n), dtype=np.float32) for n in sizes]
            m = [np.zeros_like(p) for p in params]
            v = [np.zeros_like(p) for p in params]
            n_params = int(sizes.sum())
            for threads in thread_counts:
                nf.set_num_threads(threads)
                if torch is not None:
                    torch.set_num_threads(threads)
                floors = {}
                for nbytes in (28, 32):
                    elems = n_params * nbytes // 12
                    a, b, c = (np.ones(elems, np.float32) for _ in range(3))
                    floors[nbytes] = _median_time(lambda: np.add(a, b, out=c), min_time)
                    del a, b, c
                for clip in clips:
                    if progress:
                        progress(f"adam {clip} {count} arrays, {n_params} params, threads={threads}")
                    opts = {"global_clipnorm": 1e9} if clip == "global_clipnorm" else {"clipvalue": 1e9}
                    policy = "skip" if clip == "global_clipnorm" else "propagate"
                    step = iter(range(1, 1 << 30))
                    t = _median_time(lambda: nf.optim.adam_step(params, grads, m, v, step=next(step), lr=1e-9,
                                                                nonfinite=policy, **opts), min_time)
                    nbytes = 32 if clip == "global_clipnorm" else 28
                    row = {"optimizer": "adam", "clip": clip, "arrays": count, "params": n_params, "threads": threads,
                           "time_s": t, "ns_per_param": t / n_params * 1e9, "gbps": nbytes * n_params / t / 1e9,
                           "floor_bytes": nbytes, "floor_s": floors[nbytes], "floor_ratio": floors[nbytes] / t}
                    if clip == "clipvalue":
                        row["skip_prescan_s"] = _median_time(
                            lambda: nf.optim.adam_step(params, grads, m, v, step=next(step), lr=1e-9, **opts),
                            min_time)
                    if torch is not None:
                        tp = [torch.from_numpy(p) for p in params]
                        for p, g in zip(tp, grads):
                            p.grad = torch.from_numpy(g)
                        topt = torch.optim.Adam(tp, lr=1e-9, fused=True)

                        def torch_step():
                            if clip == "global_clipnorm":
                                torch.nn.utils.clip_grad_norm_(tp, 1e9)
                            else:
                                torch.nn.utils.clip_grad_value_(tp, 1e9)
                            topt.step()

                        row["torch_s"] = _median_time(torch_step, min_time)
                        row["speedup_vs_torch"] = row["torch_s"] / t
                        dropin = nf.optim.Adam(tp, lr=1e-9, nonfinite=policy, **opts)
                        row["torch_tensors_s"] = _median_time(dropin.step, min_time)  # reads each p.grad
                        del dropin
                        row["torch_tensors_vs_torch"] = row["torch_s"] / row["torch_tensors_s"]
                        for p in tp:
                            p.grad = None
                    rows.append(row)
    return rows


def markdown_optim(rows, title="Optimizer benchmarks (float32 Adam)"):
    def cells(r):
        skip = f"{(r['skip_prescan_s'] / r['time_s'] - 1) * 100:+.0f}%" if "skip_prescan_s" in r else "—"
        return [r["clip"], str(r["arrays"]), str(r["params"]), str(r["threads"]), f"{r['ns_per_param']:.2f}",
                f"{r['gbps']:.1f}", str(r["floor_bytes"]), f"{r['floor_ratio']:.2f}", ratio_cell(r, "speedup_vs_torch"),
                ratio_cell(r, "torch_tensors_vs_torch"), skip]
    return markdown_table(title, ["clip", "arrays", "params", "threads", "ns/param", "GB/s", "floor B/param",
                                   "floor ratio", "vs torch fused", "on torch tensors vs torch fused",
                                   "skip pre-scan"], [cells(r) for r in rows])


# ---- softmax family ---------------------------------------------------------------

SOFTMAX_SHAPES = ((4096, 1024), (256, 32768), (65536, 128), (1024, 131072))


def _softmax_peers(x, g, y, ly, labels, out):
    """PyTorch callables for each softmax-family op (None without torch).
    Forward and backward write into preallocated outputs through ATen's .out
    overloads; cross-entropy is F.cross_entropy forward + backward."""
    if torch is None:
        return {}
    tx, tg, ty, tly, to = (torch.from_numpy(a) for a in (x, g, y, ly, out))
    aten = torch.ops.aten
    tlabels = torch.from_numpy(labels)

    def cross_entropy():
        t = tx.detach().requires_grad_()
        torch.nn.functional.cross_entropy(t, tlabels).backward()

    return {
        "softmax": lambda: aten._softmax.out(tx, -1, False, out=to),
        "log_softmax": lambda: aten._log_softmax.out(tx, -1, False, out=to),
        "softmax_backward": lambda: aten._softmax_backward_data.out(tg, ty, -1, tx.dtype, grad_input=to),
        "log_softmax_backward": lambda: aten._log_softmax_backward_data.out(tg, tly, -1, tx.dtype, out=to),
        "softmax_cross_entropy": cross_entropy,
        "softmax_cross_entropy(out=)": cross_entropy,
    }


def run_softmax(shapes=SOFTMAX_SHAPES, thread_counts=None, min_time=0.2, peers=True,
                progress: Optional[Callable[[str], None]] = None) -> List[dict]:
    """float32 softmax family at each shape and thread count: nnfuse time, the
    copy floor (forward and cross-entropy: np.copyto / torch copy_ of the same
    bytes; backward: np.add / torch.add, two reads and one write) and PyTorch."""
    import nnfuse as nf

    thread_counts = list(thread_counts or sorted({1, nf._C.default_num_threads()}))
    rows = []
    with thread_counts_restored():
        for shape in shapes:
            rng = np.random.default_rng(0)
            x = rng.standard_normal(shape, dtype=np.float32) * 3
            g = rng.standard_normal(shape, dtype=np.float32)
            labels = rng.integers(0, shape[-1], shape[0])
            y, ly = nf.softmax(x), nf.log_softmax(x)
            out = np.empty_like(x)
            ops = {
                "softmax": (lambda: nf.softmax(x, out=out), "copy"),
                "log_softmax": (lambda: nf.log_softmax(x, out=out), "copy"),
                "softmax_backward": (lambda: nf.softmax_backward(g, y, out=out), "add"),
                "log_softmax_backward": (lambda: nf.log_softmax_backward(g, ly, out=out), "add"),
                # reads the logits, writes the gradient: the bytes of a copy;
                # a fresh gradient each call (as PyTorch's), then into out=
                "softmax_cross_entropy": (lambda: nf.softmax_cross_entropy(x, labels), "copy"),
                "softmax_cross_entropy(out=)": (lambda: nf.softmax_cross_entropy(x, labels, out=out), "copy"),
            }
            peer_fns = _softmax_peers(x, g, y, ly, labels, out) if peers else {}
            for threads in thread_counts:
                nf.set_num_threads(threads)
                if torch is not None:
                    torch.set_num_threads(threads)
                floor_calls = {"copy": _threads_floor_copy(x, out, threads), "add": _floor_add(x, g, out, threads)}
                for name, (fn, floor_kind) in ops.items():
                    if progress:
                        progress(f"{name} {shape} threads={threads}")
                    calls = {"nnfuse": fn}
                    for i, floor_call in enumerate(floor_calls[floor_kind]):
                        calls[f"floor{i}"] = floor_call
                    if name in peer_fns:
                        calls["torch"] = peer_fns[name]
                    medians = _medians(calls, min_time)
                    t = medians["nnfuse"]
                    floor = min(medians[f"floor{i}"] for i in range(len(floor_calls[floor_kind])))
                    nbytes = (2 if floor_kind == "copy" else 3) * x.nbytes
                    row = {"op": name, "shape": list(shape), "threads": threads, "time_s": t,
                           "gbps": nbytes / t / 1e9, "floor_s": floor, "floor_ratio": floor / t}
                    if "torch" in medians:
                        row["torch_s"] = medians["torch"]
                        row["speedup_vs_torch"] = row["torch_s"] / t
                    rows.append(row)
    return rows


def softmax_markdown(rows, title="Softmax benchmarks (float32)"):
    def cells(r):
        return [r["op"], f"{r['shape'][0]}x{r['shape'][1]}", str(r["threads"]), f"{r['time_s'] * 1e3:.2f} ms",
                f"{r['gbps']:.1f}", f"{r['floor_ratio']:.2f}", ratio_cell(r, "speedup_vs_torch")]
    return markdown_table(title, ["op", "shape", "threads", "time", "GB/s", "floor ratio", "vs PyTorch"],
                           [cells(r) for r in rows])
