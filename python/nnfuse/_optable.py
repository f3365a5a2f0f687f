"""The op table: one row per activation. The public functions, the tests, the
accuracy script, ``python -m nnfuse check`` and the benchmarks are all driven
from these rows, so adding an activation means: its functor in
``csrc/include/nnfuse/ops/activations.h``, its formula in
``nnfuse.reference``, and one row here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Tuple

from ._array import kernel_option

# Kernel op codes: the order of ActOp in csrc/cpu/cpu_api.h.
OP_CODES = {
    name: code
    for code, name in enumerate(
        "sigmoid tanh relu leaky_relu elu selu celu gelu gelu_tanh silu mish hardtanh "
        "hardsigmoid hardswish softplus softsign logsigmoid".split()
    )
}


@dataclass(frozen=True)
class Activation:
    """One activation.

    name: the public function (``nnfuse.<name>`` and ``nnfuse.<name>_backward``).
    params: parameter names with torch.nn.functional's defaults, in order.
    kernel_args: maps (the calling function's name, for messages; the parameters)
        to (kernel op code, p0, p1), validating them.
    from_y: the backward also accepts the forward output ``y``.
    special_points: inputs where the function has a kink, threshold or
        saturation; tests and the accuracy script sample densely around them.
    """

    name: str
    params: Tuple[Tuple[str, object], ...]
    kernel_args: Callable[..., Tuple[int, float, float]]
    from_y: bool
    special_points: Tuple[float, ...] = ()
    test_params: Tuple[Dict[str, object], ...] = field(default_factory=tuple)
    doc: str = ""


def _fixed(op: str):
    return lambda func: (OP_CODES[op], 0.0, 0.0)


def _relu6(func):
    # relu6 is hardtanh(x, 0, 6): the same kernel, fixed bounds.
    return OP_CODES["hardtanh"], 0.0, 6.0


def _leaky(func, negative_slope=0.01):
    return OP_CODES["leaky_relu"], kernel_option(func, "negative_slope", negative_slope), 0.0


def _elu(func, alpha=1.0):
    alpha = kernel_option(func, "alpha", alpha)
    # An infinite alpha makes the x <= 0 side inf * (e^x - 1), NaN at x = 0,
    # and the float32 gradient g alpha + g alpha em1 meets inf - inf: refused,
    # as celu's is.
    if not math.isfinite(alpha):
        raise ValueError(f"{func}(): 'alpha' must be finite, got {alpha}")
    return OP_CODES["elu"], alpha, 0.0


_SMALLEST_NORMAL_F32 = 2.0 ** -126


def _celu(func, alpha=1.0):
    alpha = kernel_option(func, "alpha", alpha)
    # The kernels take 1 / alpha, in float32 for float32 and 16-bit inputs:
    # a finite alpha of at least the smallest normal float keeps it finite.
    if not _SMALLEST_NORMAL_F32 <= abs(alpha) < math.inf:
        raise ValueError(f"{func}(): 'alpha' must be finite with |alpha| >= 2**-126 (the formula divides by it), "
                         f"got {alpha}")
    return OP_CODES["celu"], alpha, 0.0


def _gelu(func, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"{func}(): 'approximate' must be 'none' or 'tanh', got {approximate!r}")
    return OP_CODES["gelu" if approximate == "none" else "gelu_tanh"], 0.0, 0.0


def _hardtanh(func, min_val=-1.0, max_val=1.0):
    min_val = kernel_option(func, "min_val", min_val)
    max_val = kernel_option(func, "max_val", max_val)
    if min_val > max_val:
        raise ValueError(f"{func}(): 'min_val' ({min_val}) must not be greater than 'max_val' ({max_val})")
    return OP_CODES["hardtanh"], min_val, max_val


def _softplus(func, beta=1.0, threshold=20.0):
    beta = kernel_option(func, "beta", beta)
    if beta == 0:
        raise ValueError(f"{func}(): 'beta' must not be zero (the formula divides by it)")
    return OP_CODES["softplus"], beta, kernel_option(func, "threshold", threshold)


SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

ACTIVATIONS: Tuple[Activation, ...] = (
    Activation("sigmoid", (), _fixed("sigmoid"), True, (0.0, -88.7, -103.3, 16.6),
               doc="1 / (1 + exp(-x))"),
    Activation("tanh", (), _fixed("tanh"), True, (0.0, 0.55, 9.01), doc="tanh(x)"),
    Activation("relu", (), _fixed("relu"), True, (0.0,), doc="max(x, 0); the derivative at 0 is 0"),
    Activation("leaky_relu", (("negative_slope", 0.01),), _leaky, True, (0.0,),
               ({"negative_slope": 0.2},), doc="x if x > 0 else negative_slope * x; derivative at 0: negative_slope"),
    Activation("elu", (("alpha", 1.0),), _elu, True, (0.0, -17.3), ({"alpha": 0.5},),
               doc="x if x > 0 else alpha * (exp(x) - 1)"),
    Activation("selu", (), _fixed("selu"), True, (0.0, -17.3),
               doc=f"scale * (x if x > 0 else alpha * (exp(x) - 1)), alpha={SELU_ALPHA}, scale={SELU_SCALE}"),
    Activation("celu", (("alpha", 1.0),), _celu, True, (0.0,), ({"alpha": 2.0},),
               doc="max(0, x) + min(0, alpha * (exp(x / alpha) - 1))"),
    Activation("gelu", (("approximate", "none"),), _gelu, False, (-0.7518, 0.0, -13.2, -5.0, -9.0, 9.0, -7.5, 7.5),
               ({"approximate": "tanh"},),
               doc="x * Phi(x) = 0.5 * x * erfc(-x / sqrt(2)); approximate='tanh': "
                   "0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))"),
    Activation("silu", (), _fixed("silu"), False, (0.0, -1.278, -88.7, -100.0), doc="x * sigmoid(x)"),
    Activation("mish", (), _fixed("mish"), False, (0.0, -1.1924, 9.0, -88.7), doc="x * tanh(softplus(x))"),
    Activation("relu6", (), _relu6, True, (0.0, 6.0),
               doc="min(max(x, 0), 6); derivative 0 at both kinks"),
    Activation("hardtanh", (("min_val", -1.0), ("max_val", 1.0)), _hardtanh, True, (-1.0, 1.0),
               ({"min_val": -2.0, "max_val": 3.0},), doc="clamp(x, min_val, max_val); derivative 0 at the kinks"),
    Activation("hardsigmoid", (), _fixed("hardsigmoid"), False, (-3.0, 3.0),
               doc="clamp(x / 6 + 1/2, 0, 1); derivative 0 at the kinks"),
    Activation("hardswish", (), _fixed("hardswish"), False, (-3.0, 3.0),
               doc="x * clamp(x + 3, 0, 6) / 6; derivative at -3: 0, at 3: 1 (PyTorch)"),
    Activation("softplus", (("beta", 1.0), ("threshold", 20.0)), _softplus, True, (0.0, 20.0, -103.0),
               ({"beta": 2.0, "threshold": 10.0},),
               doc="log(1 + exp(beta * x)) / beta, or x where beta * x > threshold"),
    Activation("softsign", (), _fixed("softsign"), False, (0.0,), doc="x / (1 + |x|)"),
    Activation("logsigmoid", (), _fixed("logsigmoid"), False, (0.0, 16.6, 88.7),
               doc="log(sigmoid(x)) = -softplus(-x)"),
)

BY_NAME = {a.name: a for a in ACTIVATIONS}

# Ops with their own signatures (not single-input elementwise): prelu's weight
# and rrelu's random slopes. They reuse the leaky_relu functor.
SPECIAL = ("prelu", "rrelu")

RRELU_DEFAULT_LOWER = 1.0 / 8.0
RRELU_DEFAULT_UPPER = 1.0 / 3.0


def all_names():
    return [a.name for a in ACTIVATIONS] + list(SPECIAL)


def call_params(activation: Activation, overrides: Dict[str, object]) -> Dict[str, object]:
    """The full parameter dict of a call: defaults updated with overrides."""
    params = dict(activation.params)
    params.update(overrides)
    return params

