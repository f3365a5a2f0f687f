// A small persistent thread pool. Work is cut into contiguous chunks; which
// thread runs a chunk never changes a result, because elementwise kernels do
// not depend on chunk boundaries and reductions use fixed blocks (see
// dispatch.cpp) whose partial results are combined in block order.
#pragma once

#include <cstdint>
#include <utility>

namespace nnfuse {

// Streaming work per thread below which handing a chunk to another thread
// costs more than it saves: 2^15 float32 elements are 3-35 us of single-core
// work (relu to gelu) against 1-2 us of hand-off to a spinning worker
// (measured on 2-vCPU machines).
inline constexpr int64_t kMinElementsPerThread = 1 << 15;

// Rows of `row_elements` each that make up kMinElementsPerThread (at least 1):
// the min_chunk of a parallel_for over rows.
inline int64_t min_rows_per_thread(int64_t row_elements) {
  return row_elements >= kMinElementsPerThread ? 1 : kMinElementsPerThread / (row_elements > 0 ? row_elements : 1);
}

// The most threads a parallel region uses: each is an OS thread of the pool,
// created on first use, so an absurd request (10^5) would stall the next
// call for minutes while they start. The Python API rejects larger requests.
inline constexpr int kMaxThreads = 1024;

int get_num_threads();
// n <= 0 restores the default (the number of cores the process may use); n
// above kMaxThreads is taken as kMaxThreads.
void set_num_threads(int n);
int default_num_threads();

// Runs fn(ctx, begin, end) over [0, n) in at most get_num_threads() chunks of
// at least `min_chunk` items each (chunk boundaries multiples of `align`). The
// calling thread runs the first chunk and returns when all chunks are done.
void parallel_for(int64_t n, int64_t min_chunk, int64_t align, void (*fn)(void*, int64_t, int64_t), void* ctx);

template <class F>
void parallel_for(int64_t n, int64_t min_chunk, int64_t align, F&& f) {
  auto trampoline = [](void* ctx, int64_t begin, int64_t end) { (*static_cast<F*>(ctx))(begin, end); };
  parallel_for(n, min_chunk, align, trampoline, static_cast<void*>(&f));
}

}  // namespace nnfuse
