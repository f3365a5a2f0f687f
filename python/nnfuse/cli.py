"""The command line: ``nnfuse info | check | bench | accuracy``.

Bad arguments print a usage message and exit with status 2 (argparse), never a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time

import numpy as np

from ._array import SUPPORTED_DTYPES


def _peer_versions():
    versions = {"numpy": np.__version__}
    for name in ("torch", "cupy", "jax"):
        try:
            module = importlib.import_module(name)
            versions[name] = getattr(module, "__version__", "installed")
        except Exception:  # a broken optional install is reported as absent
            versions[name] = None
    return versions


def cmd_info(args) -> int:
    import nnfuse as nf

    info = nf.build_info()
    print(f"nnfuse {info['version']}  (compiled with {info['compiler']})")
    print(f"CPU ISAs compiled:  {', '.join(info['compiled_cpu_isas'])}")
    print(f"CPU ISAs supported: {', '.join(info['supported_cpu_isas'])}")
    print(f"CPU ISA in use:     {info['cpu_isa']}")
    print(f"threads:            {info['num_threads']}")
    if info["cuda_compiled"]:
        print(f"CUDA:               compiled for {', '.join(info['cuda_architectures'])}; "
              f"{info['cuda_devices']} GPU(s) visible")
    else:
        print("CUDA:               not compiled (no CUDA compiler at build time)")
    print("peers:              " + ", ".join(f"{k} {v}" if v else f"{k} (not installed)"
                                           for k, v in _peer_versions().items()))
    return 0


def cmd_check(args) -> int:
    """Every op on every ISA against the reference, at the published bounds."""
    import nnfuse as nf
    from . import reference as ref
    from ._array import BFLOAT16
    from ._optable import ACTIVATIONS, call_params
    from ._ulp import ulp_error
    from .accuracy import BOUNDS, accuracy_inputs, backward_floor

    start = time.perf_counter()
    isas = list(nf._C.supported_isas())
    dtypes = [np.dtype(np.float32), BFLOAT16, np.dtype(np.float16), np.dtype(np.float64)]
    failures = 0
    header = f"{'op':<22} {'dtype':<9} " + " ".join(f"{isa:>16}" for isa in isas) + "  result"
    print(header)
    print("-" * len(header))
    for activation in ACTIVATIONS:
        for params in ({},) + tuple(activation.test_params):
            full = call_params(activation, params)
            label = activation.name + ("(" + ",".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "")
            for dtype in dtypes:
                dname = "bfloat16" if dtype == BFLOAT16 else dtype.name
                x = accuracy_inputs(dtype, activation.special_points, points=args.points)
                rng = np.random.default_rng(0)
                g = rng.uniform(-2, 2, x.size).astype(dtype)
                x64, g64 = x.astype(np.float64), g.astype(np.float64)
                with np.errstate(all="ignore"):
                    fwd_ref = getattr(ref, activation.name)(x64, **full)
                    bwd_ref = getattr(ref, activation.name + "_backward")(g64, x64, **full)
                floor = backward_floor(activation.name, params, x64, g64)
                cells, ok = [], True
                for isa in isas:
                    with nf.cpu_isa(isa), np.errstate(all="ignore"):
                        fe = float(np.max(ulp_error(getattr(nf, activation.name)(x, **params), fwd_ref)))
                        be = float(np.max(ulp_error(getattr(nf, activation.name + "_backward")(g, x, **params),
                                                    bwd_ref, floor)))
                    ok &= fe <= BOUNDS[dname]["forward"] and be <= BOUNDS[dname]["backward"]
                    cells.append(f"{_ulp_text(fe)} / {_ulp_text(be)}")
                failures += not ok
                print(f"{label:<22} {dname:<9} " + " ".join(f"{c:>16}" for c in cells) + ("  ok" if ok else "  FAIL"))
    extra = _extra_checks()
    for line, ok in extra:
        print(line)
        failures += not ok
    elapsed = time.perf_counter() - start
    print("\ncells: worst ULP error forward / backward against nnfuse.reference; bounds: "
          + "; ".join(f"{k} {v['forward']:g}/{v['backward']:g}" for k, v in BOUNDS.items()))
    print(f"{'all checks passed' if failures == 0 else f'{failures} checks FAILED'} in {elapsed:.1f} s")
    return 0 if failures == 0 else 1


def _ulp_text(value):
    return f"{value:6.2f}" if value < 1000 else f"{value:6.0e}"


def _extra_checks():
    """The softmax family and the optimizers, on every ISA: (line, ok) pairs."""
    return _softmax_checks() + _optim_checks()


def _softmax_checks():
    from .accuracy import measure_softmax

    lines = []
    for r in measure_softmax(cols=257):
        ok = r["max_ulp"] <= r["bound"]
        lines.append((f"{r['op']:<22} {r['dtype']:<9} {r['isa']:>8}: {r['max_ulp']:6.2f} ULP "
                      f"(bound {r['bound']:g}, {r['measure']})  {'ok' if ok else 'FAIL'}", ok))
    return lines


def _optim_checks(steps=10):
    """10-step trajectories of every optimizer with global clipping against the
    float64 reference. Tolerance: the test suite's bound 16 * t * u * M
    (u = 2^-24, M = largest magnitude the parameter reaches plus the summed
    size of its changes), here with M taken per array."""
    import nnfuse as nf
    from . import optim
    from .reference import optim as ref_optim

    rng = np.random.default_rng(0)
    shapes = [(3,), (1000,), (64, 65)]
    lines = []
    cases = {
        "adam": (optim.adam_step, ref_optim.adam_step, 2, dict(lr=1e-2, weight_decay=1e-2)),
        "sgd": (optim.sgd_step, ref_optim.sgd_step, 1, dict(lr=1e-2, momentum=0.9)),
        "rmsprop": (optim.rmsprop_step, ref_optim.rmsprop_step, 1, dict(lr=1e-3)),
        "adagrad": (optim.adagrad_step, ref_optim.adagrad_step, 1, dict(lr=1e-2)),
    }
    grads_seq = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(steps)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    for isa in nf._C.supported_isas():
        for name, (step_fn, ref_fn, n_states, hyper) in cases.items():
            params = [p.copy() for p in start]
            params64 = [p.astype(np.float64) for p in start]
            states = [[np.zeros_like(p) for p in params] for _ in range(n_states)]
            states64 = [[np.zeros_like(p) for p in params64] for _ in range(n_states)]
            moved = [np.zeros_like(p) for p in params64]
            with nf.cpu_isa(isa):
                for t, grads in enumerate(grads_seq, start=1):
                    before = [p.copy() for p in params64]
                    step_fn(params, grads, *states, step=t, global_clipnorm=1.0, **hyper)
                    ref_fn(params64, [g.astype(np.float64) for g in grads], *states64, step=t,
                           global_clipnorm=1.0, **hyper)
                    for m, b, p in zip(moved, before, params64):
                        m += np.abs(p - b)
            worst = 0.0
            for p, p64, m in zip(params, params64, moved):
                scale = 16 * steps * 2.0**-24 * (np.max(np.abs(p64)) + m)
                worst = max(worst, float(np.max(np.abs(p - p64) / scale)))
            ok = worst <= 1.0
            lines.append((f"{name + ' (global_clipnorm)':<22} {'float32':<9} {isa:>8}: "
                          f"{worst:6.3f} of the trajectory bound  {'ok' if ok else 'FAIL'}", ok))
    return lines


class _Progress:
    """A one-line progress bar on stderr (plain lines when not a terminal)."""

    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.tty = sys.stderr.isatty()

    def __call__(self, message: str):
        self.done += 1
        width = 30
        filled = int(width * self.done / max(1, self.total))
        bar = "#" * filled + "." * (width - filled)
        text = f"[{bar}] {self.done}/{self.total} {message}"
        if self.tty:
            sys.stderr.write("\r" + text[:120].ljust(120))
            if self.done >= self.total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


DTYPE_NAMES = tuple(dtype.name for dtype in SUPPORTED_DTYPES)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _comma_list(text: str, item_type):
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"empty item in the list {text!r}")
    return [item_type(item) for item in items]


# 2^40 float32 elements are 4 TiB: beyond any machine this runs on, and the
# cap keeps a typo such as 2^400 from reaching the allocator.
_MAX_SIZE_EXPONENT = 40


def size_exponent(text: str) -> int:
    """An argparse type: k of a size 2^k, 0 <= k <= 40."""
    if not text.isdigit() or int(text) > _MAX_SIZE_EXPONENT:
        raise argparse.ArgumentTypeError(f"expected an exponent k with 0 <= k <= {_MAX_SIZE_EXPONENT}, got {text!r}")
    return int(text)


def _size(item: str) -> int:
    if item.startswith("2^"):
        return 1 << size_exponent(item[2:])
    value = positive_int(item)
    if value > 1 << _MAX_SIZE_EXPONENT:
        raise argparse.ArgumentTypeError(f"size {value} is above 2^{_MAX_SIZE_EXPONENT}")
    return value


def size_list(text: str) -> list:
    """An argparse type: element counts such as ``2^16,1000``, each >= 1."""
    return _comma_list(text, _size)


def _shape(item: str) -> tuple:
    parts = item.split("x")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected a shape ROWSxCOLUMNS, got {item!r}")
    return tuple(positive_int(part) for part in parts)


def shape_list(text: str) -> list:
    """An argparse type: row x column shapes such as ``4096x1024,65536x128``."""
    return _comma_list(text, _shape)


def thread_list(text: str) -> list:
    """An argparse type: thread counts, each between 1 and the build's maximum."""
    from . import _C

    counts = _comma_list(text, positive_int)
    too_many = [n for n in counts if n > _C.max_threads]
    if too_many:
        raise argparse.ArgumentTypeError(f"thread counts above the maximum {_C.max_threads}: {too_many}")
    return counts


