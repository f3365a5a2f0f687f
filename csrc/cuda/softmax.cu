// CUDA softmax family: softmax, log-softmax, their backward passes and the
// fused softmax cross-entropy. The per-element math is that of the CPU kernels
// (nnfuse/ops/softmax.h: softmax_term, softmax_out, log_softmax_out, the
// backward outputs, cross_entropy_grad / _label_grad / _loss), instantiated at
// V = float (float32, float16, bfloat16) and V = double (float64).
//
// Rows are contiguous runs of `cols` elements. Two layouts, chosen by cols:
// - cols < kLongRow (65536): one team of threads per row (a warp up to 256
//   columns, a block of 128 to 1024 threads above; with_team_layout), each
//   thread holding up to 8 elements in registers, so a row of up to 8192
//   elements is read once; longer ones go through tiles re-read from L2.
// - cols >= kLongRow: several blocks per row. Each block reduces a chunk of
//   kChunk elements to a partial (chunk max, sum of e^(z - chunk max)) — the
//   online normaliser — and one thread per row combines the partials in chunk
//   order; a last kernel writes the outputs.
// Within a row each thread accumulates its elements in increasing order in
// double, then a fixed butterfly over the warp and a fixed sequential pass over
// the block's warps: the result depends only on the row's values and length,
// never on timing.
//
// CPU-GPU consistency: every element goes through the same functions as on the
// CPU, with --fmad=false. The row sums (S, sum g y, sum g) are added in another
// order than the CPU's 16 compensated lanes, so they can differ in the last
// bits of a double; 1/S, log S and the dot product rounded to float then differ
// in rare rows by one unit, and the output by about one ULP there. The tests
// report the maximum CPU-GPU ULP difference per op and dtype.
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cpu/dtype_dispatch.h"
#include "cuda/cuda_api.h"
#include "cuda/round_from_double.cuh"
#include "nnfuse/common/dtypes.h"
#include "nnfuse/ops/softmax.h"

NNF_NS_BEGIN

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kLongRow = 65536;
constexpr int64_t kChunk = 16384;
// The cross-entropy workspace keeps the label check's two 64-bit counts in
// two doubles' room after the per-row losses.
constexpr int64_t kLabelStatsDoubles = 2;
// Blocks of the label check: enough to spread a batch's labels over the chip.
constexpr int kLabelCheckBlocks = 256;

// Label smoothing sums the logits times 2^-40 (float) / 2^-80 (double), as the
// CPU: exact, and the sum of a row of values near the type's maximum stays finite.
template <class S>
struct LogitSumScale {
  static constexpr double value = 9.094947017729282379150390625e-13;  // 2^-40
};
template <>
struct LogitSumScale<double> {
  static constexpr double value = 8.27180612553027674871408692069962853565812110900878906250e-25;  // 2^-80
};

template <class T>
__device__ __forceinline__ compute_t<T> load(const T* p, int64_t i) {
  return to_float(p[i]);
}

template <class T>
__device__ __forceinline__ void store(T* p, int64_t i, compute_t<T> v) {
  p[i] = StoreAs<T>::from(v);
}

// The logit scale * x of element i (-inf where the mask excludes it).
template <class T>
__device__ __forceinline__ compute_t<T> logit(const T* x, const uint8_t* keep, int64_t i, compute_t<T> scale) {
  using S = compute_t<T>;
  S z = load(x, i) * scale;
  if (keep != nullptr && keep[i] == 0) z = static_cast<S>(smx::neg_inf_d());
  return z;
}

// ---- team reductions ---------------------------------------------------------
// A team is a warp (TEAM == 32) or the whole block (TEAM threads, a multiple
// of 32 up to 1024). The result is computed in a fixed order and broadcast, so
// every thread of the team holds the same bits. `shared` holds TEAM / 32
// values (block teams only).

struct SumOp {
  __device__ __forceinline__ double operator()(double a, double b) const { return a + b; }
};
struct MaxOp {
  template <class S>
  __device__ __forceinline__ S operator()(S a, S b) const {
    return smx::max_nan(a, b);
  }
};

template <int TEAM>
__device__ __forceinline__ int team_rank() {
  return TEAM == 32 ? static_cast<int>(threadIdx.x & 31) : static_cast<int>(threadIdx.x);
}

template <int TEAM, class U, class Op>
__device__ __forceinline__ U team_reduce(U v, Op op, U* shared) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  v = __shfl_sync(0xffffffffu, v, 0);
  if constexpr (TEAM == 32) {
    return v;
  } else {
    if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
    __syncthreads();
    U r = shared[0];
#pragma unroll
    for (int w = 1; w < TEAM / 32; ++w) r = op(r, shared[w]);
    __syncthreads();  // shared may be reused right away
    return r;
  }
}

// Scratch of one block for its team reductions (up to 1024 threads).
constexpr int kMaxWarps = 32;
struct TeamShared {
  double d[kMaxWarps];
  float f[kMaxWarps];
};

template <int TEAM, class S>
__device__ __forceinline__ S* shared_of(TeamShared& s) {
  if constexpr (TEAM == 32) {
    return nullptr;
  } else if constexpr (std::is_same_v<S, double>) {
    return s.d;
  } else {
    return s.f;
  }
}

// ---- statistics of a range [lo, hi) of a row, reduced over the team ----------

// Max of the logits (NaN if any is NaN).
template <int TEAM, class T>
__device__ compute_t<T> range_max(const T* x, const uint8_t* keep, int64_t lo, int64_t hi, compute_t<T> scale,
                                  TeamShared& sh) {
  using S = compute_t<T>;
  S m = static_cast<S>(smx::neg_inf_d());
  for (int64_t i = lo + team_rank<TEAM>(); i < hi; i += TEAM) m = smx::max_nan(m, logit(x, keep, i, scale));
  return team_reduce<TEAM>(m, MaxOp{}, shared_of<TEAM, S>(sh));
}

