// The contract between the baseline code (dispatch, bindings) and the kernels
// compiled once per instruction set. Only plain types live here: every ISA's
// translation unit fills the same table of function pointers, and dispatch.cpp
// picks one table at run time.
#pragma once

#include <cstdint>

namespace nnfuse {

enum class DType : int32_t { float32 = 0, float64 = 1, float16 = 2, bfloat16 = 3 };

// Activation functors, in the order of the Python op table (nnfuse/_optable.py).
enum class ActOp : int32_t {
  sigmoid,
  tanh,
  relu,
  leaky_relu,
  elu,
  selu,
  celu,
  gelu,
  gelu_tanh,
  silu,
  mish,
  hardtanh,  // also relu6: hardtanh with bounds 0 and 6
  hardsigmoid,
  hardswish,
  softplus,
  softsign,
  logsigmoid,
  count
};

enum class ActDirection : int32_t { forward = 0, backward_from_x = 1, backward_from_y = 2 };

// Outputs of at least kStreamBytes per call (whole output, all threads) are
// written with non-temporal stores (kernels/isa.h, use_stream) when already
// backed by memory: at that size the output leaves the caches before anyone
// reads it, and a plain store first reads each line (read for ownership), a
// third memory stream for a forward pass. The threshold sits at half the L3
// of a 2-vCPU AMD EPYC (32 MiB): below it inputs and output stayed cache-
// resident between calls and plain stores won there (2^20 float32, 4 MiB:
// relu forward 217 us streamed vs 92 us plain).
inline constexpr int64_t kStreamBytes = int64_t(1) << 24;

// Whether the elementwise kernels write an output of `bytes` at `out` with
// non-temporal stores (ActRange::stream): from kStreamBytes as above, and from
// one L2 per thread where stream_mid_size() says so. Either way only if the
// output is already backed by memory (Linux: mincore of its first, middle and
// last pages; assumed elsewhere). A fresh allocation (out=None: NumPy maps
// new pages) is not: each first store faults in a page the kernel zeroes
// through the caches, and non-temporal stores into those cached lines
// measured slower than plain ones (2^26 float32, 1 thread, ns per element,
// plain -> streamed: relu 0.88 -> 1.17, 512x131072 softmax 1.14 -> 1.55),
// while into an output written before they are faster (relu 0.54 -> 0.30).
bool stream_output(const void* out, int64_t bytes);
// The same for the softmax rows, whose short-row trade-offs were measured
// with large outputs only: from kStreamBytes.
bool stream_large_output(const void* out, int64_t bytes);

// Whether outputs between one L2 per thread and kStreamBytes stream too. The
// L3 of some machines serves a core little faster than memory: on a 2-vCPU
// Xeon with a 2 MiB L2 and a 260 MiB L3, relu forward over 2^20 float32
// elements (1 thread) took 0.31 ns per element with plain stores and 0.25
// streamed, np.copyto 0.32 (1 thread: even at 2^18, streamed faster from
// 2^19; 2 threads: even at 2^19, faster from 2^20), while the EPYC of
// kStreamBytes above was 2.4x faster plain. So it is measured once per
// process, on first use: the relu kernel over an output of two L2s (inputs
// and output L3-resident), median of 7 alternating plain and streamed calls;
// streaming is taken if it is at least 10% faster. NNFUSE_STREAM_MID_SIZE=1
// or 0 sets the answer instead.
bool stream_mid_size();

// One elementwise activation over elements [begin, end). `in` is x (forward,
// backward_from_x) or y (backward_from_y); `grad` is unused by the forward.
struct ActRange {
  ActOp op;
  ActDirection direction;
  DType dtype;
  const void* in;
  const void* grad;
  void* out;
  double p0, p1;
  // Elements of the whole call (all threads' ranges together): a large call
  // prefetches its inputs (kernels/isa.h, large_output).
  int64_t total = 0;
  bool stream = false;  // non-temporal stores for the output (stream_output, set by the dispatch)
};

// PReLU over a tensor viewed as rows of (channels, inner) elements; weight has
// `channels` elements. With one shared weight (channels == 1) the data is cut
// into fixed-size rows of `inner` elements and the last row may be short, so
// `total` (the element count) bounds every row.
struct PreluRange {
  DType dtype;
  int64_t total;
  const void* x;
  const void* grad;     // backward only
  const void* weight;
  void* out;            // y (forward) or grad_x (backward)
  double* weight_grad_partial;  // backward: `channels` doubles for the row range
  int64_t channels, inner;
};

// rrelu in training mode: element i's slope comes from Philox(seed, offset, i).
struct RreluRange {
  DType dtype;
  const void* x;
  const void* grad;     // nullptr: forward
  void* out;
  double lower, upper;
  uint64_t seed, offset;
};

struct CpuKernelTable {
  const char* isa_name;
  // Does the activation `op` support backward_from_y?
  bool (*activation_has_bwd_from_y)(ActOp op);
  void (*activation)(const ActRange& r, int64_t begin, int64_t end);
  void (*prelu_forward)(const PreluRange& r, int64_t row_begin, int64_t row_end);
  void (*prelu_backward)(const PreluRange& r, int64_t row_begin, int64_t row_end);
  void (*rrelu_training)(const RreluRange& r, int64_t begin, int64_t end);
};

}  // namespace nnfuse
