"""The Python side of the CUDA optimizers, checked without a GPU: torch CPU tensors stand in for
device arrays and a fake ``_cuda.optim_step`` runs the CPU kernels on NumPy views of the pointer
table it receives, after re-stating the device finalize step (step count, hyper-parameters from the
base values and the device lr, skip, record). What this checks: the pointer-table columns (state
order), flags, base hyper-parameters, the device step counter and record, capturable lr,
state_dict, the reducer hook and the argument checks. The kernels themselves are checked by
tests/test_cuda_optim.py on a GPU."""

import ctypes
import math

import numpy as np
import pytest

from nnfuse import _C, optim
from nnfuse._array import BFLOAT16
from nnfuse.optim import _device as D

import test_optim as T

torch = pytest.importorskip("torch")

_NP = {0: np.dtype(np.float32), 1: np.dtype(np.float64), 2: np.dtype(np.float16), 3: BFLOAT16}
_F64 = np.dtype(np.float64)


def _view(ptr, n, dtype):
    return np.frombuffer((ctypes.c_char * (n * dtype.itemsize)).from_address(ptr), dtype=dtype, count=n)


class FakeCuda:
    optim_local_sum_index = 0

    def optim_workspace_doubles(self, sizes):
        return 8

    def optim_step(self, kind, dtype, table, sizes, flags, clip_mode, clip, clipvalue, nonfinite, keras,
                   has_norm_pass, lr, lr_ptr, base, step_ptr, ws, record, reduce, stream, device):
        pdt = _NP[dtype]
        sdt = _F64 if dtype == 1 else np.dtype(np.float32)
        n = len(sizes)
        col = lambda k, dt: [_view(int(table[i, k]), int(sizes[i]), dt) for i in range(n)]  # noqa: E731
        states = [col(2 + k, sdt) if table[0, 2 + k] else None for k in range(3)]
        masters = col(5, sdt) if table[0, 5] else None
        step, rec, work = _view(step_ptr, 1, _F64), _view(record, 4, _F64), _view(ws, 8, _F64)
        if lr_ptr:
            lr = float(_view(lr_ptr, 1, _F64)[0])
        t, b = step[0] + 1, base
        # finalize_kernel (csrc/cuda/optim.cu), restated
        if kind == 0:
            bc1, bc2 = 1 - b[0] ** t, 1 - b[1] ** t
            ss, vs = (lr * math.sqrt(bc2) / bc1, 1.0) if keras else (lr / bc1, 1 / math.sqrt(bc2))
            hyper = [b[0], b[1], 1 - b[0], 1 - b[1], ss, vs, b[2], b[3], 1 - lr * b[3]]
        elif kind == 1:
            hyper = [lr, b[0], 1 - b[1], b[2], 1 - lr * b[2]]
            flags |= 16 if t == 1 else 0
        elif kind == 2:
            hyper = [b[0], 1 - b[0], lr, b[1], b[2], b[3], 1 - lr * b[3]]
        else:
            hyper = [lr / (1 + (t - 1) * b[0]), b[1], b[2], 1 - lr * b[2]]
        red = None
        if reduce is not None:
            def red(local):
                work[0] = local
                return float(_view(reduce(), 1, _F64)[0])
        norm, factor, skipped = _C.optim_step("fake", kind, dtype, pdt, sdt, col(0, pdt), col(1, pdt),
                                              ["s0", "s1", "s2"], states, masters, hyper, flags, clipvalue,
                                              clip_mode, clip, nonfinite, keras, red)
        if not skipped:
            step[0] = t
        rec[:] = [math.nan if norm is None else norm, factor, float(skipped), step[0]]


def _describe(value, name, func):
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{func}(): '{name}' is in host memory but 'params[0]' is on a GPU; pass all arrays "
                         "on the same device")
    info = D.Info()
    info.ptr, info.shape, info.dtype = value.data_ptr(), tuple(value.shape), D._torch_dtypes()[value.dtype]
    info.device, info.contiguous, info.lib, info.obj = 0, value.is_contiguous(), "torch", value
    return info


