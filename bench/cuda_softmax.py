"""GPU softmax-family benchmark at the shapes 4096x1024, 256x32768, 65536x128 and 1024x131072 (float32 and
bfloat16): softmax, log_softmax, their backward passes and the fused
cross-entropy (loss + gradient), against a device-to-device copy of the same
bytes and PyTorch CUDA, all measured in the same run.

    python bench/cuda_softmax.py --json bench/results/softmax-cuda.json \\
        --markdown bench/results/softmax-cuda.md

- ``nnfuse``: the kernel writing into a preallocated ``out=`` (torch tensors);
  cross-entropy allocates its gradient and loss (torch's caching allocator);
- ``copy``: ``Tensor.copy_`` moving the bytes the op must move: forward reads
  R*C and writes R*C (a copy of R*C elements); backward reads 2 R*C and writes
  R*C (a copy of 1.5 R*C); cross-entropy reads the logits and writes the
  gradient (a copy of R*C);
- ``torch``: ``torch.softmax`` / ``log_softmax`` (``out=``),
  ``torch._softmax_backward_data`` / ``_log_softmax_backward_data``, and for
  cross-entropy ``F.cross_entropy`` forward + backward (autograd).

Times: CUDA events around each call after warm-up, median of the repeats, with the
stream held busy while the host queues the call, so the GPU's time alone is measured
(``nnfuse.bench.cuda_median_ms``; the cross-entropy's label check reads one value back,
so the host's cost after that read still counts); ``eager_ms``: wall time per call of 50
back-to-back calls, host cost included (``nnfuse.bench.cuda_eager_ms``).
``copy_ratio`` = copy time / nnfuse time (1.0 = copy bandwidth; target >= 0.85
on an H100 for 128 <= C <= 32768 with >= 4096 rows); ``vs_torch`` = torch time
/ nnfuse time (cross-entropy target >= 2).
"""

import argparse
import sys

import nnfuse as nf
from nnfuse import bench
from nnfuse.cli import dtype_list, output_path, positive_int, shape_list

try:
    import torch
except ImportError:  # main() says so after checking the arguments
    torch = None


def _torch_peers(x, g, y, ly, labels, out):
    F = torch.nn.functional
    dtype = x.dtype

    def cross_entropy():
        xr = x.detach().requires_grad_()
        F.cross_entropy(xr, labels).backward()

    return {
        "softmax": lambda: torch.softmax(x, -1, out=out),
        "log_softmax": lambda: torch.log_softmax(x, -1, out=out),
        "softmax_backward": lambda: torch._softmax_backward_data(g, y, -1, dtype),
        "log_softmax_backward": lambda: torch._log_softmax_backward_data(g, ly, -1, dtype),
        "cross_entropy_fwd_bwd": cross_entropy,
    }


def run(shapes, dtypes, repeats, progress):
    rows = []
    for dtype_name in dtypes:
        tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
        for r, c in shapes:
            gen = torch.Generator(device="cuda").manual_seed(0)
            x = (torch.randn(r, c, device="cuda", generator=gen) * 3).to(tdtype)
            g = torch.randn(r, c, device="cuda", generator=gen).to(tdtype)
            labels = torch.randint(0, c, (r,), device="cuda", generator=gen)
            out = torch.empty_like(x)
            y, ly = nf.softmax(x), nf.log_softmax(x)
            n = r * c
            src = torch.empty(n + n // 2, dtype=tdtype, device="cuda")
            dst = torch.empty_like(src)
            copy_1 = bench.cuda_median_ms(lambda: dst[:n].copy_(src[:n]), repeats, warmup=3)
            copy_15 = bench.cuda_median_ms(lambda: dst.copy_(src), repeats, warmup=3)
            ops = {
                "softmax": (lambda: nf.softmax(x, out=out), copy_1, 2),
                "log_softmax": (lambda: nf.log_softmax(x, out=out), copy_1, 2),
                "softmax_backward": (lambda: nf.softmax_backward(g, y, out=out), copy_15, 3),
                "log_softmax_backward": (lambda: nf.log_softmax_backward(g, ly, out=out), copy_15, 3),
                # The fused call validates the labels (one small device-to-host read).
                "cross_entropy_fwd_bwd": (lambda: nf.softmax_cross_entropy(x, labels), copy_1, 2),
            }
            peers = _torch_peers(x, g, y, ly, labels, out)
            for op, (fn, copy_ms, passes) in ops.items():
                t = bench.cuda_median_ms(fn, repeats, warmup=3)
                eager = bench.cuda_eager_ms(fn)
                row = {"op": op, "dtype": dtype_name, "rows": r, "cols": c, "time_ms": t,
                       "gbps": passes * n * x.element_size() / (t * 1e-3) / 1e9,
                       "copy_ms": copy_ms, "copy_ratio": copy_ms / t, "eager_ms": eager}
                row["torch_ms"] = bench.cuda_median_ms(peers[op], repeats, warmup=3)
                row["vs_torch"] = row["torch_ms"] / t
                row["torch_eager_ms"] = bench.cuda_eager_ms(peers[op])
                row["vs_torch_eager"] = row["torch_eager_ms"] / eager
                rows.append(row)
                progress(f"{op} {dtype_name} {r}x{c}: {t:.3f} ms, copy ratio {row['copy_ratio']:.2f}, "
                         f"vs torch {row['vs_torch']:.2f}x")
    return rows


def markdown(rows, gpu):
    def cells(r):
        return [r["op"], r["dtype"], f"{r['rows']}x{r['cols']}", f"{r['time_ms'] * 1e3:.0f} us", f"{r['gbps']:.0f}",
                f"{r['copy_ratio']:.2f}", bench.ratio_cell(r, "vs_torch"), f"{r['eager_ms'] * 1e3:.0f} us",
                bench.ratio_cell(r, "vs_torch_eager")]
    return bench.markdown_table(
        f"CUDA softmax-family benchmarks ({gpu})",
        ["op", "dtype", "rows x cols", "time", "GB/s", "copy ratio", "vs PyTorch", "eager", "vs PyTorch eager"],
        [cells(r) for r in rows],
        note="time = GPU time (CUDA events, the host's queueing cost kept out); copy ratio = device-to-device copy "
             "of the same bytes / nnfuse time (1.0 = copy bandwidth); vs PyTorch = PyTorch time / nnfuse time "
             "(cross-entropy: F.cross_entropy forward + backward). eager = wall time per call of 50 back-to-back "
             "calls (host cost included); vs PyTorch eager = the same for PyTorch / nnfuse's.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=output_path, required=True, help="where to write the rows and machine info")
    parser.add_argument("--markdown", type=output_path, required=True, help="where to write the table")
    parser.add_argument("--shapes", type=shape_list,
                        help="comma-separated RxC shapes (default: 4096x1024,256x32768,65536x128,1024x131072)")
    parser.add_argument("--repeats", type=positive_int, default=20)
    parser.add_argument("--dtypes", type=dtype_list, default=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    if torch is None or not torch.cuda.is_available() or not nf.cuda_available():
        sys.exit("bench/cuda_softmax.py needs a GPU: PyTorch with CUDA (torch.cuda.is_available()) and "
                 "nnfuse built with CUDA (nnfuse.cuda_available())")
    shapes = args.shapes or bench.SOFTMAX_SHAPES
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    gpu = torch.cuda.get_device_name()
    rows = run(shapes, args.dtypes, args.repeats, progress)
    bench.write_outputs(rows, markdown(rows, gpu), args.json, args.markdown, {"gpu": gpu})


if __name__ == "__main__":
    main()
