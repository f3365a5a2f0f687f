"""Array interop (nnfuse/_interop.py): PyTorch CPU tensors run here on every
machine; CUDA tensors, CuPy arrays, bare __cuda_array_interface__ and DLPack
objects, streams and devices are marked `cuda`."""

import numpy as np
import pytest

import nnfuse as nf
from nnfuse import _interop
from nnfuse._array import BFLOAT16
from nnfuse._optable import ACTIVATIONS

from samples import grad_sample, sample

torch = pytest.importorskip("torch")

TORCH_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
NUMPY_OF = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64),
            torch.float16: np.dtype(np.float16), torch.bfloat16: BFLOAT16}


def _torch_from(a, device="cpu"):
    """A torch tensor with the bits of NumPy array a."""
    if a.dtype == BFLOAT16:
        t = torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    else:
        t = torch.from_numpy(a.copy())
    return t.to(device)


def _numpy_of(t):
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(BFLOAT16)
    return t.numpy()


def _bits(a):
    """Bits of a with every NaN made one canonical NaN (IEEE leaves the payload open)."""
    wide = np.asarray(a).astype(np.float64)
    wide[np.isnan(wide)] = np.nan
    return wide.view(np.uint64)


def _assert_same_as_cpu(gpu, cpu, label):
    """GPU and CPU results agree to the bit, except float64, where the GPU's
    libm (exp, expm1, log1p, tanh in double) may differ from glibc's by an ULP
    or two."""
    if cpu.dtype == np.float64:
        from nnfuse._ulp import ulp_error

        err = ulp_error(gpu, cpu)
        assert float(err.max(initial=0.0)) <= 4.0, f"{label}: CPU-GPU float64 distance {err.max()} ULP"
    else:
        np.testing.assert_array_equal(_bits(gpu), _bits(cpu), err_msg=label)


# ---- PyTorch CPU tensors (run everywhere) -------------------------------------------

@pytest.mark.parametrize("tdtype", TORCH_DTYPES, ids=str)
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: a.name)
def test_torch_cpu_tensors_give_torch_tensors_with_the_numpy_bits(activation, tdtype):
    dtype = NUMPY_OF[tdtype]
    x = sample(dtype, activation.special_points, n=1000, seed=11)
    g = grad_sample(dtype, n=1000, seed=12)
    fwd, bwd = getattr(nf, activation.name), getattr(nf, activation.name + "_backward")
    y = fwd(_torch_from(x))
    dx = bwd(_torch_from(g), _torch_from(x))
    for result in (y, dx):
        assert isinstance(result, torch.Tensor) and result.dtype == tdtype and result.device.type == "cpu"
    np.testing.assert_array_equal(_bits(_numpy_of(y)), _bits(fwd(x)))
    np.testing.assert_array_equal(_bits(_numpy_of(dx)), _bits(bwd(g, x)))


def test_torch_cpu_out_in_place_and_views():
    x = torch.linspace(-4, 4, 1001)
    expected = _numpy_of(nf.silu(x))
    out = torch.empty_like(x)
    assert nf.silu(x, out=out) is out
    np.testing.assert_array_equal(_numpy_of(out), expected)
    buf = x.clone()
    assert nf.silu(buf, out=buf) is buf
    np.testing.assert_array_equal(_numpy_of(buf), expected)
    # Non-contiguous input and output.
    base = torch.linspace(-4, 4, 64 * 66).reshape(64, 66)
    view = base[::2, 1::3]
    np.testing.assert_array_equal(_numpy_of(nf.gelu(view)), nf.gelu(np.ascontiguousarray(_numpy_of(view))))
    strided_out = torch.zeros(64, 66)[:, ::2]
    assert nf.tanh(base[:, ::2], out=strided_out) is strided_out
    np.testing.assert_array_equal(_numpy_of(strided_out), nf.tanh(np.ascontiguousarray(_numpy_of(base[:, ::2]))))


