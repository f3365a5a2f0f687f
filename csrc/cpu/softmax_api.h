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

// Float32 forward rows are processed in segments of this many elements (a
// multiple of 16): the dispatch spreads the segments of rows longer than this
// across threads when there are fewer rows than threads.
inline constexpr int64_t kSoftmaxSegment = 1 << 15;

// Statistics of a float32 row, absorbed segment by segment in order.
struct SoftmaxRowStats {
  float max = -__builtin_inff();
  float min = __builtin_inff();
  void absorb(float seg_max, float seg_min) {
    max = (seg_max != seg_max || seg_max > max) ? seg_max : max;  // a NaN sticks
    if (max != max) return;
    min = seg_min < min ? seg_min : min;
  }
  // Every z - M >= -87 (exp_near); never for masked rows, NaN or infinite ones.
  bool near(bool masked) const { return !masked && min - max >= -87.0f; }
};

struct SoftmaxKernelTable {
  const char* isa_name;
  void (*forward)(const SoftmaxRange& r, int64_t row_begin, int64_t row_end);
  void (*backward)(const SoftmaxBackwardRange& r, int64_t row_begin, int64_t row_end);
  void (*cross_entropy)(const CrossEntropyRange& r, int64_t row_begin, int64_t row_end);
  // Float32 forward, one segment [begin, end) of one row (see kSoftmaxSegment).
  // exact: the NaN-aware maximum. Without it, NaNs may be skipped: a row whose
  // maximum is -inf or whose sum is NaN must then be computed again with it
  // (rows with a mask, or written in place, always take it).
  void (*f32_segment_stats)(const SoftmaxRange& r, int64_t row, int64_t begin, int64_t end, bool exact, float* max,
                            float* min);
  double (*f32_segment_exp_sum)(const SoftmaxRange& r, int64_t row, int64_t begin, int64_t end, float max, bool near);
  void (*f32_segment_finish)(const SoftmaxRange& r, int64_t row, int64_t begin, int64_t end, float max, double sum);
};

// Threaded entry points (softmax_dispatch.cpp).
void run_softmax_forward(const SoftmaxRange& r, int64_t rows);
void run_softmax_backward(const SoftmaxBackwardRange& r, int64_t rows);
// Returns the sum of the per-row losses, added in row order (the same bits for
// every thread count).
double run_cross_entropy(const CrossEntropyRange& r, int64_t rows);

}  // namespace nnfuse
