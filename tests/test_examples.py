"""Smoke tests: every example runs with tiny settings and shows what it claims."""

import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_xor_learns_the_truth_table(capsys):
    prediction = _load("xor").main(["--steps", "2000"])
    np.testing.assert_allclose(prediction[:, 0], [0, 1, 1, 0], atol=0.1)
    assert "1 xor 1 = 0" in capsys.readouterr().out


def test_activations_digits_trains_every_activation(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    plot = tmp_path / "curves.png"
    histories = _load("activations_digits").main(["--epochs", "3", "--plot", str(plot)])
    assert len(histories) == 9
    for name, history in histories.items():
        loss, accuracy = history[-1]
        assert np.isfinite(loss), name
        if name != "sigmoid":  # sigmoid is the slow learner the experiment exists to show
            assert accuracy > 0.8, (name, accuracy)
    assert plot.stat().st_size > 10_000


def test_gradient_flow_shows_vanishing_gradients_and_clipping(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    plot = tmp_path / "flow.png"
    norms, runs = _load("gradient_flow").main(["--depth", "12", "--steps", "30", "--plot", str(plot)])
    assert norms["sigmoid"][0] < 1e-4 * norms["relu"][0]  # vanishing gradient at the input side
    clipped_losses, clipped_norms = runs["global_clipnorm=1"]
    unclipped_losses, _ = runs["no clipping"]
    assert all(np.isfinite(clipped_losses))
    assert clipped_losses[-1] < clipped_losses[0]
    assert not all(np.isfinite(unclipped_losses)) or max(unclipped_losses) > 100 * max(clipped_losses)
    assert plot.stat().st_size > 10_000


def test_torch_training_loop_follows_pytorch(capsys):
    """nnfuse's gelu, fused cross-entropy (both through autograd) and AdamW stepped from .grad, in a
    PyTorch loop, learn as PyTorch's own functions do from the same weights and batches. Every op
    agrees with PyTorch's within a few ulp, so the losses stay close; 1% is far below what a wrong
    gradient or update does here (the loss falls from 2.3 to under 0.5 in three epochs)."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    runs = _load("torch_training_loop").main(["--epochs", "3"])
    for (torch_loss, _), (nnfuse_loss, nnfuse_accuracy) in zip(runs["torch"], runs["nnfuse"]):
        assert abs(nnfuse_loss - torch_loss) <= 0.01 * torch_loss
    assert runs["nnfuse"][-1][0] < 0.5 and runs["nnfuse"][-1][1] > 0.85
    assert "nnfuse loss" in capsys.readouterr().out
