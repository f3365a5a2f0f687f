// The contract between the softmax dispatch (baseline flags) and the softmax
// kernels compiled once per instruction set: plain types only. Rows are
// contiguous runs of `cols` elements; the kernels handle rows [begin, end).
#pragma once

#include <cmath>
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
  int64_t total = 0;        // elements of the whole call (the dispatch sets stream from it)
  bool stream = false;      // streaming stores allowed (stream_large_output, set by the dispatch)
};

struct SoftmaxBackwardRange {
  DType dtype;
  bool log;
  const void* grad;
  const void* y;
  void* out;
  int64_t cols;
  double scale;
  int64_t total = 0;        // elements of the whole call (the dispatch sets stream from it)
  bool stream = false;      // streaming stores allowed (stream_large_output, set by the dispatch)
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
// multiple of 16): each segment is reduced against its own maximum while it
// is cached (SoftmaxSegmentSum), and the dispatch spreads the segments of
// rows longer than this across threads when there are fewer rows than
// threads.
inline constexpr int64_t kSoftmaxSegment = 1 << 15;

// How a float32 row takes its terms e^(z - M) (nnfuse/ops/softmax.h, all
// the same bits): softmax_term (general), softmax_term_near where every
// z - M >= -87, softmax_term_near_fast where, besides, no z has a larger
// exponent than M >= 0, and softmax_term_near_fast_negative where M < 0
// (chosen per row by the kernels' row_terms); softmax rows may instead take
// kShifted, e^(z - K ln2) (softmax_term_shifted: a different shift, the
// same softmax).
enum class RowTerms { kGeneral, kNear, kNearFast, kNearFastNegative, kShifted };

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

// One segment of a float32 row: its maximum m (a zero one as -0) and the sum
// of its terms e^(z - o) (0 where m = -inf: no exp taken), o its offset: m,
// or K ln2 for kShifted terms, K = shift.
struct SoftmaxSegmentSum {
  float max;
  double sum;
  RowTerms terms = RowTerms::kGeneral;  // the form its terms were taken in
  float shift = 0.0f;                   // the K of kShifted terms
  // The m of row_term: K for kShifted terms, else the maximum.
  float term_base() const { return terms == RowTerms::kShifted ? shift : max; }
  double offset() const {
    constexpr double kLn2 = 0.69314718055994530942;
    return terms == RowTerms::kShifted ? static_cast<double>(shift) * kLn2 : max;
  }
};

// The row's maximum M (a NaN sticks) and S = sum of S_s e^(o_s - o) over its
// segments in order, in double, with o = M: the same bits for every split of
// the segments among threads. For one segment, S = S_0 and o = o_0.
struct SoftmaxRowSum {
  float max;
  double sum;
  double offset;
};
inline SoftmaxRowSum combine_segment_sums(const SoftmaxSegmentSum* seg, int64_t count) {
  if (count == 1) return {seg[0].max, seg[0].sum, seg[0].offset()};
  float max = -__builtin_inff();
  for (int64_t s = 0; s < count; ++s) max = (seg[s].max != seg[s].max || seg[s].max > max) ? seg[s].max : max;
  double sum = 0.0;
  if (max == -__builtin_inff()) return {max, sum, max};
  for (int64_t s = 0; s < count; ++s) {
    if (seg[s].max == -__builtin_inff()) continue;
    // e^0 = 1 exactly
    const double offset = seg[s].offset();
    sum += offset == max ? seg[s].sum : seg[s].sum * std::exp(offset - static_cast<double>(max));
  }
  return {max, sum, max};
}

// A row reduced with the fast maximum (exact = false), which may skip NaNs,
// is computed again with the NaN-aware one when a segment's maximum came
// out -inf (all -inf, or NaNs skipped) or the row's sum is NaN (a NaN logit,
// or +inf: inf - inf).
inline bool softmax_row_redo(bool exact, float seg_max, double row_sum) {
  return !exact && (seg_max == -__builtin_inff() || row_sum != row_sum);
}
inline bool softmax_row_redo(bool exact, const SoftmaxSegmentSum* seg, int64_t count, const SoftmaxRowSum& row) {
  for (int64_t s = 0; s < count; ++s)
    if (softmax_row_redo(exact, seg[s].max, row.sum)) return true;
  return false;
}

struct SoftmaxKernelTable {
  const char* isa_name;
  void (*forward)(const SoftmaxRange& r, int64_t row_begin, int64_t row_end);
  void (*backward)(const SoftmaxBackwardRange& r, int64_t row_begin, int64_t row_end);
  void (*cross_entropy)(const CrossEntropyRange& r, int64_t row_begin, int64_t row_end);
  // Float32 forward, one segment [begin, end) of one row (see kSoftmaxSegment).
  // segment_sum: its maximum and sum of exps (softmax: the exps written to the
  // output); exact: the NaN-aware maximum (see softmax_row_redo; rows with a
  // mask, or written in place, always take it). segment_finish: the
  // segment's output from its own maximum (and the form of its terms, for a
  // streamed output that takes them again) and the row's (M, S).
  SoftmaxSegmentSum (*f32_segment_sum)(const SoftmaxRange& r, int64_t row, int64_t begin, int64_t end, bool exact);
  void (*f32_segment_finish)(const SoftmaxRange& r, int64_t row, int64_t begin, int64_t end,
                             const SoftmaxSegmentSum& segment, const SoftmaxRowSum& row_sum);
};

// Threaded entry points (softmax_dispatch.cpp).
void run_softmax_forward(const SoftmaxRange& r, int64_t rows);
void run_softmax_backward(const SoftmaxBackwardRange& r, int64_t rows);
// Returns the sum of the per-row losses, added in an order fixed by the row
// count (the same bits for every thread count).
double run_cross_entropy(const CrossEntropyRange& r, int64_t rows);

}  // namespace nnfuse
