// CUDA activations: one elementwise launcher instantiated with the same
// functors as the CPU kernels (nnfuse/ops/activations.h) at V = float (and
// double for float64). The build compiles device code with --fmad=false, IEEE
// division and square root and no flush-to-zero, so float32, float16 and
// bfloat16 results equal the CPU's to the bit (NaN payloads aside); float64
// calls CUDA's libm where the CPU calls glibc's.
//
// Launcher: grid-stride loop over 16-byte packs (4 float, 2 double, 8 half or
// bfloat16) with kUnroll packs loaded before any is computed, so each thread
// has several 128-bit loads in flight; 64-bit indices throughout. Packs are
// used only when every pointer is 16-byte aligned; otherwise (and for the
// last n % pack elements) the same body runs one element at a time. On the GPU
// every element is computed by the same scalar instructions either way.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "cpu/dtype_dispatch.h"
#include "cuda/cuda_api.h"
#include "cuda/round_from_double.cuh"
#include "nnfuse/common/dtypes.h"
#include "nnfuse/common/philox.h"
#include "nnfuse/ops/activations.h"

NNF_NS_BEGIN

namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 2;

// ---- storage <-> compute type -----------------------------------------------
// 16-bit types widen exactly and narrow with round-to-nearest-even. bfloat16
// uses the shared helpers of dtypes.h (a few integer ops); float16 uses the
// hardware conversions, which round identically (only a NaN's payload may
// differ from the CPU's).

__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ double widen(double v) { return v; }
__device__ __forceinline__ float widen(bfloat16_t v) { return to_float(v); }
__device__ __forceinline__ float widen(half_t v) {
  __half_raw raw;
  raw.x = v.bits;
  return __half2float(__half(raw));
}

template <class T>
__device__ __forceinline__ T narrow(compute_t<T> v);
template <>
__device__ __forceinline__ float narrow<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ double narrow<double>(double v) {
  return v;
}
template <>
__device__ __forceinline__ bfloat16_t narrow<bfloat16_t>(float v) {
  return to_bfloat16(v);
}
template <>
__device__ __forceinline__ half_t narrow<half_t>(float v) {
  __half_raw raw = __float2half_rn(v);
  return half_t{raw.x};
}

// 16 bytes of T, moved with one 128-bit load or store.
template <class T>
union Pack {
  static constexpr int kSize = 16 / sizeof(T);
  uint4 raw;
  T v[kSize];
};

// K consecutive values from p, widened: K == pack size (p 16-byte aligned) or 1.
template <class T, int K>
__device__ __forceinline__ void load_values(const T* p, compute_t<T> (&out)[K]) {
  if constexpr (K == 1) {
    out[0] = widen(*p);
  } else {
    static_assert(K == Pack<T>::kSize, "vector loads move exactly one 16-byte pack");
    Pack<T> pack;
    pack.raw = *reinterpret_cast<const uint4*>(p);
#pragma unroll
    for (int k = 0; k < K; ++k) out[k] = widen(pack.v[k]);
  }
}

template <class T, int K>
__device__ __forceinline__ void store_values(T* p, const compute_t<T> (&in)[K]) {
  if constexpr (K == 1) {
    *p = narrow<T>(in[0]);
  } else {
    static_assert(K == Pack<T>::kSize, "vector stores move exactly one 16-byte pack");
    Pack<T> pack;
#pragma unroll
    for (int k = 0; k < K; ++k) pack.v[k] = narrow<T>(in[k]);
    *reinterpret_cast<uint4*>(p) = pack.raw;
  }
}

// a / b and a % b, in 32 bits when both fit (64-bit division is emulated and
// costs several times more).
__device__ __forceinline__ void divmod(int64_t a, int64_t b, int64_t& q, int64_t& r) {
  if (((a | b) >> 32) == 0) {
    uint32_t ua = static_cast<uint32_t>(a), ub = static_cast<uint32_t>(b);
    q = ua / ub;
    r = ua - static_cast<uint32_t>(q) * ub;
  } else {
    q = a / b;
    r = a - q * b;
  }
}

