"""Float64 reference for the clipped optimizers: formulas only, NumPy only.

Every function updates float64 arrays in place, exactly as written in the PyTorch (``semantics="torch"``)
or Keras 3 (``semantics="keras"``) source, and returns ``(grad_norm, clip_factor, skipped)``.
``nnfuse.optim`` documents the formulas; this module is their literal transcription, kept apart
from the compiled code so that it can judge it.

Gradient preprocessing (:func:`clip_gradients`), in this order:

* ``nonfinite="zero"``: NaN/inf gradient elements become 0 (also for the norms);
  ``"skip"``: any non-finite element skips the step (nothing changes);
  ``"propagate"``: PyTorch's behaviour (the NaN/inf flows through the norm and the update).
* ``clipvalue=c``: clamp to [-c, c]; ``clipnorm=c``: per array g * c / max(||g||, c);
  ``global_clipnorm=c``: g * min(1, c / (||g|| + 1e-6)) (torch) or g * c / max(||g||, c) (keras),
  ||g|| over all arrays (``global_norm_reduce`` maps the local sum of squares to the global one).
  Norms of finite gradients do not overflow where their squares do (float64 gradients of 1e200);
  the sum given to ``global_norm_reduce`` is a plain sum, +inf there.
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence

import numpy as np

__all__ = ["clip_gradients", "adam_step", "sgd_step", "rmsprop_step", "adagrad_step"]


_POW2_600 = 2.0**600


def _norm(arrays) -> float:
    """The 2-norm over the arrays' elements. Where the float64 sum of squares
    overflows with every element finite, the norm is 2^600 sqrt(sum((x 2^-600)^2)),
    finite up to the float64 range (float64 gradients of 1e200)."""
    with np.errstate(all="ignore"):
        total = float(sum(float(np.sum(x * x)) for x in arrays))
        if math.isinf(total) and all(np.all(np.isfinite(x)) for x in arrays):
            scaled = [x * (1.0 / _POW2_600) for x in arrays]
            return math.sqrt(float(sum(float(np.sum(x * x)) for x in scaled))) * _POW2_600
    return math.sqrt(total) if not math.isnan(total) else total


def clip_gradients(grads: Sequence[np.ndarray], *, clipvalue=None, clipnorm=None, global_clipnorm=None,
                   nonfinite="skip", semantics="torch", global_norm_reduce: Optional[Callable] = None):
    """(float64 clipped grads, global norm before clipping, clip factor, skipped)."""
    g = [np.array(x, dtype=np.float64) for x in grads]
    nonfinite_seen = any(not np.all(np.isfinite(x)) for x in g)
    if nonfinite == "zero":
        g = [np.where(np.isfinite(x), x, 0.0) for x in g]
    if global_norm_reduce is not None:
        # The reducer takes plain sums of squares: one that overflows is +inf.
        with np.errstate(all="ignore"):
            local = float(sum(float(np.sum(x * x)) for x in g))
        total = global_norm_reduce(local)
        norm = math.sqrt(total) if not math.isnan(total) else total
        reduced_nonfinite = not math.isfinite(total)
    else:
        norm, reduced_nonfinite = _norm(g), False
    if nonfinite == "skip" and (nonfinite_seen or reduced_nonfinite):
        return g, norm, 1.0, True
    factor = 1.0
    with np.errstate(all="ignore"):
        if global_clipnorm is not None:
            c = float(global_clipnorm)
            if math.isnan(norm):
                factor = norm
            elif semantics == "keras":
                factor = c / max(norm, c)
            else:
                factor = min(1.0, c / (norm + 1e-6))
            g = [x * factor for x in g]
        elif clipnorm is not None:
            c = float(clipnorm)
            factors = []
            for i, x in enumerate(g):
                n = _norm([x])
                f = n if math.isnan(n) else c / max(n, c)
                factors.append(f)
                g[i] = x * f
            factor = min(factors, default=1.0) if not any(math.isnan(f) for f in factors) else math.nan
        elif clipvalue is not None:
            c = float(clipvalue)
            g = [np.where(np.isnan(x), x, np.clip(x, -c, c)) for x in g]
    return g, norm, factor, False


def _decay(p, g, lr, weight_decay, decoupled):
    """Weight decay: decoupled p *= 1 - lr*wd (AdamW, every Keras optimizer) or g += wd*p."""
    if weight_decay == 0:
        return g
    if decoupled:
        p *= 1 - lr * weight_decay
        return g
    return g + weight_decay * p


def adam_step(params: List[np.ndarray], grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, beta1=0.9, beta2=0.999,
              eps=None, weight_decay=0.0, decoupled=False, amsgrad=False, max_exp_avg_sqs=None, maximize=False,
              semantics="torch", **clip):
    g, norm, factor, skipped = clip_gradients(grads, semantics=semantics, **clip)
    if skipped:
        return norm, factor, True
    keras = semantics == "keras"
    eps = (1e-7 if keras else 1e-8) if eps is None else eps
    bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
    with np.errstate(all="ignore"):
        for i, p in enumerate(params):
            gi = -g[i] if maximize else g[i]
            gi = _decay(p, gi, lr, weight_decay, decoupled or keras)
            m, v = exp_avgs[i], exp_avg_sqs[i]
            if keras:
                m += (gi - m) * (1 - beta1)
                v += (gi * gi - v) * (1 - beta2)
            else:
                m[...] = beta1 * m + (1 - beta1) * gi
                v[...] = beta2 * v + (1 - beta2) * gi * gi
            vv = v
            if amsgrad:
                np.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])
                vv = max_exp_avg_sqs[i]
            if keras:
                p -= lr * math.sqrt(bc2) / bc1 * m / (np.sqrt(vv) + eps)
            else:
                p -= lr / bc1 * m / (np.sqrt(vv) / math.sqrt(bc2) + eps)
    return norm, factor, False


def sgd_step(params, grads, momentum_buffers=None, *, step, lr, momentum=0.0, dampening=0.0, nesterov=False,
             weight_decay=0.0, maximize=False, semantics="torch", **clip):
    g, norm, factor, skipped = clip_gradients(grads, semantics=semantics, **clip)
    if skipped:
        return norm, factor, True
    keras = semantics == "keras"
    with np.errstate(all="ignore"):
        for i, p in enumerate(params):
            gi = -g[i] if maximize else g[i]
            gi = _decay(p, gi, lr, weight_decay, keras)
            if keras:
                if momentum != 0:
                    buf = momentum_buffers[i]
                    buf[...] = buf * momentum - gi * lr
                    p += (buf * momentum - gi * lr) if nesterov else buf
                else:
                    p -= gi * lr
                continue
            if momentum != 0:
                buf = momentum_buffers[i]
                if step == 1:
                    buf[...] = gi
                else:
                    buf[...] = momentum * buf + (1 - dampening) * gi
                gi = gi + momentum * buf if nesterov else buf.copy()
            p -= lr * gi
    return norm, factor, False


def rmsprop_step(params, grads, square_avgs, grad_avgs=None, momentum_buffers=None, *, step, lr=1e-2, alpha=0.99,
                 eps=None, weight_decay=0.0, momentum=0.0, centered=False, maximize=False, semantics="torch", **clip):
    g, norm, factor, skipped = clip_gradients(grads, semantics=semantics, **clip)
    if skipped:
        return norm, factor, True
    keras = semantics == "keras"
    eps = (1e-7 if keras else 1e-8) if eps is None else eps
    with np.errstate(all="ignore"):
        for i, p in enumerate(params):
            gi = -g[i] if maximize else g[i]
            gi = _decay(p, gi, lr, weight_decay, keras)
            sq = square_avgs[i]
            sq[...] = alpha * sq + (1 - alpha) * gi * gi
            w = sq
            if centered:
                ga = grad_avgs[i]
                ga[...] = alpha * ga + (1 - alpha) * gi
                w = sq - ga * ga
            if keras:
                inc = lr * gi / np.sqrt(w + eps)
                if momentum > 0:
                    buf = momentum_buffers[i]
                    buf[...] = momentum * buf + inc
                    p -= buf
                else:
                    p -= inc
                continue
            d = np.sqrt(w) + eps
            if momentum > 0:
                buf = momentum_buffers[i]
                buf[...] = momentum * buf + gi / d
                p -= lr * buf
            else:
                p -= lr * gi / d
    return norm, factor, False


def adagrad_step(params, grads, state_sums, *, step, lr=1e-2, lr_decay=0.0, eps=None, weight_decay=0.0,
                 maximize=False, semantics="torch", **clip):
    g, norm, factor, skipped = clip_gradients(grads, semantics=semantics, **clip)
    if skipped:
        return norm, factor, True
    keras = semantics == "keras"
    eps = (1e-7 if keras else 1e-10) if eps is None else eps
    clr = lr / (1 + (step - 1) * lr_decay)
    with np.errstate(all="ignore"):
        for i, p in enumerate(params):
            gi = -g[i] if maximize else g[i]
            gi = _decay(p, gi, lr, weight_decay, keras)
            s = state_sums[i]
            s += gi * gi
            d = np.sqrt(s + eps) if keras else np.sqrt(s) + eps
            p -= clr * gi / d
    return norm, factor, False