@pytest.fixture(autouse=True)
def fake_device(monkeypatch):
    import nnfuse

    monkeypatch.setattr(D, "on_device", lambda arrays: bool(arrays) and isinstance(arrays[0], torch.Tensor))
    monkeypatch.setattr(D, "describe", _describe)
    monkeypatch.setattr(D, "full", lambda like, shape, dtype, value: torch.full(
        tuple(shape), float(value), dtype=D._torch_dtype(np.dtype(dtype))))
    monkeypatch.setattr(D, "stream_of", lambda info: 0)
    monkeypatch.setattr(nnfuse, "_cuda", FakeCuda(), raising=False)
    import sys

    monkeypatch.setitem(sys.modules, "nnfuse._cuda", nnfuse._cuda)


def _dev(a):
    if a.dtype == BFLOAT16:
        return torch.from_numpy(a.copy().view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def _host(t):
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(BFLOAT16).copy()
    return t.numpy().copy()


class Mirror:
    def __init__(self, cls, params, **kw):
        self.opt = cls([_dev(p) for p in params], **kw)
        self._pull()

    def _pull(self):
        self.params = [_host(p) for p in self.opt.params]
        self.state = {k: [_host(a) for a in v] for k, v in self.opt.state.items()}

    def step(self, grads):
        r = self.opt.step([_dev(g) for g in grads])
        self._pull()
        return optim.StepRecord(None if r.grad_norm is None else float(r.grad_norm), float(r.clip_factor),
                                bool(float(r.skipped)), int(float(r.step)))


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16-master", "float64"])
@pytest.mark.parametrize("clip", list(T.CLIPS))
@pytest.mark.parametrize("config", list(T.CONFIGS))
def test_trajectory_through_the_device_glue(config, clip, dtype_name):
    cls, kw = T.CONFIGS[config]
    dtype, master = T.DTYPES[dtype_name]
    T._trajectory(cls, kw, dict(T.CLIPS[clip], nonfinite="zero" if clip == "none" else "skip"), dtype, master,
                  "keras" if config == "adam" else "torch", steps=8, make=Mirror)


@pytest.mark.parametrize("policy", ["skip", "zero", "propagate"])
def test_planted_nan_through_the_device_glue(policy):
    cls, kw = T.CONFIGS["rmsprop-centered-momentum-wd"]
    T._trajectory(cls, kw, dict(global_clipnorm=2.0, nonfinite=policy), np.dtype(np.float32), False, "torch",
                  nan_step=3, steps=6, make=Mirror)


def test_capturable_lr_state_dict_and_reducer():
    seen = []

    def reduce(local):
        seen.append(local)
        return local * 2

    opt = optim.Adam([_dev(np.ones(5, np.float32))], lr=0.1, capturable=True, global_clipnorm=1.0,
                     global_norm_reduce=reduce)
    record = opt.step([_dev(np.ones(5, np.float32))])
    assert float(record.grad_norm) == pytest.approx(math.sqrt(10), rel=1e-15)
    assert float(record.step) == 1.0 and float(opt.step_count) == 1.0
    assert isinstance(seen[0], torch.Tensor) and seen[0].dtype == torch.float64
    opt.hyper["lr"].fill_(0.0)
    before = opt.params[0].clone()
    opt.step([_dev(np.ones(5, np.float32))])
    assert torch.equal(opt.params[0], before)  # the kernel read lr = 0 from "device" memory
    other = optim.Adam([_dev(np.zeros(5, np.float32))], lr=0.5, capturable=True)
    other.load_state_dict(opt.state_dict())
    assert float(other.step_count) == 2.0 and float(other.hyper["lr"]) == 0.0
    assert torch.equal(other.state["exp_avgs"][0], opt.state["exp_avgs"][0])


def test_functional_int_step_and_errors():
    p, m = [_dev(np.ones(3, np.float32))], [torch.zeros(3)]
    record = optim.sgd_step(p, [_dev(np.ones(3, np.float32))], m, step=1, lr=0.1, momentum=0.9)
    assert float(record.step) == 1.0 and record.grad_norm is not None
    np.testing.assert_array_equal(_host(p[0]), np.full(3, 0.9, np.float32))
    np.testing.assert_array_equal(_host(m[0]), np.ones(3, np.float32))  # torch: buf = g at step 1
    with pytest.raises(ValueError, match="host memory"):
        optim.adam_step(p, [np.zeros(3, np.float32)], m, [torch.zeros(3)], step=1)
    with pytest.raises(TypeError, match=r"'exp_avg_sqs\[0\]' has dtype float64"):
        optim.adam_step(p, [torch.zeros(3)], m, [torch.zeros(3, dtype=torch.float64)], step=1)
    for step in (0, 2**1100):
        with pytest.raises(ValueError, match="'step' must be >= 1 .* at most 2\\^53"):
            optim.sgd_step(p, [_dev(np.ones(3, np.float32))], m, step=step, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"'params\[0\]' and 'grads\[0\]' share memory"):
        optim.sgd_step(p, p, m, step=1, lr=0.1, momentum=0.9)


def test_device_optimizers_check_hyper_parameters_as_the_host_does():
    """The device constructor checked none of its hyper-parameters (the functional
    device step leaves lr to the kernel, as it may be a device scalar)."""
    params = [_dev(np.ones(3, np.float32))]
    with pytest.raises(ValueError, match="Adam\\(\\): 'lr' must be a finite number >= 0"):
        optim.Adam(params, lr=-1.0)
    with pytest.raises(ValueError, match="Adam\\(\\): 'eps' = 1e-50 rounds to 0 in float32"):
        optim.Adam(params, eps=1e-50)
    with pytest.raises(ValueError, match="adam_step\\(\\): 'lr' = 1e\\+39 is beyond the float32 range"):
        optim.adam_step(params, [_dev(np.ones(3, np.float32))], [torch.zeros(3)], [torch.zeros(3)], step=1, lr=1e39)
    opt = optim.Adam(params, lr=0.1, capturable=True)
    broken = opt.state_dict()
    broken["hyper"]["weight_decay"] = -1.0
    with pytest.raises(ValueError, match="Adam.load_state_dict\\(\\): 'weight_decay'"):
        opt.load_state_dict(broken)
    good = opt.state_dict()
    opt.load_state_dict(good)  # the device lr of a capturable optimizer passes


def test_strided_gradients_are_copied_on_the_device_path():
    """A strided device gradient (a transpose, a slice) is copied as on the host; it was a
    ValueError. The step matches the one on contiguous copies of the same gradients."""
    rng = np.random.default_rng(3)
    start = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(5).astype(np.float32)]
    grads = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(5).astype(np.float32)]
    strided = [_dev(np.ascontiguousarray(grads[0].T)).T, _dev(np.repeat(grads[1], 2))[::2]]
    assert not any(g.is_contiguous() for g in strided)
    results = []
    for given in (strided, [_dev(g) for g in grads]):
        opt = optim.Adam([_dev(p) for p in start], lr=0.1, weight_decay=0.01, global_clipnorm=1.0)
        record = opt.step(given)
        results.append(([_host(p) for p in opt.params], float(record.grad_norm)))
    for got, expected in zip(results[0][0], results[1][0]):
        np.testing.assert_array_equal(got, expected)
    assert results[0][1] == results[1][1]
    assert not np.array_equal(results[0][0][0], start[0])


def test_step_without_grads_reads_the_device_parameters_grad():
    """step() with no argument takes the torch parameters' .grad on the device path too, and the
    step matches the one given the same gradients."""
    rng = np.random.default_rng(4)
    start = [rng.standard_normal(6).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)]
    grads = [rng.standard_normal(6).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)]
    given = optim.AdamW([_dev(p) for p in start], lr=0.1, global_clipnorm=1.0)
    record = given.step([_dev(g) for g in grads])
    params = [_dev(p) for p in start]
    for p, g in zip(params, grads):
        p.grad = _dev(g)
    read = optim.AdamW(params, lr=0.1, global_clipnorm=1.0)
    assert float(read.step().grad_norm) == float(record.grad_norm)
    for got, expected in zip(read.params, given.params):
        np.testing.assert_array_equal(_host(got), _host(expected))
    read.zero_grad()
    assert all(p.grad is None for p in params)
