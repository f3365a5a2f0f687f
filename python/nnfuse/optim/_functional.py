"""Functional multi-tensor optimizer steps: one call updates a whole list of
arrays in place (one gradient pass when needed, one fused update pass). On the
CPU the lists hold NumPy arrays or torch CPU tensors (run through NumPy views of
their memory; an applied step advances the parameters' autograd version, as
torch.optim's in-place updates do).

Formulas (t = the 1-based step number, g = the preprocessed gradient)::

    preprocessing   nonfinite="zero": NaN/inf -> 0;  clip factor (clipnorm / global_clipnorm) or
                    clamp to [-c, c] (clipvalue);  g = -g when maximize
    weight decay    torch: g += wd * p (AdamW / decoupled=True: p *= 1 - lr*wd)
                    keras: p *= 1 - lr*wd always (Keras 3 applies decay to the variable)

    Adam   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  vmax = max(vmax, v) if amsgrad
           torch: p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)            (eps default 1e-8)
           keras: p -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)            (eps default 1e-7)
    SGD    torch: buf = g (t = 1) | mu buf + (1-dampening) g;  d = g + mu buf (nesterov) | buf;  p -= lr d
           keras: buf = mu buf - lr g;  p += mu buf - lr g (nesterov) | buf      (no momentum: p -= lr g)
    RMSprop sq = a sq + (1-a) g^2;  ga = a ga + (1-a) g, w = sq - ga^2 (centered) | w = sq
           torch: d = sqrt(w) + eps;  buf = mu buf + g/d, p -= lr buf  | p -= lr g/d (eps 1e-8)
           keras: inc = lr g / sqrt(w + eps);  buf = mu buf + inc, p -= buf | p -= inc     (eps 1e-7)
    Adagrad s += g^2;  clr = lr / (1 + (t-1) lr_decay)
           torch: p -= clr g / (sqrt(s) + eps) (eps 1e-10);  keras: p -= clr g / sqrt(s + eps) (eps 1e-7)

Clipping: ``clipvalue=c`` clamps each element; ``clipnorm=c`` scales each array by c / max(||g_i||, c);
``global_clipnorm=c`` scales every array by min(1, c / (||g|| + 1e-6)) (torch, as clip_grad_norm_) or
c / max(||g||, c) (keras), ||g|| the norm over all arrays, or over all processes when
``global_norm_reduce`` maps the local sum of squares to the global one.

Non-finite gradients: ``"skip"`` (default) leaves params, state and step count untouched when any
element is NaN/inf; ``"zero"`` treats such elements as 0 (norms included); ``"propagate"`` lets them
flow as PyTorch does. With ``global_norm_reduce`` and ``"skip"``, a non-finite global sum skips on
every process (the reduction carries the NaN/inf), which is what keeps shards in step. The norm of
finite gradients does not overflow where their squares do (float64 gradients of 1e200: the sum is kept
scaled by 2^-1200); ``global_norm_reduce`` receives plain sums, +inf for such a one, so "skip" skips.

Passes: the gradient pass (sum of squares in double over fixed 64K-element blocks, combined in a fixed
order: the same bits for every thread count; plus the non-finite check) runs for clipnorm,
global_clipnorm and for ``nonfinite="skip"`` — the skip decision has to come before the first write,
so under "skip" without norm clipping it is a read-only pre-scan of the gradients (4 bytes per float32
parameter on top of Adam's 28; see bench/optim.py). Choose ``"zero"`` or ``"propagate"`` for the
single-pass step.

dtypes: float32 params -> float32 state; float64 -> float64 state; float16/bfloat16 params and grads
-> float32 state, and with ``master_params`` (float32 copies) the update runs on the master copy and
the parameter receives its round-to-nearest-even value. Anything else is a TypeError. The
hyper-parameters and the step's constants (lr over the bias correction, 1 - lr * weight_decay) are
taken in the state's type: with float32 state, a finite value beyond the float32 range or a nonzero
one that rounds to 0 there (eps = 1e-50) is a ValueError naming it.

Memory: the arrays a step writes (params, states, master_params) must not overlap each other or any
gradient, else the update of one element would read what another's wrote (ValueError naming both,
before anything is written); gradients may share memory with each other. A gradient that is not
C-contiguous is copied first (on a GPU with its own library, torch or CuPy); parameters, states and
master weights must be C-contiguous.
"""

