import numpy as np
import pytest

import nnfuse as nf
from nnfuse import _C


def pytest_report_header(config):
    info = nf.build_info()
    return [
        f"nnfuse {info['version']} ({info['compiler']}); CPU ISAs supported here: "
        f"{', '.join(info['supported_cpu_isas'])}; threads: {info['num_threads']}; "
        f"CUDA compiled: {info['cuda_compiled']}, devices: {info['cuda_devices']}"
    ]


SUPPORTED_ISAS = list(_C.supported_isas())


@pytest.fixture(params=SUPPORTED_ISAS)
def isa(request):
    """Runs the test once per instruction set this CPU supports."""
    with nf.cpu_isa(request.param):
        yield request.param


@pytest.fixture(autouse=True)
def _restore_threads():
    before = nf.get_num_threads()
    yield
    nf.set_num_threads(before)


@pytest.fixture(scope="module")
def torch():
    """PyTorch with a usable GPU (for the `cuda` tests), else the test is skipped."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch sees no GPU")
    return torch


def pytest_collection_modifyitems(config, items):
    if nf.cuda_available():
        return
    reason = "no CUDA GPU available (nnfuse.cuda_available() is False)"
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


def assert_within_ulp(label, got, expected, bound, inputs, floor=None):
    """Asserts every element of got is within `bound` ULPs of the float64
    reference; on failure prints count, worst index, inputs, got, expected, ULP."""
    from nnfuse._ulp import mismatch_report, ulp_error

    err = ulp_error(got, expected, floor)
    if not np.all(err <= bound):
        pytest.fail(mismatch_report(label, inputs, got, expected, err, bound))
    return float(err.max()) if err.size else 0.0
