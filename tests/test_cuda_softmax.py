"""CUDA softmax family (marked `cuda`): parity with the float64 reference at the
published bounds for every op x dtype, masks and the fully-masked-row policy,
scale and axes, the fused cross-entropy options, row lengths on both sides of
the warp / block / multi-block thresholds (1024, 65536), CPU-GPU differences
in ULPs, determinism, in-place calls, stream ordering and CuPy arrays. Device
arrays come from PyTorch (the one library here with bfloat16)."""

import numpy as np
import pytest

import nnfuse as nf
import nnfuse.reference as ref
from nnfuse._array import BFLOAT16
from nnfuse._ulp import ulp_error
from nnfuse.accuracy import SOFTMAX_BOUNDS, softmax_floor

from conftest import assert_within_ulp
from test_softmax import CE_CASES, _rows
from cuda_helpers import to_cpu, to_gpu

pytestmark = pytest.mark.cuda

DTYPES = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), BFLOAT16]
# Around the team layouts (rows held by a warp up to 128, 256, 512 and 1024
# elements, by a block up to 4096 and 8192 / 16384, tiles above), the shifted
# softmax terms (above 16), the multi-block rows (65536) and their chunk (16384).
ROW_LENGTHS = [1, 2, 16, 17, 31, 32, 33, 128, 129, 256, 257, 512, 513, 1000, 1023, 1024, 1025, 4096, 4097, 8192,
               8193, 16384, 16385, 65535, 65536, 65537, 200000]
LAYOUT_LENGTHS = [3, 17, 129, 513, 1025, 4097, 8193, 16385]


def _key(dtype):
    return "bfloat16" if dtype == BFLOAT16 else np.dtype(dtype).name


def _cpu_gpu_ulp(gpu, cpu, floor=None):
    return float(ulp_error(gpu, cpu.astype(np.float64), floor).max()) if gpu.size else 0.0


def _check_forward(torch, x, label, **kw):
    x64 = x.astype(np.float64)
    bounds = SOFTMAX_BOUNDS[_key(x.dtype)]
    kw_gpu = dict(kw)
    if kw.get("mask") is not None:
        kw_gpu["mask"] = torch.from_numpy(np.ascontiguousarray(kw["mask"])).cuda()
    xd = to_gpu(torch, x)
    y = to_cpu(torch, nf.softmax(xd, **kw_gpu))
    ly = to_cpu(torch, nf.log_softmax(xd, **kw_gpu))
    assert y.dtype == x.dtype and y.shape == x.shape
    assert_within_ulp(label + " softmax", y, ref.softmax(x64, **kw), bounds["softmax"], {"x": x})
    expected = ref.log_softmax(x64, **kw)
    floor = softmax_floor("log_softmax", x.dtype, expected)
    assert_within_ulp(label + " log_softmax", ly, expected, bounds["log_softmax"], {"x": x}, floor=floor)
    # CPU-GPU: the same per-element math; the row sums are added in another
    # order, so 1/S and log S may round differently in rare rows (reported).
    d = _cpu_gpu_ulp(y, nf.softmax(x, **kw)), _cpu_gpu_ulp(ly, nf.log_softmax(x, **kw), floor)
    print(f"CPU-GPU max ULP {label}: softmax {d[0]:g}, log_softmax {d[1]:g}")
    return y, ly, d


