"""Softmax-family benchmark: float32 softmax, log-softmax, their backward passes
and the fused cross-entropy (loss + gradient) at 4096x1024, 256x32768, 65536x128 and 1024x131072, on 1 thread
and all threads, against the copy/add floor and PyTorch CPU in the same run.

    python bench/softmax.py --json bench/results/softmax-cpu.json \
        --markdown bench/results/softmax-cpu.md
"""

import argparse
import sys

from nnfuse import bench


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", help="comma-separated RxC shapes (default: 4096x1024,256x32768,65536x128,1024x131072)")
    parser.add_argument("--threads", help="comma-separated thread counts (default: 1 and all)")
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of repeats per measurement")
    args = parser.parse_args(argv)
    shapes = (tuple(tuple(int(v) for v in s.split("x")) for s in args.shapes.split(","))
              if args.shapes else bench.SOFTMAX_SHAPES)
    threads = [int(t) for t in args.threads.split(",")] if args.threads else None
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    rows = bench.run_softmax(shapes, threads, min_time=args.min_time, progress=progress)
    text = bench.softmax_markdown(rows)
    bench.write_outputs(rows, text, args.json, args.markdown)


if __name__ == "__main__":
    main()