// Sum of e^(z - m) in double (m > -inf), and with kSumLogits the sum of
// x * LogitSumScale (label smoothing).
template <int TEAM, bool kSumLogits, class T>
__device__ double range_sum(const T* x, const uint8_t* keep, int64_t lo, int64_t hi, compute_t<T> scale,
                            compute_t<T> m, double* sum_logits, TeamShared& sh) {
  using S = compute_t<T>;
  double s = 0.0, zs = 0.0;
  for (int64_t i = lo + team_rank<TEAM>(); i < hi; i += TEAM) {
    s += static_cast<double>(softmax_term(logit(x, keep, i, scale), m));
    if constexpr (kSumLogits) zs += static_cast<double>(load(x, i) * static_cast<S>(LogitSumScale<S>::value));
  }
  s = team_reduce<TEAM>(s, SumOp{}, sh.d);
  if constexpr (kSumLogits) *sum_logits = team_reduce<TEAM>(zs, SumOp{}, sh.d);
  return s;
}

// The row statistics of [lo, hi): (max, sum against that max[, sum of logits]).
template <int TEAM, bool kSumLogits, class T>
__device__ void range_norm(const T* x, const uint8_t* keep, int64_t lo, int64_t hi, compute_t<T> scale,
                           TeamShared& sh, double& max, double& sum, double* sum_logits) {
  using S = compute_t<T>;
  const S m = range_max<TEAM>(x, keep, lo, hi, scale, sh);
  max = static_cast<double>(m);
  sum = 0.0;
  if (max == smx::neg_inf_d()) {
    // Nothing kept: no terms (as the CPU). The logit sum is still needed.
    if constexpr (kSumLogits) {
      double zs = 0.0;
      for (int64_t i = lo + team_rank<TEAM>(); i < hi; i += TEAM)
        zs += static_cast<double>(load(x, i) * static_cast<S>(LogitSumScale<S>::value));
      *sum_logits = team_reduce<TEAM>(zs, SumOp{}, sh.d);
    }
    return;
  }
  sum = range_sum<TEAM, kSumLogits>(x, keep, lo, hi, scale, m, sum_logits, sh);
}

// Sum of g * y (softmax) or of g (log-softmax) in double.
template <int TEAM, class T>
__device__ double range_dot(bool log, const T* g, const T* y, int64_t lo, int64_t hi, TeamShared& sh) {
  double s = 0.0;
  for (int64_t i = lo + team_rank<TEAM>(); i < hi; i += TEAM)
    s += static_cast<double>(log ? load(g, i) : softmax_bwd_term(load(g, i), load(y, i)));
  return team_reduce<TEAM>(s, SumOp{}, sh.d);
}

// Absorbs a chunk partial (cm, cs: sum of e^(z - cm)) into the running (M, S),
// in double. Empty chunks (cm = -inf) add nothing; a NaN makes the row NaN.
__device__ __forceinline__ void absorb_partial(double& M, double& S, double cm, double cs) {
  if (cm == smx::neg_inf_d()) return;
  if (cm != cm || M != M) {
    M = cm != cm ? cm : M;
    S = M;
    return;
  }
  if (cm > M) {
    S = S * exp(M - cm) + cs;  // M = -inf: 0 * 0
    M = cm;
  } else {
    S = S + cs * exp(cm - M);
  }
}

// ---- outputs of a range, given the row statistics ----------------------------

struct ForwardArgs {
  bool log;
  bool masked_rows_nan;
  const void* x;
  const uint8_t* keep;  // nullptr or one byte per element, nonzero keeps it
  void* out;
  int64_t rows, cols;
  double scale;
};

template <int TEAM, class T>
__device__ void forward_write(const ForwardArgs& a, const T* x, const uint8_t* keep, T* y, int64_t lo, int64_t hi,
                              double max, double sum) {
  using S = compute_t<T>;
  const S scale = static_cast<S>(a.scale);
  const int64_t first = lo + team_rank<TEAM>();
  if (max == smx::neg_inf_d()) {
    // No position left: zeros (log: -inf), or NaN as PyTorch.
    const S fill = a.masked_rows_nan ? static_cast<S>(vmath::nan_f())
                                     : (a.log ? static_cast<S>(smx::neg_inf_d()) : S(0));
    for (int64_t i = first; i < hi; i += TEAM) store(y, i, fill);
    return;
  }
  const S m = static_cast<S>(max);
  if (a.log) {
    const double log_sum = log(sum);
    const S hi_part = static_cast<S>(log_sum);
    const S lo_part = static_cast<S>(log_sum - static_cast<double>(hi_part));
    for (int64_t i = first; i < hi; i += TEAM)
      store(y, i, log_softmax_out(logit(x, keep, i, scale), m, hi_part, lo_part));
  } else {
    const S inv = static_cast<S>(1.0 / sum);
    for (int64_t i = first; i < hi; i += TEAM) store(y, i, softmax_out(logit(x, keep, i, scale), m, inv));
  }
}

// Rows handled by one team: warps take rows blockIdx * kWarps + warp, blocks
// take row blockIdx; both stride over the grid.
template <int TEAM>
__device__ __forceinline__ int64_t first_row() {
  return TEAM == 32 ? static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5) : blockIdx.x;
}
template <int TEAM>
__device__ __forceinline__ int64_t row_stride() {
  return TEAM == 32 ? static_cast<int64_t>(gridDim.x) * kWarps : gridDim.x;
}

// ---- rows held by one team ---------------------------------------------------------
// A row of at most TEAM * E elements is read once, into registers: thread r of
// the team holds elements r + j TEAM (j < E), so each load is coalesced over
// the team and every thread has E independent loads in flight; the max, sum
// and output passes then work on those registers. Longer rows (below
// kLongRow) take the same layout tile by tile (TEAM * E elements), re-read in
// each pass. Either way thread r adds its elements in increasing order, so a
// row's sums, and its bits, do not depend on whether it was held.
//
// Warp teams share blocks of kThreads threads (kWarps rows per block); a
// block team is the whole block.
template <int TEAM>
constexpr int block_threads() {
  return TEAM == 32 ? kThreads : TEAM;
}

