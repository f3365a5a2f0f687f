"""Inputs at the edges of the contract: arrays sharing memory with what a
kernel writes, outputs whose elements share memory, masked arrays, infinite
and near-overflow gradients, parameters that change a formula's branch, and
the messages for malformed arguments."""

import numpy as np
import pytest

import nnfuse as nf
import nnfuse.reference as ref
from nnfuse import optim
from nnfuse._array import BFLOAT16
from nnfuse._optable import ACTIVATIONS, call_params
from nnfuse.accuracy import BOUNDS, backward_floor

from conftest import SUPPORTED_ISAS, assert_within_ulp


# ---- read-only operands in the memory a kernel writes --------------------------

@pytest.mark.parametrize("classes", [3, 8, 16, 17, 40, 200])
@pytest.mark.parametrize("where", ["out", "inplace"])
def test_cross_entropy_labels_in_the_gradient_memory(classes, where, isa):
    """int64 labels stored inside the array the gradient is written to: the
    result is that of the labels as passed (they used to be read again after
    the gradient rows overwrote them: garbage indices, a crash)."""
    rng = np.random.default_rng(classes)
    logits = rng.standard_normal((128, classes)).astype(np.float32)
    buffer = np.zeros_like(logits) if where == "out" else logits
    labels = buffer.reshape(-1).view(np.int64)[:128]
    labels[:] = rng.integers(0, classes, 128)
    expected_loss, expected_grad = ref.softmax_cross_entropy(logits.copy(), labels.copy())
    if where == "out":
        loss, grad = nf.softmax_cross_entropy(logits, labels, out=buffer)
    else:
        loss, grad = nf.softmax_cross_entropy(logits, labels, inplace=True)
    assert grad is buffer
    assert_within_ulp(f"loss {where}", np.asarray(loss), expected_loss, 4, {"classes": classes})
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)


