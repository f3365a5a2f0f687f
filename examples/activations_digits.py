"""Train the same small network once per activation on scikit-learn's bundled
8x8 digits (no download) and compare validation loss and accuracy.

Every activation's forward and backward, the fused softmax cross-entropy
(loss and gradient in one pass) and the Adam step with clipvalue=0.5 run in
nnfuse; the matrix products use NumPy.

    python examples/activations_digits.py                 # table + digits_curves.png
    python examples/activations_digits.py --epochs 2 --plot ''   # quick run
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import nnfuse as nf
from nnfuse import optim

ACTIVATIONS = [
    ("sigmoid", {}),
    ("tanh", {}),
    ("relu", {}),
    ("leaky_relu", {"negative_slope": 0.2}),
    ("elu", {}),
    ("selu", {}),
    ("gelu", {}),
    ("silu", {}),
    ("mish", {}),
]


def load_digits_split(seed: int, validation_fraction: float = 0.2):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * (1 - validation_fraction))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


class MLP:
    """in -> hidden -> hidden -> 10 logits, one activation throughout."""

    def __init__(self, sizes, activation, params, seed):
        rng = np.random.default_rng(seed)
        self.weights, self.biases = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            limit = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform, the same for every activation
            self.weights.append(rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32))
            self.biases.append(np.zeros(fan_out, np.float32))
        self.forward_fn = getattr(nf, activation)
        self.backward_fn = getattr(nf, activation + "_backward")
        self.act_params = params

    def parameters(self):
        return [p for pair in zip(self.weights, self.biases) for p in pair]

    def forward(self, x):
        pre_activations, inputs = [], [x]
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = h @ w + b
            if i == len(self.weights) - 1:
                return z, pre_activations, inputs
            pre_activations.append(z)
            h = self.forward_fn(z, **self.act_params)
            inputs.append(h)

    def backward(self, grad_logits, pre_activations, inputs):
        grads = []
        g = grad_logits
        for i in reversed(range(len(self.weights))):
            grads.append(g.sum(axis=0))  # bias
            grads.append(inputs[i].T @ g)  # weight
            if i > 0:
                g = self.backward_fn(g @ self.weights[i].T, pre_activations[i - 1], **self.act_params)
        return grads[::-1]


def evaluate(model, x, y):
    logits, _, _ = model.forward(x)
    loss, _ = nf.softmax_cross_entropy(logits, y)
    return float(loss), float(np.mean(np.argmax(logits, axis=1) == y))


def train(activation, params, data, epochs, batch_size, hidden, seed):
    x_train, y_train, x_val, y_val = data
    model = MLP([x_train.shape[1], hidden, hidden, 10], activation, params, seed)
    optimizer = optim.Adam(model.parameters(), lr=2e-3, clipvalue=0.5)
    rng = np.random.default_rng(seed + 1)
    history = []
    for _ in range(epochs):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            logits, pre, inputs = model.forward(x_train[batch])
            _, grad_logits = nf.softmax_cross_entropy(logits, y_train[batch])
            optimizer.step(model.backward(grad_logits, pre, inputs))
        history.append(evaluate(model, x_val, y_val))
    return history


def plot(histories, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, history in histories.items():
        epochs = np.arange(1, len(history) + 1)
        ax_loss.plot(epochs, [h[0] for h in history], label=name)
        ax_acc.plot(epochs, [h[1] for h in history], label=name)
    ax_loss.set(xlabel="epoch", ylabel="validation loss", yscale="log", title="Validation loss")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy")
    ax_acc.legend(fontsize=8)
    fig.suptitle("8x8 digits, 64-64-64-10 MLP, Adam(clipvalue=0.5), all kernels from nnfuse")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="digits_curves.png", help="PNG path ('' for none)")
    args = parser.parse_args(argv)

    data = load_digits_split(args.seed)
    histories = {}
    start = time.perf_counter()
    print(f"{'activation':<22} {'val loss':>9} {'val acc':>8}")
    for name, params in ACTIVATIONS:
        label = name + "".join(f"({v})" for v in params.values())
        histories[label] = train(name, params, data, args.epochs, args.batch_size, args.hidden, args.seed)
        loss, acc = histories[label][-1]
        print(f"{label:<22} {loss:9.4f} {acc:8.3f}")
    print(f"trained {len(ACTIVATIONS)} networks in {time.perf_counter() - start:.1f} s")
    if args.plot:
        plot(histories, args.plot)
        print(f"wrote {args.plot}")
    return histories


if __name__ == "__main__":
    main()
