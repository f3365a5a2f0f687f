// The contract between the optimizer dispatch (baseline flags) and the
// optimizer kernels compiled once per instruction set (kernels/optim.cpp).
// Plain types only, like cpu_api.h.
#pragma once

#include <cstdint>

#include "cpu/cpu_api.h"

namespace nnfuse {

enum class OptimKind : int32_t { adam = 0, sgd = 1, rmsprop = 2, adagrad = 3 };

// One parameter array and everything its update touches. state[k] is null
// when the configuration does not use state k; master is the float32 copy of
// a float16/bfloat16 parameter (master_weights=True) or null. State and master
// arrays hold float64 for float64 parameters and float32 otherwise.
struct OptimTensor {
  void* param;
  const void* grad;
  void* state[3];
  void* master;
  int64_t n;
  float scale;         // clip factor applied to this array's gradient (1: none)
  double scale_double;  // the same factor for float64 parameters
};

struct OptimConfig {
  OptimKind kind;
  DType dtype;       // of params and grads
  uint32_t flags;    // OptimFlag bits (nnfuse/ops/optim.h)
  double clip;       // clipvalue (kOptClamp)
  double hyper[12];  // per-optimizer scalars, order fixed by each functor's Hyper
  bool prefetch;     // the update loop prefetches its inputs (set by the dispatch: optim_prefetch)
};

// Sum of squares of one block of a gradient, in double, in an order fixed by
// the block's length alone. `nonfinite`: some element is NaN or +-inf (under
// the zero policy those count as 0 and the flag is still set). float64 blocks
// whose squares overflow although every element is finite are summed again
// scaled by 2^-1200 (`scaled` = 1); float inputs never overflow a double.
struct GradBlockStats {
  double sumsq;
  int32_t nonfinite;
  int32_t scaled;
};

struct OptimKernelTable {
  const char* isa_name;
  void (*grad_stats)(DType dtype, const void* grad, int64_t begin, int64_t end, bool zero_nonfinite,
                     GradBlockStats* out);
  // Updates elements [begin, end) of one tensor.
  void (*update)(const OptimConfig& c, const OptimTensor& t, int64_t begin, int64_t end);
};

}  // namespace nnfuse
