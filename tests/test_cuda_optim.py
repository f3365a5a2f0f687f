"""CUDA optimizers (marked `cuda`): 20-step trajectories against the float64 reference for each
optimizer x clipping mode x semantics x dtype (the CPU test's driver, with the optimizer run on the
GPU and mirrored to NumPy after each step), CPU and GPU trajectories compared, the non-finite
policies with a planted NaN, no host synchronisation inside step(), CUDA-graph capture and replay,
global_norm_reduce with a device scalar, state_dict, the functional steps and CuPy arrays.
Device arrays come from PyTorch (the one library here with bfloat16), CuPy where installed."""

import numpy as np
import pytest

from nnfuse import optim

import test_optim as T
from cuda_helpers import to_cpu, to_gpu

pytestmark = pytest.mark.cuda


class Mirror:
    """A GPU optimizer seen through the CPU test's eyes: NumPy params in, NumPy params and state
    copied back after every step, and a record of host values."""

    def __init__(self, torch, cls, params, **kw):
        self.torch = torch
        self.opt = cls([to_gpu(torch, p) for p in params], **kw)
        self._pull()

    def _pull(self):
        self.torch.cuda.synchronize()
        self.params = [to_cpu(self.torch, p) for p in self.opt.params]
        self.state = {k: [to_cpu(self.torch, a) for a in v] for k, v in self.opt.state.items()}

    def step(self, grads):
        record = self.opt.step([to_gpu(self.torch, g) for g in grads])
        self._pull()
        return optim.StepRecord(None if record.grad_norm is None else float(record.grad_norm),
                                float(record.clip_factor), bool(float(record.skipped)), int(float(record.step)))


def mirror(torch):
    return lambda cls, params, **kw: Mirror(torch, cls, params, **kw)


@pytest.mark.parametrize("dtype_name", list(T.DTYPES))
@pytest.mark.parametrize("semantics", ["torch", "keras"])
@pytest.mark.parametrize("clip", list(T.CLIPS))
@pytest.mark.parametrize("config", list(T.CONFIGS))
def test_trajectory(torch, config, clip, semantics, dtype_name):
    cls, kw = T.CONFIGS[config]
    dtype, master = T.DTYPES[dtype_name]
    T._trajectory(cls, kw, dict(T.CLIPS[clip], nonfinite="zero" if clip == "none" else "skip"), dtype, master,
                  semantics, make=mirror(torch))


@pytest.mark.parametrize("policy", ["skip", "zero", "propagate"])
@pytest.mark.parametrize("clip", list(T.CLIPS))
@pytest.mark.parametrize("config", ["adam", "sgd-nesterov-wd", "rmsprop-centered-momentum-wd", "adagrad"])
def test_nonfinite_policies(torch, config, clip, policy):
    cls, kw = T.CONFIGS[config]
    T._trajectory(cls, kw, dict(T.CLIPS[clip], nonfinite=policy), np.dtype(np.float32), False, "torch",
                  nan_step=3, steps=6, make=mirror(torch))


def test_uneven_sizes_across_chunks_and_launches(torch):
    """Arrays of 1 element to several 64K chunks, more arrays than one launch holds (128)."""
    sizes = [1, 3, 65536, 65537, 200003] + [7 + i for i in range(150)]
    cls, kw = T.CONFIGS["adam"]
    T._trajectory(cls, kw, dict(global_clipnorm=2.0), np.dtype(np.float32), False, "torch", sizes=sizes, steps=4,
                  make=mirror(torch))


def _run_both(torch, cls, kw, opts, dtype, steps=20, sizes=(1, 5, 1029, 70000)):
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(n).astype(dtype) for n in sizes]
    cpu = cls([p.copy() for p in params], **kw, **opts)
    gpu = cls([to_gpu(torch, p) for p in params], **kw, **opts)
    for t in range(1, steps + 1):
        grads = T._grads(rng, [(n,) for n in sizes], t, dtype)
        cpu.step(grads)
        gpu.step([to_gpu(torch, g) for g in grads])
    torch.cuda.synchronize()
    return cpu, gpu


@pytest.mark.parametrize("clip", list(T.CLIPS))
@pytest.mark.parametrize("config", list(T.CONFIGS))
def test_cpu_and_gpu_trajectories_agree(torch, config, clip):
    """Same functors, --fmad=false on the device: without a norm-derived factor and without pow
    (Adam's bias corrections use the device's pow) the float32 trajectories are the same bits;
    otherwise they agree to a few float32 ulps per step."""
    cls, kw = T.CONFIGS[config]
    cpu, gpu = _run_both(torch, cls, kw, dict(T.CLIPS[clip], nonfinite="zero"), np.float32)
    exact = clip in ("none", "clipvalue") and cls not in (optim.Adam, optim.AdamW)
    for i, p in enumerate(cpu.params):
        got = to_cpu(torch, gpu.params[i])
        if exact:
            np.testing.assert_array_equal(got.view(np.uint32), p.view(np.uint32), err_msg=f"params[{i}]")
        else:
            np.testing.assert_allclose(got, p, rtol=2e-5, atol=1e-6, err_msg=f"params[{i}]")
    assert int(float(gpu.step_count)) == cpu.step_count


