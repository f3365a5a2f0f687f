"""Argument checking, ISA selection, build info, prelu and rrelu."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnfuse as nf
import nnfuse.reference as ref
from nnfuse._array import BFLOAT16

from conftest import SUPPORTED_ISAS, assert_within_ulp


# ---- bad input: a Python exception naming the argument, never a crash --------

@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.complex64, np.uint8])
def test_unsupported_dtype_is_a_type_error_naming_it(dtype):
    with pytest.raises(TypeError, match=r"'x' has dtype " + np.dtype(dtype).name):
        nf.gelu(np.zeros(4, dtype))


def test_backward_argument_checks():
    x = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="'x'.*shape"):
        nf.relu_backward(np.zeros(4, np.float32), x)
    with pytest.raises(TypeError, match="'x' has dtype float64"):
        nf.relu_backward(np.zeros(5, np.float32), np.zeros(5))
    with pytest.raises(ValueError, match="exactly one of 'x'"):
        nf.relu_backward(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="exactly one of 'x'"):
        nf.relu_backward(np.zeros(5, np.float32), x, y=x)
    with pytest.raises(TypeError):
        nf.gelu_backward(np.zeros(5, np.float32), y=x)  # no backward from y for gelu
    with pytest.raises(ValueError, match="leaky_relu_backward.*negative 'negative_slope'"):
        nf.leaky_relu_backward(np.ones(5, np.float32), y=x, negative_slope=-0.5)
    # elu with alpha < 0 maps x <= 0 to y >= 0: from y it would take the x > 0 branch.
    with pytest.raises(ValueError, match="elu_backward.*negative 'alpha'"):
        nf.elu_backward(np.ones(5, np.float32), y=x, alpha=-1.0)
    # celu keeps the sign of x for either sign of alpha, so y is enough (float64:
    # the two forms differ by the roundings of y and of y / alpha + 1).
    xs = np.linspace(-5, 3, 33)
    for alpha in (-1.0, -0.5, 2.0):
        np.testing.assert_allclose(nf.celu_backward(np.ones(33), y=nf.celu(xs, alpha=alpha), alpha=alpha),
                                   nf.celu_backward(np.ones(33), xs, alpha=alpha), rtol=1e-14, atol=0)


def test_out_whose_overlap_numpy_cannot_decide():
    """Strides for which np.shares_memory gives up (TooHardError): the result
    goes through a temporary, so out holds relu of the input as it was, overlap
    or not, instead of numpy's exception leaking out."""
    base = np.random.default_rng(3).standard_normal(4_000_000).astype(np.float32)
    shape = (3, 4, 4, 2, 2, 4)
    x = np.lib.stride_tricks.as_strided(base, shape, (75892, 19940, 24948, 69520, 33868, 21856))
    out = np.lib.stride_tricks.as_strided(base[1:], shape, (66216, 20560, 32736, 51504, 43968, 6860))
    with pytest.raises(np.exceptions.TooHardError if hasattr(np, "exceptions") else np.TooHardError):
        np.shares_memory(x, out, max_work=10_000)
    expected = np.maximum(np.array(x), 0)
    assert nf.relu(x, out=out) is out
    np.testing.assert_array_equal(out, expected)


def test_out_checks():
    x = np.linspace(-1, 1, 16, dtype=np.float32)
    with pytest.raises(ValueError, match="'out' has shape"):
        nf.tanh(x, out=np.empty(15, np.float32))
    with pytest.raises(TypeError, match="'out' has dtype float64"):
        nf.tanh(x, out=np.empty(16, np.float64))
    read_only = np.empty(16, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="'out' is read-only"):
        nf.tanh(x, out=read_only)
    with pytest.raises(TypeError, match="'out' must be a numpy.ndarray"):
        nf.tanh(x, out=[0.0] * 16)
    buf = np.linspace(-1, 1, 32, dtype=np.float32)
    with pytest.raises(ValueError, match="'out' partially overlaps 'x'"):
        nf.tanh(buf[:16], out=buf[8:24])
    with pytest.raises(ValueError, match="'out' partially overlaps 'grad'"):
        nf.tanh_backward(buf[:16], x, out=buf[1:17])


def test_out_may_be_another_view_of_an_inputs_memory():
    # A different array object over exactly the input's memory is an in-place call.
    x = np.linspace(-3, 3, 40, dtype=np.float32)
    g = np.linspace(1, 2, 40, dtype=np.float32)
    expected_fwd = nf.silu(x.copy())
    expected_bwd = nf.silu_backward(g.copy(), x)
    same_memory = x[:]
    assert nf.silu(x, out=same_memory) is same_memory
    np.testing.assert_array_equal(x, expected_fwd)
    x = np.linspace(-3, 3, 40, dtype=np.float32)
    grad_view = g.reshape(40)
    assert nf.silu_backward(g, x, out=grad_view) is grad_view
    np.testing.assert_array_equal(g, expected_bwd)


