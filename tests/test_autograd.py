"""PyTorch autograd: forward functions on tensors that require grad record one
node whose backward is the nnfuse backward function (the same bits), the
cross-entropy's loss backpropagates its computed gradient, and what autograd
cannot follow (out=, inplace=True, double backward) is refused."""

import numpy as np
import pytest

import nnfuse as nf
from nnfuse._optable import ACTIVATIONS

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _leaf(shape, seed, dtype=torch.float64, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype).requires_grad_()


@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS if a.name not in ("prelu", "rrelu")],
                         ids=lambda a: a.name)
def test_activation_grad_is_the_backward_function(activation):
    x = _leaf((5, 33), 1)
    g = torch.randn(5, 33, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    forward, backward = getattr(nf, activation.name), getattr(nf, activation.name + "_backward")
    y = forward(x)
    assert y.requires_grad and y.grad_fn is not None
    (gx,) = torch.autograd.grad(y, x, g)
    with torch.no_grad():
        np.testing.assert_array_equal(y.detach().numpy(), forward(x.detach()).numpy())
        np.testing.assert_array_equal(gx.numpy(), backward(g, x.detach()).numpy())


@pytest.mark.parametrize("name, torch_fn", [("gelu", F.gelu), ("silu", F.silu), ("mish", F.mish),
                                            ("softplus", F.softplus), ("elu", F.elu)])
def test_activation_grad_matches_torch(name, torch_fn):
    x = _leaf((1000,), 3)
    (ours,) = torch.autograd.grad(getattr(nf, name)(x).sum(), x)
    (theirs,) = torch.autograd.grad(torch_fn(x).sum(), x)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12, atol=1e-15)


def test_float32_and_bfloat16_keep_their_dtype():
    for dtype in (torch.float32, torch.bfloat16):
        x = _leaf((64,), 4, dtype)
        y = nf.tanh(x)
        y.sum().backward()
        assert y.dtype == dtype and x.grad.dtype == dtype
        with torch.no_grad():
            expected = nf.tanh_backward(torch.ones_like(x), x.detach())
        assert torch.equal(x.grad, expected)


def test_chained_ops_reach_the_leaf():
    x = _leaf((4, 9), 5)
    loss = (nf.log_softmax(nf.gelu(x) * 2.0, axis=1)[:, 0]).sum()
    loss.backward()
    xr = x.detach().clone().requires_grad_()
    (torch.log_softmax(F.gelu(xr) * 2.0, 1)[:, 0]).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xr.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_grad_is_the_backward_function(log):
    x = _leaf((6, 10), 6)
    mask = torch.rand(6, 10, generator=torch.Generator().manual_seed(7)) > 0.3
    forward = nf.log_softmax if log else nf.softmax
    backward = nf.log_softmax_backward if log else nf.softmax_backward
    for kw in ({"axis": 0, "scale": 0.5}, {"axis": -1}, {"axis": 1, "mask": mask}):
        y = forward(x, **kw)
        g = torch.randn_like(y)
        if log and "mask" in kw:
            g = torch.where(torch.isinf(y), 0.0, g)  # masked outputs are -inf, their gradient 0
        (gx,) = torch.autograd.grad(y, x, g)
        with torch.no_grad():
            expected = backward(g, y.detach(), axis=kw["axis"], scale=kw.get("scale", 1.0))
        np.testing.assert_array_equal(gx.numpy(), expected.numpy())
    assert torch.autograd.gradcheck(lambda t: forward(t, axis=1, scale=0.7), (x,))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_loss_backpropagates_its_gradient(reduction):
    x = _leaf((12, 7), 8)
    labels = torch.randint(0, 7, (12,), generator=torch.Generator().manual_seed(9))
    labels[3] = -100
    kw = {"label_smoothing": 0.1, "reduction": reduction}
    loss, grad = nf.softmax_cross_entropy(x, labels, **kw)
    assert loss.requires_grad and not grad.requires_grad
    w = torch.rand_like(loss) + 0.5
    (gx,) = torch.autograd.grad(loss, x, w)
    expected = grad * (w.unsqueeze(-1) if reduction == "none" else w)
    np.testing.assert_array_equal(gx.numpy(), expected.numpy())
    xr = x.detach().clone().requires_grad_()
    (theirs,) = torch.autograd.grad(F.cross_entropy(xr, labels, **kw), xr, w)
    np.testing.assert_allclose(gx.numpy(), theirs.numpy(), rtol=1e-12, atol=1e-15)


def test_prelu_grads_for_input_and_weight():
    x = _leaf((3, 4, 5), 10)
    w = torch.tensor([0.1, 0.2, -0.3, 0.4], dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 4, 5, dtype=torch.float64)
    gx, gw = torch.autograd.grad(nf.prelu(x, w), (x, w), g)
    with torch.no_grad():
        ex, ew = nf.prelu_backward(g, x.detach(), w.detach())
    assert torch.equal(gx, ex) and torch.equal(gw, ew)
    frozen = w.detach()
    (gx2,) = torch.autograd.grad(nf.prelu(x, frozen), (x,), g)
    assert torch.equal(gx2, ex)