// f(j, i) for the thread's elements i of the tile that starts at `tile`.
template <int TEAM, int E, class F>
__device__ __forceinline__ void for_tile(int64_t tile, F&& f) {
#pragma unroll
  for (int j = 0; j < E; ++j) f(j, tile + team_rank<TEAM>() + static_cast<int64_t>(j) * TEAM);
}

// Runs pass(tile) over the row: once for a held row (its tile already loaded),
// else for each tile after load(tile).
template <int64_t kTile, class Load, class Pass>
__device__ __forceinline__ void over_row(bool held, int64_t n, Load&& load, Pass&& pass) {
  if (held) {
    pass(int64_t(0));
    return;
  }
  for (int64_t tile = 0; tile < n; tile += kTile) {
    load(tile);
    pass(tile);
  }
}

// The row sum S of the terms e^(z - M): terms equal to 1 (z = M) are counted
// apart and S = count + the rest, rounded once, so that log S near 0 (one
// dominant logit) keeps the rest's accuracy. Adding 1 and the small terms in
// one double sum lost a few units of 2^-53: a float32 log-softmax element of
// -8.6e-13 came out 3.7 ULP of its floor off (tests/test_cuda_softmax.py).
template <class S>
__device__ __forceinline__ void add_term(S e, double& rest, double& ones) {
  if (e == S(1)) {
    ones += 1.0;
  } else {
    rest += static_cast<double>(e);
  }
}
template <int TEAM>
__device__ __forceinline__ double row_sum(double rest, double ones, TeamShared& sh) {
  rest = team_reduce<TEAM>(rest, SumOp{}, sh.d);
  return team_reduce<TEAM>(ones, SumOp{}, sh.d) + rest;
}

struct MinOp {
  template <class S>
  __device__ __forceinline__ S operator()(S a, S b) const {
    return b < a ? b : a;
  }
};

// Softmax and log-softmax forward. Float32 rows take the CPU's float32 forms
// (kernels/softmax.cpp): each term e = e^(z - M), or e^(z - K ln2) for
// shiftable softmax rows, computed once and scaled by 1/S
// (softmax_normalize), and log_softmax_out_rounded; the other dtypes the
// forms of the CPU's generic rows (softmax_out, log_softmax_out).
template <int TEAM, int E, class T>
__global__ void __launch_bounds__(block_threads<TEAM>()) forward_team_kernel(ForwardArgs a) {
  __shared__ TeamShared sh;
  using S = compute_t<T>;
  constexpr bool kF32 = std::is_same_v<T, float>;
  constexpr int64_t kTile = static_cast<int64_t>(TEAM) * E;
  const S scale = static_cast<S>(a.scale);
  const S ninf = static_cast<S>(smx::neg_inf_d());
  const int64_t n = a.cols;
  const bool held = n <= kTile;
  for (int64_t row = first_row<TEAM>(); row < a.rows; row += row_stride<TEAM>()) {
    const int64_t base = row * n;
    const T* x = static_cast<const T*>(a.x) + base;
    const uint8_t* keep = a.keep != nullptr ? a.keep + base : nullptr;
    T* y = static_cast<T*>(a.out) + base;
    S z[E];
    auto load_tile = [&](int64_t tile) {
      for_tile<TEAM, E>(tile, [&](int j, int64_t i) { z[j] = i < n ? logit(x, keep, i, scale) : ninf; });
    };
    if (held) load_tile(0);
    // Only float32 softmax rows that may take shifted terms need the minimum.
    const bool may_shift = kF32 && !a.log && keep == nullptr && n > kUnshiftedSoftmaxRowMax;
    S mx = ninf, mn = -ninf;
    over_row<kTile>(held, n, load_tile, [&](int64_t tile) {
      for_tile<TEAM, E>(tile, [&](int j, int64_t i) {
        if (i < n) {
          mx = smx::max_nan(mx, z[j]);
          if (may_shift) mn = MinOp{}(mn, z[j]);
        }
      });
    });
    mx = team_reduce<TEAM>(mx, MaxOp{}, shared_of<TEAM, S>(sh));
    if (mx == ninf) {
      // No position left: zeros (log: -inf), or NaN as PyTorch.
      const S fill = a.masked_rows_nan ? static_cast<S>(vmath::nan_f()) : (a.log ? ninf : S(0));
      for (int64_t i = team_rank<TEAM>(); i < n; i += TEAM) store(y, i, fill);
      continue;
    }
    bool shifted = false;
    S shift = S(0);
    if constexpr (kF32) {
      if (may_shift) {
        mn = team_reduce<TEAM>(mn, MinOp{}, shared_of<TEAM, S>(sh));
        shifted = softmax_shiftable_range(mn, mx);
        if (shifted) shift = softmax_shift(mx);
      }
    }
    // Float32 softmax keeps its terms in z (held rows) for the output pass.
    const bool keep_terms = kF32 && !a.log;
    auto term = [&](S v) {
      if constexpr (kF32) {
        if (shifted) return softmax_term_shifted(v, shift);
      }
      return softmax_term(v, mx);
    };
    double s = 0.0, ones = 0.0;
    over_row<kTile>(held, n, load_tile, [&](int64_t tile) {
      for_tile<TEAM, E>(tile, [&](int j, int64_t i) {
        if (i < n) {
          const S e = term(z[j]);
          if (keep_terms) z[j] = e;
          add_term(e, s, ones);
        }
      });
    });
    s = row_sum<TEAM>(s, ones, sh);
    if (a.log) {
      const double log_sum = log(s);
      const S lhi = static_cast<S>(log_sum);
      const S llo = static_cast<S>(log_sum - static_cast<double>(lhi));
      over_row<kTile>(held, n, load_tile, [&](int64_t tile) {
        for_tile<TEAM, E>(tile, [&](int j, int64_t i) {
          if (i < n) {
            if constexpr (kF32) {
              store(y, i, log_softmax_out_rounded(z[j], mx, lhi, llo));
            } else {
              store(y, i, log_softmax_out(z[j], mx, lhi, llo));
            }
          }
        });
      });
    } else {
      const S inv = static_cast<S>(1.0 / s);
      over_row<kTile>(held, n, load_tile, [&](int64_t tile) {
        for_tile<TEAM, E>(tile, [&](int j, int64_t i) {
          if (i < n) {
            if constexpr (kF32) {
              store(y, i, softmax_normalize(held ? z[j] : term(z[j]), inv));
            } else {
              store(y, i, softmax_out(z[j], mx, inv));
            }
          }
        });
      });
    }
  }
}

