// Multi-tensor optimizer step on the CPU: the gradient pass (norms and the
// non-finite check, deterministic), the clip factors, and the fused update
// pass, each threaded across the whole list of arrays.
#pragma once

#include <functional>
#include <vector>

#include "cpu/optim_api.h"

namespace nnfuse {

enum class ClipMode : int32_t { none = 0, value = 1, norm = 2, global_norm = 3 };
enum class NonfinitePolicy : int32_t { skip = 0, zero = 1, propagate = 2 };

struct OptimStepOptions {
  ClipMode clip_mode = ClipMode::none;
  double clip = 0.0;  // clipnorm / global_clipnorm (clipvalue travels in OptimConfig)
  NonfinitePolicy nonfinite = NonfinitePolicy::skip;
  bool keras = false;  // global clip factor c / max(norm, c) instead of min(1, c / (norm + 1e-6))
  // Receives the local sum of squares, returns the global one (sharded
  // parameters); empty: the local sum is the global one.
  std::function<double(double)> reduce;
};

struct OptimStepResult {
  bool has_norm = false;
  double grad_norm = 0.0;    // global norm before clipping (when the gradient pass ran)
  double clip_factor = 1.0;  // global factor, or the smallest per-array factor (clipnorm)
  bool skipped = false;
};

// Whether the update loop prefetches its inputs a few lines ahead
// (prefetch_ahead). It paid on an Intel Xeon and cost on an AMD EPYC (Zen 4).
// Adam over 100 float32 arrays, median ns per parameter, without -> with:
// Xeon, global_clipnorm, 2^24 parameters in all, 1.91 -> 1.66 on 1 thread,
// 0.96 -> 0.83 on 2 (2^20 in all: unchanged); EPYC, three alternating runs
// of NNFUSE_OPTIM_PREFETCH=0 / 1, 1 thread, 2^24: global_clipnorm
// 1.00-1.05 -> 1.06-1.08, clipvalue 0.88-0.91 -> 0.95-0.98; 2^20: 0.84-0.85
// -> 0.90-0.93 and 0.75-0.77 -> 0.83-0.86; 2 threads even at 2^24, 0.47-0.48
// -> 0.51-0.53 and 0.41-0.42 -> 0.44-0.47 at 2^20. So it is on unless CPUID
// names an AMD CPU; NNFUSE_OPTIM_PREFETCH=1 or 0 sets it instead. The same
// bits either way.
bool optim_prefetch();

// The gradient pass runs when clipping by a norm or when nonfinite == skip
// (the skip decision must precede every write). `tensors[i].scale` is
// overwritten with the factor applied to array i.
OptimStepResult run_optim_step(const OptimConfig& config, std::vector<OptimTensor>& tensors,
                               const OptimStepOptions& options);

// Per-array sums of squares and the global flags, exposed for tests and for
// callers that only want the norm.
struct GradNorms {
  std::vector<double> sumsq;     // per array; in the 2^-1200-scaled domain when scaled[i]
  std::vector<char> scaled;
  bool nonfinite = false;
};
GradNorms run_grad_norms(DType dtype, const std::vector<OptimTensor>& tensors, bool zero_nonfinite);

}  // namespace nnfuse