def test_cross_entropy_int32_labels_in_the_gradient_memory():
    """Labels of another integer type are converted, then also kept apart."""
    logits = np.random.default_rng(5).standard_normal((64, 12)).astype(np.float32)
    labels = logits.reshape(-1).view(np.int32)[:64]
    labels[:] = np.arange(64) % 12
    expected = ref.softmax_cross_entropy(logits.copy(), labels.copy())
    loss, grad = nf.softmax_cross_entropy(logits, labels, inplace=True)
    np.testing.assert_allclose(loss, expected[0], rtol=1e-6)
    np.testing.assert_allclose(grad, expected[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_mask_in_the_output_memory(log, isa):
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    buffer = np.zeros(128, np.uint8)
    mask = buffer[:32].view(bool).reshape(4, 8)
    mask[:] = True
    mask[1, 3] = False
    keep = mask.copy()
    out = buffer.view(np.float32).reshape(4, 8)
    fn = nf.log_softmax if log else nf.softmax
    result = fn(x, mask=mask, out=out)
    assert result is out
    expected = (ref.log_softmax if log else ref.softmax)(x.astype(np.float64), mask=keep)
    assert_within_ulp("masked softmax into the mask's memory", result, expected, 3, {"x": x})


# ---- outputs whose elements share memory ----------------------------------------

def _writeable_broadcast(shape, dtype=np.float32):
    return np.lib.stride_tricks.as_strided(np.zeros(shape[-1], dtype), shape, (0, np.dtype(dtype).itemsize),
                                           writeable=True)


@pytest.mark.parametrize("call", [
    lambda x, out: nf.relu(x, out=out),
    lambda x, out: nf.gelu_backward(x, x, out=out),
    lambda x, out: nf.softmax(x, out=out),
    lambda x, out: nf.log_softmax_backward(x, x, out=out),
    lambda x, out: nf.softmax_cross_entropy(x, np.zeros(4, np.int64), out=out),
], ids=["relu", "gelu_backward", "softmax", "log_softmax_backward", "cross_entropy"])
def test_out_with_elements_that_share_memory_is_refused(call):
    x = np.ones((4, 5), np.float32)
    out = _writeable_broadcast((4, 5))
    with pytest.raises(ValueError, match="'out' has elements that share memory"):
        call(x, out)


def test_out_with_partly_overlapping_elements_is_refused():
    """Strides of 2 bytes for 4-byte elements: distinct addresses, shared bytes."""
    base = np.zeros(64, np.float32)
    out = np.lib.stride_tricks.as_strided(base, (3, 2), (8, 10), writeable=True)
    with pytest.raises(ValueError, match="share memory"):
        nf.tanh(np.ones((3, 2), np.float32), out=out)


def test_out_with_interleaved_distinct_elements_is_accepted():
    """Strides that fail the quick test but never meet: decided exactly."""
    base = np.zeros(64, np.float32)
    out = np.lib.stride_tricks.as_strided(base, (3, 2), (8, 12), writeable=True)
    x = np.arange(-3, 3, dtype=np.float32).reshape(3, 2)
    assert nf.relu(x, out=out) is out
    np.testing.assert_array_equal(out, np.maximum(x, 0))


def test_out_with_too_many_interleaved_elements_to_check_is_refused():
    """The exact check sorts every element's offset and declines beyond 2^22
    elements (the view is never written: it reaches past its base)."""
    base = np.zeros(16, np.float32)
    out = np.lib.stride_tricks.as_strided(base, (3, 1 << 21), (8, 12), writeable=True)
    with pytest.raises(ValueError, match="too many to check"):
        nf.relu(np.zeros((3, 1 << 21), np.float32), out=out)


def test_torch_expanded_out_is_refused():
    torch = pytest.importorskip("torch")
    out = torch.zeros(5).expand(4, 5)
    with pytest.raises(ValueError, match="'out' has elements that share memory"):
        nf.relu(torch.randn(4, 5), out=out)


# ---- masked arrays -----------------------------------------------------------

def test_masked_arrays_are_refused():
    x = np.ma.array([1.0, 2.0, 100.0], mask=[0, 0, 1], dtype=np.float32)
    with pytest.raises(TypeError, match="'x' is a numpy.ma.MaskedArray"):
        nf.softmax(x)
    with pytest.raises(TypeError, match="'x' is a numpy.ma.MaskedArray"):
        nf.gelu(x)
    with pytest.raises(TypeError, match="'out' is a numpy.ma.MaskedArray"):
        nf.relu(np.ones(3, np.float32), out=np.ma.zeros(3, np.float32))


def test_masked_labels_masks_and_optimizer_arrays_are_refused():
    """Their mask was dropped silently: a masked label counted as a real label, a masked gradient
    entry was stepped."""
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(TypeError, match="'labels' is a numpy.ma.MaskedArray"):
        nf.softmax_cross_entropy(logits, np.ma.array([0, 1, 2], mask=[0, 0, 1]))
    with pytest.raises(TypeError, match="'mask' is a numpy.ma.MaskedArray"):
        nf.softmax(logits, mask=np.ma.array(np.ones((3, 4), bool), mask=np.eye(3, 4)))
    ones = np.ones(3, np.float32)
    masked = np.ma.array(ones, mask=[1, 0, 0])
    with pytest.raises(TypeError, match="Adam\\(\\): 'params\\[0\\]' is a numpy.ma.MaskedArray"):
        optim.Adam([masked])
    with pytest.raises(TypeError, match="sgd_step\\(\\): 'grads\\[0\\]' is a numpy.ma.MaskedArray"):
        optim.SGD([ones.copy()], lr=0.5).step([masked])
    with pytest.raises(TypeError, match="sgd_step\\(\\): 'params\\[0\\]' is a numpy.ma.MaskedArray"):
        optim.sgd_step([masked], [ones], step=1, lr=0.5)


# ---- infinite and near-overflow gradients --------------------------------------

_SMOOTH_CASES = [(a, p) for a in ACTIVATIONS for p in ({},) + tuple(a.test_params)
                 if a.name not in ("relu", "leaky_relu", "hardtanh", "relu6", "hardsigmoid", "hardswish")]
_SMOOTH_IDS = [a.name + "".join(f"-{k}={v}" for k, v in p.items()) for a, p in _SMOOTH_CASES]


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float64), BFLOAT16],
                         ids=["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("case", _SMOOTH_CASES, ids=_SMOOTH_IDS)
def test_backward_with_huge_and_infinite_gradients(case, dtype, isa):
    """grad * f'(x) as the reference's IEEE product: +-inf for an infinite
    grad (where f'(x) is not 0), and the finite product within the published
    bound for a grad within a few binades of overflow (the formulas fold
    grad into intermediate products, which used to overflow: tanh_backward of
    1e38 at 0 gave inf, silu_backward of inf gave NaN)."""
    activation, params = case
    big = float(np.finfo(np.float64 if dtype == np.float64 else np.float32).max)
    x = np.linspace(-8, 8, 161).astype(dtype)
    values = np.array([np.inf, -np.inf, big, -big, big / 1.5, -big / 3, big / 4])
    g = np.repeat(values, x.size).astype(dtype)
    xs = np.tile(x, values.size)
    fn = getattr(nf, activation.name + "_backward")
    got = fn(g, xs, **params)
    full = call_params(activation, params)
    g64, x64 = g.astype(np.float64), xs.astype(np.float64)
    with np.errstate(all="ignore"):
        expected = getattr(ref, activation.name + "_backward")(g64, x64, **full)
        floor = backward_floor(activation.name, params, x64, g64)
    key = "bfloat16" if dtype == BFLOAT16 else dtype.name
    assert_within_ulp(f"{activation.name}{params} {key} {isa}", got, expected, BOUNDS[key]["backward"],
                      {"x": xs, "grad": g}, floor=floor)
    assert np.isinf(got[: 2 * x.size]).sum() >= np.count_nonzero(expected[: 2 * x.size] != 0) - 2


@pytest.mark.parametrize("case", _SMOOTH_CASES[:6], ids=_SMOOTH_IDS[:6])
def test_rescued_gradients_are_the_same_bits_on_every_isa(case):
    activation, params = case
    x = np.linspace(-8, 8, 5000).astype(np.float32)
    g = np.where(np.arange(x.size) % 7 == 0, np.float32(np.inf), np.float32(3e38)).astype(np.float32)
    g[::11] = 0.5
    fn = getattr(nf, activation.name + "_backward")
    results = []
    for isa in SUPPORTED_ISAS:
        with nf.cpu_isa(isa):
            results.append(fn(g, x, **params).view(np.uint32))
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("classes", [2, 5, 8, 16, 17, 64, 1000])
def test_softmax_backward_with_an_infinite_gradient(log, dtype, classes, isa):
    """The row's dot product is -inf, not NaN: the other positions get +-inf
    as in the reference (a compensated sum's correction used to turn the
    whole row NaN)."""
    rng = np.random.default_rng(classes)
    x = rng.standard_normal((7, classes))
    y = (ref.log_softmax(x) if log else ref.softmax(x)).astype(dtype)
    g = rng.standard_normal((7, classes)).astype(dtype)
    g[:, classes // 2] = -np.inf
    got = (nf.log_softmax_backward if log else nf.softmax_backward)(g, y)
    with np.errstate(all="ignore"):
        expected = (ref.log_softmax_backward if log else ref.softmax_backward)(g.astype(np.float64),
                                                                               y.astype(np.float64))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(expected))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
    assert np.isinf(got).any()


# ---- parameters -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, BFLOAT16])
def test_celu_with_a_negative_alpha(dtype, isa):
    """x / alpha >= 0 for x <= 0: the 16-bit formulas (which assumed x / alpha
    <= 0) gave -0 and a derivative of 1."""
    x = np.array([-0.1, -1.0, -3.0, -20.0, 0.0, 0.5, 7.0], dtype)
    g = np.linspace(-2, 2, x.size).astype(dtype)
    key = "bfloat16" if dtype == BFLOAT16 else np.dtype(dtype).name
    x64 = x.astype(np.float64)
    assert_within_ulp("celu alpha=-2", nf.celu(x, alpha=-2.0), ref.celu(x64, alpha=-2.0), BOUNDS[key]["forward"],
                      {"x": x})
    assert_within_ulp("celu_backward alpha=-2", nf.celu_backward(g, x, alpha=-2.0),
                      ref.celu_backward(g.astype(np.float64), x64, alpha=-2.0), BOUNDS[key]["backward"], {"x": x})


def test_celu_overflowing_with_a_negative_alpha_is_minus_inf():
    for dtype in (np.float32, np.float64):
        x = np.array([-1600.0, -1e30, -np.inf], dtype)
        np.testing.assert_array_equal(nf.celu(x, alpha=-2.0), [-np.inf] * 3)
        np.testing.assert_array_equal(nf.celu_backward(np.ones_like(x), x, alpha=-2.0), [np.inf] * 3)


@pytest.mark.parametrize("dtype", [np.float32, BFLOAT16])
@pytest.mark.parametrize("alpha", [-1.0, -0.5, -2.0 ** -20])
def test_celu_with_a_negative_alpha_beyond_the_exponentials_overflow(alpha, dtype, isa):
    """alpha < 0 gives e^(x / alpha) > 1 for x < 0: it overflows from x / alpha
    = 88.7, where alpha e^(x / alpha) and g e^(x / alpha) may still be finite.
    The forward overflowed early (e^q was taken as expm1 first) and the
    backward clamped x / alpha at 89 (finite but wrong results); a denormal g
    was rounded to its few bits before the exponential scaled it up, and the
    block that redoes non-finite results took g 2^-64 (0 for a small g)."""
    q = np.concatenate([np.linspace(0.0, 260.0, 521), np.linspace(88.0, 89.5, 61), [1e30, np.inf]])
    x = (q * alpha).astype(dtype)
    x64 = x.astype(np.float64)
    alpha32 = float(np.float32(alpha))
    bounds = BOUNDS["bfloat16" if dtype == BFLOAT16 else "float32"]
    with np.errstate(over="ignore"):
        expected = ref.celu(x64, alpha=alpha32)
        assert_within_ulp("celu", nf.celu(x, alpha=alpha), expected, bounds["forward"], {"x": x})
        finite32 = np.abs(expected) <= np.finfo(np.float32).max  # bfloat16's range too
        assert finite32[q > 88.8].any() == (alpha != -1.0)  # e^88.8 > 2^128
        for g_value in (1.0, 1e-30, 2.0 ** -130, 1e30):
            g = np.full(x.shape, g_value, dtype)
            expected = ref.celu_backward(g.astype(np.float64), x64, alpha=alpha32)
            finite32 = np.abs(expected) <= np.finfo(np.float32).max
            assert finite32[q > 88.8].any() == (g_value < 1.0)
            assert_within_ulp(f"celu_backward g={g_value}", nf.celu_backward(g, x, alpha=alpha), expected,
                              bounds["backward"], {"x": x})


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, BFLOAT16])
def test_zero_slope_at_minus_inf_is_zero_as_in_the_reference(dtype, isa):
    x = np.array([-np.inf, -1.0, np.nan, 2.0, np.inf, 0.0, -0.0], dtype)
    expected = ref.leaky_relu(x.astype(np.float64), 0.0)
    for got in (nf.leaky_relu(x, 0.0), nf.rrelu(x, 0.0, 0.0), nf.rrelu(x, 0.0, 0.0, True, seed=3),
                nf.prelu(x, np.zeros(1, dtype))):
        np.testing.assert_array_equal(got.astype(np.float64), expected)
    # A NaN or infinite prelu weight is data: the IEEE product stays (NaN, not 0).
    for w in (np.nan, np.inf, -np.inf):
        weight = np.array([w], dtype)
        with np.errstate(invalid="ignore"):
            want = ref.prelu(x.astype(np.float64), weight.astype(np.float64))
        np.testing.assert_array_equal(nf.prelu(x, weight).astype(np.float64), want)


