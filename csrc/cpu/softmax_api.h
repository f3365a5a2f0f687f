// The contract between the softmax dispatch (baseline flags) and the softmax
// kernels compiled once per instruction set: plain types only. Rows are
// contiguous runs of `cols` elements; the kernels handle rows [begin, end).
#pragma once

#include <cstdint>

#include "cpu/cpu_api.h"

namespace nnfuse {

struct SoftmaxRange {
  DType dtype;
  bool log;                 // log_softmax instead of softmax
  const void* x;
  const uint8_t* keep;      // nullptr, or one byte per element: nonzero keeps it
  void* out;
  int64_t cols;
  double scale;             // rounded to the compute type by the kernel
  bool masked_rows_nan;     // rows with no finite maximum: NaN (else 0 / -inf)
};

struct SoftmaxBackwardRange {
  DType dtype;
  bool log;
  const void* grad;
  const void* y;
  void* out;
  int64_t cols;
  double scale;
};

// Fused softmax cross-entropy: loss[row] (double) and grad (logits' dtype;
// may be the logits' own buffer). Rows whose label is ignore_index, or out of
// [0, cols) (the caller rejects those first), get loss 0 and a zero gradient.
struct CrossEntropyRange {
  DType dtype;
  const void* logits;
  const int64_t* labels;
  void* grad;
  double* loss;
  int64_t cols;
  int64_t ignore_index;
  double smoothing, z_loss;
  double weight;            // gradient factor: 1 / (rows counted) for "mean", else 1
};

struct SoftmaxKernelTable {
  const char* isa_name;
  void (*forward)(const SoftmaxRange& r, int64_t row_begin, int64_t row_end);
  void (*backward)(const SoftmaxBackwardRange& r, int64_t row_begin, int64_t row_end);
  void (*cross_entropy)(const CrossEntropyRange& r, int64_t row_begin, int64_t row_end);
};

// Threaded entry points (softmax_dispatch.cpp).
void run_softmax_forward(const SoftmaxRange& r, int64_t rows);
void run_softmax_backward(const SoftmaxBackwardRange& r, int64_t rows);
// Returns the sum of the per-row losses, added in row order (the same bits for
// every thread count).
double run_cross_entropy(const CrossEntropyRange& r, int64_t rows);

}  // namespace nnfuse
