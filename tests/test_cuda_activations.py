"""CUDA activations (marked `cuda`): parity with the float64 reference for every
op x parameters x dtype x direction at the published bounds, tails and
misaligned pointers (the one-element path), CPU-GPU consistency in ULPs, prelu
and rrelu, large arrays. Device arrays come from PyTorch (the one library here
with bfloat16)."""

import functools

import numpy as np
import pytest

import nnfuse as nf
import nnfuse.reference as ref
from nnfuse._array import BFLOAT16
from nnfuse._optable import ACTIVATIONS, call_params
from nnfuse._ulp import ulp_error
from nnfuse.accuracy import BOUNDS, backward_floor

from conftest import assert_within_ulp
from samples import grad_sample, sample
from cuda_helpers import to_cpu, to_gpu

pytestmark = pytest.mark.cuda

DTYPES = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), BFLOAT16]
TAIL_SIZES = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 65537]
CASES = [(a, params) for a in ACTIVATIONS for params in ({},) + tuple(a.test_params)]
CASE_IDS = [a.name + "".join(f"-{k}={v}" for k, v in p.items()) for a, p in CASES]


def _key(dtype):
    return "bfloat16" if dtype == BFLOAT16 else dtype.name


def canonical_bits(a):
    wide = np.asarray(a).astype(np.float64)
    wide[np.isnan(wide)] = np.nan
    return wide.view(np.uint64)


@functools.lru_cache(maxsize=None)
def _inputs(name, dtype_key):
    activation = next(a for a in ACTIVATIONS if a.name == name)
    dtype = BFLOAT16 if dtype_key == "bfloat16" else np.dtype(dtype_key)
    return sample(dtype, activation.special_points, seed=1), grad_sample(dtype, seed=2)