// ---- the launcher -------------------------------------------------------------
// A Body describes one elementwise op: kPack (elements per 16-byte pack),
// Regs<K> (the widened operands of K elements), load<K>(i, regs) and
// store<K>(i, regs) for elements [i, i + K), K = kPack or 1. Loads of kUnroll
// packs are issued before the first store (outputs may alias inputs, so the
// compiler would not reorder them itself).
template <class Body>
__global__ void __launch_bounds__(kThreads) elementwise_kernel(Body body, int64_t n, int64_t packs) {
  constexpr int N = Body::kPack;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t p = tid; p < packs; p += stride * kUnroll) {
    typename Body::template Regs<N> regs[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      int64_t q = p + u * stride;
      if (q < packs) body.template load<N>(q * N, regs[u]);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      int64_t q = p + u * stride;
      if (q < packs) body.template store<N>(q * N, regs[u]);
    }
  }
  for (int64_t i = packs * N + tid; i < n; i += stride * kUnroll) {
    typename Body::template Regs<1> regs[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      int64_t j = i + u * stride;
      if (j < n) body.template load<1>(j, regs[u]);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      int64_t j = i + u * stride;
      if (j < n) body.template store<1>(j, regs[u]);
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Streaming multiprocessors of the current device (cached per device).
int sm_count() {
  static std::atomic<int> cache[64];
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 32;
  if (device >= 0 && device < 64) {
    int cached = cache[device].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || sms <= 0) {
    cudaGetLastError();
    return 32;
  }
  if (device >= 0 && device < 64) cache[device].store(sms, std::memory_order_relaxed);
  return sms;
}

// Enough blocks for kUnroll units of work per thread, at most 8 blocks of 256
// threads per SM (a full H100 SM); the grid-stride loop covers the rest.
int grid_for(int64_t work) {
  int64_t per_block = static_cast<int64_t>(kThreads) * kUnroll;
  int64_t blocks = (work + per_block - 1) / per_block;
  int64_t cap = static_cast<int64_t>(sm_count()) * 8;
  if (blocks > cap) blocks = cap;
  return blocks < 1 ? 1 : static_cast<int>(blocks);
}

template <class Body>
cudaError_t launch(const Body& body, int64_t n, bool vectorize, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  int64_t packs = vectorize ? n / Body::kPack : 0;
  int blocks = grid_for(packs > 0 ? packs : n);
  elementwise_kernel<Body><<<blocks, kThreads, 0, stream>>>(body, n, packs);
  return cudaGetLastError();
}

// ---- bodies -------------------------------------------------------------------

// The direction is a template parameter: one kernel per direction holds only
// that direction's code (fewer registers, hence more threads in flight).
template <class Op, class T, ActDirection kDirection>
struct ActivationBody {
  using S = compute_t<T>;
  static constexpr int kPack = Pack<T>::kSize;
  template <int K>
  struct Regs {
    S a[K], g[K];
  };
  const T* in;
  const T* grad;
  T* out;
  S p0, p1;

  template <int K>
  __device__ __forceinline__ void load(int64_t i, Regs<K>& r) const {
    load_values<T, K>(in + i, r.a);
    if constexpr (kDirection != ActDirection::forward) load_values<T, K>(grad + i, r.g);
  }
  template <int K>
  __device__ __forceinline__ void store(int64_t i, const Regs<K>& r) const {
    const ActArgs<S> args{p0, p1};
    S y[K];
    if constexpr (kDirection == ActDirection::forward) {
#pragma unroll
      for (int k = 0; k < K; ++k) y[k] = forward_for<Op, T>(r.a[k], args);
    } else if constexpr (kDirection == ActDirection::backward_from_x) {
#pragma unroll
      for (int k = 0; k < K; ++k) y[k] = backward_for<Op, T>(r.g[k], r.a[k], args);
    } else {
#pragma unroll
      for (int k = 0; k < K; ++k) y[k] = Op::bwd_from_y(r.g[k], r.a[k], args);
    }
    store_values<T, K>(out + i, y);
  }
};

// PReLU forward: leaky ReLU whose slope is the weight of the element's channel,
// channel = (i / inner) % channels (0 with one shared weight). One division per
// pack; the channel then advances with the element.
template <class T>
struct PreluForwardBody {
  using S = compute_t<T>;
  static constexpr int kPack = Pack<T>::kSize;
  template <int K>
  struct Regs {
    S a[K], w[K];
  };
  const T* x;
  const T* weight;
  T* out;
  int64_t channels, inner;

  template <int K>
  __device__ __forceinline__ void load(int64_t i, Regs<K>& r) const {
    load_values<T, K>(x + i, r.a);
    if (channels == 1) {
      S w = widen(weight[0]);
#pragma unroll
      for (int k = 0; k < K; ++k) r.w[k] = w;
      return;
    }
    int64_t row, pos, rest, c;
    divmod(i, inner, row, pos);
    divmod(row, channels, rest, c);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      r.w[k] = widen(weight[c]);
      if (++pos == inner) {
        pos = 0;
        if (++c == channels) c = 0;
      }
    }
  }
  template <int K>
  __device__ __forceinline__ void store(int64_t i, const Regs<K>& r) const {
    S y[K];
#pragma unroll
    for (int k = 0; k < K; ++k) y[k] = LeakyRelu::fwd(r.a[k], ActArgs<S>{r.w[k], r.w[k]});
    store_values<T, K>(out + i, y);
  }
};

// Philox uniforms of elements [i, i + K): the same values as the CPU's
// philox_uniform_float(seed, offset, i + k), one generator call per 4 elements
// where the pack allows it.
template <int K>
__device__ __forceinline__ void philox_uniforms(uint64_t seed, uint64_t offset, int64_t i, float (&u)[K]) {
  const uint64_t index = static_cast<uint64_t>(i);
  if constexpr (K % 4 == 0) {  // i is a multiple of K, hence of 4
#pragma unroll
    for (int k = 0; k < K; k += 4) philox_uniform_float4(seed, offset, (index + k) >> 2, &u[k]);
  } else if constexpr (K == 2) {  // i even: both words in one block
    uint32_t w[4];
    philox_block(seed, offset, index >> 2, w);
    bool upper = (index & 2u) != 0;
    u[0] = philox_word_to_uniform(upper ? w[2] : w[0]);
    u[1] = philox_word_to_uniform(upper ? w[3] : w[1]);
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k) u[k] = philox_uniform_float(seed, offset, index + k);
  }
}