def test_torch_cpu_channels_last_stays_channels_last():
    # As torch.nn.functional's elementwise ops: the result keeps the input's
    # memory format, with the bits of the contiguous call.
    x = torch.from_numpy(np.linspace(-4, 4, 2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7))
    cl = x.contiguous(memory_format=torch.channels_last)
    for result, expected in ((nf.gelu(cl), nf.gelu(x)), (nf.gelu_backward(cl, cl), nf.gelu_backward(x, x))):
        assert result.is_contiguous(memory_format=torch.channels_last) and not result.is_contiguous()
        assert torch.equal(result, expected)


def test_torch_cpu_requires_grad_and_mixed_with_numpy():
    x = torch.linspace(-2, 2, 33, requires_grad=True)
    y = nf.relu(x)  # an autograd node (tests/test_autograd.py)
    assert isinstance(y, torch.Tensor) and y.requires_grad
    np.testing.assert_array_equal(_numpy_of(y), np.maximum(_numpy_of(x), 0))
    # Any torch argument makes the results torch tensors.
    g = np.ones(33, np.float32)
    dx = nf.relu_backward(g, x.detach())
    assert isinstance(dx, torch.Tensor)
    np.testing.assert_array_equal(_numpy_of(dx), (_numpy_of(x) > 0).astype(np.float32))


def test_torch_cpu_negated_and_conjugated_views():
    """A tensor with a negation bit is read as its values (the view resolves it); a conjugated
    complex tensor is refused for its dtype, not by NumPy's conversion."""
    base = torch.tensor([-1.5, 0.25, 2.0])
    np.testing.assert_array_equal(nf.relu(torch._neg_view(base)).numpy(), nf.relu((-base).numpy()))
    with pytest.raises(TypeError, match="'x' has dtype complex64"):
        nf.relu(torch.ones(2, dtype=torch.complex64).conj())


def test_torch_cpu_negated_views_are_not_written_through_a_copy():
    """A negated view is read through a copy of its values, so where nnfuse would write it (out=,
    in-place logits, an optimizer's parameters) it is refused as read-only and left as it was;
    writing the copy returned success and left the tensor unchanged."""
    from nnfuse import optim

    base = torch.tensor([[-1.5, 0.25, 2.0], [0.5, -3.0, 1.0]])
    negated = torch._neg_view(base)
    with pytest.raises(ValueError, match="gelu\\(\\): 'out' is read-only"):
        nf.gelu(torch.ones(2, 3), out=negated)
    with pytest.raises(ValueError, match="needs 'logits' to be C-contiguous and writeable"):
        nf.softmax_cross_entropy(negated, torch.tensor([0, 2]), inplace=True)
    with pytest.raises(ValueError, match="SGD\\(\\): 'params\\[0\\]' is read-only"):
        optim.SGD([negated], lr=1.0)
    with pytest.raises(ValueError, match="sgd_step\\(\\): 'params\\[0\\]' is read-only"):
        optim.sgd_step([negated], [torch.ones(2, 3)], step=1, lr=1.0)
    assert torch.equal(base, torch.tensor([[-1.5, 0.25, 2.0], [0.5, -3.0, 1.0]]))


@pytest.mark.parametrize("call, name", [
    (lambda t: nf.softmax(torch.randn(2, 3, requires_grad=True), scale=t), "scale"),
    (lambda t: nf.log_softmax(torch.randn(2, 3), scale=t), "scale"),
    (lambda t: nf.leaky_relu(torch.randn(3, requires_grad=True), t), "negative_slope"),
    (lambda t: nf.elu(np.ones(3, np.float32), alpha=t), "alpha"),
    (lambda t: nf.softmax_cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), z_loss=t), "z_loss"),
], ids=["softmax-autograd", "log-softmax", "leaky-relu", "elu-numpy", "cross-entropy"])
def test_options_that_require_grad_are_refused(call, name):
    """An option given as a tensor that requires grad would be read as a constant and get no
    gradient, silently; it is refused while autograd records, and taken under no_grad."""
    option = torch.tensor(0.5, requires_grad=True)
    with pytest.raises(ValueError, match=f"'{name}' is a tensor that requires grad"):
        call(option)
    with torch.no_grad():
        call(option)
    call(option.detach())


