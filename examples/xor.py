"""The classic XOR back-propagation network: 2 inputs -> hidden ReLU layer ->
1 output, squared error, plain SGD — with nnfuse's relu forward/backward and
SGD step.

    python examples/xor.py
"""

from __future__ import annotations

import argparse

import numpy as np

import nnfuse as nf
from nnfuse import optim

INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
TARGETS = np.array([[0], [1], [1], [0]], np.float32)


def train(hidden=8, steps=2000, lr=0.05, seed=0):
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 1.0, (2, hidden)).astype(np.float32)
    b1 = np.full(hidden, 0.1, np.float32)
    w2 = rng.normal(0, 1.0 / np.sqrt(hidden), (hidden, 1)).astype(np.float32)
    b2 = np.zeros(1, np.float32)
    sgd = optim.SGD([w1, b1, w2, b2], lr=lr)
    for _ in range(steps):
        z = INPUTS @ w1 + b1
        h = nf.relu(z)
        prediction = h @ w2 + b2
        error = prediction - TARGETS  # d(0.5 * mean squared error) / d prediction, times batch size
        grad_prediction = error / len(INPUTS)
        grad_h = grad_prediction @ w2.T
        grad_z = nf.relu_backward(grad_h, z)
        sgd.step([INPUTS.T @ grad_z, grad_z.sum(0), h.T @ grad_prediction, grad_prediction.sum(0)])
    return nf.relu(INPUTS @ w1 + b1) @ w2 + b2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    prediction = train(steps=args.steps, seed=args.seed)
    for (a, b), target, p in zip(INPUTS.astype(int), TARGETS[:, 0], prediction[:, 0]):
        print(f"{a} xor {b} = {int(target)}   predicted {p:+.3f}")
    return prediction


if __name__ == "__main__":
    main()
