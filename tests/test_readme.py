"""The README's Python examples run as written (one namespace, in order).
Blocks that need a GPU (they create device arrays) run only where one is available."""

import pathlib
import re

import nnfuse as nf

_NEEDS_GPU = re.compile(r"device=[\"']cuda|import cupy|\.cuda\(")
README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python examples"
    namespace = {}
    ran = 0
    for block in blocks:
        if _NEEDS_GPU.search(block) and not nf.cuda_available():
            continue
        exec(compile(block, str(README), "exec"), namespace)
        ran += 1
    assert ran >= 2