// ---- long rows: chunks of several blocks ----------------------------------------
// partials[2 * (row * chunks + c)] = (chunk max, chunk sum); stats[2 * row] =
// (M, S) of the row.

__device__ __forceinline__ void chunk_of(int64_t item, int64_t chunks, int64_t cols, int64_t& row, int64_t& lo,
                                         int64_t& hi) {
  row = item / chunks;
  lo = (item - row * chunks) * kChunk;
  hi = lo + kChunk < cols ? lo + kChunk : cols;
}

template <class T>
__global__ void __launch_bounds__(kThreads) forward_partials_kernel(ForwardArgs a, int64_t chunks, double* partials) {
  __shared__ TeamShared sh;
  using S = compute_t<T>;
  const S scale = static_cast<S>(a.scale);
  for (int64_t item = blockIdx.x; item < a.rows * chunks; item += gridDim.x) {
    int64_t row, lo, hi;
    chunk_of(item, chunks, a.cols, row, lo, hi);
    const int64_t base = row * a.cols;
    double max, sum;
    range_norm<kThreads, false>(static_cast<const T*>(a.x) + base, a.keep != nullptr ? a.keep + base : nullptr, lo,
                                hi, scale, sh, max, sum, nullptr);
    if (threadIdx.x == 0) {
      partials[2 * item] = max;
      partials[2 * item + 1] = sum;
    }
  }
}

// One thread per row: the partials combined in chunk order.
__global__ void __launch_bounds__(kThreads)
    combine_partials_kernel(const double* partials, int64_t rows, int64_t chunks, double* stats) {
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kThreads) {
    double M = smx::neg_inf_d(), S = 0.0;
    for (int64_t c = 0; c < chunks; ++c) {
      const double* p = partials + 2 * (row * chunks + c);
      absorb_partial(M, S, p[0], p[1]);
    }
    stats[2 * row] = M;
    stats[2 * row + 1] = S;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) forward_chunks_kernel(ForwardArgs a, int64_t chunks, const double* stats) {
  for (int64_t item = blockIdx.x; item < a.rows * chunks; item += gridDim.x) {
    int64_t row, lo, hi;
    chunk_of(item, chunks, a.cols, row, lo, hi);
    const int64_t base = row * a.cols;
    forward_write<kThreads>(a, static_cast<const T*>(a.x) + base, a.keep != nullptr ? a.keep + base : nullptr,
                            static_cast<T*>(a.out) + base, lo, hi, stats[2 * row], stats[2 * row + 1]);
  }
}

// ---- backward --------------------------------------------------------------------

struct BackwardArgs {
  bool log;
  const void* grad;
  const void* y;
  void* out;
  int64_t rows, cols;
  double scale;
};

template <int TEAM, class T>
__device__ void backward_write(const BackwardArgs& a, const T* g, const T* y, T* dx, int64_t lo, int64_t hi,
                               double total) {
  using S = compute_t<T>;
  const S scale = static_cast<S>(a.scale);
  const S t = static_cast<S>(total);
  for (int64_t i = lo + team_rank<TEAM>(); i < hi; i += TEAM) {
    const S gv = load(g, i), yv = load(y, i);
    store(dx, i, a.log ? log_softmax_bwd_out(gv, yv, t, scale) : softmax_bwd_out(gv, yv, t, scale));
  }
}

