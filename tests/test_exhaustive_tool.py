"""The exhaustive float32 checker (csrc/tools/exhaustive_ulp.cpp) builds, walks
every float of a range, and reports errors within the published bounds on
ranges that hold each op's known worst cases."""

import pathlib
import re
import shutil
import struct
import subprocess

import pytest

from nnfuse.accuracy import BOUNDS

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "csrc" / "tools" / "exhaustive_ulp.cpp"
LINE = re.compile(r"max (\S+) ulp at x = (\S+) \((\d+) inputs")


@pytest.fixture(scope="module")
def tool(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler on this machine")
    binary = tmp_path_factory.mktemp("tool") / "exhaustive_ulp"
    base = [compiler, "-O2", "-std=c++17", "-ffp-contract=off", f"-I{ROOT / 'csrc' / 'include'}",
            str(SOURCE), "-o", str(binary)]
    # OpenMP only speeds it up; a compiler without it builds the serial loop.
    if subprocess.run(base[:1] + ["-fopenmp"] + base[1:], capture_output=True).returncode != 0:
        subprocess.run(base, check=True, capture_output=True)
    return binary


def _float_bits(v):
    return struct.unpack("<I", struct.pack("<f", v))[0]


def _run(tool, op, direction, low, high):
    out = subprocess.run([str(tool), op, direction, str(low), str(high)], capture_output=True, text=True,
                         check=True).stdout
    match = LINE.search(out)
    assert match, out
    return float(match.group(1)), float(match.group(2)), int(match.group(3))


# Ranges around the worst input of every row of docs/exhaustive.md, 10^4-10^5
# floats per sign each, the three ranges that held 4.52, 4.52 and 4.14 ulp
# under the earlier t / (1 + t)^2 derivatives, above the bound of 4, and the
# seams of mish's pieces: where the exponential formulas take over below
# x = -9.6875 (forward) and -9.375 (backward), and where y = x (x >= 10.3125)
# and y' = 1 (x >= 14.625) begin; and the same seams of softplus and
# logsigmoid at |x| = 15.75; GELU's at |x| = 9 and GELU-tanh's at |x| = 7.5
# (the exponential formulas below x = -9 / -7.5, a clamped above) and the
# worst inputs of their polynomial pieces.
CASES = [
    ("sigmoid", "forward", 1.10, 1.11),
    ("sigmoid", "backward", 16.97, 16.99),
    ("tanh", "forward", 0.2, 0.21),
    ("tanh", "backward", 8.48, 8.50),
    ("silu", "forward", 90.47, 90.48),
    ("silu", "backward", 14.86, 14.87),
    ("gelu", "forward", 7.78, 7.80),
    ("gelu", "backward", 10.63, 10.64),
    ("gelu_tanh", "forward", 9.73, 9.74),
    ("gelu_tanh", "backward", 7.91, 7.93),
    ("mish", "forward", 0.236, 0.237),
    ("mish", "backward", 60.64, 60.65),
    ("softplus", "forward", 16.28, 16.29),
    ("softplus", "backward", 5.85, 5.86),
    ("logsigmoid", "forward", 16.28, 16.29),
    ("logsigmoid", "backward", 5.85, 5.86),
    ("sigmoid", "backward", 5.17, 5.19),
    ("tanh", "backward", 2.58, 2.60),
    ("silu", "backward", 6.50, 6.55),
    ("mish", "forward", 9.68, 9.69),
    ("mish", "forward", 10.31, 10.32),
    ("mish", "backward", 9.37, 9.38),
    ("mish", "backward", 14.62, 14.63),
    ("softplus", "forward", 15.74, 15.76),
    ("logsigmoid", "forward", 15.74, 15.76),
    ("gelu", "forward", 8.99, 9.01),
    ("gelu", "backward", 8.99, 9.01),
    ("gelu", "backward", 8.83, 8.84),
    ("gelu_tanh", "forward", 7.49, 7.51),
    ("gelu_tanh", "backward", 7.49, 7.51),
    ("gelu_tanh", "forward", 6.11, 6.12),
    ("gelu_tanh", "backward", 6.25, 6.26),
]


@pytest.mark.parametrize("op,direction,low,high", CASES)
def test_every_float_in_range_is_within_the_bound(tool, op, direction, low, high):
    worst, at, count = _run(tool, op, direction, low, high)
    # Both signs of every float from low to high, nothing skipped.
    assert count == 2 * (_float_bits(high) - _float_bits(low) + 1)
    assert low <= abs(at) <= high
    assert worst <= BOUNDS["float32"][direction], (op, direction, worst, at)
    # A real measurement: rounding to float32 alone costs up to 0.5 ulp.
    assert worst > 0.3


def test_unknown_op_is_refused(tool):
    result = subprocess.run([str(tool), "nope", "forward"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown op" in result.stderr
