"""GPU optimizer benchmark: one Adam step with global-norm clipping over 100 arrays totalling 16M
and 256M float32 parameters and over 1000 arrays of 1K, against a device copy of the floor's bytes
and PyTorch's clip_grad_norm_ + torch.optim.Adam(fused=True), all measured in the same run.

    python bench/cuda_optim.py --json bench/results/optim-cuda.json --markdown bench/results/optim-cuda.md

- ``nnfuse``: ``nnfuse.optim.Adam(params, global_clipnorm=1.0).step(grads)`` (gradient pass +
  fused update, no host synchronisation), and the same with ``nonfinite="zero"`` and no clipping
  (the single-pass step, 28 B/param);
  ``nnfuse_graph_ms``: the same step captured in a CUDA graph (``capturable=True``) and replayed, which
  removes the per-step Python cost (a few checks per array, expected to show at 1000 arrays);
- ``torch``: ``torch.nn.utils.clip_grad_norm_(params, 1.0)`` + ``Adam(fused=True).step()``
  (``foreach`` norm; clip_grad_norm_ does not synchronise either);
- ``copy``: ``Tensor.copy_`` of the floor's bytes: 32 B/param with the norm pass (read g twice,
  read p, m, v, write p, m, v) is a copy of 16 B/param; 28 B/param a copy of 14 B/param.

Times: CUDA events around each step after warm-up, median of the repeats, with the stream held
busy while the host queues the step, so the GPU's time alone is measured; ``eager``: wall time per
step of 20 back-to-back steps, the host's cost included. ``floor_ratio`` = copy
time / nnfuse time (1.0 = the device's copy bandwidth over the floor's bytes; target >= 0.9 at
256M on an H100); ``vs_torch`` = torch time / nnfuse time (targets >= 1.3 at 16M and 256M,
>= 2 at 1000 x 1K).
"""

import argparse
import json
import sys

import nnfuse as nf
from nnfuse import bench
from nnfuse import optim
from nnfuse.cli import output_path, positive_int

try:
    import torch
except ImportError:  # main() says so after checking the arguments
    torch = None




def capture(fn):
    """fn() captured in a CUDA graph after a warm-up on a side stream (PyTorch's recipe)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def sizes_for(case):
    if case == "1000x1K":
        return [1024] * 1000
    total = {"100x16M": 16 << 20, "100x256M": 256 << 20}[case]
    # 100 uneven arrays (like a model's layers), summing to `total`
    weights = [1 + (i * 37) % 11 for i in range(100)]
    sizes = [total * w // sum(weights) for w in weights]
    sizes[-1] += total - sum(sizes)
    return sizes


def measure(case, repeats):
    sizes = sizes_for(case)
    n = sum(sizes)
    g = torch.Generator(device="cuda").manual_seed(0)
    params = [torch.randn(s, device="cuda", generator=g) for s in sizes]
    grads = [torch.randn(s, device="cuda", generator=g) * 0.01 for s in sizes]
    rows = []

    def copy_ms(bytes_per_param):
        src = torch.empty(n * bytes_per_param // 8, dtype=torch.float32, device="cuda")
        dst = torch.empty_like(src)
        return bench.cuda_median_ms(lambda: dst.copy_(src), repeats, warmup=5)

    for label, opts, floor in (("adam+global_clipnorm", dict(global_clipnorm=1.0), 32),
                               ("adam (single pass)", dict(nonfinite="zero"), 28)):
        ours = optim.Adam([p.clone() for p in params], lr=1e-4, capturable=True, **opts)
        t_ours = bench.cuda_median_ms(lambda: ours.step(grads), repeats, warmup=5)
        t_eager = bench.cuda_eager_ms(lambda: ours.step(grads), calls=20)
        graph = capture(lambda: ours.step(grads))
        t_graph = bench.cuda_median_ms(graph.replay, repeats, warmup=5)
        t_copy = copy_ms(floor)
        del ours, graph
        torch.cuda.empty_cache()
        row = {"case": case, "arrays": len(sizes), "params": n, "variant": label, "floor_bytes_per_param": floor,
               "nnfuse_ms": t_ours, "nnfuse_eager_ms": t_eager, "nnfuse_graph_ms": t_graph, "copy_ms": t_copy,
               "floor_ratio": t_copy / t_ours,
               "nnfuse_GBps": floor * n / t_ours / 1e6, "copy_GBps": floor * n / t_copy / 1e6}
        if floor == 32:
            tp = [torch.nn.Parameter(p.clone()) for p in params]
            for p, gr in zip(tp, grads):
                p.grad = gr
            peer = torch.optim.Adam(tp, lr=1e-4, fused=True)

            def torch_step():
                torch.nn.utils.clip_grad_norm_(tp, 1.0)
                peer.step()

            t_torch = bench.cuda_median_ms(torch_step, repeats, warmup=5)
            t_torch_eager = bench.cuda_eager_ms(torch_step, calls=20)
            row.update(torch_ms=t_torch, vs_torch=t_torch / t_ours, torch_eager_ms=t_torch_eager,
                       vs_torch_eager=t_torch_eager / t_eager)
            del tp, peer
            torch.cuda.empty_cache()
        rows.append(row)
    del params, grads
    torch.cuda.empty_cache()
    return rows


def markdown(rows, device):
    lines = [f"GPU: {device}; torch {torch.__version__}; nnfuse {nf.__version__}", "",
             "| case | variant | GPU ms/step | graph-replayed ms/step | GB/s | floor ratio (copy = 1) | "
             "torch clip+fused Adam ms | vs torch | eager ms/step | torch eager ms | vs torch eager |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['variant']} | {r['nnfuse_ms']:.3f} | {r['nnfuse_graph_ms']:.3f} | "
                     f"{r['nnfuse_GBps']:.0f} | "
                     f"{r['floor_ratio']:.2f} | {r.get('torch_ms', float('nan')):.3f} | "
                     f"{r.get('vs_torch', float('nan')):.2f} | {r['nnfuse_eager_ms']:.3f} | "
                     f"{r.get('torch_eager_ms', float('nan')):.3f} | {r.get('vs_torch_eager', float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=output_path)
    parser.add_argument("--markdown", type=output_path)
    parser.add_argument("--repeats", type=positive_int, default=50)
    parser.add_argument("--cases", default="100x16M,100x256M,1000x1K")
    args = parser.parse_args(argv)
    if torch is None or not torch.cuda.is_available() or not nf.cuda_available():
        sys.exit("bench/cuda_optim.py needs a GPU: PyTorch with CUDA (torch.cuda.is_available()) and "
                 "nnfuse built with CUDA (nnfuse.cuda_available())")
    device = torch.cuda.get_device_name()
    rows = []
    for case in args.cases.split(","):
        rows += measure(case, args.repeats)
    text = markdown(rows, device)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "torch": torch.__version__, "rows": rows}, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