// rrelu in training mode: slope_i = fma(u_i, upper - lower, lower) in the
// compute type, as the CPU kernel; then the leaky ReLU functor.
template <class T>
struct RreluBody {
  using S = compute_t<T>;
  static constexpr int kPack = Pack<T>::kSize;
  template <int K>
  struct Regs {
    S a[K], g[K];
  };
  const T* x;
  const T* grad;  // nullptr: forward
  T* out;
  S lower, width;
  uint64_t seed, offset;

  template <int K>
  __device__ __forceinline__ void load(int64_t i, Regs<K>& r) const {
    load_values<T, K>(x + i, r.a);
    if (grad != nullptr) load_values<T, K>(grad + i, r.g);
  }
  template <int K>
  __device__ __forceinline__ void store(int64_t i, const Regs<K>& r) const {
    float u[K];
    philox_uniforms<K>(seed, offset, i, u);
    S y[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      S slope = fma(static_cast<S>(u[k]), width, lower);
      const ActArgs<S> args{slope, slope};
      y[k] = grad != nullptr ? LeakyRelu::bwd(r.g[k], r.a[k], args) : LeakyRelu::fwd(r.a[k], args);
    }
    store_values<T, K>(out + i, y);
  }
};

// ---- PReLU backward with a deterministic weight-gradient reduction -------------
// The elements of channel c are numbered j = 0 .. count - 1 (count = total /
// channels): j = row * inner + pos is element row * channels * inner + c * inner
// + pos. Channel c is cut into chunks of kChunk; block (c, chunk) writes grad_x
// for its elements and one float64 partial: each thread sums its kPerThread
// elements in order, then a fixed shared-memory tree. A second kernel sums each
// channel's partials the same way. Nothing depends on timing or the GPU model.
constexpr int kPerThread = 8;
constexpr int64_t kChunk = static_cast<int64_t>(kThreads) * kPerThread;

