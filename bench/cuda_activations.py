"""GPU activation benchmark: every op, forward and backward, at 2^26 float32 and
bfloat16 elements, against a device-to-device copy of the same bytes, PyTorch
CUDA and CuPy formulas, all measured in the same run.

    python bench/cuda_activations.py --json bench/results/activations-cuda.json \\
        --markdown bench/results/activations-cuda.md

- ``nnfuse``: the kernel writing into a preallocated ``out=`` (torch tensors);
- ``copy``: ``Tensor.copy_`` (cudaMemcpyAsync device to device) moving the bytes
  the op must move: a forward reads n elements and writes n (a copy of n), a
  backward reads 2n and writes n (a copy of 1.5 n);
- ``torch``: the ATen op writing into a preallocated output where an ``.out`` /
  ``.grad_input`` overload exists (nnfuse.bench's table);
- ``cupy``: the op's formula in CuPy ufuncs (float32 only; CuPy has no bfloat16).

Times: CUDA events around each call after warm-up, median of the repeats, with the
stream held busy while the host queues the call, so the GPU's time alone is measured
(``nnfuse.bench.cuda_median_ms``); ``eager_ms``: wall time per call of 50
back-to-back calls, host cost included (``nnfuse.bench.cuda_eager_ms``).
``copy_ratio`` = copy time / nnfuse time (1.0 = copy bandwidth; target >= 0.9 on
an H100); ``vs_torch`` = torch time / nnfuse time.
"""

import argparse
import math
import sys

import nnfuse as nf
from nnfuse import bench
from nnfuse.cli import dtype_list, output_path, positive_int, size_exponent
from nnfuse._optable import ACTIVATIONS, call_params

try:
    import torch
except ImportError:  # main() says so after checking the arguments
    torch = None

try:
    import cupy
except ImportError:  # optional peer
    cupy = None


def cupy_forward(name):
    """The op's formula in CuPy (what a user would write), float32."""
    if cupy is None:
        return None
    cp = cupy
    table = {
        "sigmoid": lambda x: 1 / (1 + cp.exp(-x)),
        "tanh": lambda x: cp.tanh(x),
        "relu": lambda x: cp.maximum(x, 0),
        "leaky_relu": lambda x: cp.where(x > 0, x, 0.01 * x),
        "elu": lambda x: cp.where(x > 0, x, cp.expm1(x)),
        "silu": lambda x: x / (1 + cp.exp(-x)),
        "gelu_tanh": lambda x: 0.5 * x * (1 + cp.tanh(0.7978845608 * (x + 0.044715 * x * x * x))),
        "mish": lambda x: x * cp.tanh(cp.log1p(cp.exp(x))),
        "relu6": lambda x: cp.clip(x, 0, 6),
        "hardtanh": lambda x: cp.clip(x, -1, 1),
        "hardsigmoid": lambda x: cp.clip(x / 6 + 0.5, 0, 1),
        "hardswish": lambda x: x * cp.clip(x + 3, 0, 6) / 6,
        "softplus": lambda x: cp.logaddexp(x, 0),
        "softsign": lambda x: x / (1 + cp.abs(x)),
        "logsigmoid": lambda x: -cp.logaddexp(-x, 0),
    }
    return table.get(name)


def cases():
    """(label, op name, params) for every activation with default parameters,
    plus gelu with approximate='tanh'."""
    out = []
    for a in ACTIVATIONS:
        out.append((a.name, a.name, {}))
        if a.name == "gelu":
            out.append(("gelu_tanh", "gelu", {"approximate": "tanh"}))
    return out