def test_cross_entropy_with_a_minus_inf_logit_matches_the_reference():
    """Without smoothing the smoothing term is left out (the reference used to
    give NaN, 0 * inf, where the kernels gave the loss); with eps = 1 and a
    -inf label logit both give NaN (0 * inf in the label term), as PyTorch's
    (1 - eps) * nll does; an all -inf row is NaN for every eps."""
    logits = np.array([[1.0, -np.inf, 2.0]])
    for eps, label, finite in ((0.0, 0, True), (0.1, 0, False), (1.0, 1, False), (1.0, 0, False)):
        expected_loss, expected_grad = ref.softmax_cross_entropy(logits, np.array([label]), label_smoothing=eps)
        loss, grad = nf.softmax_cross_entropy(logits, np.array([label]), label_smoothing=eps)
        assert np.isfinite(expected_loss) == finite
        np.testing.assert_allclose(loss, expected_loss, rtol=1e-15)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-15, atol=1e-17)
    for eps in (0.0, 0.5, 1.0):
        loss, _ = nf.softmax_cross_entropy(np.full((1, 3), -np.inf, np.float32), np.array([0]), label_smoothing=eps)
        assert np.isnan(loss)
        with np.errstate(invalid="ignore"):  # the reference's NaN arithmetic on a row with nothing left
            assert np.isnan(ref.softmax_cross_entropy(np.full((1, 3), -np.inf), np.array([0]), label_smoothing=eps)[0])