from __future__ import annotations

import math
import sys
from typing import Callable, List, NamedTuple, Optional, Sequence

import numpy as np

from .. import _C, _interop
from . import _device as _D
from .._array import (BFLOAT16, FLOAT32_MAX, as_real, bool_option, check_compute_range, dtype_code, integer_option,
                      real_option)

__all__ = ["StepRecord", "adam_step", "sgd_step", "rmsprop_step", "adagrad_step"]

# Flag bits (csrc/include/nnfuse/ops/optim.h: OptimFlag)
_AMSGRAD, _NESTEROV, _CENTERED, _MOMENTUM, _FIRST, _KERAS = 1, 2, 4, 8, 16, 32
_COUPLED_WD, _DECOUPLED_WD, _ZERO_NONFINITE, _CLAMP, _MAXIMIZE = 64, 128, 256, 512, 1024
_KINDS = {"adam": 0, "sgd": 1, "rmsprop": 2, "adagrad": 3}
_NONFINITE = {"skip": 0, "zero": 1, "propagate": 2}
_HALF_TYPES = (np.dtype(np.float16), BFLOAT16)


class StepRecord(NamedTuple):
    """What one step did. ``grad_norm``: the global gradient norm before clipping (None when no
    gradient pass ran); ``clip_factor``: the factor applied (the smallest per-array one for
    clipnorm; 1.0 when not clipping by norm); ``skipped``: the step changed nothing;
    ``step``: the number of steps applied so far."""

    grad_norm: Optional[float]
    clip_factor: float
    skipped: bool
    step: int


# Hyper-parameters with the ranges PyTorch's optimizers accept; None means the
# default only for eps.
_NON_NEGATIVE = ("lr", "eps", "weight_decay", "momentum", "dampening", "alpha", "lr_decay",
                 "initial_accumulator_value")
_UNIT_INTERVAL = ("beta1", "beta2")
_BOOLEAN = ("amsgrad", "maximize", "nesterov", "centered", "decoupled")


def check_hyper(func, hyper, compute_dtype=None):
    """Refuses what PyTorch's optimizers refuse: a hyper-parameter that is not a
    number, negative or not finite where >= 0 is required, betas outside [0, 1);
    with the compute dtype, also a value it cannot hold (check_compute_range).
    The switches (amsgrad, maximize ...) must be bools."""
    for key in _BOOLEAN:
        if key in hyper:
            bool_option(func, key, hyper[key])
    for key in _NON_NEGATIVE:
        if key not in hyper or (key == "eps" and hyper[key] is None):
            continue
        value = real_option(func, key, hyper[key])
        if not (value >= 0.0 and math.isfinite(value)):
            raise ValueError(f"{func}(): '{key}' must be a finite number >= 0, got {value}")
    betas = [(key, hyper[key]) for key in _UNIT_INTERVAL if key in hyper]
    if "betas" in hyper:
        if isinstance(hyper["betas"], (str, bytes)) or not hasattr(hyper["betas"], "__len__") \
                or len(hyper["betas"]) != 2:
            raise ValueError(f"{func}(): 'betas' must be two numbers in [0, 1), got {hyper['betas']!r}")
        betas = [("betas", b) for b in hyper["betas"]]
    for key, value in betas:
        if not 0.0 <= real_option(func, key, value) < 1.0:
            shown = tuple(hyper["betas"]) if key == "betas" else value
            raise ValueError(f"{func}(): '{key}' must be {'two numbers' if key == 'betas' else 'a number'} "
                             f"in [0, 1), got {shown}")
    if compute_dtype is not None:
        check_compute_range(func, compute_dtype, {key: hyper[key] for key in _NON_NEGATIVE if key in hyper})


def check_nesterov(func, nesterov, momentum, dampening):
    """SGD's rule, as PyTorch's: Nesterov momentum needs momentum and no dampening."""
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"{func}(): nesterov=True needs momentum > 0 and dampening = 0")


# Step counts are float64 in the bias corrections (beta ** step) and on the
# device (the step counter): exact up to 2^53. 2^1100 raised OverflowError.
MAX_STEP = 1 << 53


