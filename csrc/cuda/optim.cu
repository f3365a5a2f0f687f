// CUDA optimizers: multi-tensor apply over the functors of nnfuse/ops/optim.h
// (the same GradPrep and Op::step the CPU kernels run, at V = float or double).
//
// A step is four kernels on the caller's stream, with no host synchronisation:
//   1. grad_norm_kernel   one block per 64K-element chunk of a gradient: sum of
//                         squares in double and the non-finite probe; one
//                         partial per chunk (float64 gradients also keep the
//                         sum scaled by 2^-1200 for when the plain sum overflows);
//   2. tensor_sums_kernel one block: per-array sums (each array's chunks added
//                         in chunk order) and the local total (a fixed tree over
//                         the arrays), so the bits never change from run to run;
//   (the Python global_norm_reduce hook may run here on a device scalar)
//   3. finalize_kernel    one block: global norm, skip flag, clip factor(s),
//                         step count + 1 unless skipped, the step-dependent
//                         hyper-parameters (from the device step and lr), the record;
//   4. update_kernel      one block per chunk: reads the skip flag, factor and
//                         hyper-parameters from device memory, then the fused update.
// Kernels 1-2 run only when a norm or the skip decision is needed (as on the CPU).
//
// Multi-tensor apply: the chunk-to-array table travels as a kernel argument
// (a __grid_constant__ struct of up to kBatchTensors arrays and kBatchChunks
// chunks, ~14 KB: CUDA 12.1+ kernel parameters up to 32 KB), so a launch needs
// no host-to-device copy and a CUDA graph captures it by value. Indices are
// 64-bit; a chunk is processed four elements per thread with vector loads when
// every base pointer is aligned to four elements (16 bytes for float32), the
// rest element by element with the same scalar instructions.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cuda/cuda_api.h"
#include "nnfuse/common/dtypes.h"
#include "nnfuse/ops/optim.h"

NNF_NS_BEGIN

namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = cuda::kOptimChunk;
constexpr int kBatchTensors = 128;
constexpr int kBatchChunks = 1024;
// Plain sums join the 2^-1200 domain as ldexp(s, -1200): 2^1200 is beyond
// double's range.
constexpr int kScaledSumExponent = -1200;
constexpr double kTwoPow600 = 0x1p600;
constexpr double kTwoPowM600 = 0x1p-600;

// One launch's slice of the tensor list. ptr[k][slot]: 0 param, 1 grad,
// 2..4 state, 5 master (null when unused).
struct Batch {
  const void* ptr[6][kBatchTensors];
  int64_t n[kBatchTensors];
  int32_t tensor_id[kBatchTensors];      // index in the whole list
  int32_t first_chunk[kBatchTensors];    // global id of the array's first chunk
  int32_t num_chunks_of[kBatchTensors];  // chunks of the whole array
  int32_t chunk_index[kBatchChunks];     // chunk number within its array
  uint16_t chunk_slot[kBatchChunks];
  int32_t first_global_chunk;  // global id of this launch's chunk 0
  int32_t num_tensors;
  int32_t num_chunks;
};
static_assert(sizeof(Batch) < 32000, "kernel parameters are limited to 32 KB");
static_assert(cuda::kOptimLocalSumIndex == 0, "the local sum sits at index 0 of the workspace");

// Workspace layout (doubles), shared by the kernels of one step.
struct Layout {
  int64_t tensors, chunks;
  static constexpr int64_t kLocal = 0, kScaled = 1, kNonfinite = 2, kSkip = 3, kFactor = 4, kFirstStep = 5,
                           kTotal = 6, kHyper = 8, kHead = 24;
  NNF_HD int64_t tensor_sum() const { return kHead; }
  NNF_HD int64_t tensor_scaled() const { return kHead + tensors; }
  NNF_HD int64_t scale() const { return kHead + 2 * tensors; }
  NNF_HD int64_t first_chunk() const { return kHead + 3 * tensors; }  // stored as doubles (exact below 2^53)
  NNF_HD int64_t num_chunks() const { return kHead + 4 * tensors; }
  NNF_HD int64_t chunk_plain() const { return kHead + 5 * tensors; }
  NNF_HD int64_t chunk_scaled() const { return chunk_plain() + chunks; }
  NNF_HD int64_t chunk_flag() const { return chunk_scaled() + chunks; }
  NNF_HD int64_t size() const { return chunk_flag() + chunks; }
};

