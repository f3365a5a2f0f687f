"""NumPy float64 oracle for every nnfuse op: formulas only, no compiled code.

Importing this subpackage needs NumPy (and the standard library) only. Each module lists its
public names in ``__all__``; this package re-exports them all.
"""

from . import activations, optim, philox
from .activations import *
from .philox import *
from .softmax import *  # the function softmax shadows the module of that name
from .softmax import __all__ as _softmax_names

__all__ = activations.__all__ + philox.__all__ + list(_softmax_names) + ["optim"]
