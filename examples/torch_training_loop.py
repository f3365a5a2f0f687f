"""A PyTorch training loop with nnfuse inside: a 64-128-10 MLP on scikit-learn's
bundled 8x8 digits, trained twice from the same initial weights, once with
PyTorch alone (F.gelu, F.cross_entropy, clip_grad_norm_ + torch.optim.AdamW) and
once with nnfuse in the same places (nf.gelu and nf.softmax_cross_entropy
through autograd, nnfuse.optim.AdamW(model.parameters(), global_clipnorm=...)
stepped by step() from each parameter's .grad). Prints both runs' loss and
validation accuracy per epoch: the two follow each other, since every
function computes the same formulas within a few ulp.

    python examples/torch_training_loop.py
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
from sklearn.datasets import load_digits

import nnfuse as nf
from nnfuse import optim


class MLP(torch.nn.Module):
    def __init__(self, activation):
        super().__init__()
        self.hidden = torch.nn.Linear(64, 128)
        self.out = torch.nn.Linear(128, 10)
        self.activation = activation

    def forward(self, x):
        return self.out(self.activation(self.hidden(x)))


def torch_loss(logits, labels):
    return torch.nn.functional.cross_entropy(logits, labels)


def nnfuse_loss(logits, labels):
    loss, _ = nf.softmax_cross_entropy(logits, labels)  # the gradient is kept for backward
    return loss


def load(seed):
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    split = len(x) * 4 // 5
    return (x[order[:split]], y[order[:split]]), (x[order[split:]], y[order[split:]])


def train(model, optimizer, loss_fn, clip, data, epochs, batch, seed, framework):
    """One run: per epoch, the mean training loss and the validation accuracy."""
    (x, y), (vx, vy) = data
    shuffle = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=shuffle)
        total = 0.0
        for start in range(0, len(x), batch):
            rows = order[start:start + batch]
            loss = loss_fn(model(x[rows]), y[rows])
            loss.backward()
            if framework == "torch":
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            optimizer.zero_grad()
            total += loss.item() * len(rows)
        with torch.no_grad():
            accuracy = float((model(vx).argmax(1) == vy).float().mean())
        history.append((total / len(x), accuracy))
    return history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    data = load(args.seed)
    reference = MLP(lambda h: torch.nn.functional.gelu(h))
    fused = MLP(nf.gelu)
    fused.load_state_dict(copy.deepcopy(reference.state_dict()))
    runs = {
        "torch": train(reference, torch.optim.AdamW(reference.parameters(), lr=args.lr), torch_loss, args.clip,
                       data, args.epochs, args.batch, args.seed, "torch"),
        "nnfuse": train(fused, optim.AdamW(fused.parameters(), lr=args.lr, global_clipnorm=args.clip),
                        nnfuse_loss, args.clip, data, args.epochs, args.batch, args.seed, "nnfuse"),
    }
    print("epoch   torch loss   acc   nnfuse loss   acc")
    for epoch, ((tl, ta), (nl, na)) in enumerate(zip(runs["torch"], runs["nnfuse"]), 1):
        print(f"{epoch:5d}   {tl:10.5f}  {ta:.3f}   {nl:11.5f}  {na:.3f}")
    return runs


if __name__ == "__main__":
    main()