template <class T>
__device__ __forceinline__ compute_t<T> widen(T v) {
  return to_float(v);
}
template <class T>
__device__ __forceinline__ T narrow(compute_t<T> v) {
  return StoreAs<T>::from(v);
}

// Four consecutive elements moved with one load/store of 4 * sizeof(T) bytes.
template <class T>
struct alignas(4 * sizeof(T)) Four {
  T v[4];
};

template <class T>
__device__ __forceinline__ bool aligned4(const void* p) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % (4 * sizeof(T)) == 0;
}

// Fixed-shape tree sum over the block (deterministic for a fixed blockDim).
__device__ double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  double total = shared[0];
  __syncthreads();
  return total;
}

// ---- 1. per-chunk sums of squares and the non-finite probe ----------------------

template <class T>
struct SquareAcc {
  using C = compute_t<T>;
  double plain = 0.0, scaled = 0.0;
  bool nonfinite = false;
  bool zero_nonfinite;
  __device__ void add(T raw) {
    C x = widen(raw);
    C diff = x - x;  // 0 iff x is finite
    if (!(diff == C(0))) {
      nonfinite = true;
      if (zero_nonfinite) x = C(0);
    }
    double d = static_cast<double>(x);
    plain = fma(d, d, plain);
    if constexpr (sizeof(C) == 8) {
      double s = d * kTwoPowM600;
      scaled = fma(s, s, scaled);
    }
  }
};

template <class T>
__global__ void __launch_bounds__(kThreads)
    grad_norm_kernel(const __grid_constant__ Batch b, double* ws, Layout layout, bool zero_nonfinite) {
  __shared__ double shared[kThreads];
  if (blockIdx.x == 0) {
    for (int s = threadIdx.x; s < b.num_tensors; s += kThreads) {
      ws[layout.first_chunk() + b.tensor_id[s]] = b.first_chunk[s];
      ws[layout.num_chunks() + b.tensor_id[s]] = b.num_chunks_of[s];
    }
  }
  if (static_cast<int>(blockIdx.x) >= b.num_chunks) return;
  const int slot = b.chunk_slot[blockIdx.x];
  const int64_t n = b.n[slot];
  const int64_t begin = static_cast<int64_t>(b.chunk_index[blockIdx.x]) * kChunk;
  const int64_t end = min(n, begin + kChunk);
  const T* g = static_cast<const T*>(b.ptr[1][slot]);
  SquareAcc<T> acc;
  acc.zero_nonfinite = zero_nonfinite;
  int64_t i = begin;
  if (aligned4<T>(g)) {
    const int64_t vec_end = begin + (end - begin) / 4 * 4;
    for (int64_t j = begin + 4 * static_cast<int64_t>(threadIdx.x); j < vec_end; j += 4 * kThreads) {
      Four<T> f = *reinterpret_cast<const Four<T>*>(g + j);
#pragma unroll
      for (int k = 0; k < 4; ++k) acc.add(f.v[k]);
    }
    i = vec_end;
  }
  for (int64_t j = i + threadIdx.x; j < end; j += kThreads) acc.add(g[j]);

  double plain = block_sum(acc.plain, shared);
  double scaled = sizeof(compute_t<T>) == 8 ? block_sum(acc.scaled, shared) : 0.0;
  int any_nonfinite = __syncthreads_or(acc.nonfinite ? 1 : 0);
  if (threadIdx.x == 0) {
    const int64_t c = static_cast<int64_t>(b.first_global_chunk) + blockIdx.x;
    ws[layout.chunk_plain() + c] = plain;
    ws[layout.chunk_scaled() + c] = scaled;
    ws[layout.chunk_flag() + c] = any_nonfinite ? 1.0 : 0.0;
  }
}

// ---- 2. per-array sums and the local total ----------------------------------------
// An array's block is "scaled" (as on the CPU) when its plain sum overflowed
// although every element was finite, or taken as 0 (nonfinite="zero"): only
// float64 gradients can do that. Such an array is summed in the 2^-1200
// domain, its plain partials divided down.

