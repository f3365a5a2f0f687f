// Threaded entry points of the softmax family: rows spread across threads,
// each row computed by one thread with a fixed order of operations, so results
// do not depend on the thread count. Compiled with baseline flags.
#include <algorithm>

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

// At least this many elements per thread (as for the elementwise kernels:
// below ~32K elements waking a thread costs more than it saves).
constexpr int64_t kMinChunkElements = 1 << 15;

int64_t min_rows(int64_t cols) { return std::max<int64_t>(1, kMinChunkElements / std::max<int64_t>(1, cols)); }

}  // namespace

void run_softmax_forward(const SoftmaxRange& r, int64_t rows) {
  const SoftmaxKernelTable& table = softmax_kernels();
  parallel_for(rows, min_rows(r.cols), 1, [&](int64_t begin, int64_t end) { table.forward(r, begin, end); });
}

void run_softmax_backward(const SoftmaxBackwardRange& r, int64_t rows) {
  const SoftmaxKernelTable& table = softmax_kernels();
  parallel_for(rows, min_rows(r.cols), 1, [&](int64_t begin, int64_t end) { table.backward(r, begin, end); });
}

double run_cross_entropy(const CrossEntropyRange& r, int64_t rows) {
  const SoftmaxKernelTable& table = softmax_kernels();
  parallel_for(rows, min_rows(r.cols), 1, [&](int64_t begin, int64_t end) { table.cross_entropy(r, begin, end); });
  // Per-row losses are independent of the threads; adding them in row order
  // makes the total so too.
  double total = 0.0;
  for (int64_t row = 0; row < rows; ++row) total += r.loss[row];
  return total;
}

}  // namespace nnfuse
