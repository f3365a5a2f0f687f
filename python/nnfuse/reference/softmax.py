"""Float64 reference formulas for the softmax family and the softmax
cross-entropy (forward and backward). NumPy only.

Conventions (those of the kernels, see ``nnfuse.softmax``):

* ``z = scale * x`` in float64; positions where ``mask`` is False are -inf.
* A row with no finite maximum (all masked, or all -inf) gives zeros
  (log-softmax: -inf) with ``masked_rows="zero"`` and NaN with ``"nan"``.
* A NaN or +inf among a row's kept logits makes the row NaN.
* ``log S`` is computed as ``log1p`` of the sum without the terms equal to 1,
  so the log-softmax of a dominant logit (close to 0) is accurate.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "softmax",
    "log_softmax",
    "softmax_backward",
    "log_softmax_backward",
    "softmax_cross_entropy",
]


def _stats(x, axis, scale, mask):
    """z, M, log S, S and the masked-row flags, float64, with axis kept."""
    z = np.asarray(x, dtype=np.float64) * float(scale)
    if mask is not None:
        z = np.where(np.broadcast_to(np.asarray(mask, bool), z.shape), z, -np.inf)
    with np.errstate(invalid="ignore", over="ignore"):
        m = np.max(z, axis=axis, keepdims=True) if z.size else np.zeros(z.shape)
        empty = m == -np.inf
        m_safe = np.where(empty, 0.0, m)
        e = np.exp(z - m_safe)
        ones = e == 1.0
        rest = np.sum(np.where(ones, 0.0, e), axis=axis, keepdims=True)
        count = np.sum(ones, axis=axis, keepdims=True)
        s = count + rest
        with np.errstate(divide="ignore"):  # rows with nothing kept give log(0); `empty` marks them
            log_s = np.log1p((count - 1) + rest)
    return z, m_safe, e, s, log_s, empty


def softmax(x, axis=-1, scale=1.0, mask=None, masked_rows="zero"):
    """exp(z - max z) / sum exp(z - max z) along axis, z = scale * x (masked: -inf)."""
    _, _, e, s, _, empty = _stats(x, axis, scale, mask)
    with np.errstate(invalid="ignore"):
        y = e / s
    return np.where(empty, np.nan if masked_rows == "nan" else 0.0, y)


def log_softmax(x, axis=-1, scale=1.0, mask=None, masked_rows="zero"):
    """(z - max z) - log sum exp(z - max z) along axis, z = scale * x (masked: -inf)."""
    z, m, _, _, log_s, empty = _stats(x, axis, scale, mask)
    with np.errstate(invalid="ignore", over="ignore"):
        y = (z - m) - log_s
    return np.where(empty, np.nan if masked_rows == "nan" else -np.inf, y)


def softmax_backward(grad, y, axis=-1, scale=1.0):
    """scale * y * (grad - sum(grad * y))."""
    g = np.asarray(grad, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    dot = np.sum(g * y, axis=axis, keepdims=True)
    return float(scale) * (y * (g - dot))


def log_softmax_backward(grad, y, axis=-1, scale=1.0):
    """scale * (grad - exp(y) * sum(grad))."""
    g = np.asarray(grad, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(scale) * (g - np.exp(y) * np.sum(g, axis=axis, keepdims=True))


def softmax_cross_entropy(logits, labels, ignore_index=-100, label_smoothing=0.0, z_loss=0.0, reduction="mean"):
    """(loss, grad_logits) of torch.nn.functional.cross_entropy with class-index
    targets, label smoothing and ignore_index, plus z_loss * logsumexp^2 per
    row; grad is that of the returned loss ("none": of the sum of the rows)."""
    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    classes = z.shape[-1]
    eps = float(label_smoothing)
    valid = labels != ignore_index
    safe = np.where(valid, labels, 0)
    _, m, e, s, log_s, _ = _stats(z, -1, 1.0, None)
    lse = m + log_s
    z_t = np.take_along_axis(z, safe[..., None], axis=-1)
    # The mean through an exact power-of-two scaling: the sum of logits near
    # the float64 maximum would overflow.
    mean_z = np.mean(z * 2.0**-80, axis=-1, keepdims=True) * 2.0**80
    # Without smoothing its term is left out, as the kernels do: 0 * inf
    # would make a row with a -inf logit NaN.
    with np.errstate(over="ignore", invalid="ignore"):
        smooth_term = eps * ((m - mean_z) + log_s) if eps > 0 else 0.0
        loss = (1 - eps) * ((m - z_t) + log_s) + smooth_term
    loss = loss + z_loss * lse * lse
    loss = np.where(valid[..., None], loss, 0.0)[..., 0]
    p = e / s
    k = 1 + 2 * z_loss * lse
    grad = p * k - eps / classes
    # Where the label's logit is the row's maximum (its term e_t is 1), its
    # entry from the sum of the other terms: p_t - 1 = -rest / S, so p_t k -
    # eps / C - (1 - eps) = (k - 1) - (rest / S) k + eps (1 - 1 / C), where
    # 1 / S - 1 would cancel for a confident row (S near 1). Elsewhere p_t <=
    # 1/2 and the direct form is kept (the other would cancel k - 1 against
    # (rest / S) k for a large k).
    is_label = np.arange(classes) == safe[..., None]
    rest = np.sum(np.where(is_label, 0.0, e), axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        label_grad = ((k - 1) - (rest / s) * k) + eps * (1 - 1 / classes)
    at_max = np.take_along_axis(e, safe[..., None], axis=-1) == 1.0
    grad = np.where(is_label & at_max, label_grad, grad - (1 - eps) * is_label)
    counted = int(np.count_nonzero(valid))
    if reduction == "mean":
        weight = 1.0 / counted if counted else 1.0
        total = loss.sum() / counted if counted else np.nan
    elif reduction == "sum":
        weight, total = 1.0, loss.sum()
    else:
        weight, total = 1.0, loss
    grad = np.where(valid[..., None], grad * weight, 0.0)
    return total, grad