def _step_number(step, func):
    """The 1-based number of this update: an integer >= 1, checked before any
    formula uses it (the bias corrections, Adagrad's decay)."""
    step = integer_option(func, "step", step)
    if not 1 <= step <= MAX_STEP:
        raise ValueError(f"{func}(): 'step' must be >= 1 (the 1-based number of this update) and at most 2^53, "
                         f"got {step}")
    return step


def _required_states(func, states):
    """A step's state lists may not be None: a missing list would run every
    step from zero state (no momentum), silently."""
    for name, value in states:
        if value is None:
            raise ValueError(f"{func}(): '{name}' is required: a list of state arrays, one per parameter")


def _positive(value, name, func):
    if value is None:
        return None
    value = real_option(func, name, value)
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{func}(): '{name}' must be a finite number > 0, got {value}")
    return value


def check_options(func, clipvalue, clipnorm, global_clipnorm, nonfinite, semantics):
    """Validated clipping options -> (clip_mode, clip, clipvalue, flags)."""
    given = [n for n, v in (("clipvalue", clipvalue), ("clipnorm", clipnorm), ("global_clipnorm", global_clipnorm))
             if v is not None]
    if len(given) > 1:
        raise ValueError(f"{func}(): at most one clipping option may be given, got {', '.join(given)}")
    if nonfinite not in _NONFINITE:
        raise ValueError(f"{func}(): 'nonfinite' must be 'skip', 'zero' or 'propagate', got {nonfinite!r}")
    if semantics not in ("torch", "keras"):
        raise ValueError(f"{func}(): 'semantics' must be 'torch' or 'keras', got {semantics!r}")
    flags = (_ZERO_NONFINITE if nonfinite == "zero" else 0) | (_KERAS if semantics == "keras" else 0)
    if clipvalue is not None:
        return 1, 0.0, _positive(clipvalue, "clipvalue", func), flags | _CLAMP
    if clipnorm is not None:
        return 2, _positive(clipnorm, "clipnorm", func), 0.0, flags
    if global_clipnorm is not None:
        return 3, _positive(global_clipnorm, "global_clipnorm", func), 0.0, flags
    return 0, 0.0, 0.0, flags


def _as_list(value, name, func):
    if isinstance(value, np.ndarray) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{func}(): '{name}' must be a list of arrays, got {type(value).__name__}")
    return list(value)


def host_array(value, name, func, index=None):
    """A NumPy array as it is, a torch CPU tensor as a NumPy view of its memory
    (what a step writes lands in the tensor), anything else a TypeError naming
    it (``name[index]`` for an element of a list)."""
    if isinstance(value, np.ndarray):
        return value
    if _interop._torch_tensor(value):
        return _interop.torch_cpu_view(value, func, name, index)
    shown = name if index is None else f"{name}[{index}]"
    raise TypeError(f"{func}(): '{shown}' must be a numpy.ndarray or a torch CPU tensor, got {type(value).__name__}")


_NDARRAY_ONLY = {np.ndarray}


def host_arrays(values, name, func, converted=None):
    """host_array of each element of a list argument (a new list); the torch
    tensors among them are appended to ``converted``. Without torch imported
    there are none to look for; with it, a list of NumPy arrays alone is told
    apart by one set of types (31 us per 1000 arrays, where a Python loop
    cost 5% of an Adam step over 1000 arrays of 1K)."""
    values = _as_list(values, name, func)
    torch = sys.modules.get("torch")
    if torch is None or set(map(type, values)) <= _NDARRAY_ONLY:
        return values
    for i, value in enumerate(values):
        if isinstance(value, torch.Tensor):
            values[i] = _interop.torch_cpu_view(value, func, name, i)
        else:
            values[i] = host_array(value, name, func, i)
        if converted is not None and values[i] is not value:  # not an ndarray subclass (np.memmap)
            converted.append(value)
    return values


def mark_modified(tensors):
    """Advances the autograd version counter of torch tensors a step updated
    through NumPy views, as torch.optim's in-place updates do: a graph that
    saved their old values then refuses to run backward instead of using the
    new ones."""
    if tensors:
        from torch.autograd.graph import increment_version

        increment_version(tensors)