@pytest.mark.parametrize("policy", ["skip", "zero", "propagate"])
def test_planted_nan(torch, policy):
    p0 = [np.ones(1000, np.float32), np.ones(70000, np.float32)]
    opt = optim.Adam([to_gpu(torch, p) for p in p0], lr=0.1, global_clipnorm=1.0, nonfinite=policy)
    grads = [np.full(1000, 0.5, np.float32), np.full(70000, 0.5, np.float32)]
    grads[1][65540] = np.nan
    record = opt.step([to_gpu(torch, g) for g in grads])
    out = [to_cpu(torch, p) for p in opt.params]
    skipped = bool(float(record.skipped))
    if policy == "skip":
        assert skipped and float(record.step) == 0.0 and float(opt.step_count) == 0.0
        for p, q in zip(out, p0):
            np.testing.assert_array_equal(p, q)
        for v in opt.state.values():
            for a in v:
                assert not to_cpu(torch, a).any()
    elif policy == "zero":
        assert not skipped and float(record.step) == 1.0
        assert all(np.isfinite(p).all() for p in out)
        assert out[1][65540] == 1.0  # zero gradient element: Adam leaves it in place on step 1
        assert out[1][0] < 1.0
    else:
        assert not skipped and np.isnan(float(record.grad_norm))
        assert np.isnan(out[1]).all() and np.isnan(out[0]).all()  # NaN norm -> NaN factor everywhere


def test_step_does_not_synchronise(torch):
    """step() only queues work: it returns while a long kernel queued ahead of it still runs."""
    params = [torch.randn(n, device="cuda") for n in (1000, 100000)]
    opt = optim.Adam(params, lr=1e-3, global_clipnorm=1.0)
    grads = [torch.randn_like(p) for p in params]
    opt.step(grads)  # first call: imports and caches
    torch.cuda.synchronize()
    torch.cuda._sleep(2_000_000_000)  # about a second
    record = opt.step(grads)
    assert not torch.cuda.current_stream().query(), "step() waited for the device"
    torch.cuda.synchronize()
    assert float(record.step) == 2.0


def test_functional_step_does_not_synchronise(torch):
    params = [torch.randn(n, device="cuda") for n in (10, 5000)]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    grads = [torch.randn_like(p) for p in params]
    optim.adam_step(params, grads, m, v, step=1, clipnorm=0.5)
    torch.cuda.synchronize()
    torch.cuda._sleep(2_000_000_000)
    record = optim.adam_step(params, grads, m, v, step=2, clipnorm=0.5)
    assert not torch.cuda.current_stream().query()
    assert float(record.step) == 2.0


@pytest.mark.parametrize("capturable", [False, True])
def test_graph_capture_and_replay(torch, capturable):
    sizes = (3, 1000, 70001)
    rng = np.random.default_rng(5)
    init = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    kw = dict(lr=0.01, weight_decay=0.1, global_clipnorm=1.0)
    eager = optim.AdamW([to_gpu(torch, p) for p in init], **kw)
    graphed = optim.AdamW([to_gpu(torch, p) for p in init], **kw, capturable=capturable)
    static_grads = [torch.zeros(n, device="cuda") for n in sizes]
    steps = [[to_gpu(torch, rng.standard_normal(n).astype(np.float32) * (3 if t % 2 else 0.1)) for n in sizes]
             for t in range(6)]

    # warm-up on a side stream (PyTorch's recipe), then capture one step
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for g, s in zip(steps[0], static_grads):
            s.copy_(g)
        graphed.step(static_grads)
    torch.cuda.current_stream().wait_stream(side)
    eager.step(steps[0])
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        graphed.step(static_grads)
    for t in range(1, 6):
        if capturable and t == 3:
            graphed.hyper["lr"].fill_(0.002)  # a device scalar: the replay reads the new value
            eager.hyper["lr"] = 0.002
        for g, s in zip(steps[t], static_grads):
            s.copy_(g)
        graph.replay()
        eager.step(steps[t])
    torch.cuda.synchronize()
    assert float(graphed.step_count) == 6.0
    # the same kernels on the same inputs (lr by value or read from device memory: the same double)
    for a, b in zip(graphed.params, eager.params):
        np.testing.assert_array_equal(to_cpu(torch, a), to_cpu(torch, b))


def test_global_norm_reduce_receives_a_device_scalar(torch):
    """Two identical shards: the reducer doubles the local sum; compare with the CPU optimizer doing
    the same on floats."""
    rng = np.random.default_rng(2)
    sizes = (100, 3000)
    init = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    seen = []

    def reduce_gpu(local):
        seen.append(local)
        return local * 2

    cpu = optim.Adam([p.copy() for p in init], lr=0.01, global_clipnorm=1.0, global_norm_reduce=lambda s: 2 * s)
    gpu = optim.Adam([to_gpu(torch, p) for p in init], lr=0.01, global_clipnorm=1.0, global_norm_reduce=reduce_gpu)
    for t in range(1, 8):
        grads = T._grads(rng, [(n,) for n in sizes], t, np.float32)
        rc = cpu.step(grads)
        rg = gpu.step([to_gpu(torch, g) for g in grads])
        assert float(rg.grad_norm) == pytest.approx(rc.grad_norm, rel=1e-12)
    assert all(isinstance(s, torch.Tensor) and s.is_cuda and s.dtype == torch.float64 for s in seen)
    for a, b in zip(gpu.params, cpu.params):
        np.testing.assert_allclose(to_cpu(torch, a), b, rtol=2e-5, atol=1e-6)