def _check_backward(torch, x, g, label):
    """softmax_backward and log_softmax_backward on the GPU from the CPU's
    forward output, against the reference at the published bound; prints the
    CPU-GPU distance."""
    bounds = SOFTMAX_BOUNDS[_key(x.dtype)]
    for name in ("softmax", "log_softmax"):
        y = getattr(nf, name)(x)
        dx = to_cpu(torch, getattr(nf, name + "_backward")(to_gpu(torch, g), to_gpu(torch, y)))
        expected = getattr(ref, name + "_backward")(g.astype(np.float64), y.astype(np.float64))
        floor = softmax_floor(name + "_backward", x.dtype, expected, g=g.astype(np.float64),
                              y=y.astype(np.float64))
        assert_within_ulp(f"{label} cuda {name}_backward", dx, expected, bounds["backward"], {"grad": g, "y": y},
                          floor=floor)
        diff = _cpu_gpu_ulp(dx, getattr(nf, name + "_backward")(g, y), floor)
        print(f"CPU-GPU max ULP {label} {name}_backward: {diff:g}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_key)
def test_forward_matches_reference_and_cpu(torch, dtype):
    x = _rows(_key(dtype))
    _, _, d = _check_forward(torch, x, _key(dtype))
    if dtype != np.float64:
        assert max(d) <= 2.0, f"CPU-GPU difference {d} ULP"


@pytest.mark.parametrize("dtype", DTYPES, ids=_key)
def test_backward_matches_reference_and_cpu(torch, dtype):
    x = _rows(_key(dtype))
    x = np.where(np.isfinite(x.astype(np.float64)), x, 0).astype(dtype)
    g = (np.random.default_rng(1).standard_normal(x.shape) * 2).astype(dtype)
    _check_backward(torch, x, g, _key(dtype))


@pytest.mark.parametrize("n", ROW_LENGTHS)
def test_row_lengths_every_path(torch, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((3, n)) * 5).astype(np.float32)
    x[1, n // 2] = 40.0  # a dominant logit somewhere inside a chunk
    y, _, _ = _check_forward(torch, x, f"n={n}")
    g = rng.standard_normal(x.shape).astype(np.float32)
    dx = to_cpu(torch, nf.softmax_backward(to_gpu(torch, g), to_gpu(torch, y)))
    expected = ref.softmax_backward(g.astype(np.float64), y.astype(np.float64))
    floor = softmax_floor("softmax_backward", x.dtype, expected, g=g.astype(np.float64), y=y.astype(np.float64))
    assert_within_ulp(f"n={n} cuda softmax_backward", dx, expected, SOFTMAX_BOUNDS["float32"]["backward"],
                      {"grad": g, "y": y}, floor=floor)
    labels = rng.integers(0, n, 3)
    for kw in CE_CASES[:3]:
        loss, grad = nf.softmax_cross_entropy(to_gpu(torch, x), torch.from_numpy(labels).cuda(), **kw)
        rloss, rgrad = ref.softmax_cross_entropy(x.astype(np.float64), labels, **kw)
        assert_within_ulp(f"n={n} {kw} loss", to_cpu(torch, loss), rloss,
                          SOFTMAX_BOUNDS["float32"]["cross_entropy_loss"], {"logits": x})
        floor = softmax_floor("cross_entropy_grad", x.dtype, rgrad, logits=x, labels=labels, **kw)
        assert_within_ulp(f"n={n} {kw} grad", to_cpu(torch, grad), rgrad,
                          SOFTMAX_BOUNDS["float32"]["cross_entropy_grad"], {"logits": x}, floor=floor)


@pytest.mark.parametrize("dtype", DTYPES, ids=_key)
@pytest.mark.parametrize("n", LAYOUT_LENGTHS)
def test_row_layouts_every_dtype(torch, n, dtype):
    # Each dtype takes its own team layout (float64 holds fewer elements per
    # thread): forward, backward and cross-entropy against the reference at
    # the published bounds, rows held in registers and rows in tiles.
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((4, n)) * 4).astype(dtype)
    x[2, n // 3] = 30.0
    y, _, _ = _check_forward(torch, x, f"{_key(dtype)} n={n}")
    bounds = SOFTMAX_BOUNDS[_key(dtype)]
    _check_backward(torch, x, rng.standard_normal(x.shape).astype(dtype), f"{_key(dtype)} n={n}")
    labels = rng.integers(0, n, 4)
    labels[2] = n // 3  # a confident row
    for kw in CE_CASES[:3]:
        loss, grad = nf.softmax_cross_entropy(to_gpu(torch, x), torch.from_numpy(labels).cuda(), reduction="none",
                                              **kw)
        rloss, rgrad = ref.softmax_cross_entropy(x.astype(np.float64), labels, reduction="none", **kw)
        assert_within_ulp(f"{_key(dtype)} n={n} {kw} loss", to_cpu(torch, loss), rloss,
                          bounds["cross_entropy_loss"], {"logits": x},
                          floor=softmax_floor("cross_entropy_loss", dtype, rloss))
        floor = softmax_floor("cross_entropy_grad", dtype, rgrad, logits=x, labels=labels, reduction="none", **kw)
        assert_within_ulp(f"{_key(dtype)} n={n} {kw} grad", to_cpu(torch, grad), rgrad,
                          bounds["cross_entropy_grad"], {"logits": x}, floor=floor)


@pytest.mark.parametrize("n", [7, 300, 5000, 70000])
@pytest.mark.parametrize("masked_rows", ["zero", "nan"])
def test_masks_scale_and_special_rows(torch, n, masked_rows):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((6, n)) * 3).astype(np.float32)
    mask = rng.random((6, n)) < 0.7
    mask[0] = False                 # fully masked
    x[1] = -np.inf                  # all -inf
    x[2, n // 3] = np.nan           # NaN row
    x[3, n - 1] = np.inf            # +inf row: NaN
    mask[2:4] = True
    # An exact scale: the reference's float64 product equals the kernel's float32 one.
    _check_forward(torch, x, f"n={n} mask {masked_rows}", mask=mask, masked_rows=masked_rows, scale=0.5)
    # A broadcast mask (one per column) and a mask on another axis.
    _check_forward(torch, x, f"n={n} broadcast mask", mask=mask[4], masked_rows=masked_rows)


def test_axes_out_and_in_place(torch):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((4, 37, 6)) * 3).astype(np.float32)
    xd = to_gpu(torch, x)
    for axis in (0, 1, -1):
        y = to_cpu(torch, nf.softmax(xd, axis=axis))
        assert_within_ulp(f"axis={axis}", y, ref.softmax(x.astype(np.float64), axis=axis), 3.0, {"x": x})
        mask = rng.random(x.shape) < 0.5
        y = to_cpu(torch, nf.log_softmax(xd, axis=axis, mask=torch.from_numpy(mask).cuda()))
        expected = ref.log_softmax(x.astype(np.float64), axis=axis, mask=mask)
        assert_within_ulp(f"axis={axis} mask", y, expected, 3.0, {"x": x},
                          floor=softmax_floor("log_softmax", x.dtype, expected))
    # Non-contiguous input, out=, in place.
    xt = to_gpu(torch, x).transpose(0, 2)
    y = nf.softmax(xt)
    np.testing.assert_array_equal(to_cpu(torch, y), to_cpu(torch, nf.softmax(xt.contiguous())))
    out = torch.empty_like(xd)
    assert nf.softmax(xd, out=out) is out
    inplace = xd.clone()
    nf.log_softmax(inplace, out=inplace)
    np.testing.assert_array_equal(to_cpu(torch, inplace), to_cpu(torch, nf.log_softmax(xd)))
    g = to_gpu(torch, rng.standard_normal(x.shape).astype(np.float32))
    expected = to_cpu(torch, nf.softmax_backward(g, out))
    nf.softmax_backward(g, out, out=g)
    np.testing.assert_array_equal(to_cpu(torch, g), expected)


def test_results_are_deterministic(torch):
    rng = np.random.default_rng(9)
    for shape in ((512, 1000), (64, 30000), (3, 300000)):
        x = to_gpu(torch, (rng.standard_normal(shape) * 4).astype(np.float32))
        g = torch.randn_like(x)
        labels = torch.from_numpy(rng.integers(0, shape[1], shape[0])).cuda()
        first = [nf.softmax(x), nf.log_softmax(x), nf.softmax_backward(g, x), *nf.softmax_cross_entropy(x, labels)]
        for _ in range(3):
            again = [nf.softmax(x), nf.log_softmax(x), nf.softmax_backward(g, x),
                     *nf.softmax_cross_entropy(x, labels)]
            for a, b in zip(first, again):
                assert torch.equal(a, b)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES, ids=_key)