def test_torch_cpu_prelu_and_rrelu():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    g = rng.standard_normal((4, 3, 5)).astype(np.float32)
    w = np.array([0.1, 0.2, 0.3], np.float32)
    y = nf.prelu(torch.from_numpy(x), torch.from_numpy(w))
    assert isinstance(y, torch.Tensor)
    np.testing.assert_array_equal(y.numpy(), nf.prelu(x, w))
    gx, gw = nf.prelu_backward(torch.from_numpy(g), torch.from_numpy(x), torch.from_numpy(w))
    egx, egw = nf.prelu_backward(g, x, w)
    assert isinstance(gx, torch.Tensor) and isinstance(gw, torch.Tensor) and gw.shape == (3,)
    np.testing.assert_array_equal(gx.numpy(), egx)
    np.testing.assert_array_equal(gw.numpy(), egw)
    r = nf.rrelu(torch.from_numpy(x), training=True, seed=5, offset=7)
    np.testing.assert_array_equal(r.numpy(), nf.rrelu(x, training=True, seed=5, offset=7))
    rb = nf.rrelu_backward(torch.from_numpy(g), torch.from_numpy(x), training=True, seed=5, offset=7)
    np.testing.assert_array_equal(rb.numpy(), nf.rrelu_backward(g, x, training=True, seed=5, offset=7))


def test_numpy_in_numpy_out():
    x = np.linspace(-1, 1, 10, dtype=np.float32)
    assert type(nf.relu(x)) is np.ndarray
    assert type(nf.relu([-1.0, 2.0])) is np.ndarray  # array-likes still go through np.asarray


def test_torch_cpu_softmax_family_gives_torch_tensors_with_the_numpy_bits():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((5, 40)) * 3).astype(np.float32)
    g = rng.standard_normal((5, 40)).astype(np.float32)
    mask = rng.random((5, 40)) < 0.6
    labels = rng.integers(0, 40, 5)
    tx, tg = _torch_from(x), _torch_from(g)
    for name in ("softmax", "log_softmax"):
        f = getattr(nf, name)
        y = f(tx, mask=torch.from_numpy(mask), axis=-1, scale=0.5)
        assert isinstance(y, torch.Tensor)
        np.testing.assert_array_equal(_numpy_of(y), f(x, mask=mask, scale=0.5))
        b = getattr(nf, name + "_backward")(tg, y)
        assert isinstance(b, torch.Tensor)
        np.testing.assert_array_equal(_numpy_of(b), getattr(nf, name + "_backward")(g, _numpy_of(y)))
    loss, grad = nf.softmax_cross_entropy(tx, torch.from_numpy(labels), label_smoothing=0.1)
    ref_loss, ref_grad = nf.softmax_cross_entropy(x, labels, label_smoothing=0.1)
    assert isinstance(loss, torch.Tensor) and isinstance(grad, torch.Tensor)
    np.testing.assert_array_equal(_numpy_of(loss), ref_loss)
    np.testing.assert_array_equal(_numpy_of(grad), ref_grad)
    buf = tx.clone()
    loss, grad = nf.softmax_cross_entropy(buf, torch.from_numpy(labels), inplace=True)
    assert grad is buf
    out = torch.empty_like(tx)
    loss, grad = nf.softmax_cross_entropy(tx, torch.from_numpy(labels), label_smoothing=0.1, out=out)
    assert grad is out
    np.testing.assert_array_equal(_numpy_of(out), ref_grad)


# ---- device values without a GPU (run everywhere) --------------------------------------

class FakeCudaArray:
    """Claims to be a CUDA array; never dereferenced by the checks tested here."""

    def __init__(self, shape=(4,), typestr="<f4"):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (0x10000, False),
                                         "version": 3, "strides": None, "stream": None}


