"""Stateful optimizers: thin wrappers over the functional steps that own the
state arrays, the step count and the hyper-parameters (PyTorch's names and
defaults). ``state_dict()`` / ``load_state_dict()`` round-trip bit-exactly."""

from __future__ import annotations

import copy
import math
from typing import Callable, Optional, Sequence

import numpy as np

from . import _device as D
from . import _functional as F
from .. import _C, _interop
from .._array import as_real, bool_option, check_compute_range, dtype_code, real_option, refuse_masked

__all__ = ["Optimizer", "Adam", "AdamW", "SGD", "RMSprop", "Adagrad"]


def _check_disjoint(name, params):
    """Refuses parameters that share memory (the same array twice, or views of
    one buffer that overlap): each step would update those elements twice, with
    two states. The arrays are C-contiguous, so each is one byte range."""
    begins = np.array([p.__array_interface__["data"][0] for p in params], dtype=np.uint64)
    sizes = np.array([p.nbytes for p in params], dtype=np.uint64)
    pair = _C.overlapping_pair(begins, sizes, np.ones(len(params), dtype=bool))
    if pair is not None:
        raise ValueError(f"{name}(): 'params[{pair[0]}]' and 'params[{pair[1]}]' share memory; "
                         "each parameter must be a separate array")


def _whole_step(value):
    """A state_dict's step as an int, or None where it is no whole number
    (an int is taken exactly: float() would round 2^53 + 1 to 2^53)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    real = as_real(value)
    return int(real) if real is not None and math.isfinite(real) and real == int(real) else None


def _loaded(value, key, i, func):
    """A state array of a state_dict as NumPy: a torch CPU tensor viewed, anything else np.asarray."""
    if _interop._torch_tensor(value):
        return F.host_array(value, f"state['{key}']", func, i)
    return np.asarray(value)


class Optimizer:
    """Base class. Subclasses name their state arrays (``_state_names``) and
    call one functional step."""

    _state_names: tuple = ()
    _slots: tuple = ()  # the functional step's state arguments, in order

    def __init__(self, params, hyper: dict, *, clipvalue=None, clipnorm=None, global_clipnorm=None,
                 nonfinite: str = "skip", master_weights: bool = False, semantics: str = "torch",
                 global_norm_reduce: Optional[Callable[[float], float]] = None, capturable: bool = False):
        name = type(self).__name__
        master_weights = bool_option(name, "master_weights", master_weights)
        capturable = bool_option(name, "capturable", capturable)
        # Any iterable of arrays, as torch.optim takes model.parameters(); a single
        # array (iterable over its rows) or a string is refused.
        if isinstance(params, (np.ndarray, str, bytes)) or _interop._torch_tensor(params) \
                or not hasattr(params, "__iter__"):
            raise TypeError(f"{name}(): 'params' must be a list of arrays, got {type(params).__name__}")
        params = list(params)
        # As torch.optim: an empty list is almost always a model whose
        # parameters() was consumed or filtered away, and step() would do nothing.
        if not params:
            raise ValueError(f"{name}(): 'params' is empty; an optimizer needs at least one parameter array")
        if D.on_device(params):
            self._init_device(name, params, hyper, clipvalue, clipnorm, global_clipnorm, nonfinite,
                              master_weights, semantics, global_norm_reduce, capturable)
            return
        if capturable:
            raise ValueError(f"{name}(): capturable=True needs CUDA arrays (PyTorch CUDA tensors, CuPy arrays)")
        self.device = False
        self.params = params
        # The steps run on NumPy views of torch CPU tensors (their memory, updated in place), made once.
        views = F.host_arrays(params, "params", name)
        for i, p in enumerate(views):
            if not isinstance(p, np.ndarray):  # host_arrays looks for tensors only where torch is imported
                F.host_array(p, "params", name, i)
            refuse_masked(p, f"params[{i}]", name)
            dtype_code(p.dtype, f"params[{i}]", name)
            if p.dtype != views[0].dtype:
                raise TypeError(f"{name}(): 'params[{i}]' has dtype {p.dtype} but 'params[0]' has dtype "
                                f"{views[0].dtype} (one optimizer updates one dtype)")
            if not p.flags.c_contiguous:
                raise ValueError(f"{name}(): 'params[{i}]' must be C-contiguous")
            if not p.flags.writeable:
                raise ValueError(f"{name}(): 'params[{i}]' is read-only")
        _check_disjoint(name, views)
        dtype = views[0].dtype if views else np.dtype(np.float32)
        self._state_dtype = F.state_dtype_for(dtype, master_weights, name)
        self.hyper = dict(hyper)
        self.options = dict(clipvalue=clipvalue, clipnorm=clipnorm, global_clipnorm=global_clipnorm,
                            nonfinite=nonfinite, semantics=semantics)
        self._check_settings(name, self.hyper, self.options)
        self.master_weights = master_weights
        self.global_norm_reduce = global_norm_reduce
        self.step_count = 0
        self._torch_params = [p for p, v in zip(params, views) if p is not v]
        self._param_arrays = views
        self._state_arrays = {k: [self._initial(k, p) for p in views] for k in self._active_states()}
        if self.master_weights:
            self._state_arrays["master_params"] = [p.astype(np.float32) for p in views]
        # The state in the parameters' type: torch tensors sharing the arrays' memory for torch parameters.
        self.state = {k: [_interop._numpy_to_torch(a) if _interop._torch_tensor(p) else a for p, a in zip(params, v)]
                      for k, v in self._state_arrays.items()}

    def _init_device(self, name, params, hyper, clipvalue, clipnorm, global_clipnorm, nonfinite, master_weights,
                     semantics, global_norm_reduce, capturable):
        """CUDA arrays: state allocated with the caller's library on the parameters' GPU; the step
        count (and with capturable=True the learning rate) held as float64 device scalars."""
        self.device = True
        self.params = self._param_arrays = params
        infos, self._state_dtype = D.check_params(params, name, F.state_dtype_for, master_weights)
        first = infos[0]
        self.hyper = dict(hyper)
        self.options = dict(clipvalue=clipvalue, clipnorm=clipnorm, global_clipnorm=global_clipnorm,
                            nonfinite=nonfinite, semantics=semantics)
        self._check_settings(name, self.hyper, self.options)
        if capturable:
            self.hyper["lr"] = D.full(first, (), np.float64, float(hyper["lr"]))
        self.master_weights = master_weights
        self.global_norm_reduce = global_norm_reduce
        self.capturable = capturable
        self.step_count = D.full(first, (), np.float64, 0.0)
        fill = getattr(self, "_initial_value", 0.0)
        self.state = {k: [D.full(i, i.shape, self._state_dtype, fill if k == "state_sums" else 0.0) for i in infos]
                      for k in self._active_states()}
        if self.master_weights:
            self.state["master_params"] = [D.astype_copy(first, p, np.float32) for p in params]
        self._state_arrays = self.state
        names = list(self._functional_state_names())
        states = [self.state.get(n) for n in names]
        self._prepared = D.prepare(params, states + [None] * (3 - len(states)), names + [""] * (3 - len(names)),
                                   self.state.get("master_params"), name, F.state_dtype_for)

    def _check_settings(self, func, hyper, options):
        """The hyper-parameters and options, as the functional step will check
        them, and against the range of the compute type (self._state_dtype).
        A device lr (capturable) is passed over: it was checked as a number."""
        plain = {k: v for k, v in hyper.items()
                 if not (k == "lr" and self.device and not isinstance(v, (int, float)))}
        F.check_hyper(func, plain, self._state_dtype)
        F.check_options(func, options["clipvalue"], options["clipnorm"], options["global_clipnorm"],
                        options["nonfinite"], options["semantics"])
        check_compute_range(func, self._state_dtype, {"clipvalue": options["clipvalue"]})

    def _check_structure(self, func, hyper):
        """Refuses loaded hyper-parameters that would change which state arrays
        this optimizer keeps, or that its constructor refuses together (the
        step would fail on them later, after the arrays were copied)."""

    def _functional_state_names(self):
        """The functional step's state arguments in order (the device pointer table's columns)."""
        return self._slots

    def _active_states(self):
        return self._state_names

    def _initial(self, name, p):
        return np.zeros(p.shape, self._state_dtype)

    def _call(self, grads) -> F.StepRecord:
        raise NotImplementedError

    def step(self, grads: Optional[Sequence[np.ndarray]] = None) -> F.StepRecord:
        """Updates every parameter from ``grads`` (one per parameter, same shapes
        and dtype) and returns the :class:`~nnfuse.optim.StepRecord`.

        Without ``grads``, the gradients are the torch parameters' ``.grad``, as
        in ``torch.optim``. Every parameter then needs one (a ValueError names
        the first without): ``torch.optim`` passes over a parameter whose
        gradient is ``None`` and counts steps per parameter, while here one step
        count serves them all, so a parameter passed over would get the others'
        bias correction on its next step."""
        if grads is None:
            grads = self._param_grads()
        record = self._call(grads)
        if self.device:
            return record  # the step count was advanced (or not) on the device
        if not record.skipped:
            self.step_count += 1
            F.mark_modified(self._torch_params)
        return record._replace(step=self.step_count)

    def _param_grads(self) -> list:
        func = f"{type(self).__name__}.step"
        grads = []
        for i, p in enumerate(self.params):
            if not _interop._torch_tensor(p):
                raise TypeError(f"{func}(): 'params[{i}]' ({type(p).__name__}) holds no .grad; "
                                "pass the gradients as 'grads'")
            if p.grad is None:
                raise ValueError(f"{func}(): 'params[{i}].grad' is None; every parameter steps together, so "
                                 "each needs a gradient (leave the parameter out of the optimizer, or pass 'grads')")
            grads.append(p.grad)
        return grads

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clears the torch parameters' ``.grad`` as ``torch.optim`` does: sets it
        to ``None`` (the default) or, with ``set_to_none=False``, detaches it
        and fills it with zeros. NumPy and CuPy parameters hold no gradient; an
        optimizer with no torch parameter refuses the call."""
        tensors = [p for p in self.params if _interop._torch_tensor(p)]
        if not tensors and self.params:
            raise TypeError(f"{type(self).__name__}.zero_grad(): no parameter is a torch tensor; NumPy and CuPy "
                            "arrays hold no gradient to clear")
        for p in tensors:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
                continue
            if p.grad.grad_fn is not None:
                p.grad.detach_()
            else:
                p.grad.requires_grad_(False)
            p.grad.zero_()

    def _common(self):
        if self.device:
            return dict(step=self.step_count, master_params=self.state.get("master_params"),
                        global_norm_reduce=self.global_norm_reduce, _prepared=self._prepared, **self.options)
        return dict(step=self.step_count + 1, master_params=self._state_arrays.get("master_params"),
                    global_norm_reduce=self.global_norm_reduce, _prepared=True, **self.options)

    def state_dict(self) -> dict:
        """Copies of every state array, the step count, hyper-parameters and options."""
        if self.device:
            return {"step": D.clone(self.step_count), "hyper": copy.deepcopy(self.hyper),
                    "options": dict(self.options), "master_weights": self.master_weights,
                    "state": {k: [D.clone(a) for a in v] for k, v in self.state.items()}}
        return {"step": self.step_count, "hyper": copy.deepcopy(self.hyper), "options": dict(self.options),
                "master_weights": self.master_weights,
                "state": {k: [D.clone(a) for a in v] for k, v in self.state.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores a :meth:`state_dict` (copied into this optimizer's arrays, bit for bit)."""
        name = type(self).__name__
        func = f"{name}.load_state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError(f"{func}(): 'state_dict' must be a dict, got {type(state_dict).__name__}")
        missing = sorted({"state", "hyper", "step"} - set(state_dict))
        if missing:
            raise ValueError(f"{func}(): 'state_dict' has no {missing} (a state_dict() of this optimizer has "
                             "'step', 'hyper', 'options', 'master_weights' and 'state')")
        state = state_dict["state"]
        hyper, options = state_dict["hyper"], state_dict.get("options", self.options)
        for key, given, expected in (("hyper", hyper, self.hyper), ("options", options, self.options)):
            if not isinstance(given, dict) or set(given) != set(expected):
                shown = sorted(given) if isinstance(given, dict) else repr(given)
                raise ValueError(f"{func}(): '{key}' holds {shown}, expected the keys {sorted(expected)}")
        self._check_settings(func, hyper, options)
        self._check_structure(func, hyper)
        if not isinstance(state, dict) or set(state) != set(self.state):
            shown = sorted(state) if isinstance(state, dict) else repr(state)
            raise ValueError(f"{name}.load_state_dict(): state arrays {shown} do not match "
                             f"{sorted(self.state)}")
        step = None if self.device else _whole_step(state_dict["step"])
        if not self.device and (step is None or not 0 <= step <= F.MAX_STEP):
            raise ValueError(f"{name}.load_state_dict(): 'step' must be a whole number >= 0 and at most 2^53, "
                             f"got {state_dict['step']!r}")
        if self.device:
            self._load_device(name, state_dict)
            return
        for k, arrays in state.items():
            if len(arrays) != len(self.state[k]):
                raise ValueError(f"{name}.load_state_dict(): '{k}' has {len(arrays)} arrays, expected "
                                 f"{len(self.state[k])}")
            for i, (dst, src) in enumerate(zip(self._state_arrays[k], arrays)):
                src = _loaded(src, k, i, func)
                if src.shape != dst.shape or src.dtype != dst.dtype:
                    raise ValueError(f"{name}.load_state_dict(): '{k}[{i}]' has shape {src.shape} dtype {src.dtype}, "
                                     f"expected {dst.shape} {dst.dtype}")
        for k, arrays in state.items():
            for i, (dst, src) in enumerate(zip(self._state_arrays[k], arrays)):
                np.copyto(dst, _loaded(src, k, i, func))
        self.step_count = step
        self.hyper = copy.deepcopy(hyper)
        self.options = dict(options)

    def _load_device(self, name, state_dict):
        state = state_dict["state"]
        for k, arrays in state.items():
            if len(arrays) != len(self.state[k]):
                raise ValueError(f"{name}.load_state_dict(): '{k}' has {len(arrays)} arrays, expected "
                                 f"{len(self.state[k])}")
            for i, (dst, src) in enumerate(zip(self.state[k], arrays)):
                if tuple(src.shape) != tuple(dst.shape) or str(src.dtype) != str(dst.dtype):
                    raise ValueError(f"{name}.load_state_dict(): '{k}[{i}]' has shape {tuple(src.shape)} dtype "
                                     f"{src.dtype}, expected {tuple(dst.shape)} {dst.dtype}")
        # copied into the existing arrays: the cached pointer table stays valid
        for k, arrays in state.items():
            for dst, src in zip(self.state[k], arrays):
                D.copy_into(dst, src)
        D.copy_into(self.step_count, state_dict["step"])
        hyper = copy.deepcopy(state_dict["hyper"])
        if self.capturable:
            D.copy_into(self.hyper["lr"], hyper["lr"])
            hyper["lr"] = self.hyper["lr"]
        self.hyper = hyper
        self.options = dict(state_dict.get("options", self.options))


class Adam(Optimizer):
    """Adam (PyTorch's names and defaults); see :mod:`nnfuse.optim` for the formulas and options."""

    _slots = ("exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs")

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=None, weight_decay=0.0, amsgrad=False,
                 maximize=False, **options):
        self._amsgrad = bool_option(type(self).__name__, "amsgrad", amsgrad)
        maximize = bool_option(type(self).__name__, "maximize", maximize)
        super().__init__(params, dict(lr=lr, betas=tuple(betas) if hasattr(betas, "__len__") else betas, eps=eps,
                                      weight_decay=weight_decay, amsgrad=self._amsgrad, maximize=maximize),
                         **options)

    def _active_states(self):
        return ("exp_avgs", "exp_avg_sqs") + (("max_exp_avg_sqs",) if self._amsgrad else ())

    def _check_structure(self, func, hyper):
        if hyper["amsgrad"] != self._amsgrad:  # a bool: _check_settings checked it
            raise ValueError(f"{func}(): 'amsgrad' = {hyper['amsgrad']} but this optimizer was built with "
                             f"amsgrad={self._amsgrad} (it keeps max_exp_avg_sqs only with amsgrad)")

    def _call(self, grads):
        h = self.hyper
        s = self._state_arrays
        return F.adam_step(self._param_arrays, grads, s["exp_avgs"], s["exp_avg_sqs"], lr=h["lr"], beta1=h["betas"][0],
                           beta2=h["betas"][1], eps=h["eps"], weight_decay=h["weight_decay"],
                           decoupled=self._decoupled, amsgrad=h["amsgrad"], max_exp_avg_sqs=s.get("max_exp_avg_sqs"),
                           maximize=h["maximize"], **self._common())


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (default 1e-2)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=None, weight_decay=1e-2, amsgrad=False,
                 maximize=False, **options):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize, **options)