def test_cross_entropy_matches_reference_and_cpu(torch, dtype, reduction):
    rng = np.random.default_rng(11)
    bounds = SOFTMAX_BOUNDS[_key(dtype)]
    for rows, classes, scale in ((64, 5, 3.0), (33, 1000, 5.0), (8, 2049, 1e-30), (8, 300, 30.0), (2, 70000, 4.0)):
        x = (rng.standard_normal((rows, classes)) * scale).astype(dtype)
        for kw in CE_CASES:
            labels = rng.integers(0, classes, rows)
            labels[::4] = kw.get("ignore_index", -100)
            label = f"{_key(dtype)} cuda {reduction} {rows}x{classes} {kw}"
            loss, grad = nf.softmax_cross_entropy(to_gpu(torch, x), torch.from_numpy(labels).cuda(),
                                                  reduction=reduction, **kw)
            loss, grad = to_cpu(torch, loss), to_cpu(torch, grad)
            rloss, rgrad = ref.softmax_cross_entropy(x.astype(np.float64), labels, reduction=reduction, **kw)
            assert loss.dtype == x.dtype and grad.dtype == x.dtype and loss.shape == np.shape(rloss)
            assert_within_ulp(label + " loss", loss, rloss, bounds["cross_entropy_loss"], {"logits": x},
                              floor=softmax_floor("cross_entropy_loss", dtype, rloss))
            floor = softmax_floor("cross_entropy_grad", dtype, rgrad, logits=x, reduction=reduction,
                                  labels=labels, **kw)
            assert_within_ulp(label + " grad", grad, rgrad, bounds["cross_entropy_grad"], {"logits": x},
                              floor=floor)
            cpu_loss, cpu_grad = nf.softmax_cross_entropy(x, labels, reduction=reduction, **kw)
            print(f"CPU-GPU max ULP {label}: loss {_cpu_gpu_ulp(loss, np.asarray(cpu_loss)):g}, "
                  f"grad {_cpu_gpu_ulp(grad, cpu_grad, floor):g}")


