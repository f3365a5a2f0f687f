"""Softmax-family benchmark: float32 softmax, log-softmax, their backward passes
and the fused cross-entropy (loss + gradient) at 4096x1024, 256x32768, 65536x128 and 1024x131072, on 1 thread
and all threads, against the copy/add floor and PyTorch CPU in the same run.

    python bench/softmax.py --json bench/results/softmax-cpu.json \
        --markdown bench/results/softmax-cpu.md
"""

import argparse
import sys

from nnfuse import bench
from nnfuse.cli import output_path, positive_float, shape_list, thread_list


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", type=shape_list,
                        help="comma-separated RxC shapes (default: 4096x1024,256x32768,65536x128,1024x131072)")
    parser.add_argument("--threads", type=thread_list, help="comma-separated thread counts (default: 1 and all)")
    parser.add_argument("--json", type=output_path)
    parser.add_argument("--markdown", type=output_path)
    parser.add_argument("--min-time", type=positive_float, default=0.3, help="seconds of repeats per measurement")
    args = parser.parse_args(argv)
    shapes = args.shapes or bench.SOFTMAX_SHAPES
    threads = args.threads
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    rows = bench.run_softmax(shapes, threads, min_time=args.min_time, progress=progress)
    text = bench.softmax_markdown(rows)
    bench.write_outputs(rows, text, args.json, args.markdown)


if __name__ == "__main__":
    main()