class SGD(Optimizer):
    """SGD with momentum / dampening / Nesterov (PyTorch's names and defaults)."""

    _slots = ("momentum_buffers",)

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
                 maximize=False, **options):
        nesterov = bool_option("SGD", "nesterov", nesterov)
        maximize = bool_option("SGD", "maximize", maximize)
        F.check_hyper("SGD", dict(momentum=momentum, dampening=dampening))  # before the comparisons below
        F.check_nesterov("SGD", nesterov, momentum, dampening)
        self._momentum = momentum != 0
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                                      weight_decay=weight_decay, maximize=maximize), **options)

    def _active_states(self):
        return ("momentum_buffers",) if self._momentum else ()

    def _check_structure(self, func, hyper):
        F.check_nesterov(func, hyper["nesterov"], hyper["momentum"], hyper["dampening"])
        if (hyper["momentum"] != 0) != self._momentum:
            raise ValueError(f"{func}(): 'momentum' = {hyper['momentum']} but this optimizer was built "
                             f"{'with' if self._momentum else 'without'} momentum (it keeps momentum_buffers "
                             "only with momentum != 0)")

    def _call(self, grads):
        h = self.hyper
        return F.sgd_step(self._param_arrays, grads, self._state_arrays.get("momentum_buffers"), lr=h["lr"],
                          momentum=h["momentum"], dampening=h["dampening"], nesterov=h["nesterov"],
                          weight_decay=h["weight_decay"], maximize=h["maximize"], **self._common())


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with momentum (PyTorch's names and defaults)."""

    _slots = ("square_avgs", "grad_avgs", "momentum_buffers")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=None, momentum=0.0, centered=False, weight_decay=0.0,
                 maximize=False, **options):
        centered = bool_option("RMSprop", "centered", centered)
        maximize = bool_option("RMSprop", "maximize", maximize)
        F.check_hyper("RMSprop", dict(momentum=momentum))  # before the comparison below
        self._names = ("square_avgs",) + (("grad_avgs",) if centered else ()) + \
            (("momentum_buffers",) if momentum > 0 else ())
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum, centered=centered,
                                      weight_decay=weight_decay, maximize=maximize), **options)

    def _active_states(self):
        return self._names

    def _check_structure(self, func, hyper):
        for key, kept, array in (("centered", bool(hyper["centered"]), "grad_avgs"),
                                 ("momentum", hyper["momentum"] > 0, "momentum_buffers")):
            if kept != (array in self._names):
                raise ValueError(f"{func}(): '{key}' = {hyper[key]} but this optimizer was built "
                                 f"{'with' if array in self._names else 'without'} {array}")

    def _call(self, grads):
        h, s = self.hyper, self._state_arrays
        return F.rmsprop_step(self._param_arrays, grads, s["square_avgs"], s.get("grad_avgs"),
                              s.get("momentum_buffers"), lr=h["lr"], alpha=h["alpha"], eps=h["eps"],
                              weight_decay=h["weight_decay"], momentum=h["momentum"], centered=h["centered"],
                              maximize=h["maximize"], **self._common())


class Adagrad(Optimizer):
    """Adagrad (PyTorch's names and defaults)."""

    _state_names = ("state_sums",)
    _slots = ("state_sums",)

    def __init__(self, params, lr=1e-2, lr_decay=0.0, initial_accumulator_value=0.0, eps=None, weight_decay=0.0,
                 maximize=False, **options):
        self._initial_value = real_option(type(self).__name__, "initial_accumulator_value",
                                          initial_accumulator_value)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, weight_decay=weight_decay,
                                      maximize=bool_option(type(self).__name__, "maximize", maximize)), **options)

    def _initial(self, name, p):
        return np.full(p.shape, self._initial_value, self._state_dtype)

    def _call(self, grads):
        h = self.hyper
        return F.adagrad_step(self._param_arrays, grads, self._state_arrays["state_sums"], lr=h["lr"],
                              lr_decay=h["lr_decay"], eps=h["eps"], weight_decay=h["weight_decay"],
                              maximize=h["maximize"], **self._common())