def test_mixing_host_and_device_arguments_names_them():
    with pytest.raises(ValueError, match=r"'grad'.*GPU.*'x'.*host"):
        nf.relu_backward(FakeCudaArray(), np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"'out'.*GPU.*'x'.*host"):
        nf.relu(np.ones(4, np.float32), out=FakeCudaArray())
    with pytest.raises(ValueError, match=r"'x'.*GPU.*'weight'.*host"):
        nf.prelu(FakeCudaArray(), np.ones(1, np.float32))
    with pytest.raises(ValueError, match=r"'y'.*GPU.*'grad'.*host"):
        nf.softmax_backward(np.ones(4, np.float32), FakeCudaArray())
    with pytest.raises(ValueError, match=r"'mask' is in host memory but 'x' is on a GPU"):
        nf.softmax(FakeCudaArray(), mask=np.ones(4, bool))
    with pytest.raises(ValueError, match=r"'labels' is on a GPU but 'logits' is in host memory"):
        nf.softmax_cross_entropy(np.ones((1, 4), np.float32), FakeCudaArray((1,), "<i8"))


@pytest.mark.skipif(nf.cuda_available(), reason="checks the error raised when no GPU is usable")
def test_cuda_array_without_a_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match=r"relu\(\): argument 'x' is a CUDA array"):
        nf.relu(FakeCudaArray())
    with pytest.raises(RuntimeError, match=r"softmax\(\): argument 'x' is a CUDA array"):
        nf.softmax(FakeCudaArray((2, 4)))
    with pytest.raises(RuntimeError, match=r"softmax_cross_entropy\(\): argument 'logits' is a CUDA array"):
        nf.softmax_cross_entropy(FakeCudaArray((2, 4)), FakeCudaArray((2,), "<i8"))
    assert not nf.cuda_available()


# ---- CUDA: PyTorch ------------------------------------------------------------------

def _cuda_torch():
    if not torch.cuda.is_available():
        pytest.skip("PyTorch was built without CUDA or sees no GPU")


@pytest.mark.cuda
@pytest.mark.parametrize("tdtype", TORCH_DTYPES, ids=str)
def test_torch_cuda_tensors_stay_on_the_gpu_and_match_the_cpu(tdtype):
    _cuda_torch()
    dtype = NUMPY_OF[tdtype]
    x = sample(dtype, (), n=4099, seed=3)
    g = grad_sample(dtype, n=4099, seed=4)
    xd, gd = _torch_from(x, "cuda"), _torch_from(g, "cuda")
    for name in ("gelu", "silu", "relu", "softplus"):
        y = getattr(nf, name)(xd)
        dx = getattr(nf, name + "_backward")(gd, xd)
        for result in (y, dx):
            assert isinstance(result, torch.Tensor) and result.is_cuda and result.dtype == tdtype
            assert result.device == xd.device
        _assert_same_as_cpu(_numpy_of(y), getattr(nf, name)(x), name)
        _assert_same_as_cpu(_numpy_of(dx), getattr(nf, name + "_backward")(g, x), name + "_backward")


@pytest.mark.cuda
def test_torch_cuda_out_in_place_non_contiguous():
    _cuda_torch()
    x = torch.linspace(-4, 4, 1001, device="cuda")
    expected = _numpy_of(nf.silu(x.cpu()))
    out = torch.empty_like(x)
    assert nf.silu(x, out=out) is out
    np.testing.assert_array_equal(_numpy_of(out), expected)
    buf = x.clone()
    assert nf.silu(buf, out=buf) is buf
    np.testing.assert_array_equal(_numpy_of(buf), expected)
    base = torch.linspace(-4, 4, 64 * 66, device="cuda").reshape(64, 66)
    view = base[::2, 1::3]
    np.testing.assert_array_equal(_numpy_of(nf.gelu(view)), _numpy_of(nf.gelu(view.cpu())))
    strided_out = torch.zeros(64, 66, device="cuda")[:, ::2]
    assert nf.tanh(base[:, ::2], out=strided_out) is strided_out
    np.testing.assert_array_equal(_numpy_of(strided_out), _numpy_of(nf.tanh(base[:, ::2].cpu())))
    with pytest.raises(ValueError, match="partially overlaps"):
        nf.relu(x[1:], out=x[:-1])