def test_integers_beyond_the_float_range_are_infinite():
    x = np.array([-2.0, 0.5], np.float32)
    np.testing.assert_array_equal(nf.leaky_relu(x, -10**400), nf.leaky_relu(x, -np.inf))


# ---- messages that name the argument ------------------------------------------------

@pytest.mark.parametrize("call, error, message", [
    (lambda: optim.Adam([np.zeros(3, np.float32)], betas=5), ValueError, "'betas' must be two numbers"),
    (lambda: optim.Adagrad([np.zeros(3, np.float32)], initial_accumulator_value="x"), TypeError,
     "'initial_accumulator_value' must be a real number"),
    (lambda: nf.set_num_threads("a"), TypeError, "'n' must be an integer, got str"),
    (lambda: nf.set_num_threads(True), TypeError, "'n' must be an integer, got bool"),
    (lambda: nf.rrelu(np.ones(3, np.float32), training="no"), TypeError, "'training' must be a bool"),
    (lambda: nf.rrelu_backward(np.ones(3, np.float32), np.ones(3, np.float32), training=1), TypeError,
     "'training' must be a bool"),
    (lambda: nf.softmax(np.ones(3, np.float32), axis=True), TypeError, "'axis' must be an integer, got bool"),
    (lambda: nf.rrelu(np.ones(3, np.float32), training=True, seed=True), TypeError,
     "'seed' must be an integer, got bool"),
    (lambda: nf.softmax_cross_entropy(np.ones((2, 3), np.float32), np.zeros(2, np.int64), ignore_index=False),
     TypeError, "'ignore_index' must be an integer, got bool"),
    (lambda: optim.adam_step([np.zeros(2, np.float32)], [np.zeros(2, np.float32)], [np.zeros(2, np.float32)],
                             [np.zeros(2, np.float32)], step=True), TypeError, "'step' must be an integer"),
    # float(True) is 1: a bool where a number belongs is refused, not read as 1 or 0
    (lambda: optim.Adam([np.zeros(3, np.float32)], lr=True), TypeError, "'lr' must be a real number, got bool"),
    (lambda: optim.SGD([np.zeros(3, np.float32)], lr=0.1, momentum=np.bool_(True)), TypeError,
     "'momentum' must be a real number, got bool"),
    (lambda: nf.leaky_relu(np.ones(3, np.float32), False), TypeError,
     "'negative_slope' must be a real number, got bool"),
    (lambda: nf.softmax(np.ones(3, np.float32), scale=np.array(True)), TypeError,
     "'scale' must be a real number, got ndarray"),
    # and a switch must be a bool: the string 'False' would count as True
    (lambda: nf.softmax_cross_entropy(np.ones((2, 3), np.float32), np.zeros(2, np.int64), inplace="False"),
     TypeError, "'inplace' must be a bool, got str"),
    (lambda: optim.SGD([np.zeros(3, np.float32)], lr=0.1, maximize="False"), TypeError,
     "SGD\\(\\): 'maximize' must be a bool, got str"),
    (lambda: optim.Adagrad([np.zeros(3, np.float32)], maximize="False"), TypeError,
     "Adagrad\\(\\): 'maximize' must be a bool, got str"),
    (lambda: optim.Adam([np.zeros(3, np.float32)], amsgrad=1), TypeError, "'amsgrad' must be a bool, got int"),
    (lambda: optim.RMSprop([np.zeros(3, np.float32)], centered="no"), TypeError, "'centered' must be a bool"),
    (lambda: optim.SGD([np.zeros(3, np.float32)], lr=0.1, momentum=0.9, nesterov="no"), TypeError,
     "'nesterov' must be a bool"),
    (lambda: optim.Adam([np.zeros(3, np.float16)], master_weights="yes"), TypeError,
     "'master_weights' must be a bool"),
    (lambda: optim.adam_step([np.zeros(2, np.float32)], [np.zeros(2, np.float32)], [np.zeros(2, np.float32)],
                             [np.zeros(2, np.float32)], step=1, maximize="no"), TypeError,
     "adam_step\\(\\): 'maximize' must be a bool"),
    (lambda: nf.rrelu(np.ones(3, np.float32), training=np.array([False, True])), TypeError,
     "'training' must be a bool, got ndarray"),
], ids=["betas", "adagrad-initial", "threads-str", "threads-bool", "rrelu-training", "rrelu-backward-training",
        "axis-bool", "seed-bool", "ignore-index-bool", "step-bool", "lr-bool", "momentum-numpy-bool",
        "slope-bool", "scale-bool-array", "inplace-str", "maximize-str", "adagrad-maximize-str", "amsgrad-int",
        "centered-str", "nesterov-str", "master-weights-str", "functional-maximize-str", "training-bool-array"])
