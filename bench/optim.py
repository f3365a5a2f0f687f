"""Optimizer benchmark: float32 Adam with global_clipnorm / clipvalue over 100
arrays totalling 1M and 16M parameters and 1000 arrays of 1K, on 1 thread and
all threads, against the np.add floor of the same bytes and
torch.optim.Adam(fused=True) + clip_grad_norm_ / clip_grad_value_.

    python bench/optim.py --json bench/results/optim-cpu.json --markdown bench/results/optim-cpu.md
"""

import argparse
import sys

from nnfuse import bench


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of repeats per measurement")
    parser.add_argument("--threads", help="comma-separated thread counts (default: 1 and all)")
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")] if args.threads else None
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    rows = bench.run_optim(thread_counts=threads, min_time=args.min_time, progress=progress)
    text = bench.markdown_optim(rows)
    bench.write_outputs(rows, text, args.json, args.markdown)


if __name__ == "__main__":
    main()