@pytest.mark.cuda
def test_torch_cuda_mixed_with_host_is_a_value_error():
    _cuda_torch()
    xd = torch.ones(8, device="cuda")
    with pytest.raises(ValueError, match=r"'x' is on a GPU but argument 'grad' is in host memory"):
        nf.relu_backward(torch.ones(8), xd)
    with pytest.raises(ValueError, match=r"'out'.*host"):
        nf.relu(xd, out=torch.empty(8))


@pytest.mark.cuda
def test_torch_cuda_prelu_and_rrelu_match_the_cpu():
    _cuda_torch()
    rng = np.random.default_rng(1)
    for shape, wsize in (((8, 3, 37), 3), ((1000, 17), 17), ((5000,), 1), ((3, 70001), 1)):
        x = rng.standard_normal(shape).astype(np.float32)
        g = rng.standard_normal(shape).astype(np.float32)
        w = rng.uniform(0.05, 0.5, wsize).astype(np.float32)
        xd, gd, wd = (torch.from_numpy(a).cuda() for a in (x, g, w))
        np.testing.assert_array_equal(nf.prelu(xd, wd).cpu().numpy(), nf.prelu(x, w))
        gx, gw = nf.prelu_backward(gd, xd, wd)
        egx, egw = nf.prelu_backward(g, x, w)
        assert gx.is_cuda and gw.is_cuda and gw.shape == w.shape and gw.dtype == torch.float32
        np.testing.assert_array_equal(gx.cpu().numpy(), egx)
        # Different summation orders (the CPU adds float32 partial sums of up to
        # 64 terms, the GPU adds every term in float64): compare within 1e-5 of
        # the sum of the terms' magnitudes.
        magnitude = np.where(x > 0, 0.0, np.abs(g.astype(np.float64) * x)).sum()
        np.testing.assert_allclose(gw.cpu().numpy(), egw, rtol=0, atol=1e-5 * magnitude + 1e-30)
        # Deterministic: the same bits on every run.
        np.testing.assert_array_equal(nf.prelu_backward(gd, xd, wd)[1].cpu().numpy(), gw.cpu().numpy())
        for seed, offset in ((0, 0), (12345, 2**40 + 3)):
            np.testing.assert_array_equal(nf.rrelu(xd, training=True, seed=seed, offset=offset).cpu().numpy(),
                                          nf.rrelu(x, training=True, seed=seed, offset=offset))
            np.testing.assert_array_equal(
                nf.rrelu_backward(gd, xd, training=True, seed=seed, offset=offset).cpu().numpy(),
                nf.rrelu_backward(g, x, training=True, seed=seed, offset=offset))


@pytest.mark.cuda
def test_work_queued_on_a_non_default_stream_needs_no_device_sync():
    """The kernels run on torch's current stream: on a side stream delayed by a
    spin kernel, nf.relu must see the copy queued before it (a launch on the
    default stream would race ahead and read zeros), and waiting for that
    stream alone must be enough to read the result."""
    _cuda_torch()
    n = 1 << 22
    source = torch.linspace(-1, 1, n, device="cuda")
    expected = torch.relu(source).cpu()
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        x = torch.zeros(n, device="cuda")
        if hasattr(torch.cuda, "_sleep"):
            torch.cuda._sleep(50_000_000)  # ~tens of ms of spinning on `side`
        x.copy_(source)
        y = nf.relu(x)
        dx = nf.relu_backward(torch.ones_like(x), x)
    side.synchronize()
    assert torch.equal(y.cpu(), expected)
    assert torch.equal(dx.cpu(), (source > 0).float().cpu())


