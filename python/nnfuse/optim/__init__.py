"""Clipped optimizers: Adam, AdamW, SGD, RMSprop and Adagrad with
clip-by-value, clip-by-norm and clip-by-global-norm fused into one
multi-tensor step, on the CPU (NumPy arrays or torch CPU tensors, updated in
place through NumPy views) or a GPU (lists of PyTorch CUDA
tensors or CuPy arrays; see ``nnfuse.optim._device`` for what differs there:
no host synchronisation, device-scalar records and step count,
``capturable=True``).

Stateful classes (:class:`Adam`, :class:`AdamW`, :class:`SGD`,
:class:`RMSprop`, :class:`Adagrad`) take PyTorch's names and defaults plus the
keyword-only options ``clipvalue``, ``clipnorm``, ``global_clipnorm`` (at most
one), ``nonfinite`` ("skip" | "zero" | "propagate"), ``master_weights``,
``semantics`` ("torch" | "keras") and ``global_norm_reduce``. They are thin
wrappers over the functional steps (:func:`adam_step`, :func:`sgd_step`,
:func:`rmsprop_step`, :func:`adagrad_step`), whose docstring module
(``nnfuse.optim._functional``) states every formula. ``step(grads)`` takes
the gradients as a list; over torch tensors ``step()`` reads each parameter's
``.grad`` and ``zero_grad()`` clears them, as in a torch training loop.
"""

from ._classes import *  # noqa: F401,F403
from ._classes import __all__ as _class_names
from ._functional import *  # noqa: F401,F403
from ._functional import __all__ as _functional_names
from ._functional import __doc__ as _formulas

__doc__ = __doc__ + "\n" + _formulas
__all__ = list(_class_names) + list(_functional_names)
