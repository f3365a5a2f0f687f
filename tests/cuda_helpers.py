"""Moving arrays between NumPy and PyTorch CUDA tensors in the `cuda` tests
(bfloat16 travels as its int16 bits: NumPy has no bfloat16 of its own)."""

import numpy as np

from nnfuse._array import BFLOAT16


def to_gpu(torch, a):
    a = np.ascontiguousarray(a)
    if a.dtype == BFLOAT16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).cuda()
    return torch.from_numpy(a).cuda()


def to_cpu(torch, t):
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(BFLOAT16)
    return t.numpy()