def dtype_list(text: str) -> list:
    """An argparse type: names from float32, float64, float16, bfloat16."""
    names = _comma_list(text, str)
    unknown = [name for name in names if name not in DTYPE_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown dtype(s) {', '.join(unknown)} "
                                         f"(supported: {', '.join(DTYPE_NAMES)})")
    return names


def output_path(text: str) -> str:
    """An argparse type: a file to write at the end of a run, checked before it
    starts (a benchmark should not run for minutes and then fail to save)."""
    folder = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"the folder of {text!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"the folder of {text!r} is not writeable")
    return text


def add_accuracy_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``nnfuse accuracy`` (also ``python -m nnfuse.accuracy``)."""
    parser.add_argument("--ops", type=lambda text: _comma_list(text, str),
                        help="comma-separated op names (default: all)")
    parser.add_argument("--dtypes", type=dtype_list, default=list(DTYPE_NAMES))
    parser.add_argument("--points", type=positive_int, default=1_000_000)
    parser.add_argument("--markdown", type=output_path, help="write the table to this file")


def cmd_bench(args) -> int:
    import nnfuse as nf
    from . import bench
    from ._optable import ACTIVATIONS

    known = [a.name for a in ACTIVATIONS] + ["gelu_tanh"]
    ops = args.ops.split(",") if args.ops else known
    unknown = [o for o in ops if o not in known]
    if unknown:
        print(f"nnfuse bench: unknown op(s): {', '.join(unknown)} (known: {', '.join(known)})", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (checked before the run, used by plot() after it)
        except ImportError:
            print("nnfuse bench: --plot needs matplotlib, which is not installed", file=sys.stderr)
            return 2
    sizes, dtypes = args.sizes, args.dtypes
    thread_counts = args.threads or sorted({1, nf._C.default_num_threads()})
    total = bench.count_rows(ops, sizes, dtypes, thread_counts)
    rows = bench.run(ops, sizes=sizes, dtypes=dtypes, thread_counts=thread_counts, min_time=args.min_time,
                     progress=_Progress(total))
    bench.add_ratios(rows)
    print(bench.markdown(rows, title=f"nnfuse {nf.__version__} on {bench.machine_info().get('cpu') or 'this CPU'}"))
    _print_summary(rows)
    if args.json:
        bench.save_json(rows, args.json)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(bench.markdown(rows))
    if args.plot:
        plot(rows, args.plot)
    return 0


def _print_summary(rows):
    for threads in sorted({r["threads"] for r in rows}):
        sel = [r for r in rows if r["threads"] == threads]
        floor = np.median([r["floor_ratio"] for r in sel])
        vs_torch = [r["speedup_vs_torch"] for r in sel if "speedup_vs_torch" in r]
        line = f"threads={threads}: median floor ratio {floor:.2f}"
        if vs_torch:
            line += f", median speedup vs PyTorch {np.median(vs_torch):.2f}x (min {min(vs_torch):.2f}x)"
        print(line)


def plot(rows, path):
    """Bars of each op's GB/s, PyTorch and NumPy beside it, and the memory
    floor (copy/add of the same bytes, measured in the same run) as a mark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels_of = {"forward": "fwd", "backward": "bwd", "backward_from_y": "bwd(y)"}
    groups = sorted({(r["dtype"], r["n"], r["threads"]) for r in rows})
    fig, axes = plt.subplots(len(groups), 1, figsize=(16, 3.8 * len(groups)), squeeze=False)
    for ax, (dtype, n, threads) in zip(axes[:, 0], groups):
        sel = [r for r in rows if (r["dtype"], r["n"], r["threads"]) == (dtype, n, threads)]
        xs = np.arange(len(sel))
        width = 0.28
        gigabytes = [r["gbps"] * r["time_s"] for r in sel]  # bytes moved, in GB

        def rate(key):
            return [g / r[key] if key in r else 0.0 for g, r in zip(gigabytes, sel)]

        ax.bar(xs - width, [r["gbps"] for r in sel], width, label="nnfuse")
        ax.bar(xs, rate("torch_s"), width, label="PyTorch")
        ax.bar(xs + width, rate("numpy_s"), width, label="NumPy")
        ax.plot(xs, rate("floor_s"), "k_", markersize=16, markeredgewidth=2,
                label="memory floor (copy/add of the same bytes)")
        ax.set_xticks(xs, [f"{r['op']} {labels_of[r['direction']]}" for r in sel], rotation=60, ha="right",
                      fontsize=8)
        ax.set_ylabel("GB/s")
        ax.set_title(f"{dtype}, n = 2^{int(math.log2(n))}, {threads} thread(s)")
        ax.legend(fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def cmd_accuracy(args) -> int:
    from . import accuracy

    return accuracy.run(args)


def build_parser():
    parser = argparse.ArgumentParser(prog="nnfuse", description="nnfuse: fused CPU/CUDA kernels for training.")
    sub = parser.add_subparsers(dest="command", metavar="{info,check,bench,accuracy}")
    sub.required = True
    p = sub.add_parser("info", help="version, build, ISAs, threads, GPU, peers")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("check", help="self-test every op on every ISA against the reference")
    p.add_argument("--points", type=positive_int, default=200_000, help="float32/float64 sample points per op")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("bench", help="microbenchmarks against the memory floor and installed peers")
    p.add_argument("--ops", help="comma-separated op names (default: all activations)")
    p.add_argument("--sizes", type=size_list, default=[1 << 20, 1 << 24],
                   help="comma-separated element counts, e.g. 2^16,2^20,2^26 (default: 2^20,2^24)")
    p.add_argument("--dtypes", type=dtype_list, default=["float32"],
                   help="comma-separated: float32,bfloat16,float16,float64")
    p.add_argument("--threads", type=thread_list, help="comma-separated thread counts (default: 1 and all cores)")
    p.add_argument("--min-time", type=positive_float, default=0.1, help="seconds of repeats per measurement")
    p.add_argument("--json", type=output_path, help="write the rows and machine info as JSON")
    p.add_argument("--markdown", type=output_path, help="write the table as markdown")
    p.add_argument("--plot", type=output_path, help="write a PNG chart of GB/s per op against the floor and peers")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("accuracy", help="ULP error tables (what docs/accuracy.md shows)")
    add_accuracy_arguments(p)
    p.set_defaults(func=cmd_accuracy)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)