def test_state_dict_round_trip(torch):
    rng = np.random.default_rng(3)
    params = [to_gpu(torch, rng.standard_normal(n).astype(np.float16)) for n in (7, 300)]
    opt = optim.Adam(params, lr=0.01, amsgrad=True, master_weights=True, clipvalue=0.5)
    for _ in range(3):
        opt.step([torch.randn_like(p) for p in params])
    sd = opt.state_dict()
    other = optim.Adam([p.clone() for p in params], lr=0.01, amsgrad=True, master_weights=True, clipvalue=0.5)
    other.load_state_dict(sd)
    torch.cuda.synchronize()
    assert float(other.step_count) == 3.0
    for k in opt.state:
        for a, b in zip(opt.state[k], other.state[k]):
            assert torch.equal(a, b)
    grads = [torch.randn_like(p) for p in params]
    opt.step(grads)
    other.step(grads)
    for a, b in zip(opt.params, other.params):
        assert torch.equal(a, b)


def test_functional_steps_accept_torch_lists(torch):
    rng = np.random.default_rng(4)
    sizes = (5, 1025)
    init = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    grads = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    cpu_p = [p.copy() for p in init]
    cpu_s = [np.zeros(n, np.float32) for n in sizes]
    optim.sgd_step(cpu_p, grads, cpu_s, step=1, lr=0.1, momentum=0.9, clipvalue=0.3)
    gpu_p = [to_gpu(torch, p) for p in init]
    gpu_s = [torch.zeros(n, device="cuda") for n in sizes]
    record = optim.sgd_step(gpu_p, [to_gpu(torch, g) for g in grads], gpu_s, step=1, lr=0.1, momentum=0.9,
                            clipvalue=0.3)
    assert isinstance(record.step, torch.Tensor) and float(record.step) == 1.0
    for a, b in zip(gpu_p + gpu_s, cpu_p + cpu_s):
        np.testing.assert_array_equal(to_cpu(torch, a), b)


def test_errors_name_the_argument(torch):
    p = [torch.zeros(4, device="cuda")]
    m, v = [torch.zeros(4, device="cuda")], [torch.zeros(4, device="cuda")]
    with pytest.raises(ValueError, match=r"'grads\[0\]' has shape"):
        optim.adam_step(p, [torch.zeros(5, device="cuda")], m, v, step=1)
    with pytest.raises(TypeError, match=r"'exp_avgs\[0\]' has dtype float64"):
        optim.adam_step(p, [torch.zeros(4, device="cuda")], [torch.zeros(4, device="cuda", dtype=torch.float64)], v,
                        step=1)
    with pytest.raises(ValueError, match="host memory"):
        optim.adam_step(p, [np.zeros(4, np.float32)], m, v, step=1)


def test_cupy_arrays():
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(6)
    init = [rng.standard_normal(n).astype(np.float32) for n in (9, 4000)]
    grads = [rng.standard_normal(n).astype(np.float32) for n in (9, 4000)]
    cpu = optim.RMSprop([p.copy() for p in init], lr=0.01, momentum=0.9, clipnorm=1.0)
    gpu = optim.RMSprop([cupy.asarray(p) for p in init], lr=0.01, momentum=0.9, clipnorm=1.0)
    assert all(isinstance(a, cupy.ndarray) for v in gpu.state.values() for a in v)
    for _ in range(5):
        cpu.step(grads)
        gpu.step([cupy.asarray(g) for g in grads])
    for a, b in zip(gpu.params, cpu.params):
        np.testing.assert_allclose(cupy.asnumpy(a), b, rtol=2e-5, atol=1e-6)


def test_strided_gradients_match_contiguous_ones(torch):
    """A transposed torch gradient and a strided CuPy one are copied with their own library and give
    the step of their contiguous copies, bit for bit."""
    rng = np.random.default_rng(7)
    init = rng.standard_normal((64, 48)).astype(np.float32)
    grad = rng.standard_normal((48, 64)).astype(np.float32)
    runs = []
    for g in (to_gpu(torch, grad).T, to_gpu(torch, np.ascontiguousarray(grad.T))):
        opt = optim.Adam([to_gpu(torch, init)], lr=0.01, global_clipnorm=1.0)
        opt.step([g])
        runs.append(to_cpu(torch, opt.params[0]))
    np.testing.assert_array_equal(runs[0], runs[1])
    cupy = pytest.importorskip("cupy")
    opt = optim.Adam([cupy.asarray(init)], lr=0.01, global_clipnorm=1.0)
    opt.step([cupy.asarray(grad).T])
    np.testing.assert_array_equal(cupy.asnumpy(opt.params[0]), runs[1])