__global__ void __launch_bounds__(kThreads) tensor_sums_kernel(double* ws, Layout layout, bool zero_nonfinite) {
  __shared__ double shared[kThreads];
  const double* plain = ws + layout.chunk_plain();
  const double* scaled = ws + layout.chunk_scaled();
  const double* flag = ws + layout.chunk_flag();
  bool nonfinite = false;
  bool any_scaled = false;
  for (int64_t t = threadIdx.x; t < layout.tensors; t += kThreads) {
    const int64_t first = static_cast<int64_t>(ws[layout.first_chunk() + t]);
    const int64_t count = static_cast<int64_t>(ws[layout.num_chunks() + t]);
    bool t_scaled = false;
    for (int64_t c = first; c < first + count; ++c) {
      nonfinite |= flag[c] != 0.0;
      t_scaled |= (flag[c] == 0.0 || zero_nonfinite) && plain[c] == HUGE_VAL;
    }
    double s = 0.0;
    for (int64_t c = first; c < first + count; ++c) s += t_scaled ? (plain[c] == HUGE_VAL ? scaled[c] : ldexp(plain[c], kScaledSumExponent)) : plain[c];
    ws[layout.tensor_sum() + t] = s;
    ws[layout.tensor_scaled() + t] = t_scaled ? 1.0 : 0.0;
    any_scaled |= t_scaled;
  }
  any_scaled = __syncthreads_or(any_scaled ? 1 : 0) != 0;
  nonfinite = __syncthreads_or(nonfinite ? 1 : 0) != 0;
  double part = 0.0;
  for (int64_t t = threadIdx.x; t < layout.tensors; t += kThreads) {
    double s = ws[layout.tensor_sum() + t];
    part += any_scaled && ws[layout.tensor_scaled() + t] == 0.0 ? ldexp(s, kScaledSumExponent) : s;
  }
  double total = block_sum(part, shared);
  if (threadIdx.x == 0) {
    ws[Layout::kTotal] = total;
    ws[Layout::kScaled] = any_scaled ? 1.0 : 0.0;
    // the reducer sees a plain sum; one that overflows float64 is +inf (as on the CPU)
    ws[Layout::kLocal] = any_scaled ? HUGE_VAL : total;
    ws[Layout::kNonfinite] = nonfinite ? 1.0 : 0.0;
  }
}

// ---- 3. clip factors, skip flag, step count, hyper-parameters, record ------------

__device__ double norm_of(double sumsq, bool scaled) { return scaled ? sqrt(sumsq) * kTwoPow600 : sqrt(sumsq); }

struct FinalizeArgs {
  cuda::CudaOptimOptions o;
  const double* global_sum;  // the reducer's result, or null
  double* step;              // applied-step counter (float64), incremented unless skipped
  const double* lr_ptr;      // device learning rate, or null: lr_value
  double* record;            // {grad_norm, clip_factor, skipped, step}
  int64_t tensors;
};

