"""python -m nnfuse: info, check, bench, accuracy; usage errors exit 2 without a traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "nnfuse", *args], capture_output=True, text=True, timeout=timeout)


def test_info():
    result = run("info")
    assert result.returncode == 0
    assert "CPU ISA in use:" in result.stdout and "peers:" in result.stdout


@pytest.mark.parametrize("args", [
    [], ["bogus"], ["bench", "--ops", "nope"], ["bench", "--sizes", "2^x"], ["bench", "--sizes", "-5"],
    ["bench", "--sizes", "2^400"], ["bench", "--sizes", "0"], ["bench", "--dtypes", "int8"],
    ["bench", "--threads", "0"], ["bench", "--threads", "99999"], ["bench", "--threads", "1,,2"],
    ["bench", "--min-time", "-1"], ["bench", "--min-time", "nan"], ["bench", "--json", "/nonexistent/rows.json"],
    ["bench", "--markdown", "."], ["check", "--points", "many"], ["check", "--points", "0"],
    ["accuracy", "--points", "-3"], ["accuracy", "--dtypes", "int8"], ["accuracy", "--ops", "nope"],
])
def test_bad_arguments_exit_2_without_traceback(args):
    result = run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "usage" in result.stderr or f"nnfuse {args[0]}:" in result.stderr


def test_plot_without_matplotlib_is_refused_before_the_run(monkeypatch, tmp_path, capsys):
    from nnfuse import cli

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert cli.main(["bench", "--ops", "relu", "--sizes", "2^10", "--plot", str(tmp_path / "a.png")]) == 2
    captured = capsys.readouterr()
    assert "--plot needs matplotlib" in captured.err and captured.out == ""


@pytest.mark.parametrize("script, args", [
    ("activations", ["--min-time", "0"]), ("optim", ["--threads", "0"]), ("softmax", ["--shapes", "4x"]),
    ("softmax", ["--markdown", "/nonexistent/table.md"]),
    ("cuda_activations", ["--json", "a.json", "--markdown", "a.md", "--log2n", "-1"]),
    ("cuda_softmax", ["--json", "a.json", "--markdown", "a.md", "--dtypes", "int8"]),
    ("cuda_optim", ["--repeats", "0"]),
])
def test_benchmark_scripts_refuse_bad_arguments_before_running(script, args, tmp_path):
    path = Path(__file__).resolve().parents[1] / "bench" / f"{script}.py"
    result = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "error: argument" in result.stderr
    assert not list(tmp_path.iterdir())


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
    with_peer = [r for r in rows if "torch_s" in r]
    if with_peer:  # PyTorch installed: each such row carries both errors, nnfuse's within its published bounds
        assert all("torch_max_ulp" in r for r in with_peer)
        assert all(r["nnfuse_max_ulp"] <= (2 if r["direction"] == "forward" else 4) for r in with_peer)
        assert "max ULP nnfuse / PyTorch" in files["md"].read_text()


@pytest.mark.parametrize("name, direction", [("gelu", "forward"), ("silu", "backward"), ("tanh", "backward_from_y"),
                                             ("gelu_tanh", "backward")])
def test_bench_peer_errors_match_a_direct_measurement(name, direction):
    torch = pytest.importorskip("torch")
    import numpy as np
    import nnfuse as nf
    from nnfuse import bench, reference
    from nnfuse._ulp import ulp_error
    from nnfuse.accuracy import backward_floor

    rng = np.random.default_rng(3)
    x = (rng.standard_normal(bench.ACCURACY_SAMPLE + 100) * 3).astype(np.float32)
    g = rng.standard_normal(x.size).astype(np.float32)
    got_nnfuse, got_torch = bench.peer_max_ulp(name, {"approximate": "tanh"} if name == "gelu_tanh" else {},
                                               direction, x, g)
    xs, gs = x[:bench.ACCURACY_SAMPLE], g[:bench.ACCURACY_SAMPLE]
    x64, g64 = xs.astype(np.float64), gs.astype(np.float64)
    tx, tg = torch.from_numpy(xs), torch.from_numpy(gs)
    approximate = "tanh" if name == "gelu_tanh" else "none"
    if direction == "forward":
        want_nnfuse, want_torch = nf.gelu(xs), torch.nn.functional.gelu(tx).numpy()
        expected, floor = reference.gelu(x64), None
    elif name == "silu":
        want_nnfuse = nf.silu_backward(gs, xs)
        want_torch = torch.ops.aten.silu_backward(tg, tx).numpy()
        expected, floor = reference.silu_backward(g64, x64), backward_floor("silu", {}, x64, g64)
    elif name == "tanh":
        y = nf.tanh(xs)
        want_nnfuse = nf.tanh_backward(gs, y=y)
        want_torch = torch.ops.aten.tanh_backward(tg, torch.from_numpy(y)).numpy()
        expected, floor = reference.backward_from_y("tanh", g64, y.astype(np.float64)), None
    else:
        want_nnfuse = nf.gelu_backward(gs, xs, approximate="tanh")
        want_torch = torch.ops.aten.gelu_backward(tg, tx, approximate=approximate).numpy()
        expected = reference.gelu_backward(g64, x64, approximate="tanh")
        floor = backward_floor("gelu", {"approximate": "tanh"}, x64, g64)
    assert got_nnfuse == ulp_error(want_nnfuse, expected, floor).max()
    assert got_torch == ulp_error(want_torch, expected, floor).max()


def test_check_passes_on_this_machine():
    result = run("check", "--points", "50000")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "all checks passed" in result.stdout


def test_accuracy_for_one_op(tmp_path):
    out = tmp_path / "acc.md"
    result = run("accuracy", "--ops", "relu", "--dtypes", "float32", "--points", "10000", "--markdown", str(out))
    assert result.returncode == 0
    assert "| relu | default | float32 | forward |" in out.read_text()