def test_prelu_0d_weight_gradient_matches_torch():
    x = _leaf((3, 4, 5), 11)
    w = torch.tensor(0.25, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 4, 5, dtype=torch.float64)
    gx, gw = torch.autograd.grad(nf.prelu(x, w), (x, w), g)
    tx, tw = torch.autograd.grad(torch.nn.functional.prelu(x, w), (x, w), g)
    assert gw.shape == () and torch.equal(gx, tx)
    torch.testing.assert_close(gw, tw, rtol=1e-12, atol=0)


def test_numpy_inputs_beside_a_tensor_that_requires_grad():
    # The NumPy input takes no gradient; the weight's is prelu_backward's.
    x = np.random.default_rng(14).standard_normal((4, 3))
    w = torch.tensor([0.25], dtype=torch.float64, requires_grad=True)
    y = nf.prelu(x, w)
    assert isinstance(y, torch.Tensor) and y.requires_grad
    y.sum().backward()
    assert torch.equal(w.grad, torch.from_numpy(nf.prelu_backward(np.ones_like(x), x, w.detach().numpy())[1]))


def test_rrelu_training_regenerates_the_slopes():
    x = _leaf((1000,), 11)
    y = nf.rrelu(x, 0.1, 0.3, True, seed=5, offset=2)
    (gx,) = torch.autograd.grad(y.sum(), x)
    with torch.no_grad():
        expected = nf.rrelu_backward(torch.ones_like(x), x.detach(), 0.1, 0.3, True, seed=5, offset=2)
    assert torch.equal(gx, expected)
    negative = x.detach() < 0
    assert ((gx[negative] >= 0.1) & (gx[negative] <= 0.3)).all() and (gx[~negative] == 1).all()


def test_what_autograd_cannot_follow_is_refused():
    x = _leaf((4, 5), 12)
    with pytest.raises(ValueError, match=r"gelu\(\): 'out' cannot be used while autograd records"):
        nf.gelu(x, out=torch.empty_like(x))
    with pytest.raises(ValueError, match=r"softmax\(\): 'out' cannot be used"):
        nf.softmax(x, out=torch.empty_like(x))
    with pytest.raises(ValueError, match=r"inplace=True cannot be used"):
        nf.softmax_cross_entropy(x, torch.zeros(4, dtype=torch.int64), inplace=True)
    leaf_out = torch.empty(4, 5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="'out' cannot be used"):
        nf.tanh(x.detach(), out=leaf_out)
    g = torch.ones(4, 5, dtype=torch.float64)
    for call in (lambda: nf.gelu_backward(g, x), lambda: nf.tanh_backward(g, y=x),
                 lambda: nf.softmax_backward(g, x), lambda: nf.prelu_backward(g, x, torch.ones(5, dtype=x.dtype)),
                 lambda: nf.rrelu_backward(g, x, training=True, seed=1)):
        with pytest.raises(ValueError, match="no double backward"):
            call()


def test_without_autograd_tensors_pass_straight_through():
    x = _leaf((8,), 13)
    with torch.no_grad():
        y = nf.gelu(x)
        gx = nf.gelu_backward(torch.ones_like(x), x)
    assert not y.requires_grad and y.grad_fn is None and gx.grad_fn is None
    plain = x.detach()
    assert nf.gelu(plain).grad_fn is None
    out = torch.empty_like(plain)
    assert nf.gelu(plain, out=out) is out


@pytest.mark.cuda
def test_cuda_tensors_record_the_same_node(torch):
    """On a GPU the node runs the CUDA kernels: gelu, softmax and the
    cross-entropy's gradients are those of the backward functions there."""
    x = (torch.randn(8, 50, dtype=torch.float32, device="cuda") * 3).requires_grad_()
    labels = torch.randint(0, 50, (8,), device="cuda")
    y = nf.softmax(nf.gelu(x), axis=1)
    loss, _ = nf.softmax_cross_entropy(x, labels, reduction="sum")
    gx_softmax, = torch.autograd.grad(y[:, 0].sum(), x)
    gx_loss, = torch.autograd.grad(loss, x)
    with torch.no_grad():
        h = nf.gelu(x)
        s = nf.softmax(h, axis=1)
        g = torch.zeros_like(s)
        g[:, 0] = 1
        expected = nf.gelu_backward(nf.softmax_backward(g, s, axis=1), x)
        _, grad = nf.softmax_cross_entropy(x, labels, reduction="sum")
    assert torch.equal(gx_softmax, expected) and torch.equal(gx_loss, grad)