__global__ void __launch_bounds__(kThreads) finalize_kernel(FinalizeArgs a, double* ws, Layout layout) {
  __shared__ int skip_shared;
  const cuda::CudaOptimOptions& o = a.o;
  const bool per_tensor = o.clip_mode == 2 && o.has_norm_pass;
  if (threadIdx.x == 0) {
    double norm = nan(""), factor = 1.0;
    bool skip = false;
    if (o.has_norm_pass) {
      double global = a.global_sum ? *a.global_sum : ws[Layout::kTotal];
      bool scaled = a.global_sum ? false : ws[Layout::kScaled] != 0.0;
      norm = isnan(global) ? global : norm_of(global, scaled);
      bool nonfinite = ws[Layout::kNonfinite] != 0.0 || (a.global_sum != nullptr && !isfinite(global));
      skip = o.nonfinite == 0 && nonfinite;
      if (!skip && o.clip_mode == 3) {
        if (isnan(norm)) factor = norm;
        else if (o.keras) factor = o.clip / fmax(norm, o.clip);
        else factor = fmin(1.0, o.clip / (norm + 1e-6));
      }
    }
    double t = *a.step + (skip ? 0.0 : 1.0);
    if (!skip) *a.step = t;
    const double lr = a.lr_ptr ? *a.lr_ptr : o.lr;
    const double* b = o.base;
    double* h = ws + Layout::kHyper;
    switch (o.kind) {
      case 0: {  // Adam: base = {beta1, beta2, eps, wd}
        double bc1 = 1.0 - pow(b[0], t), bc2 = 1.0 - pow(b[1], t);
        double step_size = o.keras ? lr * sqrt(bc2) / bc1 : lr / bc1;
        double vscale = o.keras ? 1.0 : 1.0 / sqrt(bc2);
        double v[9] = {b[0], b[1], 1.0 - b[0], 1.0 - b[1], step_size, vscale, b[2], b[3], 1.0 - lr * b[3]};
        for (int k = 0; k < 9; ++k) h[k] = v[k];
        break;
      }
      case 1: {  // SGD: base = {momentum, dampening, wd}
        double v[5] = {lr, b[0], 1.0 - b[1], b[2], 1.0 - lr * b[2]};
        for (int k = 0; k < 5; ++k) h[k] = v[k];
        break;
      }
      case 2: {  // RMSprop: base = {alpha, eps, momentum, wd}
        double v[7] = {b[0], 1.0 - b[0], lr, b[1], b[2], b[3], 1.0 - lr * b[3]};
        for (int k = 0; k < 7; ++k) h[k] = v[k];
        break;
      }
      default: {  // Adagrad: base = {lr_decay, eps, wd}
        double v[4] = {lr / (1.0 + (t - 1.0) * b[0]), b[1], b[2], 1.0 - lr * b[2]};
        for (int k = 0; k < 4; ++k) h[k] = v[k];
        break;
      }
    }
    ws[Layout::kFirstStep] = t == 1.0 ? 1.0 : 0.0;
    ws[Layout::kSkip] = skip ? 1.0 : 0.0;
    ws[Layout::kFactor] = factor;
    a.record[0] = norm;
    a.record[1] = factor;
    a.record[2] = skip ? 1.0 : 0.0;
    a.record[3] = t;
    skip_shared = skip;
  }
  __syncthreads();
  if (!per_tensor) return;
  // Keras clip_by_norm per array: g * c / max(||g_i||, c).
  for (int64_t t = threadIdx.x; t < a.tensors; t += kThreads) {
    double norm = norm_of(ws[layout.tensor_sum() + t], ws[layout.tensor_scaled() + t] != 0.0);
    ws[layout.scale() + t] = isnan(norm) ? norm : o.clip / fmax(norm, o.clip);
  }
  __syncthreads();
  if (threadIdx.x == 0 && !skip_shared) {
    double smallest = 1.0;
    for (int64_t t = 0; t < a.tensors; ++t) {
      double f = ws[layout.scale() + t];
      if (isnan(f) || (!isnan(smallest) && f < smallest)) smallest = f;
    }
    ws[Layout::kFactor] = smallest;
    a.record[1] = smallest;
  }
}

// ---- 4. the fused update ---------------------------------------------------------

