"""Parity of every activation against nnfuse.reference, driven by the op
table: op x parameters x dtype x ISA, tails, threads, in-place, strides."""

import functools
import os
import subprocess
import sys

import numpy as np
import pytest

import nnfuse as nf
import nnfuse.reference as ref
from nnfuse._array import BFLOAT16
from nnfuse._optable import ACTIVATIONS, call_params
from nnfuse.accuracy import BOUNDS, backward_floor

from conftest import assert_within_ulp
from samples import STREAM_BYTES, grad_sample, large_outputs, sample

DTYPES = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), BFLOAT16]
TAIL_SIZES = [1, 7, 15, 16, 17, 31, 33, 1000, 65537]

CASES = [(a, params) for a in ACTIVATIONS for params in ({},) + tuple(a.test_params)]
CASE_IDS = [a.name + "".join(f"-{k}={v}" for k, v in p.items()) for a, p in CASES]


@functools.lru_cache(maxsize=None)
def _inputs(name, dtype_str):
    activation = next(a for a in ACTIVATIONS if a.name == name)
    dtype = np.dtype(dtype_str) if dtype_str != "bfloat16" else BFLOAT16
    x = sample(dtype, activation.special_points, seed=1)
    g = grad_sample(dtype, seed=2)
    return x, g


def _case_inputs(activation, dtype):
    return _inputs(activation.name, "bfloat16" if dtype == BFLOAT16 else dtype.name)


@functools.lru_cache(maxsize=None)
def _expected(name, params_items, dtype_str):
    activation = next(a for a in ACTIVATIONS if a.name == name)
    dtype = np.dtype(dtype_str) if dtype_str != "bfloat16" else BFLOAT16
    x, g = _case_inputs(activation, dtype)
    params = dict(params_items)
    full = call_params(activation, params)
    forward = getattr(ref, name)(x.astype(np.float64), **full)
    backward = getattr(ref, name + "_backward")(g.astype(np.float64), x.astype(np.float64), **full)
    return forward, backward


def _dtype_key(dtype):
    return "bfloat16" if dtype == BFLOAT16 else dtype.name


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: _dtype_key(d))
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_forward_and_backward_match_reference(case, dtype, isa):
    activation, params = case
    x, g = _case_inputs(activation, dtype)
    forward_ref, backward_ref = _expected(activation.name, tuple(sorted(params.items())), _dtype_key(dtype))
    fwd = getattr(nf, activation.name)
    bwd = getattr(nf, activation.name + "_backward")
    label = f"{activation.name}{params} {_dtype_key(dtype)} {isa}"

    y = fwd(x, **params)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert_within_ulp(label + " forward", y, forward_ref, BOUNDS[_dtype_key(dtype)]["forward"], {"x": x})

    dx = bwd(g, x, **params)
    floor = backward_floor(activation.name, params, x.astype(np.float64), g.astype(np.float64))
    assert_within_ulp(label + " backward", dx, backward_ref, BOUNDS[_dtype_key(dtype)]["backward"],
                      {"x": x, "grad": g}, floor=floor)

    # Tails: every prefix length goes through the masked tail path and must give
    # exactly the bits of the same elements computed inside a long array.
    for n in TAIL_SIZES:
        np.testing.assert_array_equal(fwd(x[:n], **params).view(np.uint8), y[:n].view(np.uint8),
                                      err_msg=f"{label} forward, size {n}")
        np.testing.assert_array_equal(bwd(g[:n], x[:n], **params).view(np.uint8), dx[:n].view(np.uint8),
                                      err_msg=f"{label} backward, size {n}")

    if activation.from_y:
        # From the stored (rounded) output y, measured against the exact
        # derivative formula in y: the kernel cannot know x more precisely
        # than y does.
        dx_from_y = bwd(g, y=y, **params)
        expected_from_y = ref.backward_from_y(activation.name, g.astype(np.float64), y.astype(np.float64),
                                              **call_params(activation, params))
        assert_within_ulp(label + " backward from y", dx_from_y, expected_from_y,
                          BOUNDS[_dtype_key(dtype)]["backward"], {"y": y, "grad": g})


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: _dtype_key(d))
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_isa_gives_the_same_bits(case, dtype):
    activation, params = case
    x, g = _case_inputs(activation, dtype)
    results = {}
    for isa in nf._C.supported_isas():
        with nf.cpu_isa(isa):
            fwd = getattr(nf, activation.name)(x, **params)
            bwd = getattr(nf, activation.name + "_backward")(g, x, **params)
            results[isa] = (_bits_with_canonical_nan(fwd), _bits_with_canonical_nan(bwd))
    first = next(iter(results))
    for isa, (fwd, bwd) in results.items():
        np.testing.assert_array_equal(fwd, results[first][0], err_msg=f"forward {isa} vs {first}")
        np.testing.assert_array_equal(bwd, results[first][1], err_msg=f"backward {isa} vs {first}")