def test_out_of_another_layout_takes_the_general_path():
    x = np.linspace(-1, 1, 32, dtype=np.float32)
    strided_out = np.empty(64, np.float32)[::2]
    result = nf.tanh(x, out=strided_out)
    assert result is strided_out
    np.testing.assert_array_equal(strided_out, nf.tanh(x))
    fortran = np.asfortranarray(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4))
    np.testing.assert_array_equal(nf.tanh(fortran), nf.tanh(np.ascontiguousarray(fortran)))


def test_parameter_checks():
    x = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="approximate"):
        nf.gelu(x, approximate="erf")
    with pytest.raises(ValueError, match="min_val"):
        nf.hardtanh(x, min_val=2.0, max_val=1.0)
    with pytest.raises(ValueError, match="alpha"):
        nf.celu(x, alpha=0.0)
    with pytest.raises(ValueError, match=r"softplus_backward\(\): 'beta' must not be zero"):
        nf.softplus_backward(x, x, beta=0.0)
    with pytest.raises(ValueError, match=r"gelu_backward\(\): 'approximate'"):
        nf.gelu_backward(x, x, approximate="fast")
    with pytest.raises(ValueError, match="lower"):
        nf.rrelu(x, lower=0.5, upper=0.1)
    with pytest.raises(ValueError, match="seed"):
        nf.rrelu(x, training=True, seed=-1)
    # The seed and offset are integers: no parsing of strings, no truncation of 1.7.
    for kw, message in ((dict(seed="abc"), "'seed' must be an integer, got str"),
                        (dict(seed=None), "'seed' must be an integer, got NoneType"),
                        (dict(seed=1.7), "'seed' must be an integer, got float"),
                        (dict(offset=2.0), "'offset' must be an integer, got float")):
        with pytest.raises(TypeError, match=message):
            nf.rrelu(x, training=True, **kw)
    with pytest.raises(TypeError, match=r"rrelu_backward\(\): 'seed' must be an integer"):
        nf.rrelu_backward(x, x, training=True, seed="1")
    np.testing.assert_array_equal(nf.rrelu(x - 0.5, training=True, seed=np.uint64(7)),
                                  nf.rrelu(x - 0.5, training=True, seed=7))
    # Real numbers only: float() would take the string "2" and give a
    # message that names no argument for None.
    for call, message in ((lambda: nf.elu(x, alpha="2"), r"elu\(\): 'alpha' must be a real number, got str"),
                          # a backward's errors carry its own name
                          (lambda: nf.leaky_relu_backward(x, x, negative_slope=None),
                           r"leaky_relu_backward\(\): 'negative_slope'.*NoneType"),
                          (lambda: nf.hardtanh_backward(x, y=x, min_val="0"), r"hardtanh_backward\(\): 'min_val'"),
                          (lambda: nf.hardtanh(x, max_val=b"1"), "'max_val'.*bytes"),
                          (lambda: nf.softplus(x, threshold=[20.0]), "'threshold'.*list"),
                          (lambda: nf.rrelu(x, lower="0.1"), r"rrelu\(\): 'lower'"),
                          (lambda: nf.rrelu_backward(x, x, upper=None, training=True), "'upper'"),
                          (lambda: nf.softmax(x, scale="2"), "'scale'.*str")):
        with pytest.raises(TypeError, match=message):
            call()
    np.testing.assert_array_equal(nf.elu(x - 1, alpha=np.float32(2)), nf.elu(x - 1, alpha=2.0))
    # A NaN option would silently drop a clamp (hardtanh's min_val) or poison every output.
    for call, message in ((lambda: nf.hardtanh(x, min_val=float("nan")), r"hardtanh\(\): 'min_val' must not be NaN"),
                          (lambda: nf.rrelu(x, lower=np.nan), "'lower' must not be NaN"),
                          (lambda: nf.softmax(x, scale=np.float32("nan")), "'scale' must not be NaN"),
                          (lambda: nf.softmax(x, scale=float("nan")), "'scale' must not be NaN"),
                          (lambda: nf.log_softmax_backward(x, x, scale=float("nan")), "'scale' must not be NaN"),
                          (lambda: nf.softplus_backward(x, x, beta=float("nan")), "'beta' must not be NaN")):
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(ValueError, match="'ignore_index' must fit in int64"):
        nf.softmax_cross_entropy(np.zeros((2, 3), np.float32), np.zeros(2, np.int64), ignore_index=2**70)


