// Threaded entry points of the softmax family: rows spread across threads,
// each row computed by one thread with a fixed order of operations, so results
// do not depend on the thread count. Compiled with baseline flags.
#include <algorithm>
#include <vector>

#include "cpu/dispatch.h"
#include "cpu/parallel.h"
#include "cpu/softmax_api.h"

namespace nnfuse {
NNF_DECLARE_ISA_TABLES(SoftmaxKernelTable, softmax_kernel_table)

namespace {

const SoftmaxKernelTable& softmax_kernels() {
  return pick_isa_table(isa_scalar::softmax_kernel_table, isa_avx2::softmax_kernel_table,
                        isa_avx512::softmax_kernel_table);
}


}  // namespace

// Fewer float32 rows than threads, each longer than a segment: the segments
// of each row go to the threads in two phases (segment sums, output), their
// sums combined in segment order as the kernel does for one thread. A row
// whose fast maximum may have missed a NaN (softmax_row_redo) is computed
// again with the NaN-aware one.
void softmax_forward_split_rows(const SoftmaxKernelTable& table, const SoftmaxRange& r, int64_t rows) {
  const int64_t n = r.cols;
  const int64_t segments = (n + kSoftmaxSegment - 1) / kSoftmaxSegment;
  std::vector<SoftmaxSegmentSum> seg(segments);
  auto bounds = [&](int64_t s, int64_t& b, int64_t& e) {
    b = s * kSoftmaxSegment;
    e = std::min(n, b + kSoftmaxSegment);
  };
  const bool fast = r.keep == nullptr && r.x != r.out;
  for (int64_t row = 0; row < rows; ++row) {
    for (bool exact = !fast;; exact = true) {
      parallel_for(segments, 1, 1, [&](int64_t s0, int64_t s1) {
        for (int64_t s = s0, b, e; s < s1; ++s) {
          bounds(s, b, e);
          seg[s] = table.f32_segment_sum(r, row, b, e, exact);
        }
      });
      const SoftmaxRowSum rs = combine_segment_sums(seg.data(), segments);
      if (softmax_row_redo(exact, seg.data(), segments, rs)) continue;
      parallel_for(segments, 1, 1, [&](int64_t s0, int64_t s1) {
        for (int64_t s = s0, b, e; s < s1; ++s) {
          bounds(s, b, e);
          table.f32_segment_finish(r, row, b, e, seg[s], rs);
        }
      });
      break;
    }
  }
}

void run_softmax_forward(const SoftmaxRange& range, int64_t rows) {
  const SoftmaxKernelTable& table = softmax_kernels();
  SoftmaxRange r = range;
  r.stream = stream_large_output(r.out, r.total * static_cast<int64_t>(dtype_size(r.dtype)));
  if (r.dtype == DType::float32 && r.cols > kSoftmaxSegment && rows < get_num_threads()) {
    softmax_forward_split_rows(table, r, rows);
    return;
  }
  parallel_for(rows, min_rows_per_thread(r.cols), 1,
               [&](int64_t begin, int64_t end) { table.forward(r, begin, end); });
}

void run_softmax_backward(const SoftmaxBackwardRange& range, int64_t rows) {
  const SoftmaxKernelTable& table = softmax_kernels();
  SoftmaxBackwardRange r = range;
  r.stream = stream_large_output(r.out, r.total * static_cast<int64_t>(dtype_size(r.dtype)));
  parallel_for(rows, min_rows_per_thread(r.cols), 1,
               [&](int64_t begin, int64_t end) { table.backward(r, begin, end); });
}

double run_cross_entropy(const CrossEntropyRange& r, int64_t rows) {
  const SoftmaxKernelTable& table = softmax_kernels();
  parallel_for(rows, min_rows_per_thread(r.cols), 1,
               [&](int64_t begin, int64_t end) { table.cross_entropy(r, begin, end); });
  // Per-row losses are independent of the threads; adding them in an order
  // fixed by the row count alone makes the total so too: row i into partial
  // sum i % 8, then the eight pairwise. One running sum waited on each
  // addition's latency, ~1.5 ms of 2^20 rows of 2 classes (10 ms in all).
  constexpr int kPartials = 8;
  double partial[kPartials] = {};
  int64_t row = 0;
  for (; row + kPartials <= rows; row += kPartials) {
    for (int j = 0; j < kPartials; ++j) partial[j] += r.loss[row + j];
  }
  for (int j = 0; row < rows; ++row, ++j) partial[j] += r.loss[row];
  for (int width = kPartials / 2; width >= 1; width /= 2) {
    for (int j = 0; j < width; ++j) partial[j] += partial[j + width];
  }
  return partial[0];
}

}  // namespace nnfuse