# Signed zeros at x = +-0: a zero forward result, and a zero backward result
# for g = +-1, has the reference's sign, which is PyTorch's (relu(-0) =
# tanh(-0) = elu(-0) = mish(-0) = -0, relu'(-0) g = +0 for either sign of g),
# on every ISA and dtype. For g = +-0 the backward result is a zero of either sign.
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: _dtype_key(d))
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_zero_results_have_the_references_sign(case, dtype, isa):
    activation, params = case
    full = call_params(activation, params)
    x = np.array([-0.0, -0.0, -0.0, -0.0, 0.0, 0.0, 0.0, 0.0])
    g = np.array([1.0, -1.0, 0.0, -0.0, 1.0, -1.0, 0.0, -0.0])
    checks = (("forward", getattr(nf, activation.name)(x.astype(dtype), **params),
               getattr(ref, activation.name)(x, **full), np.ones(x.shape, bool)),
              ("backward", getattr(nf, activation.name + "_backward")(g.astype(dtype), x.astype(dtype), **params),
               getattr(ref, activation.name + "_backward")(g, x, **full), g != 0))
    for direction, got, expected, signed in checks:
        label = f"{activation.name}{params} {direction}"
        got = np.asarray(got, np.float64)
        np.testing.assert_array_equal(got == 0, expected == 0, err_msg=f"{label}: which results are zero")
        zero = (got == 0) & signed
        np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(expected[zero]),
                                      err_msg=f"{label} at x = {x[zero]}, g = {g[zero]}")


@pytest.mark.parametrize("name,params", [("relu", {}), ("relu6", {}), ("hardtanh", {}),
                                         ("hardtanh", {"min_val": -2.0, "max_val": 3.0}), ("hardsigmoid", {}),
                                         ("hardswish", {})])
def test_flat_pieces_give_pytorchs_zero(name, params, isa):
    """Where a piecewise-constant derivative is 0, g f'(x) is +0 for either sign
    of g, as PyTorch's where(..., 0, g): g * 0 would give -0 for g < 0. An
    infinite or NaN g still gives NaN there (the README's NaN contract)."""
    torch = pytest.importorskip("torch")
    x = np.array([-5.0, -3.0, -2.0, -1.0, -0.0, 0.0, 3.0, 6.0, 7.0], np.float32)
    g = np.full(x.shape, -1.5, np.float32)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    getattr(torch.nn.functional, name)(tx, **params).backward(torch.from_numpy(g))
    expected = tx.grad.numpy()
    flat = expected == 0
    assert flat.sum() >= 2
    # The values elsewhere are the reference tests' business (PyTorch's hardswish
    # slope x/3 + 1/2 is rounded twice where ours is exact).
    got = getattr(nf, name + "_backward")(g, x, **params)
    np.testing.assert_array_equal(got == 0, flat, err_msg=f"{name}{params}: which gradients are zero")
    np.testing.assert_array_equal(np.signbit(got[flat]), np.signbit(expected[flat]), err_msg=f"{name}{params}")
    reference = getattr(ref, name + "_backward")(g.astype(np.float64), x.astype(np.float64), **params)
    np.testing.assert_array_equal(np.signbit(reference[flat]), np.signbit(expected[flat]))
    for bad in (np.inf, -np.inf, np.nan):
        assert np.isnan(getattr(nf, name + "_backward")(np.full(x.shape, bad, np.float32), x, **params)[flat]).all()