@pytest.mark.cuda
def test_arrays_on_another_gpu():
    _cuda_torch()
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    x1 = torch.linspace(-3, 3, 1000, device="cuda:1")
    with torch.cuda.device(0):
        y = nf.gelu(x1)
    assert y.device == x1.device
    np.testing.assert_array_equal(y.cpu().numpy(), nf.gelu(x1.cpu().numpy()))
    with pytest.raises(ValueError, match="same GPU"):
        nf.relu_backward(torch.ones(1000, device="cuda:0"), x1)


class CaiOnly:
    """Exposes only __cuda_array_interface__ (as Numba or JAX arrays would)."""

    def __init__(self, owner):
        self.owner = owner
        self.__cuda_array_interface__ = owner.__cuda_array_interface__


class DlpackOnly:
    def __init__(self, owner):
        self.owner = owner

    def __dlpack__(self, *args, **kwargs):
        return self.owner.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.owner.__dlpack_device__()


@pytest.mark.cuda
def test_bare_interface_object_without_cupy_gives_a_cuda_array(monkeypatch):
    _cuda_torch()
    monkeypatch.setattr(_interop, "_try_import_cupy", lambda: None)
    x = torch.linspace(-3, 3, 1001, device="cuda")
    y = nf.gelu(CaiOnly(x))
    assert isinstance(y, nf.CudaArray) and y.shape == (1001,) and y.dtype == np.float32
    back = torch.as_tensor(y, device="cuda")
    np.testing.assert_array_equal(back.cpu().numpy(), nf.gelu(x.cpu().numpy()))
    with pytest.raises(ValueError, match="non-contiguous"):
        nf.gelu(CaiOnly(x[::2]))


# ---- CUDA: CuPy ---------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16], ids=lambda d: np.dtype(d).name)
def test_cupy_arrays_give_cupy_arrays(dtype):
    cupy = pytest.importorskip("cupy")
    x = sample(dtype, (), n=4099, seed=5)
    g = grad_sample(dtype, n=4099, seed=6)
    xd, gd = cupy.asarray(x), cupy.asarray(g)
    y = nf.mish(xd)
    dx = nf.mish_backward(gd, xd)
    assert isinstance(y, cupy.ndarray) and isinstance(dx, cupy.ndarray) and y.dtype == dtype
    _assert_same_as_cpu(cupy.asnumpy(y), nf.mish(x), "mish")
    _assert_same_as_cpu(cupy.asnumpy(dx), nf.mish_backward(g, x), "mish_backward")
    out = cupy.empty_like(xd)
    assert nf.mish(xd, out=out) is out
    _assert_same_as_cpu(cupy.asnumpy(out), nf.mish(x), "mish out=")
    strided = cupy.asarray(np.stack([x, x], axis=1))[:, 1]
    _assert_same_as_cpu(cupy.asnumpy(nf.mish(strided)), nf.mish(x), "mish strided")


@pytest.mark.cuda
def test_cupy_stream_and_foreign_objects():
    cupy = pytest.importorskip("cupy")
    x = np.linspace(-5, 5, 100_003).astype(np.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        xd = cupy.asarray(x)
        y = nf.softplus(xd)
        z = nf.softplus(CaiOnly(xd))  # viewed as CuPy: returns CuPy
        w = nf.softplus(DlpackOnly(xd))
    stream.synchronize()
    expected = nf.softplus(x)
    for result in (y, z, w):
        assert isinstance(result, cupy.ndarray)
        np.testing.assert_array_equal(cupy.asnumpy(result), expected)
    with pytest.raises(ValueError, match="host"):
        nf.softplus_backward(np.ones_like(x), xd)


@pytest.mark.cuda
def test_torch_and_cupy_share_memory_through_interop():
    cupy = pytest.importorskip("cupy")
    _cuda_torch()
    t = torch.linspace(-2, 2, 513, device="cuda")
    c = cupy.asarray(t)  # a CuPy view of the tensor's memory
    y = nf.elu(c)
    assert isinstance(y, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(y), nf.elu(t.cpu().numpy()))