def state_dtype_for(param_dtype, master: bool, func: str):
    if param_dtype == np.float64:
        if master:
            raise TypeError(f"{func}(): master weights need float16 or bfloat16 parameters, got float64")
        return np.dtype(np.float64)
    if param_dtype == np.float32:
        if master:
            raise TypeError(f"{func}(): master weights need float16 or bfloat16 parameters, got float32")
        return np.dtype(np.float32)
    if param_dtype in _HALF_TYPES:
        return np.dtype(np.float32)
    raise TypeError(f"{func}(): parameters of dtype {param_dtype} are not supported "
                    "(float32, float64, float16, bfloat16)")


def _checked_reduce(func, reduce):
    """The caller's global_norm_reduce on the host path, with its result checked
    (the CUDA path's reducer takes and returns device scalars): a number (what
    float() takes, a 0-d tensor included), and a sum of squares is >= 0 (+inf
    or NaN carry a non-finite gradient). A negative sum would give a NaN norm
    that "skip" does not catch; the error comes before any array is written."""
    if reduce is None:
        return None

    def run(local):
        result = reduce(local)
        total = as_real(result)  # NaN allowed: it carries a non-finite gradient
        if total is None:
            raise TypeError(f"{func}(): 'global_norm_reduce' must return a number (the summed squares), "
                            f"got {type(result).__name__}")
        if total < 0:
            raise ValueError(f"{func}(): 'global_norm_reduce' returned {total}, but a sum of squares is >= 0")
        return total

    return run


def _step_flags(func, flags, params, grads, *, weight_decay, decoupled, maximize, clipvalue, clipnorm,
                global_clipnorm, nonfinite, semantics, global_norm_reduce):
    """The checks and kernel flags shared by the CPU and CUDA steps: returns (clip_mode, clip,
    clip_value, flags)."""
    clip_mode, clip, clip_value, option_flags = check_options(func, clipvalue, clipnorm, global_clipnorm,
                                                              nonfinite, semantics)
    if global_norm_reduce is not None and not callable(global_norm_reduce):
        raise TypeError(f"{func}(): 'global_norm_reduce' must be callable")
    flags |= option_flags | (_MAXIMIZE if maximize else 0)
    if weight_decay != 0:
        flags |= _DECOUPLED_WD if (decoupled or semantics == "keras") else _COUPLED_WD
    if len(grads) != len(params):
        raise ValueError(f"{func}(): 'grads' has {len(grads)} arrays but 'params' has {len(params)}")
    return clip_mode, clip, clip_value, flags


def _run(func, kind, params, grads, states, state_names, master_params, hyper, flags, *, named, step, weight_decay,
         decoupled, maximize, clipvalue, clipnorm, global_clipnorm, nonfinite, semantics, global_norm_reduce,
         arrays_ready=False):
    """The CPU path of every functional step: `hyper` the kernel's float64
    constants, `named` the hyper-parameters they come from (for the range
    check in the compute type). `arrays_ready` (the classes): params, states
    and master_params are lists of NumPy arrays already."""
    torch_params = []
    if arrays_ready:
        convert = _as_list
        params = _as_list(params, "params", func)
    else:
        convert = host_arrays
        params = host_arrays(params, "params", func, torch_params)
    grads = host_arrays(grads, "grads", func)
    clip_mode, clip, clip_value, flags = _step_flags(
        func, flags, params, grads, weight_decay=weight_decay, decoupled=decoupled, maximize=maximize,
        clipvalue=clipvalue, clipnorm=clipnorm, global_clipnorm=global_clipnorm, nonfinite=nonfinite,
        semantics=semantics, global_norm_reduce=global_norm_reduce)
    if not params:
        return StepRecord(0.0, 1.0, False, step)
    # Without torch imported host_arrays passes the list as given: the binding
    # names any element that is no array, but params[0] is read here first.
    first = host_array(params[0], "params", func, 0)
    code = dtype_code(first.dtype, "params[0]", func)
    masters = None if master_params is None else convert(master_params, "master_params", func)
    sdtype = state_dtype_for(first.dtype, masters is not None, func)
    check_compute_range(func, sdtype, dict(named, clipvalue=clipvalue))
    if sdtype == np.float32:
        beyond = [h for h in hyper if math.isfinite(h) and abs(h) > FLOAT32_MAX]
        if beyond:
            raise ValueError(f"{func}(): a constant of this step (the learning rate over its bias correction, or "
                             f"1 - lr * weight_decay) is {beyond[0]:.4g}, beyond the float32 range in which float32 "
                             f"and 16-bit parameters are updated")
    states = [None if s is None else convert(s, n, func) for s, n in zip(states, state_names)]
    states += [None] * (3 - len(states))
    names = list(state_names) + [""] * (3 - len(state_names))
    norm, factor, skipped = _C.optim_step(func, _KINDS[kind], code, first.dtype, sdtype, params, grads, names,
                                          states, masters, [float(h) for h in hyper], flags, clip_value,
                                          clip_mode, clip, _NONFINITE[nonfinite], semantics == "keras",
                                          _checked_reduce(func, global_norm_reduce))
    if not skipped:
        mark_modified(torch_params)
    return StepRecord(norm, factor, skipped, step - 1 if skipped else step)