def test_cross_entropy_options_in_place_and_errors(torch):
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((3, 5, 10)) * 2).astype(np.float32)
    labels = rng.integers(0, 10, (3, 5))
    labels[0, 1] = -100
    xd, ld = to_gpu(torch, x), torch.from_numpy(labels).cuda()
    for kw in (dict(), dict(label_smoothing=0.15)):
        for reduction in ("mean", "sum", "none"):
            loss, grad = nf.softmax_cross_entropy(xd, ld, reduction=reduction, **kw)
            tx = xd.reshape(-1, 10).clone().requires_grad_()
            tl = torch.nn.functional.cross_entropy(tx, ld.reshape(-1), reduction=reduction, **kw)
            tl.sum().backward()
            torch.testing.assert_close(loss, tl.detach().reshape(loss.shape), rtol=2e-6, atol=1e-6)
            torch.testing.assert_close(grad.reshape(-1, 10), tx.grad, rtol=1e-5, atol=1e-7)
    # In place: the logits' buffer receives the gradient.
    buf = xd.clone()
    loss, grad = nf.softmax_cross_entropy(buf, ld, inplace=True, z_loss=1e-3)
    assert grad is buf
    expected = nf.softmax_cross_entropy(xd, ld, z_loss=1e-3)
    assert torch.equal(loss, expected[0]) and torch.equal(grad, expected[1])
    # out=: a contiguous buffer receives the gradient as is, a strided one
    # through a copy, the logits themselves in place; a host out is refused.
    out = torch.full_like(xd, 7.0)
    loss, grad = nf.softmax_cross_entropy(xd, ld, z_loss=1e-3, out=out)
    assert grad is out and torch.equal(loss, expected[0]) and torch.equal(out, expected[1])
    strided = torch.full((3, 5, 20), 7.0, device="cuda")[..., ::2]
    assert nf.softmax_cross_entropy(xd, ld, z_loss=1e-3, out=strided)[1] is strided
    assert torch.equal(strided, expected[1])
    buf = xd.clone()
    assert nf.softmax_cross_entropy(buf, ld, z_loss=1e-3, out=buf)[1] is buf
    assert torch.equal(buf, expected[1])
    with pytest.raises(ValueError, match="host memory"):
        nf.softmax_cross_entropy(xd, ld, out=np.empty(x.shape, np.float32))
    # All rows ignored: mean is NaN, sum 0, zero gradient.
    ignored = torch.full((4,), -100, device="cuda", dtype=torch.int64)
    z = torch.randn(4, 7, device="cuda")
    assert torch.isnan(nf.softmax_cross_entropy(z, ignored)[0])
    loss, grad = nf.softmax_cross_entropy(z, ignored, reduction="sum")
    assert loss.item() == 0.0 and not grad.any()
    with pytest.raises(ValueError, match=r"labels\[1\] = 7 is outside \[0, 7\)"):
        nf.softmax_cross_entropy(z, torch.tensor([0, 7, 1, 2], device="cuda"))
    # The device check reports the first bad row of many (grid-wide atomics),
    # whatever the reduction, in the labels' own shape.
    big = torch.randn(3000, 4, 11, device="cuda")
    bad = torch.randint(0, 11, (3000, 4), device="cuda")
    bad[2500, 1], bad[1234, 3], bad[2999, 0] = 11, -5, 99
    bad[7, 2] = -100
    for reduction in ("mean", "sum", "none"):
        with pytest.raises(ValueError, match=r"labels\[1234, 3\] = -5 is outside \[0, 11\)"):
            nf.softmax_cross_entropy(big, bad, reduction=reduction)
    # The mean divides by the rows counted on the device (row [7, 2] ignored).
    bad[2500, 1], bad[1234, 3], bad[2999, 0] = 0, 1, 2
    loss, grad = nf.softmax_cross_entropy(big, bad)
    per_row, _ = nf.softmax_cross_entropy(big, bad, reduction="none")
    host_loss, host_grad = nf.softmax_cross_entropy(big.cpu().numpy(), bad.cpu().numpy())
    assert abs(loss.item() - float(per_row.double().sum()) / (3000 * 4 - 1)) <= 1e-6 * abs(loss.item())
    assert_within_ulp("mean over counted rows", grad.cpu().numpy(), host_grad.astype(np.float64), 2.0,
                      {"logits": big.cpu().numpy()})
    with pytest.raises(ValueError, match="host memory"):
        nf.softmax_cross_entropy(z, np.zeros(4, np.int64))