@pytest.mark.parametrize("dtype", DTYPES, ids=_key)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gpu_matches_reference_and_cpu(torch, case, dtype):
    activation, params = case
    x, g = _inputs(activation.name, _key(dtype))
    full = call_params(activation, params)
    fwd = getattr(nf, activation.name)
    bwd = getattr(nf, activation.name + "_backward")
    label = f"{activation.name}{params} {_key(dtype)} cuda"
    xd, gd = to_gpu(torch, x), to_gpu(torch, g)

    y = to_cpu(torch, fwd(xd, **params))
    dx = to_cpu(torch, bwd(gd, xd, **params))
    assert y.dtype == dtype and dx.dtype == dtype

    forward_ref = getattr(ref, activation.name)(x.astype(np.float64), **full)
    backward_ref = getattr(ref, activation.name + "_backward")(g.astype(np.float64), x.astype(np.float64), **full)
    floor = backward_floor(activation.name, params, x.astype(np.float64), g.astype(np.float64))
    assert_within_ulp(label + " forward", y, forward_ref, BOUNDS[_key(dtype)]["forward"], {"x": x})
    assert_within_ulp(label + " backward", dx, backward_ref, BOUNDS[_key(dtype)]["backward"], {"x": x, "grad": g},
                      floor=floor)

    # CPU-GPU consistency: the same functors, the same roundings. 0 ULP (NaN
    # payloads aside) in float32, float16 and bfloat16; float64 calls each
    # side's libm (exp, expm1, log1p, tanh in double), so it is measured and
    # reported, and bounded by the reference check above.
    cpu_y, cpu_dx = fwd(x, **params), bwd(g, x, **params)
    ulp_fwd = float(ulp_error(y, cpu_y.astype(np.float64)).max())
    ulp_bwd = float(ulp_error(dx, cpu_dx.astype(np.float64)).max())
    print(f"CPU-GPU max ULP {label}: forward {ulp_fwd:g}, backward {ulp_bwd:g}")
    if dtype != np.float64:
        np.testing.assert_array_equal(canonical_bits(y), canonical_bits(cpu_y), err_msg=label + " forward vs CPU")
        np.testing.assert_array_equal(canonical_bits(dx), canonical_bits(cpu_dx), err_msg=label + " backward vs CPU")

    if activation.from_y:
        # y as the GPU computed it; the CPU given the same y must agree.
        dy = to_cpu(torch, bwd(gd, y=to_gpu(torch, y), **params))
        cpu_dy = bwd(g, y=y, **params)
        if dtype != np.float64:
            np.testing.assert_array_equal(canonical_bits(dy), canonical_bits(cpu_dy), err_msg=label + " from y")
        else:
            assert float(ulp_error(dy, cpu_dy).max()) <= 4.0

    # Tails and alignment: every prefix length, and every start offset within a
    # 16-byte pack (misaligned pointers take the one-element path), gives the
    # bits of the same elements computed inside the full array.
    for n in TAIL_SIZES:
        np.testing.assert_array_equal(to_cpu(torch, fwd(xd[:n], **params)).view(np.uint8), y[:n].view(np.uint8),
                                      err_msg=f"{label} forward, size {n}")
        np.testing.assert_array_equal(to_cpu(torch, bwd(gd[:n], xd[:n], **params)).view(np.uint8),
                                      dx[:n].view(np.uint8), err_msg=f"{label} backward, size {n}")
    for start in range(1, 16 // dtype.itemsize):
        np.testing.assert_array_equal(to_cpu(torch, fwd(xd[start:start + 1001], **params)).view(np.uint8),
                                      y[start:start + 1001].view(np.uint8), err_msg=f"{label} forward, offset {start}")
        np.testing.assert_array_equal(
            to_cpu(torch, bwd(gd[start:start + 1001], xd[start:start + 1001], **params)).view(np.uint8),
            dx[start:start + 1001].view(np.uint8), err_msg=f"{label} backward, offset {start}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_key)
def test_prelu_and_rrelu_gpu_match_cpu(torch, dtype):
    rng = np.random.default_rng(3)
    for shape, wsize in (((4, 3, 33), 3), ((257, 7), 7), ((70001,), 1), ((2, 5, 4, 3), 5)):
        x = rng.standard_normal(shape).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        w = rng.uniform(0.05, 0.5, wsize).astype(dtype)
        xd, gd, wd = to_gpu(torch, x), to_gpu(torch, g), to_gpu(torch, w)
        label = f"prelu {shape} {_key(dtype)}"
        y = to_cpu(torch, nf.prelu(xd, wd))
        gx, gw = nf.prelu_backward(gd, xd, wd)
        cgx, cgw = nf.prelu_backward(g, x, w)
        if dtype != np.float64:
            np.testing.assert_array_equal(canonical_bits(y), canonical_bits(nf.prelu(x, w)), err_msg=label)
            np.testing.assert_array_equal(canonical_bits(to_cpu(torch, gx)), canonical_bits(cgx), err_msg=label)
        else:
            np.testing.assert_array_equal(y, nf.prelu(x, w))  # one product: exact rounding on both sides
            np.testing.assert_array_equal(to_cpu(torch, gx), cgx)
        # The weight gradient against the float64 reference: within 1e-5 of the
        # sum of the terms' magnitudes plus half an ULP of the dtype.
        x64, g64 = x.astype(np.float64), g.astype(np.float64)
        terms = np.where(x64 > 0, 0.0, g64 * x64)
        axis = tuple(i for i in range(x.ndim) if i != 1) if wsize > 1 else None
        expected = terms.sum(axis=axis).reshape(w.shape)
        magnitude = np.abs(terms).sum(axis=axis).reshape(w.shape)
        got = to_cpu(torch, gw).astype(np.float64)
        eps = float(np.finfo(np.float16).eps) if dtype == np.float16 else 2.0**-8 if dtype == BFLOAT16 else 2.0**-24
        assert np.all(np.abs(got - expected) <= 1e-5 * magnitude + eps * np.abs(expected)), label
        # Deterministic on the GPU: the same bits on every run.
        np.testing.assert_array_equal(to_cpu(torch, nf.prelu_backward(gd, xd, wd)[1]).view(np.uint8),
                                      to_cpu(torch, gw).view(np.uint8))
        for seed, offset in ((0, 0), (7, 3), (2**63 + 5, 2**40 + 1)):
            r = to_cpu(torch, nf.rrelu(xd, training=True, seed=seed, offset=offset))
            rb = to_cpu(torch, nf.rrelu_backward(gd, xd, training=True, seed=seed, offset=offset))
            np.testing.assert_array_equal(r.view(np.uint8),
                                          nf.rrelu(x, training=True, seed=seed, offset=offset).view(np.uint8))
            np.testing.assert_array_equal(
                rb.view(np.uint8), nf.rrelu_backward(g, x, training=True, seed=seed, offset=offset).view(np.uint8))
        # Misaligned starts (one-element path, Philox per element).
        flat_x, flat_g = x.reshape(-1), g.reshape(-1)
        for start in (1, 3):
            r = to_cpu(torch, nf.rrelu(to_gpu(torch, flat_x)[start:], training=True, seed=9))
            np.testing.assert_array_equal(r.view(np.uint8),
                                          nf.rrelu(flat_x[start:], training=True, seed=9).view(np.uint8))
            rb = to_cpu(torch, nf.rrelu_backward(to_gpu(torch, flat_g)[start:], to_gpu(torch, flat_x)[start:],
                                                 training=True, seed=9))
            np.testing.assert_array_equal(
                rb.view(np.uint8), nf.rrelu_backward(flat_g[start:], flat_x[start:], training=True, seed=9).view(np.uint8))


def test_large_array_grid_stride(torch):
    """More elements than the grid has threads (grid-stride loop, several
    iterations), odd length; checked against the CPU."""
    n = (1 << 27) + 3
    x = torch.randn(n, device="cuda")
    y = nf.silu(x)
    dx = nf.silu_backward(torch.ones_like(x), x)
    idx = torch.cat([torch.arange(0, 4096, device="cuda"), torch.arange(n - 4096, n, device="cuda"),
                     torch.randint(0, n, (1 << 16,), device="cuda")])
    xs = x[idx].cpu().numpy()
    np.testing.assert_array_equal(y[idx].cpu().numpy(), nf.silu(xs))
    np.testing.assert_array_equal(dx[idx].cpu().numpy(), nf.silu_backward(np.ones_like(xs), xs))


@pytest.mark.slow
def test_more_than_2_to_the_31_elements(torch):
    """64-bit indexing: 2^31 + 17 bfloat16 elements (4 GiB); the last ones are checked."""
    n = (1 << 31) + 17
    try:
        x = torch.full((n,), -2.0, dtype=torch.bfloat16, device="cuda")
    except RuntimeError:
        pytest.skip("not enough GPU memory")
    x[-17:] = torch.arange(-8, 9, dtype=torch.bfloat16, device="cuda")
    nf.relu(x, out=x)
    tail = x[-17:].float().cpu().numpy()
    np.testing.assert_array_equal(tail, np.maximum(np.arange(-8, 9, dtype=np.float32), 0))
    assert float(x[: 1 << 20].float().abs().max()) == 0.0
    assert float(x[(1 << 31) - 5:(1 << 31)].float().abs().max()) == 0.0