def test_none_for_an_array_is_a_type_error_naming_it():
    x = np.ones((2, 3), np.float32)
    for call, message in ((lambda: nf.relu(None), r"relu\(\): 'x' must be an array, got None"),
                          (lambda: nf.gelu_backward(None, x), "'grad' must be an array"),
                          (lambda: nf.prelu(x, None), "'weight' must be an array"),
                          (lambda: nf.prelu_backward(x, None, np.ones(1, np.float32)), "'x' must be an array"),
                          (lambda: nf.softmax(None), "'x' must be an array"),
                          (lambda: nf.softmax_backward(x, None), "'y' must be an array"),
                          (lambda: nf.softmax_cross_entropy(None, np.zeros(2, np.int64)), "'logits' must be an array"),
                          (lambda: nf.softmax_cross_entropy(x, None), "'labels'")):
        with pytest.raises(TypeError, match=message):
            call()


def test_lists_and_scalars_are_accepted_as_arrays():
    np.testing.assert_array_equal(nf.relu([-1.0, 2.0]), np.array([0.0, 2.0]))
    assert nf.relu(np.float32(-3.0)).shape == ()


# ---- ISA selection and build info ----------------------------------------------

def test_build_info():
    info = nf.build_info()
    assert info["compiled_cpu_isas"] == ["scalar", "avx2", "avx512"]
    assert info["cpu_isa"] in info["supported_cpu_isas"]
    assert info["num_threads"] == nf.get_num_threads() >= 1
    assert isinstance(info["cuda_compiled"], bool)
    for key in ("version", "compiler", "cuda_architectures", "cuda_devices"):
        assert key in info


def test_version_is_the_projects():
    # pip passes the version to the build, a direct CMake build reads pyproject.toml: either way
    # the extension reports the project's version, never an empty string
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    declared = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.M).group(1)
    assert nf.__version__ == nf.build_info()["version"] == declared