template <class Op, class T>
__global__ void __launch_bounds__(kThreads) update_kernel(const __grid_constant__ Batch b, const double* ws,
                                                          Layout layout, uint32_t flags, double clip,
                                                          bool per_tensor) {
  using S = compute_t<T>;  // state type
  if (ws[Layout::kSkip] != 0.0) return;
  const int slot = b.chunk_slot[blockIdx.x];
  const int64_t n = b.n[slot];
  const int64_t begin = static_cast<int64_t>(b.chunk_index[blockIdx.x]) * kChunk;
  const int64_t end = min(n, begin + kChunk);
  if (ws[Layout::kFirstStep] != 0.0) flags |= kOptFirstStep;
  const typename Op::template Hyper<S> h(ws + Layout::kHyper, flags);
  const GradPrep<S> prep{static_cast<S>(clip), flags};
  const S scale = static_cast<S>(per_tensor ? ws[layout.scale() + b.tensor_id[slot]] : ws[Layout::kFactor]);
  T* p = static_cast<T*>(const_cast<void*>(b.ptr[0][slot]));
  const T* g = static_cast<const T*>(b.ptr[1][slot]);
  S* st[3];
  for (int k = 0; k < 3; ++k) st[k] = static_cast<S*>(const_cast<void*>(b.ptr[2 + k][slot]));
  S* master = static_cast<S*>(const_cast<void*>(b.ptr[5][slot]));

  // One element: the same instructions on the vector and the scalar path.
  auto body = [&](S& pv, S gv, S (&s)[3]) {
    gv = prep(gv, scale);
    Op::step(pv, gv, s, h);
  };

  int64_t i = begin;
  bool aligned = aligned4<T>(p) && aligned4<T>(g) && aligned4<S>(master);
  for (int k = 0; k < 3; ++k) aligned = aligned && aligned4<S>(st[k]);
  if (aligned) {
    const int64_t vec_end = begin + (end - begin) / 4 * 4;
    for (int64_t j = begin + 4 * static_cast<int64_t>(threadIdx.x); j < vec_end; j += 4 * kThreads) {
      Four<T> pf, gf = *reinterpret_cast<const Four<T>*>(g + j);
      Four<S> mf, sf[3];
      if (master) {
        mf = *reinterpret_cast<const Four<S>*>(master + j);
      } else {
        pf = *reinterpret_cast<const Four<T>*>(p + j);
      }
      for (int k = 0; k < 3; ++k)
        if (st[k]) sf[k] = *reinterpret_cast<const Four<S>*>(st[k] + j);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        S pv = master ? mf.v[e] : widen(pf.v[e]);
        S s[3] = {S(0), S(0), S(0)};
        for (int k = 0; k < 3; ++k)
          if (st[k]) s[k] = sf[k].v[e];
        body(pv, widen(gf.v[e]), s);
        for (int k = 0; k < 3; ++k) sf[k].v[e] = s[k];
        mf.v[e] = pv;
        pf.v[e] = narrow<T>(pv);
      }
      for (int k = 0; k < 3; ++k)
        if (st[k]) *reinterpret_cast<Four<S>*>(st[k] + j) = sf[k];
      if (master) *reinterpret_cast<Four<S>*>(master + j) = mf;
      *reinterpret_cast<Four<T>*>(p + j) = pf;
    }
    i = vec_end;
  }
  for (int64_t j = i + threadIdx.x; j < end; j += kThreads) {
    S pv = master ? master[j] : widen(p[j]);
    S s[3] = {S(0), S(0), S(0)};
    for (int k = 0; k < 3; ++k)
      if (st[k]) s[k] = st[k][j];
    body(pv, widen(g[j]), s);
    for (int k = 0; k < 3; ++k)
      if (st[k]) st[k][j] = s[k];
    if (master) master[j] = pv;
    p[j] = narrow<T>(pv);
  }
}

// ---- host side: batching and launches ----------------------------------------------

int64_t chunks_of(int64_t n) { return (n + kChunk - 1) / kChunk; }

// Splits the list into launches of at most kBatchTensors arrays and
// kBatchChunks chunks; fn(batch, grid) launches one. Arrays without elements
// are listed (grid of one block) so that their per-array metadata is written.
template <class Fn>
cudaError_t for_each_batch(const std::vector<cuda::CudaOptimTensor>& tensors, bool include_empty, Fn&& fn) {
  Batch b;
  auto reset = [&](int32_t first_global) {
    b.num_tensors = 0;
    b.num_chunks = 0;
    b.first_global_chunk = first_global;
  };
  auto flush = [&]() -> cudaError_t {
    cudaError_t status = cudaSuccess;
    if (b.num_chunks > 0 || (include_empty && b.num_tensors > 0)) status = fn(b, std::max(b.num_chunks, 1));
    reset(b.first_global_chunk + b.num_chunks);
    return status;
  };
  reset(0);
  int64_t global = 0;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const cuda::CudaOptimTensor& x = tensors[t];
    const int64_t count = chunks_of(x.n);
    int64_t c = 0;
    do {
      if (b.num_tensors == kBatchTensors) {
        cudaError_t status = flush();
        if (status != cudaSuccess) return status;
      }
      const int slot = b.num_tensors++;
      for (int k = 0; k < 6; ++k) b.ptr[k][slot] = x.ptr[k];
      b.n[slot] = x.n;
      b.tensor_id[slot] = static_cast<int32_t>(t);
      b.first_chunk[slot] = static_cast<int32_t>(global);
      b.num_chunks_of[slot] = static_cast<int32_t>(count);
      for (; c < count && b.num_chunks < kBatchChunks; ++c) {
        b.chunk_index[b.num_chunks] = static_cast<int32_t>(c);
        b.chunk_slot[b.num_chunks] = static_cast<uint16_t>(slot);
        ++b.num_chunks;
      }
      if (c < count) {
        cudaError_t status = flush();
        if (status != cudaSuccess) return status;
      }
    } while (c < count);
    global += count;
  }
  return flush();
}

