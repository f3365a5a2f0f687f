"""Optimizer benchmark: float32 Adam with global_clipnorm / clipvalue over 100
arrays totalling 1M and 16M parameters and 1000 arrays of 1K, on 1 thread and
all threads, against the np.add floor of the same bytes and
torch.optim.Adam(fused=True) + clip_grad_norm_ / clip_grad_value_, and the same
nnfuse step given torch CPU tensors.

    python bench/optim.py --json bench/results/optim-cpu.json --markdown bench/results/optim-cpu.md
"""

import argparse
import sys

from nnfuse import bench
from nnfuse.cli import output_path, positive_float, thread_list


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=output_path)
    parser.add_argument("--markdown", type=output_path)
    parser.add_argument("--min-time", type=positive_float, default=0.3, help="seconds of repeats per measurement")
    parser.add_argument("--threads", type=thread_list, help="comma-separated thread counts (default: 1 and all)")
    args = parser.parse_args(argv)
    threads = args.threads
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    rows = bench.run_optim(thread_counts=threads, min_time=args.min_time, progress=progress)
    text = bench.markdown_optim(rows)
    bench.write_outputs(rows, text, args.json, args.markdown)


if __name__ == "__main__":
    main()