def test_malformed_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_torch_tensor_on_another_device_is_named():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="'x' is a torch tensor on device 'meta'"):
        nf.relu(torch.zeros(3, device="meta"))


@pytest.mark.parametrize("call, message", [
    (lambda torch: nf.gelu(torch.zeros(3, dtype=torch.float8_e4m3fn)),
     "gelu\\(\\): argument 'x' has dtype torch.float8_e4m3fn, which nnfuse does not support"),
    (lambda torch: nf.gelu(torch.zeros(3).to_sparse()),
     "gelu\\(\\): 'x' is a torch tensor of layout torch.sparse_coo; .* pass x.to_dense\\(\\)"),
    (lambda torch: nf.softmax_cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long, device="meta")),
     "softmax_cross_entropy\\(\\): 'labels' is a torch tensor on device 'meta'"),
    (lambda torch: nf.softmax_cross_entropy(torch.zeros(2, 3), torch.zeros(2, requires_grad=True)),
     "'labels' must be an integer array, got dtype float32"),
    (lambda torch: nf.softmax(torch.zeros(2, 3), mask=torch.ones(2, 3, dtype=torch.bool, device="meta")),
     "softmax\\(\\): 'mask' is a torch tensor on device 'meta'"),
    (lambda torch: nf.log_softmax(torch.zeros(2, 3), mask=torch.ones(2, 3, dtype=torch.bool).to_sparse()),
     "log_softmax\\(\\): 'mask' is a torch tensor of layout torch.sparse_coo"),
], ids=["float8", "sparse", "meta-labels", "float-labels-requiring-grad", "meta-mask", "sparse-mask"])
def test_torch_arguments_numpy_cannot_view_are_named(call, message):
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=message):
        call(torch)