def test_stream_ordering(torch):
    """Work queued on a side stream, with no device-wide sync: each call runs
    on the current stream after the producer of its inputs."""
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((256, 70000)) * 3).astype(np.float32)
    labels = rng.integers(0, 70000, 256)
    host = to_gpu(torch, x)
    expected_y = nf.softmax(host)
    expected_ce = nf.softmax_cross_entropy(host, torch.from_numpy(labels).cuda())
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        xd = host * 1.0  # produced on the side stream
        y = nf.softmax(xd)
        dx = nf.softmax_backward(torch.ones_like(y), y)
        loss, grad = nf.softmax_cross_entropy(xd, torch.from_numpy(labels).to("cuda", non_blocking=True))
    side.synchronize()
    assert torch.equal(y, expected_y)
    assert torch.equal(loss, expected_ce[0]) and torch.equal(grad, expected_ce[1])
    assert dx.abs().max().item() < 1e-6  # grad of sum(y) = 1 is 0


def test_cupy_arrays():
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(14)
    x = (rng.standard_normal((17, 3000)) * 3).astype(np.float32)
    xd = cupy.asarray(x)
    y = nf.softmax(xd, mask=cupy.asarray(rng.random(x.shape) < 0.5))
    assert isinstance(y, cupy.ndarray)
    labels = rng.integers(0, 3000, 17)
    loss, grad = nf.softmax_cross_entropy(xd, cupy.asarray(labels))
    assert isinstance(loss, cupy.ndarray) and isinstance(grad, cupy.ndarray)
    cpu_loss, cpu_grad = nf.softmax_cross_entropy(x, labels)
    np.testing.assert_allclose(cupy.asnumpy(loss), cpu_loss, rtol=1e-6)
    np.testing.assert_allclose(cupy.asnumpy(grad), cpu_grad, rtol=1e-5, atol=1e-9)