int64_t chunks_per_channel(int64_t total, int64_t channels) {
  int64_t count = channels > 0 ? total / channels : 0;
  int64_t chunks = (count + kChunk - 1) / kChunk;
  return chunks < 1 ? 1 : chunks;
}

// Sum of v over the block in a fixed order; the result is valid in thread 0.
__device__ double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
#pragma unroll
  for (int width = kThreads / 2; width > 0; width >>= 1) {
    if (static_cast<int>(threadIdx.x) < width) shared[threadIdx.x] += shared[threadIdx.x + width];
    __syncthreads();
  }
  double result = shared[0];
  __syncthreads();  // shared may be reused right away
  return result;
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    prelu_backward_kernel(const T* grad, const T* x, const T* weight, T* grad_x, double* partials, int64_t count,
                          int64_t channels, int64_t inner, int64_t chunks) {
  using S = compute_t<T>;
  __shared__ double shared[kThreads];
  const int64_t blocks = channels * chunks;
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    int64_t c, chunk;
    divmod(b, chunks, c, chunk);
    const S w = widen(weight[c]);
    const ActArgs<S> args{w, w};
    int64_t index[kPerThread];
    S gv[kPerThread], xv[kPerThread];
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      int64_t j = chunk * kChunk + static_cast<int64_t>(k) * kThreads + threadIdx.x;
      index[k] = -1;
      if (j < count) {
        int64_t row, pos;
        divmod(j, inner, row, pos);
        index[k] = (row * channels + c) * inner + pos;
        gv[k] = widen(grad[index[k]]);
        xv[k] = widen(x[index[k]]);
      }
    }
    double acc = 0.0;
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      if (index[k] >= 0) {
        grad_x[index[k]] = narrow<T>(LeakyRelu::bwd(gv[k], xv[k], args));
        acc += static_cast<double>(LeakyRelu::prelu_weight_grad(gv[k], xv[k]));
      }
    }
    double sum = block_sum(acc, shared);
    if (threadIdx.x == 0) partials[b] = sum;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    prelu_weight_grad_kernel(const double* partials, int64_t chunks, int64_t channels, T* weight_grad) {
  __shared__ double shared[kThreads];
  for (int64_t c = blockIdx.x; c < channels; c += gridDim.x) {
    double acc = 0.0;
    for (int64_t k = threadIdx.x; k < chunks; k += kThreads) acc += partials[c * chunks + k];
    double sum = block_sum(acc, shared);
    if (threadIdx.x == 0) weight_grad[c] = round_from_double<T>(sum);
  }
}

// ---- dispatch -------------------------------------------------------------------


// Calls f(Op{}) with the functor of `op` (the order of ActOp in cpu_api.h).
template <class F>
cudaError_t with_activation(ActOp op, F&& f) {
  switch (op) {
    case ActOp::sigmoid: return f(Sigmoid{});
    case ActOp::tanh: return f(Tanh{});
    case ActOp::relu: return f(Relu{});
    case ActOp::leaky_relu: return f(LeakyRelu{});
    case ActOp::elu: return f(Elu{});
    case ActOp::selu: return f(Selu{});
    case ActOp::celu: return f(Celu{});
    case ActOp::gelu: return f(Gelu{});
    case ActOp::gelu_tanh: return f(GeluTanh{});
    case ActOp::silu: return f(Silu{});
    case ActOp::mish: return f(Mish{});
    case ActOp::hardtanh: return f(Hardtanh{});
    case ActOp::hardsigmoid: return f(Hardsigmoid{});
    case ActOp::hardswish: return f(Hardswish{});
    case ActOp::softplus: return f(Softplus{});
    case ActOp::softsign: return f(Softsign{});
    case ActOp::logsigmoid: return f(Logsigmoid{});
    case ActOp::count: break;
  }
  return cudaErrorInvalidValue;
}

}  // namespace

NNF_NS_END