def test_default_isa_is_the_best_supported():
    best = nf._C.supported_isas()[-1]
    env = dict(os.environ)
    env.pop("NNFUSE_CPU_ISA", None)
    out = subprocess.run([sys.executable, "-c", "import nnfuse; print(nnfuse.get_cpu_isa())"],
                         capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == best


def test_environment_variable_overrides_and_bad_values_are_clear():
    env = dict(os.environ, NNFUSE_CPU_ISA="scalar")
    out = subprocess.run([sys.executable, "-c", "import nnfuse; print(nnfuse.get_cpu_isa())"],
                         capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "scalar"
    env["NNFUSE_CPU_ISA"] = "sse9"
    out = subprocess.run([sys.executable, "-c", "import nnfuse, numpy; nnfuse.relu(numpy.ones(3))"],
                         capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "unknown CPU ISA 'sse9'" in out.stderr
    # set_cpu_isa replaces the bad value in the process.
    out = subprocess.run([sys.executable, "-c", "import nnfuse, numpy; nnfuse.set_cpu_isa('scalar'); "
                          "print(nnfuse.get_cpu_isa(), nnfuse.relu(numpy.array([-1.0, 2.0])))"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.split() == ["scalar", "[0.", "2.]"], out.stderr


@pytest.mark.parametrize("key, variable", [("stream_mid_size", "NNFUSE_STREAM_MID_SIZE"),
                                           ("optim_prefetch", "NNFUSE_OPTIM_PREFETCH")])
def test_tuning_switches_are_reported_and_set_by_the_environment(key, variable):
    # Whether outputs from one L2 per thread up to 16 MiB take streaming
    # stores (measured on first use) and whether the optimizer update
    # prefetches (by CPU vendor): each reported by build_info, and set by
    # its environment variable, 1 or 0.
    assert isinstance(nf.build_info()[key], bool)
    script = f"import nnfuse; print(nnfuse.build_info()['{key}'])"
    for setting, expected in (("1", "True"), ("0", "False")):
        env = dict(os.environ, **{variable: setting})
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.strip() == expected
    env = dict(os.environ, **{variable: "yes"})
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and f"{variable}: expected 1 or 0, got 'yes'" in out.stderr


def test_optimizer_prefetch_follows_the_cpu_vendor():
    env = {k: v for k, v in os.environ.items() if k != "NNFUSE_OPTIM_PREFETCH"}
    out = subprocess.run([sys.executable, "-c", "import nnfuse; print(nnfuse.build_info()['optim_prefetch'])"],
                         capture_output=True, text=True, env=env, check=True)
    with open("/proc/cpuinfo") as f:
        amd = "AuthenticAMD" in f.read()
    assert out.stdout.strip() == str(not amd)


def test_set_cpu_isa_and_context_manager():
    before = nf.get_cpu_isa()
    with nf.cpu_isa("scalar"):
        assert nf.get_cpu_isa() == "scalar"
    assert nf.get_cpu_isa() == before
    with pytest.raises(ValueError, match="unknown CPU ISA 'neon'"):
        nf.set_cpu_isa("neon")
    assert nf.get_cpu_isa() == before


def test_unsupported_isa_request_is_an_error_when_the_cpu_lacks_it():
    supported = nf._C.supported_isas()
    missing = [isa for isa in ("avx2", "avx512") if isa not in supported]
    if not missing:
        pytest.skip("this CPU runs every compiled ISA")
    with pytest.raises(ValueError, match="cannot run"):
        nf.set_cpu_isa(missing[0])


def test_num_threads():
    nf.set_num_threads(3)
    assert nf.get_num_threads() == 3
    nf.set_num_threads(np.int64(2))
    assert nf.get_num_threads() == 2
    # Each thread is an OS thread: a request of 10^5 would stall the next call
    # while they start, so it is refused and the setting left as it was.
    for bad in (0, -1, 1025, 10**5):
        with pytest.raises(ValueError, match="'n' must be between 1 and 1024"):
            nf.set_num_threads(bad)
    with pytest.raises(TypeError):
        nf.set_num_threads(2.5)
    assert nf.get_num_threads() == 2
    nf.set_num_threads(1024)
    assert nf.get_num_threads() == 1024


# ---- PReLU ------------------------------------------------------------------------

@pytest.mark.parametrize("shape,weights", [((1000,), 1), ((64, 7), 7), ((4, 3, 5, 6), 3), ((4, 3, 5, 6), 1),
                                           ((2, 5, 70001), 5), ((300000,), 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, BFLOAT16])
def test_prelu_matches_reference(shape, weights, dtype, isa):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(-0.5, 0.5, weights).astype(dtype)
    x64, g64, w64 = (a.astype(np.float64) for a in (x, g, w))
    y = nf.prelu(x, w)
    bound = 2.0 if np.dtype(dtype) != BFLOAT16 else 1.0
    assert_within_ulp("prelu forward", y, ref.prelu(x64, w64), bound, {"x": x})
    gx, gw = nf.prelu_backward(g, x, w)
    ref_gx, ref_gw = ref.prelu_backward(g64, x64, w64)
    assert_within_ulp("prelu grad_x", gx, ref_gx, bound, {"x": x, "grad": g})
    assert gw.shape == w.shape and gw.dtype == w.dtype
    magnitude = np.abs(ref.prelu_backward(np.abs(g64), -np.abs(x64), np.ones_like(w64))[1])
    # Error bound of the kernel's summation (see prelu_backward_segment):
    # float32 compute: products rounded once, 4 float additions per lane of
    # a 64-element block before the float64 accumulation -> (4 + 2) * 2^-24 * sum|c|;
    # float64: recursive summation, n * 2^-53 * sum|c| with n terms per channel;
    # plus the final rounding to weight's dtype (one eps of the dtype).
    n_per_channel = x.size // w.size
    if np.dtype(dtype) == np.float64:
        relative = n_per_channel * 2.0**-53 + 2.0**-52
    else:
        eps = 2.0**-7 if np.dtype(dtype) == BFLOAT16 else float(np.finfo(dtype).eps)
        relative = 6 * 2.0**-24 + eps
    np.testing.assert_allclose(gw.astype(np.float64), ref_gw, rtol=0, atol=float(np.max(magnitude)) * relative)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, BFLOAT16])
def test_prelu_weight_gradient_is_bit_identical_across_threads_and_isas(dtype):
    """The weight gradient's blocks are summed in 16 virtual lanes on every ISA
    (one AVX-512 vector, two AVX2 vectors, sixteen scalars): the same bits for
    every ISA and thread count, also for segments whose length is no multiple
    of 8 or 16, and for one element per channel."""
    rng = np.random.default_rng(1)
    for shape, weights in (((8, 4, 50000), 4), ((1, 1, 5000), 1), ((3, 5, 77), 5), ((40, 6), 6), ((2, 3, 1001), 1)):
        x = rng.standard_normal(shape).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        w = rng.uniform(0.05, 0.5, weights).astype(dtype)
        results = []
        for isa in SUPPORTED_ISAS:
            with nf.cpu_isa(isa):
                for threads in (1, 2, 5):
                    nf.set_num_threads(threads)
                    gx, gw = nf.prelu_backward(g, x, w)
                    results.append(((isa, threads), gx.tobytes(), gw.tobytes()))
        for where, gx_bytes, gw_bytes in results[1:]:
            assert gx_bytes == results[0][1], f"{shape} grad_x differs on {where} from {results[0][0]}"
            assert gw_bytes == results[0][2], f"{shape} grad_weight differs on {where} from {results[0][0]}"


def test_prelu_checks_weight():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="'weight' must be 0-D, or 1-D with 1 element or one per channel"):
        nf.prelu(x, np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="got shape \\(1, 3\\)"):
        nf.prelu(x, np.zeros((1, 3), np.float32))
    with pytest.raises(TypeError, match="'weight' has dtype float64"):
        nf.prelu(x, np.zeros(3))


def test_prelu_takes_a_0d_weight_as_pytorch_does():
    """torch.nn.functional.prelu takes a 0-d weight (one slope); its gradient
    comes back 0-d."""
    x = np.random.default_rng(3).standard_normal((3, 4, 5)).astype(np.float32)
    g = np.random.default_rng(4).standard_normal(x.shape).astype(np.float32)
    w0, w1 = np.array(-0.3, np.float32), np.array([-0.3], np.float32)
    np.testing.assert_array_equal(nf.prelu(x, w0), nf.prelu(x, w1))
    gx, gw = nf.prelu_backward(g, x, w0)
    gx1, gw1 = nf.prelu_backward(g, x, w1)
    np.testing.assert_array_equal(gx, gx1)
    assert gw.shape == () and gw.dtype == np.float32 and gw == gw1[0]


# ---- RReLU ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_rrelu_training_matches_reference_and_backward_regenerates_slopes(dtype, isa):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(10007).astype(dtype)
    g = rng.standard_normal(10007).astype(dtype)
    kwargs = dict(lower=0.1, upper=0.4, training=True, seed=1234567, offset=99)
    y = nf.rrelu(x, **kwargs)
    expected = ref.rrelu(x.astype(np.float64), **kwargs)
    bound = 2.0 if np.dtype(dtype) != np.float16 else 1.0
    assert_within_ulp("rrelu training forward", y, expected, bound, {"x": x})
    gx = nf.rrelu_backward(g, x, **kwargs)
    assert_within_ulp("rrelu training backward", gx,
                      ref.rrelu_backward(g.astype(np.float64), x.astype(np.float64), **kwargs), bound, {"x": x})
    # The backward's slope for x < 0 is y / x: the same draw as the forward.
    neg = x < 0
    np.testing.assert_allclose((gx[neg] / g[neg]).astype(np.float64), (y[neg] / x[neg]).astype(np.float64),
                               rtol=4 * float(np.finfo(dtype).eps))
    other = nf.rrelu(x, **dict(kwargs, offset=100))
    assert not np.array_equal(other[neg], y[neg])


def test_rrelu_eval_is_leaky_relu_with_the_mean_slope():
    x = np.linspace(-3, 3, 101, dtype=np.float32)
    np.testing.assert_array_equal(nf.rrelu(x), nf.leaky_relu(x, (1 / 8 + 1 / 3) / 2))
    np.testing.assert_array_equal(nf.rrelu_backward(np.ones_like(x), x),
                                  nf.leaky_relu_backward(np.ones_like(x), x, (1 / 8 + 1 / 3) / 2))


# Back-to-back parallel regions whose chunk counts change from one to the next
# (thread counts 1, 2, 3, 8; a softmax of 64 rows, then a 2^16 relu), more
# threads than the 2 cores we test on, so workers are preempted between
# reading a region's claim word and claiming from it. The pool once let such a
# worker claim a chunk of the finished region against the next region's larger
# chunk count: scripts like this one then deadlocked or crashed within 10 s in
# 8 of 12 runs on a 2-core machine.
RACE_SCRIPT = """
import sys, time
import numpy as np
import nnfuse as nf
rng = np.random.default_rng(0)
x = (rng.standard_normal((64, 1537)) * 6).astype(np.float32)
small = rng.standard_normal(1 << 16, dtype=np.float32)
expected = nf.softmax(x)
deadline = time.time() + float(sys.argv[1])
while time.time() < deadline:
    for threads in (1, 2, 3, 8):
        nf.set_num_threads(threads)
        y = nf.softmax(x)
        nf.relu(small)
print("ok" if np.array_equal(y, expected) else "different bits")
"""


def test_parallel_regions_with_changing_chunk_counts_finish():
    try:
        result = subprocess.run([sys.executable, "-c", RACE_SCRIPT, "10"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("parallel regions deadlocked")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
