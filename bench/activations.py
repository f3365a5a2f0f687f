"""Activation benchmark grid: every op and direction at 2^16, 2^20 and 2^26
float32 elements (and bfloat16 at 2^26), on 1 thread and all threads, against
the memory floor, NumPy and PyTorch CPU measured in the same run.

    python bench/activations.py --json bench/results/activations-cpu.json \
        --markdown bench/results/activations-cpu.md
"""

import argparse
import sys

from nnfuse import bench
from nnfuse.cli import output_path, positive_float


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", help="comma-separated op names (default: all)")
    parser.add_argument("--json", type=output_path)
    parser.add_argument("--markdown", type=output_path)
    parser.add_argument("--min-time", type=positive_float, default=0.3, help="seconds of repeats per measurement")
    args = parser.parse_args(argv)
    ops = args.ops.split(",") if args.ops else None
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    rows = bench.run(ops, sizes=(1 << 16, 1 << 20, 1 << 26), dtypes=("float32",), min_time=args.min_time,
                     progress=progress)
    rows += bench.run(ops, sizes=(1 << 26,), dtypes=("bfloat16",), min_time=args.min_time, progress=progress)
    bench.add_ratios(rows)
    text = bench.markdown(rows)
    bench.write_outputs(rows, text, args.json, args.markdown)


if __name__ == "__main__":
    main()
