// Activation kernels. The build compiles this file once per instruction set;
// the math comes from the functors in nnfuse/ops/activations.h, written once.
#include <cstdint>
#include <type_traits>

#include "cpu/kernels/isa.h"
#include "nnfuse/common/philox.h"
#include "nnfuse/ops/activations.h"

NNF_NS_BEGIN

namespace {

// Calls f(Op{}) with the functor of `op`.
template <class F>
void with_activation(ActOp op, F&& f) {
  switch (op) {
    case ActOp::sigmoid: f(Sigmoid{}); break;
    case ActOp::tanh: f(Tanh{}); break;
    case ActOp::relu: f(Relu{}); break;
    case ActOp::leaky_relu: f(LeakyRelu{}); break;
    case ActOp::elu: f(Elu{}); break;
    case ActOp::selu: f(Selu{}); break;
    case ActOp::celu: f(Celu{}); break;
    case ActOp::gelu: f(Gelu{}); break;
    case ActOp::gelu_tanh: f(GeluTanh{}); break;
    case ActOp::silu: f(Silu{}); break;
    case ActOp::mish: f(Mish{}); break;
    case ActOp::hardtanh: f(Hardtanh{}); break;
    case ActOp::hardsigmoid: f(Hardsigmoid{}); break;
    case ActOp::hardswish: f(Hardswish{}); break;
    case ActOp::softplus: f(Softplus{}); break;
    case ActOp::softsign: f(Softsign{}); break;
    case ActOp::logsigmoid: f(Logsigmoid{}); break;
    case ActOp::count: break;
  }
}

bool has_bwd_from_y(ActOp op) {
  bool result = false;
  with_activation(op, [&](auto functor) { result = decltype(functor)::has_bwd_from_y; });
  return result;
}

// Backward from x in blocks of kRescueBlock elements, the formula's
// results checked for inf and NaN by one fma per vector (r 0 + acc: NaN
// from then on where r is not finite). A block that found one is taken again
// through backward_for, which redoes those lanes from a rescaled g (see
// there); a vector-by-vector check measured 5-14% slower on the exp-bound
// backward passes (float32, 2^20 elements, 1 thread, AVX-512). Both give
// the same bits: the formula's where it is finite, the rescaled one's
// elsewhere. A block of 2^12 elements keeps the redo in L1 and L2; streamed
// blocks share one store fence at the end.
constexpr int64_t kRescueBlock = 1 << 12;
template <class Op, class T, class V = vec_for_t<T>>
void backward_rescued(const T* grad, const T* in, T* out, int64_t n, const ActRange& r, const ActArgs<V>& args) {
  using S = scalar_t<V>;
  for (int64_t b = 0; b < n; b += kRescueBlock) {
    const int64_t m = n - b < kRescueBlock ? n - b : kRescueBlock;
    V nonfinite(S(0));
    map_binary_any<false>(grad + b, in + b, out + b, m, r.total, r.stream, [&](V g, V x) NNF_LAMBDA_INLINE {
      const V y = backward_formula<Op, T>(g, x, args);
      nonfinite = fma(y, V(S(0)), nonfinite);
      return y;
    });
    if (any_lane(is_nan(nonfinite))) {
      map_binary(grad + b, in + b, out + b, m,
                 [&](V g, V x) NNF_LAMBDA_INLINE { return backward_for<Op, T>(g, x, args); });
    }
  }
#if NNF_ISA_LEVEL >= 1
  stream_fence();  // once for all the blocks (map_binary_any<false> leaves it)
#endif
}

// Backward loops of a few arithmetic operations per vector run without
// software prefetches (map_binary_any's kPrefetch): from x, the ops whose
// derivative times g is one product (the others take backward_rescued, which
// keeps them); from y, all but softplus's (an expm1).
template <class Op>
inline constexpr bool kPrefetchBwdFromY = std::is_same_v<Op, Softplus>;

template <class Op, class T>
void activation_typed(const ActRange& r, int64_t begin, int64_t end) {
  using V = vec_for_t<T>;
  using S = scalar_t<V>;
  const ActArgs<V> args{V(static_cast<S>(r.p0)), V(static_cast<S>(r.p1))};
  const int64_t n = end - begin;
  const T* in = static_cast<const T*>(r.in) + begin;
  T* out = static_cast<T*>(r.out) + begin;
  if (r.direction == ActDirection::forward) {
    map_unary_any(in, out, n, r.total, r.stream, [&](V x) NNF_LAMBDA_INLINE { return forward_for<Op, T>(x, args); });
    return;
  }
  const T* grad = static_cast<const T*>(r.grad) + begin;
  if (r.direction == ActDirection::backward_from_x) {
    if constexpr (kBwdRescaled<Op>) {
      backward_rescued<Op, T>(grad, in, out, n, r, args);
    } else {
      map_binary_any<true, false>(grad, in, out, n, r.total, r.stream,
                                  [&](V g, V x) NNF_LAMBDA_INLINE { return backward_formula<Op, T>(g, x, args); });
    }
  } else if constexpr (Op::has_bwd_from_y) {
    map_binary_any<true, kPrefetchBwdFromY<Op>>(grad, in, out, n, r.total, r.stream,
                                                [&](V g, V y) NNF_LAMBDA_INLINE { return Op::bwd_from_y(g, y, args); });
  }
}

void activation(const ActRange& r, int64_t begin, int64_t end) {
  with_activation(r.op, [&](auto functor) {
    using Op = decltype(functor);
    dispatch_dtype(r.dtype, [&](auto tag) { activation_typed<Op, typename decltype(tag)::type>(r, begin, end); });
  });
}

// ---- PReLU: leaky ReLU whose slope is the channel's weight --------------------

// Elements of row `row`: the row holds channels*inner elements, the last one
// may be short (a single shared weight is processed in fixed-size rows).
inline int64_t row_length(const PreluRange& r, int64_t total, int64_t row) {
  int64_t row_size = r.channels * r.inner;
  int64_t start = row * row_size;
  return start + row_size <= total ? row_size : total - start;
}

template <class T>
void prelu_forward_typed(const PreluRange& r, int64_t total, int64_t row_begin, int64_t row_end) {
  using V = vec_for_t<T>;
  using S = scalar_t<V>;
  const T* weight = static_cast<const T*>(r.weight);
  for (int64_t row = row_begin; row < row_end; ++row) {
    int64_t offset = row * r.channels * r.inner;
    int64_t length = row_length(r, total, row);
    const T* x = static_cast<const T*>(r.x) + offset;
    T* y = static_cast<T*>(r.out) + offset;
    if (r.inner == 1) {
      // Channels are contiguous: the slope varies lane by lane.
      map_binary(x, weight, y, length, [](V xv, V w) { return LeakyRelu::fwd(xv, ActArgs<V>{w, w}); });
      continue;
    }
    for (int64_t c = 0; c * r.inner < length; ++c) {
      V w(static_cast<S>(to_float(weight[r.channels == 1 ? 0 : c])));
      const ActArgs<V> args{w, w};
      int64_t seg = length - c * r.inner < r.inner ? length - c * r.inner : r.inner;
      map_unary(x + c * r.inner, y + c * r.inner, seg, [&](V xv) { return LeakyRelu::fwd(xv, args); });
    }
  }
}

// s plus the lanes of v, added one at a time in lane order, in double.
template <class V>
double add_lanes(double s, V v) {
  using S = scalar_t<V>;
  S lanes[kLanes<V>];
  if constexpr (kLanes<V> == 1) {
    lanes[0] = v;
  } else {
    vstore(lanes, v);
  }
  for (int i = 0; i < kLanes<V>; ++i) s += static_cast<double>(lanes[i]);
  return s;
}

// Sum of prelu_weight_grad(g, x) over n elements with slope w; gx written.
// Blocks of 64 elements are summed in 16 virtual lanes of the compute type
// (element i of a block into lane i % 16: one AVX-512 vector, two AVX2
// vectors, sixteen scalars; 4 additions per lane), whose values are then
// added into a double in lane order. Every ISA performs the same additions in
// the same order, and the blocks depend only on n, so the sum has the same
// bits on every ISA and thread count; its error stays within ~4 * 2^-24 of
// the sum of magnitudes in float32.
template <class T>
double prelu_backward_segment(const T* g, const T* x, T* gx, int64_t n, scalar_t<vec_for_t<T>> w) {
  using V = vec_for_t<T>;
  constexpr int L = kLanes<V>;
  constexpr int kVirtualLanes = 16;
  constexpr int kVectors = kVirtualLanes / L;
  constexpr int64_t kBlock = 64;
  const ActArgs<V> args{V(w), V(w)};
  double total = 0.0;
  for (int64_t start = 0; start < n; start += kBlock) {
    int64_t stop = start + kBlock < n ? start + kBlock : n;
    V acc[kVectors];
    for (V& a : acc) a = V(0);
    int64_t i = start;
    for (; i + L <= stop; i += L) {
      V gv = vload(g + i), xv = vload(x + i);
      vstore(gx + i, LeakyRelu::bwd(gv, xv, args));
      V& a = acc[((i - start) / L) % kVectors];
      a = a + LeakyRelu::prelu_weight_grad(gv, xv);
    }
    if constexpr (L > 1) {
      if (i < stop) {
        int rest = static_cast<int>(stop - i);
        V gv = vload_partial(g + i, rest), xv = vload_partial(x + i, rest);
        vstore_partial(gx + i, LeakyRelu::bwd(gv, xv, args), rest);
        // Padded lanes add +0, which leaves a lane as it was (a lane that
        // starts at +0 never becomes -0).
        V& a = acc[((i - start) / L) % kVectors];
        a = a + LeakyRelu::prelu_weight_grad(gv, xv);
      }
    }
    double block = 0.0;
    for (const V& a : acc) block = add_lanes(block, a);
    total += block;
  }
  return total;
}

template <class T>
void prelu_backward_typed(const PreluRange& r, int64_t total, int64_t row_begin, int64_t row_end) {
  using V = vec_for_t<T>;
  using S = scalar_t<V>;
  const T* weight = static_cast<const T*>(r.weight);
  int64_t weights = r.channels;
  for (int64_t c = 0; c < weights; ++c) r.weight_grad_partial[c] = 0.0;
  for (int64_t row = row_begin; row < row_end; ++row) {
    int64_t offset = row * r.channels * r.inner;
    int64_t length = row_length(r, total, row);
    const T* x = static_cast<const T*>(r.x) + offset;
    const T* g = static_cast<const T*>(r.grad) + offset;
    T* gx = static_cast<T*>(r.out) + offset;
    if (r.inner == 1 && r.channels > 1) {
      for (int64_t c = 0; c < length; ++c) {
        S w = static_cast<S>(to_float(weight[c]));
        r.weight_grad_partial[c] += prelu_backward_segment<T>(g + c, x + c, gx + c, 1, w);
      }
      continue;
    }
    for (int64_t c = 0; c * r.inner < length; ++c) {
      int64_t channel = r.channels == 1 ? 0 : c;
      S w = static_cast<S>(to_float(weight[channel]));
      int64_t seg = length - c * r.inner < r.inner ? length - c * r.inner : r.inner;
      r.weight_grad_partial[channel] +=
          prelu_backward_segment<T>(g + c * r.inner, x + c * r.inner, gx + c * r.inner, seg, w);
    }
  }
}

// ---- rrelu in training mode: per-element slopes from Philox -------------------

template <class T>
void rrelu_training_typed(const RreluRange& r, int64_t begin, int64_t end) {
  using V = vec_for_t<T>;
  using S = scalar_t<V>;
  constexpr int L = kLanes<V>;
  const S lower = static_cast<S>(r.lower);
  const S width = static_cast<S>(r.upper) - static_cast<S>(r.lower);
  const T* x = static_cast<const T*>(r.x);
  const T* g = static_cast<const T*>(r.grad);
  T* out = static_cast<T*>(r.out);
  S slopes[L];
  for (int64_t i = begin; i < end; i += L) {
    int rest = end - i < L ? static_cast<int>(end - i) : L;
    for (int lane = 0; lane < L; ++lane) {
      S u = static_cast<S>(philox_uniform_float(r.seed, r.offset, static_cast<uint64_t>(i + lane)));
      slopes[lane] = fma(u, width, lower);
    }
    V slope;
    if constexpr (L == 1) {
      slope = slopes[0];
    } else {
      slope = vload(slopes);
    }
    const ActArgs<V> args{slope, slope};
    if (rest == L) {
      vstore(out + i, g ? LeakyRelu::bwd(vload(g + i), vload(x + i), args) : LeakyRelu::fwd(vload(x + i), args));
    } else if constexpr (L > 1) {
      V xv = vload_partial(x + i, rest);
      V result = g ? LeakyRelu::bwd(vload_partial(g + i, rest), xv, args) : LeakyRelu::fwd(xv, args);
      vstore_partial(out + i, result, rest);
    }
  }
}

}  // namespace

const CpuKernelTable& cpu_kernel_table() {
  static constexpr CpuKernelTable table = {
      kIsaName,
      has_bwd_from_y,
      activation,
      [](const PreluRange& r, int64_t b, int64_t e) {
        dispatch_dtype(r.dtype, [&](auto tag) { prelu_forward_typed<typename decltype(tag)::type>(r, r.total, b, e); });
      },
      [](const PreluRange& r, int64_t b, int64_t e) {
        dispatch_dtype(r.dtype, [&](auto tag) { prelu_backward_typed<typename decltype(tag)::type>(r, r.total, b, e); });
      },
      [](const RreluRange& r, int64_t b, int64_t e) {
        dispatch_dtype(r.dtype, [&](auto tag) { rrelu_training_typed<typename decltype(tag)::type>(r, b, e); });
      },
  };
  return table;
}

NNF_NS_END