template <class Fn>
void dispatch_storage(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::float32: fn(float{}); break;
    case DType::float64: fn(double{}); break;
    case DType::float16: fn(half_t{}); break;
    case DType::bfloat16: fn(bfloat16_t{}); break;
  }
}

template <class T>
cudaError_t launch_update(const cuda::CudaOptimOptions& o, const std::vector<cuda::CudaOptimTensor>& tensors,
                          const double* ws, const Layout& layout, cudaStream_t stream) {
  const bool per_tensor = o.clip_mode == 2 && o.has_norm_pass;
  return for_each_batch(tensors, false, [&](const Batch& b, int grid) {
    switch (o.kind) {
      case 0: update_kernel<AdamOp, T><<<grid, kThreads, 0, stream>>>(b, ws, layout, o.flags, o.clipvalue, per_tensor); break;
      case 1: update_kernel<SgdOp, T><<<grid, kThreads, 0, stream>>>(b, ws, layout, o.flags, o.clipvalue, per_tensor); break;
      case 2: update_kernel<RmspropOp, T><<<grid, kThreads, 0, stream>>>(b, ws, layout, o.flags, o.clipvalue, per_tensor); break;
      default: update_kernel<AdagradOp, T><<<grid, kThreads, 0, stream>>>(b, ws, layout, o.flags, o.clipvalue, per_tensor); break;
    }
    return cudaGetLastError();
  });
}

Layout layout_for(const std::vector<cuda::CudaOptimTensor>& tensors) {
  int64_t chunks = 0;
  for (const auto& t : tensors) chunks += chunks_of(t.n);
  return Layout{static_cast<int64_t>(tensors.size()), chunks};
}

}  // namespace

NNF_NS_END

namespace nnfuse {
namespace cuda {

using namespace nnfuse::isa_cuda;

int64_t optim_workspace_doubles(const int64_t* sizes, int64_t count) {
  int64_t chunks = 0;
  for (int64_t i = 0; i < count; ++i) chunks += chunks_of(sizes[i]);
  return Layout{count, chunks}.size();
}

cudaError_t optim_grad_pass(DType dtype, const std::vector<CudaOptimTensor>& tensors, bool zero_nonfinite,
                            double* ws, cudaStream_t stream) {
  const Layout layout = layout_for(tensors);
  if (layout.chunks >= (int64_t{1} << 31)) return cudaErrorInvalidValue;
  cudaError_t status = cudaSuccess;
  dispatch_storage(dtype, [&](auto tag) {
    using T = decltype(tag);
    status = for_each_batch(tensors, true, [&](const Batch& b, int grid) {
      grad_norm_kernel<T><<<grid, kThreads, 0, stream>>>(b, ws, layout, zero_nonfinite);
      return cudaGetLastError();
    });
  });
  if (status != cudaSuccess) return status;
  tensor_sums_kernel<<<1, kThreads, 0, stream>>>(ws, layout, zero_nonfinite);
  return cudaGetLastError();
}

cudaError_t optim_finalize(const CudaOptimOptions& options, const std::vector<CudaOptimTensor>& tensors,
                           const double* global_sum, double* step, const double* lr, double* record, double* ws,
                           cudaStream_t stream) {
  const Layout layout = layout_for(tensors);
  FinalizeArgs a{options, global_sum, step, lr, record, layout.tensors};
  finalize_kernel<<<1, kThreads, 0, stream>>>(a, ws, layout);
  return cudaGetLastError();
}

cudaError_t optim_update(DType dtype, const CudaOptimOptions& options, const std::vector<CudaOptimTensor>& tensors,
                         const double* ws, cudaStream_t stream) {
  const Layout layout = layout_for(tensors);
  if (layout.chunks >= (int64_t{1} << 31)) return cudaErrorInvalidValue;
  cudaError_t status = cudaSuccess;
  dispatch_storage(dtype, [&](auto tag) {
    status = launch_update<decltype(tag)>(options, tensors, ws, layout, stream);
  });
  return status;
}

}  // namespace cuda
}  // namespace nnfuse