def run(n, dtypes, repeats, progress):
    rows = []
    for dtype_name in dtypes:
        tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
        gen = torch.Generator(device="cuda").manual_seed(0)
        x = (torch.randn(n, device="cuda", generator=gen) * 3).to(tdtype)
        g = torch.randn(n, device="cuda", generator=gen).to(tdtype)
        out = torch.empty_like(x)
        copy_src = torch.empty(n + n // 2, dtype=tdtype, device="cuda")
        copy_dst = torch.empty_like(copy_src)
        itemsize = x.element_size()
        copy_fwd = bench.cuda_median_ms(lambda: copy_dst[:n].copy_(copy_src[:n]), repeats, warmup=3)
        copy_bwd = bench.cuda_median_ms(lambda: copy_dst.copy_(copy_src), repeats, warmup=3)
        weight = torch.full((1,), 0.25, dtype=tdtype, device="cuda")
        specs = [(label, name, params) for label, name, params in cases()]
        for label, name, params in specs + [("prelu", "prelu", {}), ("rrelu_training", "rrelu", {})]:
            for direction in ("forward", "backward"):
                if name == "prelu":
                    fn = (lambda: nf.prelu(x, weight, out=out)) if direction == "forward" else \
                        (lambda: nf.prelu_backward(g, x, weight, out=out))
                elif name == "rrelu":
                    fn = (lambda: nf.rrelu(x, training=True, seed=1, out=out)) if direction == "forward" else \
                        (lambda: nf.rrelu_backward(g, x, training=True, seed=1, out=out))
                else:
                    f = getattr(nf, name) if direction == "forward" else getattr(nf, name + "_backward")
                    fn = (lambda f=f: f(x, **params, out=out)) if direction == "forward" else \
                        (lambda f=f: f(g, x, **params, out=out))
                t = bench.cuda_median_ms(fn, repeats, warmup=3)
                eager = bench.cuda_eager_ms(fn)
                moved = (2 if direction == "forward" else 3) * n * itemsize
                copy_ms = copy_fwd if direction == "forward" else copy_bwd
                row = {"op": label, "direction": direction, "dtype": dtype_name, "n": n, "time_ms": t,
                       "gbps": moved / (t * 1e-3) / 1e9, "copy_ms": copy_ms, "copy_ratio": copy_ms / t,
                       "eager_ms": eager}
                peer = _torch_peer(name, params, direction, x, g, out, weight)
                if peer is not None:
                    row["torch_ms"] = bench.cuda_median_ms(peer[0], repeats, warmup=3)
                    row["torch_out"] = peer[1]
                    row["vs_torch"] = row["torch_ms"] / t
                    row["torch_eager_ms"] = bench.cuda_eager_ms(peer[0])
                    row["vs_torch_eager"] = row["torch_eager_ms"] / eager
                if dtype_name == "float32" and direction == "forward":
                    formula = cupy_forward(label)
                    if formula is not None:
                        xc = cupy.asarray(x)
                        row["cupy_ms"] = bench.cuda_median_ms(lambda: formula(xc), repeats, warmup=3)
                        row["vs_cupy"] = row["cupy_ms"] / t
                rows.append(row)
                progress(f"{label} {direction} {dtype_name}: {t:.3f} ms, copy ratio {row['copy_ratio']:.2f}"
                         + (f", vs torch {row['vs_torch']:.2f}x" if "vs_torch" in row else ""))
    return rows


def _torch_peer(name, params, direction, x, g, out, weight):
    """(callable, writes into out) for PyTorch CUDA, or None."""
    F = torch.nn.functional
    if name == "prelu":
        if direction == "forward":
            return (lambda: F.prelu(x, weight)), False
        fn = getattr(torch.ops.aten, "_prelu_kernel_backward", None)
        return ((lambda: fn(g, x, weight)), False) if fn is not None else None
    if name == "rrelu":
        if direction == "forward":
            return (lambda: F.rrelu(x, training=True)), False
        return None
    if direction == "forward":
        peer = bench.torch_forward(name, call_params(next(a for a in ACTIVATIONS if a.name == name), params))
        if peer is None:
            return None
        fn, into_out = peer
        return (lambda: fn(x, out)), into_out
    peer = bench.torch_backward(name, call_params(next(a for a in ACTIVATIONS if a.name == name), params))
    if peer is None:
        return None
    fn, into_out = peer
    y = getattr(nf, name)(x, **params)
    return (lambda: fn(g, x, y, out)), into_out


def markdown(rows, gpu):
    def cells(r):
        torch_note = " (alloc)" if "vs_torch" in r and not r.get("torch_out", True) else ""
        return [r["op"], r["direction"][:3], r["dtype"], f"2^{int(math.log2(r['n']))}", f"{r['time_ms'] * 1e3:.0f} us",
                f"{r['gbps']:.0f}", f"{r['copy_ratio']:.2f}", bench.ratio_cell(r, "vs_torch") + torch_note,
                bench.ratio_cell(r, "vs_cupy"), f"{r['eager_ms'] * 1e3:.0f} us", bench.ratio_cell(r, "vs_torch_eager")]
    return bench.markdown_table(
        f"CUDA activation benchmarks ({gpu})",
        ["op", "dir", "dtype", "n", "time", "GB/s", "copy ratio", "vs PyTorch", "vs CuPy", "eager", "vs PyTorch eager"],
        [cells(r) for r in rows],
        note="time = GPU time (CUDA events, the host's queueing cost kept out); copy ratio = device-to-device copy "
             "of the same bytes / nnfuse time (1.0 = copy bandwidth); vs PyTorch / vs CuPy = their time / nnfuse "
             "time. eager = wall time per call of 50 back-to-back calls (host cost included); vs PyTorch eager = "
             "the same for PyTorch / nnfuse's.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=output_path, required=True, help="where to write the rows and machine info")
    parser.add_argument("--markdown", type=output_path, required=True, help="where to write the table")
    parser.add_argument("--log2n", type=size_exponent, default=26)
    parser.add_argument("--repeats", type=positive_int, default=20)
    parser.add_argument("--dtypes", type=dtype_list, default=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    if torch is None or not torch.cuda.is_available() or not nf.cuda_available():
        sys.exit("bench/cuda_activations.py needs a GPU: PyTorch with CUDA (torch.cuda.is_available()) and "
                 "nnfuse built with CUDA (nnfuse.cuda_available())")
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    gpu = torch.cuda.get_device_name()
    rows = run(1 << args.log2n, args.dtypes, args.repeats, progress)
    bench.write_outputs(rows, markdown(rows, gpu), args.json, args.markdown,
                        {"gpu": gpu, "cupy": cupy.__version__ if cupy is not None else None})


if __name__ == "__main__":
    main()