def _bits_with_canonical_nan(a):
    """The array's bits, every NaN replaced by one canonical NaN: IEEE 754 does
    not specify which NaN (sign, payload) an operation returns, and x86 scalar
    and vector instructions pick different operands."""
    wide = a.astype(np.float64) if a.dtype != np.float64 else a.copy()
    wide[np.isnan(wide)] = np.nan
    return wide.view(np.uint64)


@pytest.mark.parametrize("name", ["gelu", "silu", "relu", "softplus"])
def test_results_are_bit_identical_for_every_thread_count(name):
    x = sample(np.float32, (), n=(1 << 21) + 37, seed=5)
    g = grad_sample(np.float32, n=x.size, seed=6)
    fwd, bwd = getattr(nf, name), getattr(nf, name + "_backward")
    nf.set_num_threads(1)
    y1, d1 = fwd(x), bwd(g, x)
    for threads in (2, 3, 8):
        nf.set_num_threads(threads)
        np.testing.assert_array_equal(fwd(x).view(np.uint32), y1.view(np.uint32))
        np.testing.assert_array_equal(bwd(g, x).view(np.uint32), d1.view(np.uint32))


# Outputs of 16 MiB or more (whole call) already backed by memory are written
# with non-temporal stores after a head that aligns them, and fresh ones with
# plain stores, their inputs prefetched either way (csrc/cpu/kernels/isa.h,
# map_unary_any); smaller calls store plainly. Elementwise results must not
# depend on which: the big call, into either output one element off alignment
# (a head is needed), is compared with the same elements computed in small
# slices.
@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float16), BFLOAT16], ids=str)
@pytest.mark.parametrize("name", ["gelu", "relu"])
def test_streamed_output_matches_plain_stores(name, dtype, isa):
    n = STREAM_BYTES // dtype.itemsize + 37
    x = sample(dtype, (), n=n, seed=7)
    g = grad_sample(dtype, n=n, seed=8)
    fwd, bwd = getattr(nf, name), getattr(nf, name + "_backward")
    slice_len = n // 16
    for call, args in ((fwd, (x,)), (bwd, (g, x))):
        plain = np.concatenate([call(*(a[i:i + slice_len] for a in args)) for i in range(0, n, slice_len)])
        for kind, out in large_outputs(n, dtype).items():
            call(*args, out=out)
            np.testing.assert_array_equal(_bits_with_canonical_nan(out), _bits_with_canonical_nan(plain),
                                          err_msg=f"{call.__name__}, output in {kind}")