def test_torch_labels_and_mask_give_the_numpy_results():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((4, 7)).astype(np.float32)
    labels = np.array([0, 6, 3, 2])
    mask = rng.random((4, 7)) < 0.7
    mask[:, 0] = True
    loss, grad = nf.softmax_cross_entropy(logits, torch.from_numpy(labels))
    want_loss, want_grad = nf.softmax_cross_entropy(logits, labels)
    assert float(loss) == float(want_loss)
    np.testing.assert_array_equal(grad, want_grad)
    got = nf.softmax(torch.from_numpy(logits), mask=torch.from_numpy(mask))
    np.testing.assert_array_equal(got.numpy(), nf.softmax(logits, mask=mask))


def test_state_dict_step_must_be_whole():
    params = [np.zeros(3, np.float32)]
    opt = optim.Adam(params)
    opt.step([np.ones(3, np.float32)])
    before = opt.state_dict()
    for step in (2.7, -1, float("nan"), "2", 2**1100, 2**53 + 2):
        broken = dict(before, step=step)
        with pytest.raises(ValueError, match="'step' must be a whole number"):
            opt.load_state_dict(broken)
    opt.load_state_dict(dict(before, step=np.int64(4)))
    assert opt.state_dict()["step"] == 4


def test_device_glue_copies_an_operand_that_shares_the_output_memory():
    """The CUDA path's check, run on CPU tensors (it only compares pointers):
    labels or a mask inside the output's bytes are copied, others are not."""
    torch = pytest.importorskip("torch")
    from types import SimpleNamespace

    from nnfuse._interop import DeviceArg
    from nnfuse._softmax_cuda import _apart_from

    call = SimpleNamespace(lib="torch")
    storage = torch.zeros(64, dtype=torch.float32)
    written = DeviceArg("out", storage, storage, "torch")
    written.ptr, written.shape, written.dtype = storage.data_ptr(), (8, 8), np.dtype(np.float32)
    inside = storage.view(torch.int64)[4:12]
    apart = torch.arange(8, dtype=torch.int64)
    copied = _apart_from(call, inside, written)
    assert copied.data_ptr() != inside.data_ptr() and torch.equal(copied, inside)
    assert _apart_from(call, apart, written) is apart


