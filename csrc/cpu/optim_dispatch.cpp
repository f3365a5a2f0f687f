#include "cpu/optim_dispatch.h"

#include <algorithm>
#include <cmath>

#include "cpu/dispatch.h"
#include "cpu/parallel.h"

namespace nnfuse {
NNF_DECLARE_ISA_TABLES(OptimKernelTable, optim_kernel_table)

namespace {

const OptimKernelTable& optim_kernels() {
  return pick_isa_table(isa_scalar::optim_kernel_table, isa_avx2::optim_kernel_table,
                        isa_avx512::optim_kernel_table);
}

// Gradient-pass blocks: fixed 64K-element pieces of each array, so the
// partial sums, and the order they are combined in, depend on the shapes
// alone and never on the thread count.
constexpr int64_t kNormBlock = 1 << 16;
// Scaled sums live in the 2^-1200 domain; a plain sum joins one as
// ldexp(s, -1200) (2^1200 itself is beyond double's range: dividing by it
// dropped the plain sum).
constexpr int kScaledSumExponent = -1200;
constexpr double kTwoPow600 = 0x1p600;

struct Block {
  int32_t tensor;
  int64_t begin, end;
};

}  // namespace

bool optim_prefetch() {
  static const bool value = env_switch("NNFUSE_OPTIM_PREFETCH", [] { return !cpu_vendor_is_amd(); });
  return value;
}

GradNorms run_grad_norms(DType dtype, const std::vector<OptimTensor>& tensors, bool zero_nonfinite) {
  const OptimKernelTable& table = optim_kernels();
  std::vector<Block> blocks;
  int64_t total = 0;
  for (size_t t = 0; t < tensors.size(); ++t) {
    for (int64_t b = 0; b < tensors[t].n; b += kNormBlock)
      blocks.push_back({static_cast<int32_t>(t), b, std::min(tensors[t].n, b + kNormBlock)});
    total += tensors[t].n;
  }
  std::vector<GradBlockStats> stats(blocks.size());
  int64_t nblocks = static_cast<int64_t>(blocks.size());
  // One chunk unless there is work for two threads of kMinElementsPerThread elements.
  int64_t min_blocks = total >= 2 * kMinElementsPerThread ? 1 : std::max<int64_t>(1, nblocks);
  parallel_for(nblocks, min_blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const Block& blk = blocks[static_cast<size_t>(b)];
      table.grad_stats(dtype, tensors[static_cast<size_t>(blk.tensor)].grad, blk.begin, blk.end, zero_nonfinite,
                       &stats[static_cast<size_t>(b)]);
    }
  });
  GradNorms out;
  out.sumsq.assign(tensors.size(), 0.0);
  out.scaled.assign(tensors.size(), 0);
  for (size_t b = 0; b < blocks.size(); ++b) out.scaled[static_cast<size_t>(blocks[b].tensor)] |= stats[b].scaled;
  for (size_t b = 0; b < blocks.size(); ++b) {
    size_t t = static_cast<size_t>(blocks[b].tensor);
    double s = stats[b].sumsq;
    if (out.scaled[t] && !stats[b].scaled) s = std::ldexp(s, kScaledSumExponent);
    out.sumsq[t] += s;
    out.nonfinite |= stats[b].nonfinite != 0;
  }
  return out;
}

namespace {

// sqrt of a sum of squares kept in either domain.
double norm_of(double sumsq, bool scaled) { return scaled ? std::sqrt(sumsq) * kTwoPow600 : std::sqrt(sumsq); }

// PyTorch clip_grad_norm_: min(1, c / (norm + 1e-6)); Keras: c / max(norm, c).
// A NaN norm gives a NaN factor in both (propagate policy).
double global_factor(double norm, double c, bool keras) {
  if (std::isnan(norm)) return norm;
  if (keras) return c / std::max(norm, c);
  return std::min(1.0, c / (norm + 1e-6));
}

void run_update(const OptimConfig& base, const std::vector<OptimTensor>& tensors) {
  const OptimKernelTable& table = optim_kernels();
  OptimConfig config = base;
  config.prefetch = optim_prefetch();
  // Threads split the concatenation of all arrays into equal element ranges,
  // so 1000 small arrays and one large one balance alike.
  std::vector<int64_t> offsets(tensors.size() + 1, 0);
  for (size_t t = 0; t < tensors.size(); ++t) offsets[t + 1] = offsets[t] + tensors[t].n;
  int64_t total = offsets.back();
  parallel_for(total, kMinElementsPerThread, 64, [&](int64_t begin, int64_t end) {
    size_t t = static_cast<size_t>(std::upper_bound(offsets.begin(), offsets.end(), begin) - offsets.begin()) - 1;
    for (; t < tensors.size() && offsets[t] < end; ++t) {
      int64_t lo = std::max(begin, offsets[t]) - offsets[t];
      int64_t hi = std::min(end, offsets[t + 1]) - offsets[t];
      if (lo < hi) table.update(config, tensors[t], lo, hi);
    }
  });
}

}  // namespace

OptimStepResult run_optim_step(const OptimConfig& config, std::vector<OptimTensor>& tensors,
                               const OptimStepOptions& options) {
  OptimStepResult result;
  for (auto& t : tensors) {
    t.scale = 1.0f;
    t.scale_double = 1.0;
  }
  bool by_norm = options.clip_mode == ClipMode::norm || options.clip_mode == ClipMode::global_norm;
  bool need_pass = by_norm || options.nonfinite == NonfinitePolicy::skip;
  if (need_pass) {
    GradNorms norms = run_grad_norms(config.dtype, tensors, options.nonfinite == NonfinitePolicy::zero);
    bool any_scaled = std::any_of(norms.scaled.begin(), norms.scaled.end(), [](char s) { return s != 0; });
    double local = 0.0;
    for (size_t t = 0; t < tensors.size(); ++t)
      local += any_scaled && !norms.scaled[t] ? std::ldexp(norms.sumsq[t], kScaledSumExponent) : norms.sumsq[t];
    double global = local;
    if (options.reduce) {
      // The reducer sees plain sums; a float64 sum that overflows is passed
      // as +inf (see the Python docstring).
      global = options.reduce(any_scaled ? HUGE_VAL : local);
      any_scaled = false;
    }
    result.has_norm = true;
    result.grad_norm = norm_of(global, any_scaled);
    bool nonfinite = norms.nonfinite || (options.reduce && !std::isfinite(global));
    if (options.nonfinite == NonfinitePolicy::skip && nonfinite) {
      result.skipped = true;
      return result;
    }
    if (options.clip_mode == ClipMode::global_norm) {
      double f = global_factor(result.grad_norm, options.clip, options.keras);
      result.clip_factor = f;
      for (auto& t : tensors) {
        t.scale = static_cast<float>(f);
        t.scale_double = f;
      }
    } else if (options.clip_mode == ClipMode::norm) {
      // Keras clip_by_norm per array: g * c / max(||g||, c).
      double smallest = 1.0;
      for (size_t i = 0; i < tensors.size(); ++i) {
        double norm = norm_of(norms.sumsq[i], norms.scaled[i] != 0);
        double f = std::isnan(norm) ? norm : options.clip / std::max(norm, options.clip);
        tensors[i].scale = static_cast<float>(f);
        tensors[i].scale_double = f;
        // The record keeps the smallest factor; a NaN factor (a non-finite
        // array norm under "propagate") stays NaN once seen.
        if (!(f >= smallest) && !std::isnan(smallest)) smallest = f;
      }
      result.clip_factor = smallest;
    }
  }
  run_update(config, tensors);
  return result;
}

}  // namespace nnfuse