namespace nnfuse {
namespace cuda {

using namespace nnfuse::isa_cuda;

cudaError_t activation(ActOp op, ActDirection direction, DType dtype, const void* in, const void* grad, void* out,
                       int64_t n, double p0, double p1, cudaStream_t stream) {
  if (direction != ActDirection::forward && grad == nullptr) return cudaErrorInvalidValue;
  return with_activation(op, [&](auto functor) -> cudaError_t {
    using Op = decltype(functor);
    if (direction == ActDirection::backward_from_y && !Op::has_bwd_from_y) return cudaErrorInvalidValue;
    return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
      using T = typename decltype(tag)::type;
      using S = compute_t<T>;
      const bool vectorize = aligned16(in) && aligned16(out) && (grad == nullptr || aligned16(grad));
      auto run = [&](auto direction_tag) -> cudaError_t {
        ActivationBody<Op, T, decltype(direction_tag)::value> body{
            static_cast<const T*>(in), static_cast<const T*>(grad), static_cast<T*>(out), static_cast<S>(p0),
            static_cast<S>(p1)};
        return launch(body, n, vectorize, stream);
      };
      switch (direction) {
        case ActDirection::forward:
          return run(std::integral_constant<ActDirection, ActDirection::forward>{});
        case ActDirection::backward_from_x:
          return run(std::integral_constant<ActDirection, ActDirection::backward_from_x>{});
        case ActDirection::backward_from_y:
          if constexpr (Op::has_bwd_from_y)
            return run(std::integral_constant<ActDirection, ActDirection::backward_from_y>{});
          break;
      }
      return cudaErrorInvalidValue;
    });
  });
}

cudaError_t prelu_forward(DType dtype, const void* x, const void* weight, void* out, int64_t total,
                          int64_t channels, int64_t inner, cudaStream_t stream) {
  if (channels < 1 || inner < 1) return cudaErrorInvalidValue;
  return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    PreluForwardBody<T> body{static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<T*>(out),
                             channels, inner};
    return launch(body, total, aligned16(x) && aligned16(out), stream);
  });
}

int64_t prelu_partials_size(int64_t total, int64_t channels) {
  return channels * chunks_per_channel(total, channels);
}

cudaError_t prelu_backward(DType dtype, const void* grad, const void* x, const void* weight, void* grad_x,
                           void* weight_grad, double* partials, int64_t total, int64_t channels, int64_t inner,
                           cudaStream_t stream) {
  if (channels < 1 || inner < 1) return cudaErrorInvalidValue;
  const int64_t count = total / channels;
  const int64_t chunks = chunks_per_channel(total, channels);
  return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    int64_t blocks = channels * chunks;
    int grid = static_cast<int>(blocks < (int64_t{1} << 30) ? blocks : (int64_t{1} << 30));
    prelu_backward_kernel<T><<<grid, kThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const T*>(x), static_cast<const T*>(weight),
        static_cast<T*>(grad_x), partials, count, channels, inner, chunks);
    cudaError_t status = cudaGetLastError();
    if (status != cudaSuccess) return status;
    int grid2 = static_cast<int>(channels < (int64_t{1} << 30) ? channels : (int64_t{1} << 30));
    prelu_weight_grad_kernel<T><<<grid2, kThreads, 0, stream>>>(partials, chunks, channels,
                                                                static_cast<T*>(weight_grad));
    return cudaGetLastError();
  });
}

cudaError_t rrelu_training(DType dtype, const void* x, const void* grad, void* out, int64_t n, double lower,
                           double upper, uint64_t seed, uint64_t offset, cudaStream_t stream) {
  return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    using S = compute_t<T>;
    // As the CPU kernel: both bounds rounded to the compute type, then subtracted.
    const S lo = static_cast<S>(lower);
    const S width = static_cast<S>(upper) - lo;
    RreluBody<T> body{static_cast<const T*>(x), static_cast<const T*>(grad), static_cast<T*>(out), lo, width,
                      seed, offset};
    bool vectorize = aligned16(x) && aligned16(out) && (grad == nullptr || aligned16(grad));
    return launch(body, n, vectorize, stream);
  });
}

}  // namespace cuda
}  // namespace nnfuse