// Softmax and log-softmax backward, rows held in registers (g and y) or in
// tiles, as forward_team_kernel. Every thread has read its g and y before the
// reduction returns, and writes only its own elements, so dx may be grad or y.
template <int TEAM, int E, class T>
__global__ void __launch_bounds__(block_threads<TEAM>()) backward_team_kernel(BackwardArgs a) {
  __shared__ TeamShared sh;
  using S = compute_t<T>;
  constexpr int64_t kTile = static_cast<int64_t>(TEAM) * E;
  const S scale = static_cast<S>(a.scale);
  const int64_t n = a.cols;
  const bool held = n <= kTile;
  for (int64_t row = first_row<TEAM>(); row < a.rows; row += row_stride<TEAM>()) {
    const int64_t base = row * n;
    const T* g = static_cast<const T*>(a.grad) + base;
    const T* y = static_cast<const T*>(a.y) + base;
    T* dx = static_cast<T*>(a.out) + base;
    S gv[E], yv[E];
    auto load_tile = [&](int64_t tile) {
      for_tile<TEAM, E>(tile, [&](int j, int64_t i) {
        gv[j] = i < n ? load(g, i) : S(0);
        yv[j] = i < n ? load(y, i) : S(0);
      });
    };
    if (held) load_tile(0);
    double dot = 0.0;
    over_row<kTile>(held, n, load_tile, [&](int64_t tile) {
      for_tile<TEAM, E>(tile, [&](int j, int64_t i) {
        if (i < n) dot += static_cast<double>(a.log ? gv[j] : softmax_bwd_term(gv[j], yv[j]));
      });
    });
    const S total = static_cast<S>(team_reduce<TEAM>(dot, SumOp{}, sh.d));
    over_row<kTile>(held, n, load_tile, [&](int64_t tile) {
      for_tile<TEAM, E>(tile, [&](int j, int64_t i) {
        if (i < n)
          store(dx, i, a.log ? log_softmax_bwd_out(gv[j], yv[j], total, scale)
                             : softmax_bwd_out(gv[j], yv[j], total, scale));
      });
    });
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) backward_partials_kernel(BackwardArgs a, int64_t chunks, double* partials) {
  __shared__ TeamShared sh;
  for (int64_t item = blockIdx.x; item < a.rows * chunks; item += gridDim.x) {
    int64_t row, lo, hi;
    chunk_of(item, chunks, a.cols, row, lo, hi);
    const int64_t base = row * a.cols;
    const double s = range_dot<kThreads>(a.log, static_cast<const T*>(a.grad) + base,
                                         static_cast<const T*>(a.y) + base, lo, hi, sh);
    if (threadIdx.x == 0) partials[item] = s;
  }
}

__global__ void __launch_bounds__(kThreads)
    sum_partials_kernel(const double* partials, int64_t rows, int64_t chunks, double* totals) {
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kThreads) {
    double s = 0.0;
    for (int64_t c = 0; c < chunks; ++c) s += partials[row * chunks + c];
    totals[row] = s;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    backward_chunks_kernel(BackwardArgs a, int64_t chunks, const double* totals) {
  for (int64_t item = blockIdx.x; item < a.rows * chunks; item += gridDim.x) {
    int64_t row, lo, hi;
    chunk_of(item, chunks, a.cols, row, lo, hi);
    const int64_t base = row * a.cols;
    backward_write<kThreads>(a, static_cast<const T*>(a.grad) + base, static_cast<const T*>(a.y) + base,
                             static_cast<T*>(a.out) + base, lo, hi, totals[row]);
  }
}

// ---- fused cross-entropy -----------------------------------------------------------

struct CrossEntropyArgs {
  const void* logits;
  const int64_t* labels;
  void* grad;      // may be the logits' buffer
  double* losses;  // per row, float64
  // (rows whose label is not ignore_index, the first row with a bad label as
  // ~row or 0 for none), from ce_label_check_kernel before the rows.
  const unsigned long long* label_stats;
  int64_t rows, cols, ignore_index;
  double smoothing, z_loss;
  bool mean;  // reduction "mean": the gradients are weighted by 1 / rows counted
};

// The reduction's weight of every row: 1 / rows counted for "mean" (1 when
// none is counted: no gradient is then written but zeros), else 1.
__device__ __forceinline__ double ce_weight(const CrossEntropyArgs& a) {
  const unsigned long long counted = a.label_stats[0];
  return a.mean && counted > 0 ? 1.0 / static_cast<double>(counted) : 1.0;
}

// The label check, ahead of the rows in the same stream: label_stats[0] +=
// the labels that are not ignore_index, label_stats[1] = max(~row) over the
// rows whose label is neither ignore_index nor in [0, cols) (both zeroed
// before). Integer atomics: the same result in any order.
__global__ void __launch_bounds__(kThreads) ce_label_check_kernel(const int64_t* labels, int64_t rows, int64_t cols,
                                                                 int64_t ignore_index,
                                                                 unsigned long long* label_stats) {
  unsigned long long counted = 0, first_bad = 0;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t label = labels[row];
    if (label == ignore_index) continue;
    ++counted;
    if (label < 0 || label >= cols) {
      const unsigned long long mark = ~static_cast<unsigned long long>(row);
      first_bad = mark > first_bad ? mark : first_bad;
    }
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    counted += __shfl_xor_sync(0xffffffffu, counted, offset);
    const unsigned long long other = __shfl_xor_sync(0xffffffffu, first_bad, offset);
    first_bad = other > first_bad ? other : first_bad;
  }
  if ((threadIdx.x & 31) == 0) {
    if (counted != 0) atomicAdd(&label_stats[0], counted);
    if (first_bad != 0) atomicMax(&label_stats[1], first_bad);
  }
}

__device__ __forceinline__ bool ce_skipped(const CrossEntropyArgs& a, int64_t label) {
  return label == a.ignore_index || label < 0 || label >= a.cols;
}

// The row's loss (written by the caller) and the gradient of [lo, hi) except
// the label's; `write_label` also writes the label's gradient.
template <int TEAM, class T>
__device__ void ce_write(const CrossEntropyArgs& a, const T* x, T* grad, int64_t label, int64_t lo, int64_t hi,
                         double max, double sum, double z_t, bool write_label) {
  using S = compute_t<T>;
  const double k = cross_entropy_k(a.z_loss, max, log(sum));
  const double n = static_cast<double>(a.cols);
  const S m = static_cast<S>(max);
  const double w = ce_weight(a);
  const S ca = static_cast<S>(w * k / sum), cb = static_cast<S>(cross_entropy_b(w, a.smoothing, n));
  for (int64_t i = lo + team_rank<TEAM>(); i < hi; i += TEAM)
    if (i != label) store(grad, i, cross_entropy_grad(load(x, i), m, ca, cb));
  if (write_label && team_rank<TEAM>() == 0)
    store(grad, label, static_cast<S>(cross_entropy_label_grad(z_t, max, sum, w, k, a.smoothing, n)));
}

template <class S>
__device__ __forceinline__ double ce_loss(const CrossEntropyArgs& a, double z_t, double max, double log_sum,
                                          double sum_logits) {
  const double mean_z = (sum_logits / static_cast<double>(a.cols)) / LogitSumScale<S>::value;
  return cross_entropy_loss(z_t, max, log_sum, mean_z, a.smoothing, a.z_loss);
}

// The fused cross-entropy of rows held in registers or in tiles, as
// forward_team_kernel. Float32 rows take the CPU's float32 forms (the terms
// kept, the gradient a e - b as cross_entropy_grad_from_exp); every dtype but
// float64 sums a confident row's other terms apart (confident_row), as the
// CPU. The label's logit is read before any thread writes the gradient (in
// place), and each thread writes only its own elements.
template <int TEAM, int E, class T>
__global__ void __launch_bounds__(block_threads<TEAM>()) ce_team_kernel(CrossEntropyArgs a) {
  __shared__ TeamShared sh;
  using S = compute_t<T>;
  constexpr bool kF32 = std::is_same_v<T, float>;
  constexpr int64_t kTile = static_cast<int64_t>(TEAM) * E;
  const S ninf = static_cast<S>(smx::neg_inf_d());
  const int64_t n = a.cols;
  const bool held = n <= kTile;
  const double w = ce_weight(a), classes = static_cast<double>(n);
  for (int64_t row = first_row<TEAM>(); row < a.rows; row += row_stride<TEAM>()) {
    const int64_t base = row * n;
    const T* x = static_cast<const T*>(a.logits) + base;
    T* grad = static_cast<T*>(a.grad) + base;
    const int64_t label = a.labels[row];
    if (ce_skipped(a, label)) {
      // Labels outside [0, cols) are never read (the check reports them).
      if (team_rank<TEAM>() == 0) a.losses[row] = label == a.ignore_index ? 0.0 : static_cast<double>(vmath::nan_f());
      for (int64_t i = team_rank<TEAM>(); i < n; i += TEAM) store(grad, i, S(0));
      continue;
    }
    const double z_t = static_cast<double>(load(x, label));
    S z[E];
    auto load_tile = [&](int64_t tile) {
      for_tile<TEAM, E>(tile, [&](int j, int64_t i) { z[j] = i < n ? load(x, i) : ninf; });
    };
    if (held) load_tile(0);
    S mx = ninf;
    double zs = 0.0;
    over_row<kTile>(held, n, load_tile, [&](int64_t tile) {
      for_tile<TEAM, E>(tile, [&](int j, int64_t i) {
        if (i < n) {
          mx = smx::max_nan(mx, z[j]);
          if (a.smoothing != 0.0) zs += static_cast<double>(z[j] * static_cast<S>(LogitSumScale<S>::value));
        }
      });
    });
    mx = team_reduce<TEAM>(mx, MaxOp{}, shared_of<TEAM, S>(sh));
    const double sum_logits = a.smoothing != 0.0 ? team_reduce<TEAM>(zs, SumOp{}, sh.d) : 0.0;
    const double max = static_cast<double>(mx);
    // A row of -inf logits has no terms (S = 0), as the CPU.
    const bool terms_held = kF32 && held && mx != ninf;
    double s = 0.0, ones = 0.0;
    if (mx != ninf) {
      over_row<kTile>(held, n, load_tile, [&](int64_t tile) {
        for_tile<TEAM, E>(tile, [&](int j, int64_t i) {
          if (i < n) {
            const S e = softmax_term(z[j], mx);
            if (terms_held) z[j] = e;
            add_term(e, s, ones);
          }
        });
      });
      s = row_sum<TEAM>(s, ones, sh);
    }
    bool confident = false;
    double rest = 0.0;
    if constexpr (!std::is_same_v<S, double>) {
      confident = confident_row(z_t, max, s);
      if (confident) {
        double r = 0.0;
        over_row<kTile>(held, n, load_tile, [&](int64_t tile) {
          for_tile<TEAM, E>(tile, [&](int j, int64_t i) {
            if (i < n && i != label) r += static_cast<double>(terms_held ? z[j] : softmax_term(z[j], mx));
          });
        });
        rest = team_reduce<TEAM>(r, SumOp{}, sh.d);
      }
    }
    const double log_sum = confident ? log1p_small(rest) : log(s);
    if (team_rank<TEAM>() == 0) a.losses[row] = ce_loss<S>(a, z_t, max, log_sum, sum_logits);
    const double k = cross_entropy_k(a.z_loss, max, log_sum);
    const S ca = static_cast<S>(w * k / s), cb = static_cast<S>(cross_entropy_b(w, a.smoothing, classes));
    over_row<kTile>(held, n, load_tile, [&](int64_t tile) {
      for_tile<TEAM, E>(tile, [&](int j, int64_t i) {
        if (i < n && i != label) {
          if (kF32 && mx != ninf) {
            store(grad, i, cross_entropy_grad_from_exp(terms_held ? z[j] : softmax_term(z[j], mx), ca, cb));
          } else {
            store(grad, i, cross_entropy_grad(z[j], mx, ca, cb));
          }
        }
      });
    });
    if (team_rank<TEAM>() == 0)
      store(grad, label,
            static_cast<S>(confident ? cross_entropy_label_grad_from_rest(rest, s, w, k, a.smoothing, classes)
                                     : cross_entropy_label_grad(z_t, max, s, w, k, a.smoothing, classes)));
  }
}

// Long rows: partials[3 * item] = (chunk max, chunk sum, chunk logit sum).
template <class T>
__global__ void __launch_bounds__(kThreads) ce_partials_kernel(CrossEntropyArgs a, int64_t chunks, double* partials) {
  __shared__ TeamShared sh;
  using S = compute_t<T>;
  for (int64_t item = blockIdx.x; item < a.rows * chunks; item += gridDim.x) {
    int64_t row, lo, hi;
    chunk_of(item, chunks, a.cols, row, lo, hi);
    if (ce_skipped(a, a.labels[row])) continue;  // uniform over the block
    const T* x = static_cast<const T*>(a.logits) + row * a.cols;
    double max, sum, sum_logits = 0.0;
    if (a.smoothing != 0.0) {
      range_norm<kThreads, true>(x, static_cast<const uint8_t*>(nullptr), lo, hi, S(1), sh, max, sum, &sum_logits);
    } else {
      range_norm<kThreads, false>(x, static_cast<const uint8_t*>(nullptr), lo, hi, S(1), sh, max, sum, nullptr);
    }
    if (threadIdx.x == 0) {
      partials[3 * item] = max;
      partials[3 * item + 1] = sum;
      partials[3 * item + 2] = sum_logits;
    }
  }
}

// One thread per row: partials combined in chunk order, the loss, the label's
// gradient (its chunk kernel skips it) and stats[2 * row] = (M, S).
template <class T>
__global__ void __launch_bounds__(kThreads)
    ce_combine_kernel(CrossEntropyArgs a, int64_t chunks, const double* partials, double* stats) {
  using S = compute_t<T>;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; row < a.rows;
       row += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t label = a.labels[row];
    if (ce_skipped(a, label)) {
      a.losses[row] = label == a.ignore_index ? 0.0 : static_cast<double>(vmath::nan_f());
      continue;
    }
    double M = smx::neg_inf_d(), Ssum = 0.0, Z = 0.0;
    for (int64_t c = 0; c < chunks; ++c) {
      const double* p = partials + 3 * (row * chunks + c);
      absorb_partial(M, Ssum, p[0], p[1]);
      Z += p[2];
    }
    if (M == smx::neg_inf_d()) Ssum = 0.0;
    const T* x = static_cast<const T*>(a.logits) + row * a.cols;
    const double z_t = static_cast<double>(load(x, label));
    const double log_sum = log(Ssum);
    a.losses[row] = ce_loss<S>(a, z_t, M, log_sum, Z);
    const double k = cross_entropy_k(a.z_loss, M, log_sum);
    store(static_cast<T*>(a.grad) + row * a.cols, label,
          static_cast<S>(cross_entropy_label_grad(z_t, M, Ssum, ce_weight(a), k, a.smoothing,
                                                  static_cast<double>(a.cols))));
    stats[2 * row] = M;
    stats[2 * row + 1] = Ssum;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) ce_chunks_kernel(CrossEntropyArgs a, int64_t chunks, const double* stats) {
  using S = compute_t<T>;
  for (int64_t item = blockIdx.x; item < a.rows * chunks; item += gridDim.x) {
    int64_t row, lo, hi;
    chunk_of(item, chunks, a.cols, row, lo, hi);
    const int64_t label = a.labels[row];
    T* grad = static_cast<T*>(a.grad) + row * a.cols;
    if (ce_skipped(a, label)) {
      for (int64_t i = lo + threadIdx.x; i < hi; i += kThreads) store(grad, i, S(0));
      continue;
    }
    ce_write<kThreads>(a, static_cast<const T*>(a.logits) + row * a.cols, grad, label, lo, hi, stats[2 * row],
                       stats[2 * row + 1], 0.0, false);
  }
}

// The loss in the logits' dtype: per row ("none"), or the total of the rows
// ("sum"; "mean" divides it by the rows counted, NaN when 0). The total is
// deterministic: thread t sums its contiguous slice of rows in order, then the
// block adds the slices in the fixed order of team_reduce (a single thread
// adding 256 slices in turn took 7 us, Nsight Compute).
template <class T>
__global__ void __launch_bounds__(kThreads) ce_rows_out_kernel(const double* losses, int64_t rows, T* out) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < rows;
       i += static_cast<int64_t>(gridDim.x) * kThreads)
    out[i] = round_from_double<T>(losses[i]);
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    ce_total_kernel(const double* losses, int64_t rows, bool mean, const unsigned long long* label_stats, T* out) {
  __shared__ TeamShared sh;
  const int64_t per = (rows + kThreads - 1) / kThreads;
  const int64_t lo = per * threadIdx.x, hi = lo + per < rows ? lo + per : rows;
  double s = 0.0;
  for (int64_t i = lo; i < hi; ++i) s += losses[i];
  double total = team_reduce<kThreads>(s, SumOp{}, sh.d);
  if (threadIdx.x == 0) {
    const unsigned long long counted = label_stats[0];
    if (mean) total = counted > 0 ? total / static_cast<double>(counted) : static_cast<double>(vmath::nan_f());
    out[0] = round_from_double<T>(total);
  }
}

