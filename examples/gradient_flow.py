"""Gradient flow in a deep MLP (20 layers): per-layer gradient norms at
initialisation with sigmoid, relu and selu (vanishing gradients with
sigmoid), and a training run that explodes without clipping but trains with
``global_clipnorm``. All activations, the loss and the optimizer steps are
nnfuse kernels; matrix products use NumPy.

    python examples/gradient_flow.py                      # gradient_flow.png
"""

from __future__ import annotations

import argparse

import numpy as np

import nnfuse as nf
from nnfuse import optim

# Initialisation scale per activation: Glorot for sigmoid, He for relu,
# LeCun for selu (the scale SELU's self-normalisation assumes).
INIT_GAIN = {"sigmoid": 1.0, "relu": 2.0, "selu": 1.0}


def make_network(depth, width, n_in, n_out, activation, rng, gain_multiplier=1.0):
    sizes = [n_in] + [width] * (depth - 1) + [n_out]
    weights = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        if activation == "sigmoid":
            std = np.sqrt(2.0 / (fan_in + fan_out))
        else:
            std = np.sqrt(INIT_GAIN[activation] / fan_in)
        weights.append((rng.standard_normal((fan_in, fan_out)) * std * gain_multiplier).astype(np.float32))
    return weights


def forward_backward(weights, activation, x, labels):
    """Loss and the gradient of every weight matrix."""
    act = getattr(nf, activation)
    act_backward = getattr(nf, activation + "_backward")
    inputs, pre = [x], []
    h = x
    for w in weights[:-1]:
        z = h @ w
        pre.append(z)
        h = act(z)
        inputs.append(h)
    logits = h @ weights[-1]
    loss, g = nf.softmax_cross_entropy(logits, labels)
    grads = [None] * len(weights)
    for i in reversed(range(len(weights))):
        grads[i] = inputs[i].T @ g
        if i > 0:
            g = act_backward(g @ weights[i].T, pre[i - 1])
    return float(loss), grads


def gradient_norms_at_init(depth, width, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((256, width)).astype(np.float32)
    labels = rng.integers(0, 10, 256)
    norms = {}
    for activation in ("sigmoid", "relu", "selu"):
        weights = make_network(depth, width, width, 10, activation, np.random.default_rng(seed))
        _, grads = forward_backward(weights, activation, x, labels)
        norms[activation] = [float(np.linalg.norm(g)) for g in grads]
    return norms


def exploding_run(depth, width, steps, clip, seed):
    """relu network initialised 1.5x too large, SGD with a large step:
    without clipping the loss blows up; global_clipnorm keeps it trainable."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x_all = (data.data / 16.0).astype(np.float32)
    y_all = data.target
    rng = np.random.default_rng(seed)
    weights = make_network(depth, width, x_all.shape[1], 10, "relu", rng, gain_multiplier=1.5)
    sgd = optim.SGD(weights, lr=0.05, momentum=0.9, global_clipnorm=clip)
    losses, norms = [], []
    for _ in range(steps):
        batch = rng.integers(0, len(x_all), 128)
        with np.errstate(over="ignore", invalid="ignore"):  # the unclipped run overflows: that is the point
            loss, grads = forward_backward(weights, "relu", x_all[batch], y_all[batch])
        record = sgd.step(grads)
        losses.append(loss)
        norms.append(float(record.grad_norm) if record.grad_norm is not None else np.nan)
    return losses, norms


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="gradient_flow.png", help="PNG path ('' for none)")
    args = parser.parse_args(argv)

    norms = gradient_norms_at_init(args.depth, args.width, args.seed)
    print("gradient norm of each layer's weights at initialisation (layer 1 = input side):")
    print("layer " + " ".join(f"{a:>10}" for a in norms))
    for layer in range(args.depth):
        print(f"{layer + 1:5d} " + " ".join(f"{norms[a][layer]:10.3e}" for a in norms))
    runs = {
        "no clipping": exploding_run(args.depth, args.width, args.steps, None, args.seed),
        f"global_clipnorm={args.clip:g}": exploding_run(args.depth, args.width, args.steps, args.clip, args.seed),
    }
    for name, (losses, _) in runs.items():
        finite = [l for l in losses if np.isfinite(l)]
        last = losses[-1]
        print(f"{name:>22}: first loss {losses[0]:.3g}, last loss {last:.3g}, "
              f"max loss {max(finite) if finite else float('nan'):.3g}, non-finite losses {len(losses) - len(finite)}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        for activation, values in norms.items():
            ax1.semilogy(np.arange(1, args.depth + 1), values, marker="o", label=activation)
        ax1.set(xlabel="layer (1 = input side)", ylabel="||dL/dW||", title="Gradient norms at initialisation")
        ax1.legend()
        for name, (losses, _) in runs.items():
            shown = np.array(losses, dtype=np.float64)
            shown[~np.isfinite(shown)] = np.nan
            ax2.semilogy(shown, label=name)
        ax2.set(xlabel="step", ylabel="training loss", title="Deep relu MLP, SGD(lr=0.05, momentum=0.9)")
        ax2.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        plt.close(fig)
        print(f"wrote {args.plot}")
    return norms, runs


if __name__ == "__main__":
    main()
