"""NumPy float64 oracle for every nnfuse op: formulas only, no compiled code.

Importing this subpackage needs NumPy (and the standard library) only.
"""

from .activations import *  # noqa: F401,F403
from .activations import __all__ as _activations_all
from .philox import *  # noqa: F401,F403
from .philox import __all__ as _philox_all

__all__ = [*_activations_all, *_philox_all]