// ---- launch helpers --------------------------------------------------------------------

int grid_cap() { return 65535 * 16; }

int blocks_for(int64_t items) {
  if (items < 1) return 1;
  return items < grid_cap() ? static_cast<int>(items) : grid_cap();
}

int64_t chunks_of(int64_t cols) { return (cols + kChunk - 1) / kChunk; }

// The grid of a team kernel over `rows` rows.
template <int TEAM>
int team_grid(int64_t rows) {
  return TEAM == 32 ? blocks_for((rows + kWarps - 1) / kWarps) : blocks_for(rows);
}

// The team layout of rows of `cols` elements below kLongRow, as f(TEAM, E)
// (std::integral_constant values): TEAM threads per row holding E elements
// each, so rows up to TEAM * E are read once; longer rows go through tiles of
// 1024 x 8. E stays at 8 or less: a thread's passes over its elements are
// dependent chains (max, then the terms and their double sum), and with 32
// elements a thread (80-128 registers, 24 warps an SM) the 4096 x 1024
// float32 forward and cross-entropy ran latency-bound at 9% of memory
// bandwidth (Nsight Compute: L1TEX scoreboard stalls, 22 cycles per issued
// instruction); more threads per row with fewer elements each keep more
// loads and chains in flight.
template <class F>
cudaError_t with_team_layout(int64_t cols, F&& f) {
  using std::integral_constant;
  if (cols <= 128) return f(integral_constant<int, 32>{}, integral_constant<int, 4>{});
  if (cols <= 256) return f(integral_constant<int, 32>{}, integral_constant<int, 8>{});
  if (cols <= 1024) return f(integral_constant<int, 128>{}, integral_constant<int, 8>{});
  if (cols <= 4096) return f(integral_constant<int, 512>{}, integral_constant<int, 8>{});
  return f(integral_constant<int, 1024>{}, integral_constant<int, 8>{});
}

}  // namespace