def _device_step(func, kind, params, grads, states, state_names, master_params, base, lr, flags, *, named, step,
                 weight_decay, decoupled, maximize, clipvalue, clipnorm, global_clipnorm, nonfinite, semantics,
                 global_norm_reduce, prepared=None):
    """The CUDA path of every functional step (see nnfuse.optim._device): `step` is an int (the
    1-based number of this update) or a float64 device scalar holding the number of steps applied
    so far, incremented on the device unless the step is skipped; `lr` a float or a float64 device
    scalar."""
    if isinstance(step, (int, np.integer)):
        step = _step_number(step, func)
    params = list(params)
    grads = _as_list(grads, "grads", func) if not isinstance(grads, (list, tuple)) else list(grads)
    clip_mode, clip, clip_value, flags = _step_flags(
        func, flags, params, grads, weight_decay=weight_decay, decoupled=decoupled, maximize=maximize,
        clipvalue=clipvalue, clipnorm=clipnorm, global_clipnorm=global_clipnorm, nonfinite=nonfinite,
        semantics=semantics, global_norm_reduce=global_norm_reduce)
    states = list(states) + [None] * (3 - len(states))
    names = list(state_names) + [""] * (3 - len(state_names))
    return _D.run(func, kind, params, grads, states, names, master_params, base=base, lr=lr, flags=flags, step=step,
                  clip_mode=clip_mode, clip=clip, clipvalue=clip_value, nonfinite=nonfinite,
                  keras=semantics == "keras", reduce=global_norm_reduce, state_dtype_for=state_dtype_for,
                  prepared=prepared, named=dict(named, clipvalue=clipvalue))


def adam_step(params: List[np.ndarray], grads: Sequence[np.ndarray], exp_avgs: List[np.ndarray],
              exp_avg_sqs: List[np.ndarray], *, step: int, lr: float = 1e-3, beta1: float = 0.9,
              beta2: float = 0.999, eps: Optional[float] = None, weight_decay: float = 0.0, decoupled: bool = False,
              amsgrad: bool = False, max_exp_avg_sqs: Optional[List[np.ndarray]] = None, maximize: bool = False,
              master_params: Optional[List[np.ndarray]] = None, clipvalue=None, clipnorm=None,
              global_clipnorm=None, nonfinite: str = "skip", semantics: str = "torch",
              global_norm_reduce: Optional[Callable[[float], float]] = None, _prepared=None) -> StepRecord:
    """One Adam (AdamW with ``decoupled=True``) step over every array; see the module docstring."""
    func = "adam_step"
    _required_states(func, (("exp_avgs", exp_avgs), ("exp_avg_sqs", exp_avg_sqs)))
    check_hyper(func, dict(beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                           maximize=maximize, decoupled=decoupled))
    if amsgrad and max_exp_avg_sqs is None:
        raise ValueError(f"{func}(): amsgrad=True needs 'max_exp_avg_sqs'")
    eps = (1e-7 if semantics == "keras" else 1e-8) if eps is None else float(eps)
    named = dict(lr=lr, eps=eps, weight_decay=weight_decay)
    if _D.on_device(params):
        return _device_step(func, "adam", params, grads, [exp_avgs, exp_avg_sqs, max_exp_avg_sqs if amsgrad else None],
                            ["exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"], master_params,
                            [beta1, beta2, eps, weight_decay], lr, _AMSGRAD if amsgrad else 0, named=named, step=step,
                            weight_decay=weight_decay, decoupled=decoupled, maximize=maximize, clipvalue=clipvalue,
                            clipnorm=clipnorm, global_clipnorm=global_clipnorm, nonfinite=nonfinite,
                            semantics=semantics, global_norm_reduce=global_norm_reduce, prepared=_prepared)
    step = _step_number(step, func)
    check_hyper(func, dict(lr=lr))  # here: on the CUDA path lr may be a device scalar
    bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
    if semantics == "keras":
        step_size, vscale = lr * math.sqrt(bc2) / bc1, 1.0
    else:
        step_size, vscale = lr / bc1, 1 / math.sqrt(bc2)
    hyper = [beta1, beta2, 1 - beta1, 1 - beta2, step_size, vscale, eps, weight_decay, 1 - lr * weight_decay]
    return _run(func, "adam", params, grads, [exp_avgs, exp_avg_sqs, max_exp_avg_sqs if amsgrad else None],
                ["exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"], master_params, hyper,
                _AMSGRAD if amsgrad else 0, named=named, step=step, weight_decay=weight_decay, decoupled=decoupled,
                maximize=maximize, clipvalue=clipvalue, clipnorm=clipnorm, global_clipnorm=global_clipnorm,
                nonfinite=nonfinite, semantics=semantics, global_norm_reduce=global_norm_reduce,
                arrays_ready=_prepared is not None)