# Outputs from one L2 per thread up to 16 MiB stream where the first such call
# measured streaming faster (csrc/cpu/cpu_api.h, stream_mid_size), or where
# NNFUSE_STREAM_MID_SIZE=1 says so: a child process with it set computes
# calls of two L2s on one thread into outputs written before (one element off
# alignment), which must give the bits of the same elements computed in
# slices too small to stream.
_MID_SIZE_CHILD = """
import sys, numpy as np, nnfuse as nf
from nnfuse._array import BFLOAT16
nf.set_num_threads(1)
assert nf.build_info()["stream_mid_size"] is True
folder, name, dtype = sys.argv[1], sys.argv[2], np.dtype(sys.argv[3]) if sys.argv[3] != "bfloat16" else BFLOAT16
x, g = (np.load(f"{folder}/{a}.npy").view(dtype) for a in ("x", "g"))
for label, call, args in (("fwd", getattr(nf, name), (x,)), ("bwd", getattr(nf, name + "_backward"), (g, x))):
    out = np.empty(x.size + 1, dtype)
    out.fill(0)
    out = out[1:]
    call(*args, out=out)
    np.save(f"{folder}/{label}.npy", out.view(np.uint16 if dtype.itemsize == 2 else np.uint32))
"""


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), BFLOAT16], ids=str)
@pytest.mark.parametrize("name", ["gelu", "relu"])
def test_mid_size_streamed_output_matches_plain_stores(name, dtype, isa, tmp_path):
    l2 = os.sysconf("SC_LEVEL2_CACHE_SIZE") if "SC_LEVEL2_CACHE_SIZE" in os.sysconf_names else 0
    n = 2 * (l2 if l2 > 0 else 1 << 20) // dtype.itemsize + 37
    assert n * dtype.itemsize < STREAM_BYTES
    x = sample(dtype, (), n=n, seed=17)
    g = grad_sample(dtype, n=n, seed=18)
    bits = np.uint16 if dtype.itemsize == 2 else np.uint32
    np.save(tmp_path / "x.npy", x.view(bits))
    np.save(tmp_path / "g.npy", g.view(bits))
    env = dict(os.environ, NNFUSE_STREAM_MID_SIZE="1", NNFUSE_CPU_ISA=isa)
    child = subprocess.run([sys.executable, "-c", _MID_SIZE_CHILD, str(tmp_path), name, str(dtype)],
                           capture_output=True, text=True, env=env)
    assert child.returncode == 0, child.stderr
    fwd, bwd = getattr(nf, name), getattr(nf, name + "_backward")
    slice_len = 4096
    for label, call, args in (("fwd", fwd, (x,)), ("bwd", bwd, (g, x))):
        plain = np.concatenate([call(*(a[i:i + slice_len] for a in args)) for i in range(0, n, slice_len)])
        streamed = np.load(tmp_path / f"{label}.npy").view(dtype)
        np.testing.assert_array_equal(_bits_with_canonical_nan(streamed), _bits_with_canonical_nan(plain),
                                      err_msg=f"{call.__name__}, mid-size output")


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float16), BFLOAT16], ids=str)
@pytest.mark.parametrize("name", ["gelu", "hardswish"])
def test_output_alignment_does_not_change_results(name, dtype, isa):
    # The kernels start with a masked vector up to the first output address
    # aligned to the vector width; every placement of the output and of the
    # input within a 64-byte line must give the bits of the aligned call.
    lanes_per_line = 64 // dtype.itemsize
    fwd, bwd = getattr(nf, name), getattr(nf, name + "_backward")
    for n in (1, 5, lanes_per_line + 3, 1000):
        x = sample(dtype, (), n=n, seed=11)
        g = grad_sample(dtype, n=n, seed=12)
        for call, args in ((fwd, (x,)), (bwd, (g, x))):
            expected = _bits_with_canonical_nan(call(*args))
            for out_shift in range(lanes_per_line):
                in_shift = (3 * out_shift) % lanes_per_line
                shifted_args = []
                for a in args:
                    buf = np.empty(n + 2 * lanes_per_line, dtype)
                    start = (-(buf.ctypes.data // dtype.itemsize) + in_shift) % lanes_per_line
                    shifted = buf[start:start + n]
                    shifted[...] = a
                    shifted_args.append(shifted)
                buf = np.empty(n + 2 * lanes_per_line, dtype)
                start = (-(buf.ctypes.data // dtype.itemsize) + out_shift) % lanes_per_line
                out = buf[start:start + n]
                call(*shifted_args, out=out)
                np.testing.assert_array_equal(_bits_with_canonical_nan(out), expected,
                                              err_msg=f"n={n} output {out_shift} / input {in_shift} elements past a line")


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: a.name)
def test_nan_gradient_or_input_gives_nan(activation, isa):
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0, np.nan, np.nan], np.float32)
    g = np.array([np.nan] * 5 + [1.0, np.nan], np.float32)
    assert np.isnan(getattr(nf, activation.name)(x)[5:]).all()
    assert np.isnan(getattr(nf, activation.name + "_backward")(g, x)).all()
    expected = getattr(ref, activation.name + "_backward")(g.astype(np.float64), x.astype(np.float64))
    assert np.isnan(expected).all()


def test_in_place_forward_and_backward():
    x = sample(np.float32, (), n=4099, seed=3, finite_only=True)
    expected = nf.silu(x)
    buf = x.copy()
    assert nf.silu(buf, out=buf) is buf
    np.testing.assert_array_equal(buf, expected)
    g = np.ones_like(x)
    expected_grad = nf.silu_backward(g, x)
    assert nf.silu_backward(g, x, out=g) is g
    np.testing.assert_array_equal(g, expected_grad)


def test_non_contiguous_inputs_and_outputs():
    base = sample(np.float32, (), n=64 * 66, seed=4).reshape(64, 66)
    strided = base[::2, 1::3]
    transposed = base.T
    for view in (strided, transposed):
        np.testing.assert_array_equal(nf.gelu(view), nf.gelu(np.ascontiguousarray(view)))
    out = np.zeros((64, 66), np.float32)[:, ::2]
    x = np.ascontiguousarray(base[:, ::2])
    result = nf.tanh(x, out=out)
    assert result is out
    np.testing.assert_array_equal(out, nf.tanh(x))
    # In place on a non-contiguous array.
    view = base.copy()[:, ::3]
    expected = nf.relu(view)
    nf.relu(view, out=view)
    np.testing.assert_array_equal(view, expected)


def _axis_order(a):
    """The axes of `a` from largest stride to smallest: its storage order."""
    return tuple(sorted(range(a.ndim), key=lambda k: a.strides[k], reverse=True))


def test_dense_inputs_of_any_axis_order_keep_their_layout():
    """A Fortran-ordered, transposed or permuted (channels_last-like) dense
    input runs in its storage order without a copy: the result has the input's
    layout, as NumPy's ufuncs and PyTorch give, and the bits of the C-ordered
    call. Backward passes take grad's order when the other input shares it."""
    base = sample(np.float32, (), n=2 * 3 * 5 * 7, seed=21)
    g_base = grad_sample(np.float32, n=base.size, seed=22)
    layouts = {
        "fortran": lambda a: np.asfortranarray(a.reshape(6, 35)),
        "transposed": lambda a: a.reshape(35, 6).T,
        "channels_last": lambda a: a.reshape(2, 5, 7, 3).transpose(0, 3, 1, 2),
    }
    for label, make in layouts.items():
        x, g = make(base), make(g_base)
        assert not x.flags.c_contiguous
        for result, expected in ((nf.gelu(x), nf.gelu(np.ascontiguousarray(x))),
                                 (nf.tanh_backward(g, x), nf.tanh_backward(np.ascontiguousarray(g), np.ascontiguousarray(x))),
                                 (nf.sigmoid_backward(g, y=x), nf.sigmoid_backward(np.ascontiguousarray(g), y=np.ascontiguousarray(x)))):
            assert _axis_order(result) == _axis_order(x) and not result.flags.c_contiguous, label
            np.testing.assert_array_equal(result, expected, err_msg=label)
        # out= of the same layout is written directly, in place too.
        out = np.empty_like(x)
        assert nf.silu(x, out=out) is out
        np.testing.assert_array_equal(out, nf.silu(np.ascontiguousarray(x)), err_msg=label)
        inplace = x.copy(order="K")
        assert nf.elu(inplace, out=inplace) is inplace
        np.testing.assert_array_equal(inplace, nf.elu(np.ascontiguousarray(x)), err_msg=label)
        # An out= of another layout, and grad and x of different layouts, stay right.
        c_out = np.empty(x.shape, np.float32)
        assert nf.silu(x, out=c_out) is c_out
        np.testing.assert_array_equal(c_out, out, err_msg=label)
        mixed = nf.tanh_backward(np.ascontiguousarray(g), x)
        assert mixed.flags.c_contiguous
        np.testing.assert_array_equal(mixed, nf.tanh_backward(g, x), err_msg=label)


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1,), (2, 3, 4)])
def test_shapes_zero_d_and_empty(shape):
    x = np.full(shape, -0.5, np.float32)
    y = nf.elu(x)
    assert y.shape == shape and y.dtype == np.float32
    np.testing.assert_allclose(y, np.expm1(np.float32(-0.5)), rtol=1e-6)
    assert nf.elu_backward(np.ones(shape, np.float32), x).shape == shape


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: _dtype_key(d))
def test_scalar_inputs_give_scalars(dtype):
    """As NumPy's ufuncs: scalars in (NumPy or Python), a NumPy scalar of the
    same dtype out, with the bits of the 1-element array; a 0-d array stays a
    0-d array, and so does out=."""
    value = dtype.type(-0.75)
    x = np.array([value])
    for got, expected in ((nf.gelu(value), nf.gelu(x)), (nf.gelu_backward(value, value), nf.gelu_backward(x, x)),
                          (nf.sigmoid_backward(value, y=value), nf.sigmoid_backward(x, y=x)),
                          (nf.rrelu(value, training=True), nf.rrelu(x, training=True)),
                          (nf.prelu(value, value), nf.prelu(x, np.array(value))),
                          *zip(nf.prelu_backward(value, value, value),
                               nf.prelu_backward(x, x, np.array([value])))):
        assert isinstance(got, np.generic) and got.dtype == dtype
        np.testing.assert_array_equal(np.array([got]), expected.reshape(1))
    assert type(nf.elu(-0.75)) is np.float64
    assert type(nf.elu(np.array(value))) is np.ndarray
    assert type(nf.elu(value, out=np.empty((), dtype))) is np.ndarray


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: _dtype_key(d))
def test_celu_with_alpha_one_is_elu_to_the_bit(dtype, isa):
    # celu(x, 1) = elu(x, 1) mathematically; the kernels take Elu's formula for
    # alpha = 1 and promise its bits (signed zeros, infinities and NaNs included).
    celu = next(a for a in ACTIVATIONS if a.name == "celu")
    x, g = _case_inputs(celu, dtype)
    np.testing.assert_array_equal(nf.celu(x, alpha=1.0).view(np.uint8), nf.elu(x, alpha=1.0).view(np.uint8))
    np.testing.assert_array_equal(nf.celu_backward(g, x, alpha=1.0).view(np.uint8),
                                  nf.elu_backward(g, x, alpha=1.0).view(np.uint8))


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float64)], ids=lambda d: d.name)
@pytest.mark.parametrize("name, param", [("softplus", "beta"), ("celu", "alpha")])
def test_unit_parameter_shortcut_matches_the_general_form(name, param, dtype, isa):
    # softplus (beta = 1) and celu (alpha = 1) skip the parameter's products.
    # The general form at parameter 2^-1 (softplus) or 2 (celu) on the doubled
    # input sees the same z = x exactly and rescales by an exact power of two,
    # so it must give twice the shortcut's result, bit for bit.
    activation = next(a for a in ACTIVATIONS if a.name == name)
    x, g = _case_inputs(activation, dtype)
    general = {"softplus": 0.5, "celu": 2.0}[name]
    fwd, bwd = getattr(nf, name), getattr(nf, name + "_backward")
    with np.errstate(over="ignore"):  # 2x and 2 y overflow to inf alike
        np.testing.assert_array_equal(_bits_with_canonical_nan(fwd(2 * x, **{param: general})),
                                      _bits_with_canonical_nan(2 * fwd(x, **{param: 1.0})))
        np.testing.assert_array_equal(_bits_with_canonical_nan(bwd(g, 2 * x, **{param: general})),
                                      _bits_with_canonical_nan(bwd(g, x, **{param: 1.0})))