NNF_NS_END

namespace nnfuse {
namespace cuda {

using namespace nnfuse::isa_cuda;

int64_t softmax_workspace_size(int64_t rows, int64_t cols) {
  if (cols < kLongRow) return 0;
  return rows * (3 * chunks_of(cols) + 2);
}

int64_t cross_entropy_workspace_size(int64_t rows, int64_t cols) {
  return rows + kLabelStatsDoubles + softmax_workspace_size(rows, cols);
}

cudaError_t softmax_forward(bool log, DType dtype, const void* x, const uint8_t* keep, void* out, int64_t rows,
                            int64_t cols, double scale, bool masked_rows_nan, double* workspace,
                            cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  const ForwardArgs a{log, masked_rows_nan, x, keep, out, rows, cols, scale};
  return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    if (cols < kLongRow) {
      return with_team_layout(cols, [&](auto team, auto per) {
        constexpr int TEAM = decltype(team)::value, E = decltype(per)::value;
        forward_team_kernel<TEAM, E, T><<<team_grid<TEAM>(rows), block_threads<TEAM>(), 0, stream>>>(a);
        return cudaGetLastError();
      });
    }
    if (workspace == nullptr) return cudaErrorInvalidValue;
    const int64_t chunks = chunks_of(cols);
    double* partials = workspace;
    double* stats = workspace + 2 * rows * chunks;
    forward_partials_kernel<T><<<blocks_for(rows * chunks), kThreads, 0, stream>>>(a, chunks, partials);
    cudaError_t status = cudaGetLastError();
    if (status != cudaSuccess) return status;
    combine_partials_kernel<<<blocks_for((rows + kThreads - 1) / kThreads), kThreads, 0, stream>>>(partials, rows,
                                                                                                  chunks, stats);
    status = cudaGetLastError();
    if (status != cudaSuccess) return status;
    forward_chunks_kernel<T><<<blocks_for(rows * chunks), kThreads, 0, stream>>>(a, chunks, stats);
    return cudaGetLastError();
  });
}