def sgd_step(params: List[np.ndarray], grads: Sequence[np.ndarray],
             momentum_buffers: Optional[List[np.ndarray]] = None, *, step: int, lr: float, momentum: float = 0.0,
             dampening: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0, maximize: bool = False,
             master_params: Optional[List[np.ndarray]] = None, clipvalue=None, clipnorm=None,
             global_clipnorm=None, nonfinite: str = "skip", semantics: str = "torch",
             global_norm_reduce: Optional[Callable[[float], float]] = None, _prepared=None) -> StepRecord:
    """One SGD step (momentum, dampening, Nesterov) over every array; see the module docstring."""
    func = "sgd_step"
    check_hyper(func, dict(momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                           maximize=maximize))
    check_nesterov(func, nesterov, momentum, dampening)
    if momentum != 0 and momentum_buffers is None:
        raise ValueError(f"{func}(): momentum != 0 needs 'momentum_buffers'")
    named = dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
    if _D.on_device(params):
        return _device_step(func, "sgd", params, grads, [momentum_buffers if momentum != 0 else None],
                            ["momentum_buffers"], master_params, [momentum, dampening, weight_decay], lr,
                            (_MOMENTUM if momentum != 0 else 0) | (_NESTEROV if nesterov else 0), named=named,
                            step=step, weight_decay=weight_decay, decoupled=False, maximize=maximize,
                            clipvalue=clipvalue, clipnorm=clipnorm, global_clipnorm=global_clipnorm,
                            nonfinite=nonfinite, semantics=semantics, global_norm_reduce=global_norm_reduce,
                            prepared=_prepared)
    step = _step_number(step, func)
    check_hyper(func, dict(lr=lr))
    flags = (_MOMENTUM if momentum != 0 else 0) | (_NESTEROV if nesterov else 0) | (_FIRST if step == 1 else 0)
    hyper = [lr, momentum, 1 - dampening, weight_decay, 1 - lr * weight_decay]
    return _run(func, "sgd", params, grads, [momentum_buffers if momentum != 0 else None], ["momentum_buffers"],
                master_params, hyper, flags, named=named, step=step, weight_decay=weight_decay, decoupled=False,
                maximize=maximize, clipvalue=clipvalue, clipnorm=clipnorm, global_clipnorm=global_clipnorm,
                nonfinite=nonfinite, semantics=semantics, global_norm_reduce=global_norm_reduce,
                arrays_ready=_prepared is not None)