def test_float32_hardsigmoid_equals_the_correctly_rounded_quotient(isa):
    # The kernels divide by 6 with a product and one fma correction, which they
    # promise is the division's bits for every float32 input (checked for all
    # 2^32 when written); here every 509th bit pattern and the floats next to
    # -3, where x + 3 is smallest.
    patterns = np.arange(0, 2**32, 509, dtype=np.uint64).astype(np.uint32)
    near = np.float32(-3).view(np.uint32) + np.arange(-2**15, 2**15).astype(np.uint32)
    x = np.concatenate([patterns, near]).view(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        expected = np.minimum(np.float32(6), np.maximum(np.float32(0), x + np.float32(3))) / np.float32(6)
    np.testing.assert_array_equal(_bits_with_canonical_nan(nf.hardsigmoid(x)), _bits_with_canonical_nan(expected))


def test_backward_from_y_agrees_with_backward_from_x_away_from_saturation():
    # On [-1, 1] f' is well conditioned in y (worst: tanh, d ln(1 - y^2) / d ln y
    # = 2y^2 / (1 - y^2) <= 2.8 at |y| = tanh 1), so the two backward forms agree
    # to the backward bound (4) plus y's own error (forward bound 2 + 1/2 ULP)
    # times that condition number: below 12 ULP.
    x = np.linspace(-1, 1, 4001, dtype=np.float32)
    g = np.full_like(x, 0.75)
    for name in ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "celu", "relu6", "hardtanh", "softplus"):
        y = getattr(nf, name)(x)
        from_x = getattr(nf, name + "_backward")(g, x)
        from_y = getattr(nf, name + "_backward")(g, y=y)
        assert_within_ulp(name + " from y vs from x", from_y, from_x.astype(np.float64), 12.0, {"x": x})
