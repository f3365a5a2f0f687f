// The contract between the CUDA bindings (compiled by the host compiler) and
// the kernels in csrc/cuda/*.cu: plain pointers, sizes, dtype codes and the
// caller's stream. Every function enqueues work on `stream` and returns the
// launch status; none of them synchronises. The caller has made the device
// that owns the pointers current.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cpu/cpu_api.h"

namespace nnfuse {
namespace cuda {

// out[i] = Op(in[i]) (forward) or Op'(grad[i], in[i]) (backward) for i < n.
cudaError_t activation(ActOp op, ActDirection direction, DType dtype, const void* in, const void* grad, void* out,
                       int64_t n, double p0, double p1, cudaStream_t stream);

// PReLU forward over `total` elements laid out as rows of (channels, inner);
// with one shared weight channels == 1 and the channel index is always 0.
cudaError_t prelu_forward(DType dtype, const void* x, const void* weight, void* out, int64_t total,
                          int64_t channels, int64_t inner, cudaStream_t stream);

// Doubles of scratch prelu_backward needs (channels * blocks per channel).
int64_t prelu_partials_size(int64_t total, int64_t channels);

// PReLU backward: grad_x, and weight_grad (`channels` elements of `dtype`)
// reduced deterministically: fixed chunks summed in a fixed tree order in
// float64, the same bits on every run and every GPU. `partials` is scratch of
// prelu_partials_size(total, channels) doubles.
cudaError_t prelu_backward(DType dtype, const void* grad, const void* x, const void* weight, void* grad_x,
                           void* weight_grad, double* partials, int64_t total, int64_t channels, int64_t inner,
                           cudaStream_t stream);

// rrelu in training mode (grad == nullptr: forward): element i's slope is
// lower + (upper - lower) u_i, u_i from Philox(seed, offset, i), as on the CPU.
cudaError_t rrelu_training(DType dtype, const void* x, const void* grad, void* out, int64_t n, double lower,
                           double upper, uint64_t seed, uint64_t offset, cudaStream_t stream);

}  // namespace cuda
}  // namespace nnfuse