def rmsprop_step(params: List[np.ndarray], grads: Sequence[np.ndarray], square_avgs: List[np.ndarray],
                 grad_avgs: Optional[List[np.ndarray]] = None, momentum_buffers: Optional[List[np.ndarray]] = None,
                 *, step: int, lr: float = 1e-2, alpha: float = 0.99, eps: Optional[float] = None,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, maximize: bool = False,
                 master_params: Optional[List[np.ndarray]] = None, clipvalue=None, clipnorm=None,
                 global_clipnorm=None, nonfinite: str = "skip", semantics: str = "torch",
                 global_norm_reduce: Optional[Callable[[float], float]] = None, _prepared=None) -> StepRecord:
    """One RMSprop step (centered, momentum) over every array; see the module docstring."""
    func = "rmsprop_step"
    _required_states(func, (("square_avgs", square_avgs),))
    check_hyper(func, dict(alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered,
                           maximize=maximize))
    if centered and grad_avgs is None:
        raise ValueError(f"{func}(): centered=True needs 'grad_avgs'")
    if momentum > 0 and momentum_buffers is None:
        raise ValueError(f"{func}(): momentum > 0 needs 'momentum_buffers'")
    eps = (1e-7 if semantics == "keras" else 1e-8) if eps is None else float(eps)
    flags = (_CENTERED if centered else 0) | (_MOMENTUM if momentum > 0 else 0)
    named = dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay)
    if _D.on_device(params):
        return _device_step(func, "rmsprop", params, grads,
                            [square_avgs, grad_avgs if centered else None, momentum_buffers if momentum > 0 else None],
                            ["square_avgs", "grad_avgs", "momentum_buffers"], master_params,
                            [alpha, eps, momentum, weight_decay], lr, flags, named=named, step=step,
                            weight_decay=weight_decay, decoupled=False, maximize=maximize, clipvalue=clipvalue,
                            clipnorm=clipnorm, global_clipnorm=global_clipnorm, nonfinite=nonfinite,
                            semantics=semantics, global_norm_reduce=global_norm_reduce, prepared=_prepared)
    step = _step_number(step, func)
    check_hyper(func, dict(lr=lr))
    hyper = [alpha, 1 - alpha, lr, eps, momentum, weight_decay, 1 - lr * weight_decay]
    return _run(func, "rmsprop", params, grads,
                [square_avgs, grad_avgs if centered else None, momentum_buffers if momentum > 0 else None],
                ["square_avgs", "grad_avgs", "momentum_buffers"], master_params, hyper, flags, named=named, step=step,
                weight_decay=weight_decay, decoupled=False, maximize=maximize, clipvalue=clipvalue,
                clipnorm=clipnorm, global_clipnorm=global_clipnorm, nonfinite=nonfinite, semantics=semantics,
                global_norm_reduce=global_norm_reduce, arrays_ready=_prepared is not None)


def adagrad_step(params: List[np.ndarray], grads: Sequence[np.ndarray], state_sums: List[np.ndarray], *,
                 step: int, lr: float = 1e-2, lr_decay: float = 0.0, eps: Optional[float] = None,
                 weight_decay: float = 0.0, maximize: bool = False,
                 master_params: Optional[List[np.ndarray]] = None, clipvalue=None, clipnorm=None,
                 global_clipnorm=None, nonfinite: str = "skip", semantics: str = "torch",
                 global_norm_reduce: Optional[Callable[[float], float]] = None, _prepared=None) -> StepRecord:
    """One Adagrad step over every array; see the module docstring."""
    func = "adagrad_step"
    _required_states(func, (("state_sums", state_sums),))
    check_hyper(func, dict(lr_decay=lr_decay, eps=eps, weight_decay=weight_decay, maximize=maximize))
    eps = (1e-7 if semantics == "keras" else 1e-10) if eps is None else float(eps)
    named = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay)
    if _D.on_device(params):
        return _device_step(func, "adagrad", params, grads, [state_sums], ["state_sums"], master_params,
                            [lr_decay, eps, weight_decay], lr, 0, named=named, step=step, weight_decay=weight_decay,
                            decoupled=False, maximize=maximize, clipvalue=clipvalue, clipnorm=clipnorm,
                            global_clipnorm=global_clipnorm, nonfinite=nonfinite, semantics=semantics,
                            global_norm_reduce=global_norm_reduce, prepared=_prepared)
    step = _step_number(step, func)
    check_hyper(func, dict(lr=lr))
    hyper = [lr / (1 + (step - 1) * lr_decay), eps, weight_decay, 1 - lr * weight_decay]
    return _run(func, "adagrad", params, grads, [state_sums], ["state_sums"], master_params, hyper, 0,
                named=named, step=step, weight_decay=weight_decay, decoupled=False, maximize=maximize,
                clipvalue=clipvalue, clipnorm=clipnorm, global_clipnorm=global_clipnorm, nonfinite=nonfinite,
                semantics=semantics, global_norm_reduce=global_norm_reduce,
                arrays_ready=_prepared is not None)