@pytest.mark.parametrize("alpha", [0.0, 1e-310, 1e-39, float("inf"), -float("inf")])
def test_celu_alpha_whose_reciprocal_overflows_is_refused(alpha):
    """1 / alpha is taken in float32: a subnormal alpha gave NaN at x = 0,
    an infinite one inf where the reference gives NaN."""
    with pytest.raises(ValueError, match="'alpha' must be finite with"):
        nf.celu(np.zeros(3, np.float32), alpha=alpha)


@pytest.mark.parametrize("func", [nf.elu, lambda x, alpha: nf.elu_backward(x, x, alpha=alpha)])
@pytest.mark.parametrize("alpha", [float("inf"), -float("inf")])
def test_elu_infinite_alpha_is_refused(func, alpha):
    """The float32 backward gave NaN where the reference's g alpha e^x is
    infinite (inf - inf inside g alpha + g alpha em1), the other dtypes inf."""
    with pytest.raises(ValueError, match="'alpha' must be finite"):
        func(np.zeros(3, np.float32), alpha=alpha)


@pytest.mark.parametrize("call, name", [
    (lambda x: nf.leaky_relu(x, 1e39), "negative_slope"),
    (lambda x: nf.elu(x, alpha=-4e38), "alpha"),
    (lambda x: nf.hardtanh(x, -1.0, 1e300), "max_val"),
    (lambda x: nf.softplus(x, threshold=10**40), "threshold"),
    (lambda x: nf.rrelu(x, 0.1, 1e39), "upper"),
    (lambda x: nf.softmax(x, scale=1e300), "scale"),
    (lambda x: nf.log_softmax_backward(x, x, scale=-1e39), "scale"),
], ids=["leaky_relu", "elu", "hardtanh", "softplus", "rrelu", "softmax", "log_softmax_backward"])
def test_parameters_beyond_the_float32_range_are_refused(call, name):
    """They would round to inf in the float32 compute type (leaky_relu(0,
    1e39) was NaN, softmax with scale=1e300 a NaN row), for every dtype alike."""
    for dtype in (np.float32, np.float64):
        with pytest.raises(ValueError, match=f"'{name}' = .* is beyond the float32 range"):
            call(np.zeros((2, 3), dtype))


def test_infinite_parameters_are_kept():
    x = np.array([-2.0, 0.5, 3.0], np.float32)
    np.testing.assert_array_equal(nf.hardtanh(x, -1.0, np.inf), [-1.0, 0.5, 3.0])
    np.testing.assert_array_equal(nf.leaky_relu(x, -np.inf), [np.inf, 0.5, 3.0])


@pytest.mark.parametrize("log", [False, True])
def test_scaled_logits_beyond_float32_are_infinite_as_documented(log):
    """z = round(scale * x) in float32: 2e10 * 1e30 is +inf there, so the row
    is NaN (PyTorch's softmax of x * scale gives the same); a row whose
    products stay in range is unaffected."""
    x = np.array([[1e10, 2e10, -3e10, 0.0], [1.0, 2.0, -3.0, 0.0]], np.float32)
    y = (nf.log_softmax if log else nf.softmax)(x, scale=1e30)
    assert np.isnan(y[0]).all()
    ref_row = (ref.log_softmax if log else ref.softmax)(x[1:].astype(np.float64), scale=float(np.float32(1e30)))
    np.testing.assert_allclose(y[1:], ref_row, rtol=1e-6, atol=0)


def test_load_state_dict_checks_the_switches():
    """A state_dict whose switch is not a bool is refused before anything is loaded ('no' would
    have meant True at the next step)."""
    opt = optim.SGD([np.ones(3, np.float32)], lr=0.5)
    saved = opt.state_dict()
    saved["hyper"]["maximize"] = "no"
    with pytest.raises(TypeError, match="SGD.load_state_dict\\(\\): 'maximize' must be a bool"):
        opt.load_state_dict(saved)
    assert opt.hyper["maximize"] is False
