// CUDA instantiation of every activation functor: the same header-only math
// as the CPU kernels (nnfuse/ops/activations.h), compiled for the device with
// --fmad=false so that it rounds like the CPU code.
#include <cuda_runtime.h>

#include <cstdint>

#include "cpu/cpu_api.h"
#include "nnfuse/common/dtypes.h"
#include "nnfuse/ops/activations.h"

NNF_NS_BEGIN

namespace {

template <class Op>
__global__ void activation_kernel(ActDirection direction, const float* in, const float* grad, float* out, int64_t n,
                                  float p0, float p1) {
  const ActArgs<float> args{p0, p1};
  int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float x = in[i];
    if (direction == ActDirection::forward) {
      out[i] = Op::fwd(x, args);
    } else if (direction == ActDirection::backward_from_x) {
      out[i] = Op::bwd(grad[i], x, args);
    } else if constexpr (Op::has_bwd_from_y) {
      out[i] = Op::bwd_from_y(grad[i], x, args);
    }
  }
}

template <class Op>
cudaError_t launch(ActDirection direction, const float* in, const float* grad, float* out, int64_t n, float p0,
                   float p1, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  int threads = 256;
  int64_t blocks64 = (n + threads - 1) / threads;
  int blocks = static_cast<int>(blocks64 < 65535 * 8 ? blocks64 : 65535 * 8);
  activation_kernel<Op><<<blocks, threads, 0, stream>>>(direction, in, grad, out, n, p0, p1);
  return cudaGetLastError();
}

}  // namespace

// float32 elementwise activation on the device (the full dtype-generic
// launcher with vectorised loads is the CUDA backend's work).
cudaError_t cuda_activation_f32(ActOp op, ActDirection direction, const float* in, const float* grad, float* out,
                                int64_t n, float p0, float p1, cudaStream_t stream) {
  switch (op) {
    case ActOp::sigmoid: return launch<Sigmoid>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::tanh: return launch<Tanh>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::relu: return launch<Relu>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::leaky_relu: return launch<LeakyRelu>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::elu: return launch<Elu>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::selu: return launch<Selu>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::celu: return launch<Celu>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::gelu: return launch<Gelu>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::gelu_tanh: return launch<GeluTanh>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::silu: return launch<Silu>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::mish: return launch<Mish>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::relu6: return launch<Relu6>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::hardtanh: return launch<Hardtanh>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::hardsigmoid: return launch<Hardsigmoid>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::hardswish: return launch<Hardswish>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::softplus: return launch<Softplus>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::softsign: return launch<Softsign>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::logsigmoid: return launch<Logsigmoid>(direction, in, grad, out, n, p0, p1, stream);
    case ActOp::count: break;
  }
  return cudaErrorInvalidValue;
}

NNF_NS_END
