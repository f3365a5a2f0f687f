"""python -m nnfuse: info, check, bench, accuracy; usage errors exit 2 without a traceback."""

import json
import subprocess
import sys

import pytest


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "nnfuse", *args], capture_output=True, text=True, timeout=timeout)


def test_info():
    result = run("info")
    assert result.returncode == 0
    assert "CPU ISA in use:" in result.stdout and "peers:" in result.stdout


@pytest.mark.parametrize("args", [[], ["bogus"], ["bench", "--ops", "nope"], ["bench", "--sizes", "2^x"],
                                  ["bench", "--dtypes", "int8"], ["check", "--points", "many"]])
def test_bad_arguments_exit_2_without_traceback(args):
    result = run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "usage" in result.stderr or "nnfuse bench:" in result.stderr


def test_bench_writes_json_markdown_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    files = {k: tmp_path / f"bench.{k}" for k in ("json", "md", "png")}
    result = run("bench", "--ops", "relu,tanh", "--sizes", "2^12", "--threads", "1", "--min-time", "0.001",
                 "--json", str(files["json"]), "--markdown", str(files["md"]), "--plot", str(files["png"]))
    assert result.returncode == 0, result.stderr
    rows = json.loads(files["json"].read_text())["rows"]
    assert {(r["op"], r["direction"]) for r in rows} == {("relu", "forward"), ("relu", "backward"),
                                                          ("tanh", "forward"), ("tanh", "backward"),
                                                          ("tanh", "backward_from_y")}
    # The progress count includes tanh's third row (PyTorch's backward from y).
    assert "] 5/5 " in result.stderr and "/4 " not in result.stderr
    assert all(r["time_s"] > 0 and r["floor_ratio"] > 0 for r in rows)
    assert "| relu |" in files["md"].read_text()
    assert files["png"].stat().st_size > 10_000


def test_check_passes_on_this_machine():
    result = run("check", "--points", "50000")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "all checks passed" in result.stdout


def test_accuracy_for_one_op(tmp_path):
    out = tmp_path / "acc.md"
    result = run("accuracy", "--ops", "relu", "--dtypes", "float32", "--points", "10000", "--markdown", str(out))
    assert result.returncode == 0
    assert "| relu | default | float32 | forward |" in out.read_text()