cudaError_t softmax_backward(bool log, DType dtype, const void* grad, const void* y, void* out, int64_t rows,
                             int64_t cols, double scale, double* workspace, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  const BackwardArgs a{log, grad, y, out, rows, cols, scale};
  return dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    if (cols < kLongRow) {
      return with_team_layout(cols, [&](auto team, auto per) {
        constexpr int TEAM = decltype(team)::value, E = decltype(per)::value;
        backward_team_kernel<TEAM, E, T><<<team_grid<TEAM>(rows), block_threads<TEAM>(), 0, stream>>>(a);
        return cudaGetLastError();
      });
    }
    if (workspace == nullptr) return cudaErrorInvalidValue;
    const int64_t chunks = chunks_of(cols);
    double* partials = workspace;
    double* totals = workspace + rows * chunks;
    backward_partials_kernel<T><<<blocks_for(rows * chunks), kThreads, 0, stream>>>(a, chunks, partials);
    cudaError_t status = cudaGetLastError();
    if (status != cudaSuccess) return status;
    sum_partials_kernel<<<blocks_for((rows + kThreads - 1) / kThreads), kThreads, 0, stream>>>(partials, rows, chunks,
                                                                                               totals);
    status = cudaGetLastError();
    if (status != cudaSuccess) return status;
    backward_chunks_kernel<T><<<blocks_for(rows * chunks), kThreads, 0, stream>>>(a, chunks, totals);
    return cudaGetLastError();
  });
}

cudaError_t cross_entropy(DType dtype, const void* logits, const int64_t* labels, void* grad, void* loss_out,
                          int reduction, int64_t rows, int64_t cols, int64_t ignore_index, double smoothing,
                          double z_loss, double* workspace, cudaStream_t stream, int64_t* first_bad_row) {
  // rows == 0 or cols == 0 still writes the loss (0, or NaN for "mean" of nothing).
  if (rows < 0 || cols < 0 || reduction < 0 || reduction > 2 || workspace == nullptr || first_bad_row == nullptr)
    return cudaErrorInvalidValue;
  double* losses = workspace;
  auto* label_stats = reinterpret_cast<unsigned long long*>(workspace + rows);
  double* partials = workspace + rows + kLabelStatsDoubles;
  cudaError_t status = cudaMemsetAsync(label_stats, 0, 2 * sizeof(unsigned long long), stream);
  if (status != cudaSuccess) return status;
  if (rows > 0) {
    const int64_t blocks = (rows + kThreads - 1) / kThreads;
    ce_label_check_kernel<<<blocks < kLabelCheckBlocks ? static_cast<int>(blocks) : kLabelCheckBlocks, kThreads, 0,
                            stream>>>(labels, rows, cols, ignore_index, label_stats);
    status = cudaGetLastError();
    if (status != cudaSuccess) return status;
  }
  const CrossEntropyArgs a{logits, labels, grad, losses, label_stats, rows, cols, ignore_index, smoothing, z_loss,
                           reduction == 0};
  status = dispatch_dtype(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    cudaError_t launched = cudaSuccess;
    if (rows == 0) {
      // No rows: only the loss below (0, or NaN for "mean").
    } else if (cols < kLongRow) {
      launched = with_team_layout(cols, [&](auto team, auto per) {
        constexpr int TEAM = decltype(team)::value, E = decltype(per)::value;
        ce_team_kernel<TEAM, E, T><<<team_grid<TEAM>(rows), block_threads<TEAM>(), 0, stream>>>(a);
        return cudaGetLastError();
      });
    } else {
      const int64_t chunks = chunks_of(cols);
      double* stats = partials + 3 * rows * chunks;
      ce_partials_kernel<T><<<blocks_for(rows * chunks), kThreads, 0, stream>>>(a, chunks, partials);
      launched = cudaGetLastError();
      if (launched != cudaSuccess) return launched;
      ce_combine_kernel<T><<<blocks_for((rows + kThreads - 1) / kThreads), kThreads, 0, stream>>>(a, chunks,
                                                                                                  partials, stats);
      launched = cudaGetLastError();
      if (launched != cudaSuccess) return launched;
      ce_chunks_kernel<T><<<blocks_for(rows * chunks), kThreads, 0, stream>>>(a, chunks, stats);
      launched = cudaGetLastError();
    }
    if (launched != cudaSuccess) return launched;
    // reduction: 0 mean, 1 sum, 2 none.
    if (reduction == 2) {
      ce_rows_out_kernel<T><<<blocks_for((rows + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
          losses, rows, static_cast<T*>(loss_out));
    } else {
      ce_total_kernel<T><<<1, kThreads, 0, stream>>>(losses, rows, reduction == 0, label_stats,
                                                     static_cast<T*>(loss_out));
    }
    return cudaGetLastError();
  });
  if (status != cudaSuccess) return status;
  // The one read back to the host: the check's first bad row, after the
  // launches above, so the stream runs them back to back.
  unsigned long long stats[2] = {0, 0};
  status = cudaMemcpyAsync(stats, label_stats, sizeof(stats), cudaMemcpyDeviceToHost, stream);
  if (status != cudaSuccess) return status;
  status = cudaStreamSynchronize(stream);
  if (status != cudaSuccess) return status;
  *first_bad_row = stats[1] == 0 ? -1 : static_cast<int64_t>(~stats[1]);
  return cudaSuccess;
}

}  // namespace cuda
}  // namespace nnfuse
