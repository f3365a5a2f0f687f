"""PyTorch autograd for the public functions.

A forward function called on torch tensors of which one requires grad, while
autograd records (``torch.is_grad_enabled()``), runs as one node of the graph:
its result carries a ``grad_fn`` whose backward is the matching nnfuse backward
function (``gelu`` -> ``gelu_backward`` from x, ``softmax`` ->
``softmax_backward`` from y, ``softmax_cross_entropy`` -> the gradient it
computed anyway, times the loss's incoming gradient). Without this the tensor
would come back detached and training would silently stop at it.

Refused with a ValueError naming the function, where autograd cannot follow:
``out=`` or ``inplace=True`` (as PyTorch refuses ``out=`` for inputs that
require grad), and calls of the backward functions themselves on inputs that
require grad (they have no backward of their own: no double backward).

PyTorch is imported only when the caller's values are torch tensors
(``sys.modules`` tells), as in ``_interop``.
"""

from __future__ import annotations

import sys

import numpy as np


def grad_needed(*values) -> bool:
    """True when autograd records and one of ``values`` is a tensor that
    requires grad."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.is_grad_enabled():
        return False
    return any(isinstance(v, torch.Tensor) and v.requires_grad for v in values)


def refuse_backward_input(func, *values):
    """Raises for a backward function called on inputs that require grad."""
    if grad_needed(*values):
        raise ValueError(
            f"{func}(): an input requires grad, but {func} records no autograd graph of its own (no double "
            "backward); call it under torch.no_grad() or on detached tensors")


def run(func, rule, inputs, out=None, inplace=False):
    """The forward of ``rule`` on ``inputs`` (the tensor that requires grad,
    and any other array inputs: tensors, NumPy arrays, lists) as one autograd
    node. rule.forward(*inputs) returns (result, tensors to save,
    outputs that have no gradient); rule.backward(saved, output_grads) returns
    one gradient (or None) per input."""
    if out is not None or inplace:
        what = "'out'" if out is not None else "inplace=True"
        raise ValueError(
            f"{func}(): {what} cannot be used while autograd records (an input requires grad); call it without "
            f"{what}, or under torch.no_grad()")
    return _node_class().apply(rule, *(_as_tensor(v) for v in inputs))


def _as_tensor(value):
    """Array inputs beside the tensor that requires grad (a NumPy weight, a
    list) as torch tensors, which the node can save; NumPy arrays without a
    copy. The results are torch tensors either way (see _interop)."""
    import torch

    if value is None or isinstance(value, torch.Tensor):
        return value
    from ._interop import _numpy_to_torch

    return _numpy_to_torch(np.asarray(value))


_NODE = None


def _node_class():
    global _NODE
    if _NODE is None:
        import torch
        from torch.autograd.function import once_differentiable

        class NnfuseNode(torch.autograd.Function):
            @staticmethod
            def forward(ctx, rule, *inputs):
                result, saved, no_grad = rule.forward(*inputs)
                ctx.rule = rule
                ctx.save_for_backward(*saved)
                if no_grad:
                    ctx.mark_non_differentiable(*no_grad)
                return result

            @staticmethod
            @once_differentiable
            def backward(ctx, *output_grads):
                grads = ctx.rule.backward(ctx.saved_tensors, output_grads)
                # None for inputs that take no gradient (non-tensors, or tensors without requires_grad).
                return (None, *(g if need else None for g, need in zip(grads, ctx.needs_input_grad[1:])))

        _NODE = NnfuseNode
    return _NODE


class Rule:
    """forward(*inputs) -> (result, saved, outputs without gradient);
    backward(saved, output_grads) -> a gradient per input. The callables
    given are the public nnfuse functions with their options bound."""

    def __init__(self, forward, backward, save_output=False):
        self._forward = forward
        self._backward = backward
        self._save_output = save_output

    def forward(self, *inputs):
        result = self._forward(*inputs)
        return result, (result,) if self._save_output else inputs, ()

    def backward(self, saved, output_grads):
        grads = self._backward(output_grads[0], *saved)
        return grads if isinstance(grads, tuple) else (grads,)


class CrossEntropyRule:
    """softmax_cross_entropy: the result is (loss, grad_logits); grad_logits
    has no gradient, and the logits' gradient is grad_logits times the loss's
    incoming gradient (per row for reduction="none")."""

    def __init__(self, forward, per_row):
        self._forward = forward
        self._per_row = per_row

    def forward(self, logits):
        loss, grad = self._forward(logits)
        return (loss, grad), (grad,), (grad,)

    def backward(self, saved, output_grads):
        (grad,) = saved
        loss_grad = output_grads[0]
        if self._per_row:
            loss_grad = loss_grad.unsqueeze(-1)
        return (grad * loss_grad.to(grad.dtype),)
