// The contract between the CUDA bindings (compiled by the host compiler) and
// the kernels in csrc/cuda/*.cu: plain pointers, sizes, dtype codes and the
// caller's stream. Every function enqueues work on `stream` and returns the
// launch status; none of them synchronises. The caller has made the device
// that owns the pointers current.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

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

// ---- optimizers (csrc/cuda/optim.cu) ----------------------------------------------
// A step is optim_grad_pass (when a norm or the skip decision is needed), then
// optim_finalize, then optim_update, all on one stream; between the first two
// the caller may reduce the local sum of squares across processes. All state
// that the kernels exchange (sums, skip flag, clip factors, hyper-parameters)
// lives in the workspace `ws`, so nothing is read back to the host.

// Gradient chunk: the unit of the norm partials and of the update launch.
constexpr int64_t kOptimChunk = int64_t{1} << 16;

// One array: ptr = {param, grad, state0, state1, state2, master}, null when unused.
struct CudaOptimTensor {
  const void* ptr[6];
  int64_t n;
};

struct CudaOptimOptions {
  int32_t kind;        // OptimKind (cpu/optim_api.h)
  uint32_t flags;      // OptimFlag bits, without kOptFirstStep (set on the device from the step count)
  int32_t clip_mode;   // 0 none, 1 value, 2 per-array norm, 3 global norm
  int32_t nonfinite;   // 0 skip, 1 zero, 2 propagate
  bool keras;
  bool has_norm_pass;  // optim_grad_pass ran for this step
  double clip;         // clipnorm / global_clipnorm
  double clipvalue;
  double lr;           // used when no device learning rate is given
  double base[4];      // step-independent hyper-parameters (see finalize_kernel)
};

// Doubles of workspace a step over arrays of these sizes needs; index 0 of
// the workspace holds the local sum of squares after optim_grad_pass.
int64_t optim_workspace_doubles(const int64_t* sizes, int64_t count);
constexpr int64_t kOptimLocalSumIndex = 0;

cudaError_t optim_grad_pass(DType dtype, const std::vector<CudaOptimTensor>& tensors, bool zero_nonfinite,
                            double* ws, cudaStream_t stream);
// global_sum: the reduced sum of squares (device float64), or null for the
// local one. step: device float64 count of applied steps, incremented unless
// skipped. lr: device float64 learning rate or null (options.lr). record:
// four device doubles {grad_norm (NaN without a norm pass), clip_factor, skipped, step}.
cudaError_t optim_finalize(const CudaOptimOptions& options, const std::vector<CudaOptimTensor>& tensors,
                           const double* global_sum, double* step, const double* lr, double* record, double* ws,
                           cudaStream_t stream);
cudaError_t optim_update(DType dtype, const CudaOptimOptions& options, const std::vector<CudaOptimTensor>& tensors,
                         const double* ws, cudaStream_t stream);


// ---- softmax family (softmax.cu) ----------------------------------------------
// Rows are contiguous runs of `cols` elements. Rows of 64K elements and more are
// split over several blocks and need `workspace`: softmax_workspace_size(rows,
// cols) doubles of device scratch (0: none, pass nullptr).
int64_t softmax_workspace_size(int64_t rows, int64_t cols);

// softmax (log == false) or log_softmax of each row of scale * x; keep is
// nullptr or one byte per element (nonzero keeps it); rows with nothing kept
// give 0 (log: -inf), or NaN with masked_rows_nan.
cudaError_t softmax_forward(bool log, DType dtype, const void* x, const uint8_t* keep, void* out, int64_t rows,
                            int64_t cols, double scale, bool masked_rows_nan, double* workspace,
                            cudaStream_t stream);

// dx from the forward output y and grad = dL/dy (out may be grad or y).
cudaError_t softmax_backward(bool log, DType dtype, const void* grad, const void* y, void* out, int64_t rows,
                             int64_t cols, double scale, double* workspace, cudaStream_t stream);

// Doubles of scratch cross_entropy needs (per-row losses, the label check,
// long-row partials); at least 2, also for no rows.
int64_t cross_entropy_workspace_size(int64_t rows, int64_t cols);

// Fused softmax cross-entropy: grad (may be the logits' buffer) and the loss in
// the logits' dtype into loss_out: reduction 0 "mean" (a scalar, total / rows
// whose label is not ignore_index, NaN if none; the gradients weighted
// alike), 1 "sum" (a scalar), 2 "none" (one per row). The labels are checked
// on the device in the same stream: a label that is neither ignore_index nor
// in [0, cols) is never read (its row gets a NaN loss and a zero gradient),
// and *first_bad_row receives the first such row, or -1. That is read back
// after every launch, so the call synchronises the stream once, at its end.
cudaError_t cross_entropy(DType dtype, const void* logits, const int64_t* labels, void* grad, void* loss_out,
                          int reduction, int64_t rows, int64_t cols, int64_t ignore_index, double smoothing,
                          double z_loss, double* workspace, cudaStream_t stream, int64_t* first_bad_row);

}  // namespace cuda
}  // namespace nnfuse
