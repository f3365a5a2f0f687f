// Optimizer updates: the per-element math of Adam/AdamW, SGD, RMSprop and
// Adagrad written once, for V = float (scalar CPU, CUDA), double (float64
// parameters) and Vec<float, Avx2 / Avx512>. Only the primitives of
// vec/scalar.h appear here: no intrinsics, no std calls.
//
// One element's step is
//   g <- GradPrep(g)                 non-finite zeroing, clip factor, clamp, sign
//   Op::step(p, g, s, h)             the optimizer, s = up to three state values
// The scalars in h (bias corrections, step sizes, decay factors) are computed
// once per step in float64 by the caller (nnfuse/optim/_functional.py) and
// rounded to the compute type, so every target sees the same constants.
//
// Two families of formulas, chosen by the caller through h (see the Python
// docstrings for the full statement):
//   torch: PyTorch's torch.optim update (eps added after bias correction,
//          coupled weight decay g += wd*p except AdamW);
//   keras: Keras 3 (eps on the uncorrected sqrt(v) with a corrected step size,
//          eps inside the sqrt for RMSprop/Adagrad, lr inside SGD's velocity,
//          weight decay always decoupled: p -= lr*wd*p before the update).
#pragma once

#include "nnfuse/common/macros.h"
#include "nnfuse/vec/scalar.h"

NNF_NS_BEGIN

// Flags of the optimizer configuration (bit set in OptimConfig::flags).
enum OptimFlag : uint32_t {
  kOptAmsgrad = 1u << 0,
  kOptNesterov = 1u << 1,
  kOptCentered = 1u << 2,
  kOptMomentum = 1u << 3,     // SGD / RMSprop keep a momentum buffer
  kOptFirstStep = 1u << 4,    // SGD (torch): the buffer starts as a copy of g
  kOptKeras = 1u << 5,        // Keras 3 formulas
  kOptCoupledWd = 1u << 6,    // g += wd * p
  kOptDecoupledWd = 1u << 7,  // p *= 1 - lr * wd
  kOptZeroNonfinite = 1u << 8,
  kOptClamp = 1u << 9,        // clipvalue
  kOptMaximize = 1u << 10,
};

// g -> g with non-finite elements zeroed ("zero" policy), times the clip
// factor (global or per-array clipnorm; exactly 1 when not clipping, and g*1
// is g to the bit), clamped to [-c, c] (clipvalue; NaN stays NaN because the
// clamped operand sits second in vmin/vmax), negated for maximize.
template <class V>
struct GradPrep {
  V clip;
  uint32_t flags;
  NNF_HD V operator()(V g, V scale) const {
    if (flags & kOptZeroNonfinite) g = select((g - g) == V(0), g, V(0));  // x - x is 0 iff x is finite
    g = g * scale;
    if (flags & kOptClamp) g = vmax(-clip, vmin(clip, g));
    if (flags & kOptMaximize) g = -g;
    return g;
  }
};

// Weight decay shared by every optimizer: coupled adds wd*p to the gradient,
// decoupled shrinks p by (1 - lr*wd) first (AdamW; every Keras optimizer).
template <class V>
NNF_HD void apply_weight_decay(V& p, V& g, V wd, V decay, uint32_t flags) {
  if (flags & kOptCoupledWd) g = fma(wd, p, g);
  if (flags & kOptDecoupledWd) p = p * decay;
}

// Adam / AdamW.  s = {m, v, v_max}.
//   m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2;   v_max <- max(v_max, v) (amsgrad)
//   torch: p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//   keras: p <- p - (lr sqrt(1 - b2^t) / (1 - b1^t)) * m / (sqrt(v) + eps)
// Both are p - step_size * m / (sqrt(v) * vscale + eps) with the caller's
// step_size and vscale (1 / sqrt(1 - b2^t) for torch, 1 for keras).
struct AdamOp {
  template <class V>
  struct Hyper {
    V beta1, beta2, omb1, omb2, step_size, vscale, eps, wd, decay;
    uint32_t flags;
    NNF_HD Hyper(const double* h, uint32_t f)
        : beta1(scalar_t<V>(h[0])), beta2(scalar_t<V>(h[1])), omb1(scalar_t<V>(h[2])), omb2(scalar_t<V>(h[3])),
          step_size(scalar_t<V>(h[4])), vscale(scalar_t<V>(h[5])), eps(scalar_t<V>(h[6])), wd(scalar_t<V>(h[7])),
          decay(scalar_t<V>(h[8])), flags(f) {}
  };
  template <class V>
  NNF_HD static void step(V& p, V g, V* s, const Hyper<V>& h) {
    apply_weight_decay(p, g, h.wd, h.decay, h.flags);
    s[0] = fma(h.beta1, s[0], h.omb1 * g);
    s[1] = fma(h.beta2, s[1], h.omb2 * (g * g));
    V v = s[1];
    if (h.flags & kOptAmsgrad) {
      s[2] = vmax(s[2], s[1]);  // NaN in v propagates (second operand)
      v = s[2];
    }
    V denom = fma(vsqrt(v), h.vscale, h.eps);
    p = p - h.step_size * (s[0] / denom);
  }
};

// SGD.  s = {buf}.
//   torch: buf <- t == 1 ? g : mu buf + (1 - dampening) g;
//          d = nesterov ? g + mu buf : buf (g without momentum);   p <- p - lr d
//   keras: buf <- mu buf - lr g;  p <- p + (nesterov ? mu buf - lr g : buf)
//          (without momentum p <- p - lr g)
struct SgdOp {
  template <class V>
  struct Hyper {
    V lr, momentum, one_minus_dampening, wd, decay;
    uint32_t flags;
    NNF_HD Hyper(const double* h, uint32_t f)
        : lr(scalar_t<V>(h[0])), momentum(scalar_t<V>(h[1])), one_minus_dampening(scalar_t<V>(h[2])),
          wd(scalar_t<V>(h[3])), decay(scalar_t<V>(h[4])), flags(f) {}
  };
  template <class V>
  NNF_HD static void step(V& p, V g, V* s, const Hyper<V>& h) {
    apply_weight_decay(p, g, h.wd, h.decay, h.flags);
    if (h.flags & kOptKeras) {
      if (h.flags & kOptMomentum) {
        s[0] = h.momentum * s[0] - g * h.lr;
        p = (h.flags & kOptNesterov) ? p + (h.momentum * s[0] - g * h.lr) : p + s[0];
      } else {
        p = p - g * h.lr;
      }
      return;
    }
    if (h.flags & kOptMomentum) {
      s[0] = (h.flags & kOptFirstStep) ? g : fma(h.momentum, s[0], h.one_minus_dampening * g);
      g = (h.flags & kOptNesterov) ? fma(h.momentum, s[0], g) : s[0];
    }
    p = p - h.lr * g;
  }
};

// RMSprop.  s = {sq, grad_avg, buf}.
//   sq <- a sq + (1 - a) g^2;  centered: ga <- a ga + (1 - a) g, w = sq - ga^2, else w = sq
//   torch: d = sqrt(w) + eps;  buf <- mu buf + g / d, p <- p - lr buf  (p <- p - lr g / d)
//   keras: inc = lr g / sqrt(w + eps);  buf <- mu buf + inc, p <- p - buf  (p <- p - inc)
struct RmspropOp {
  template <class V>
  struct Hyper {
    V alpha, one_minus_alpha, lr, eps, momentum, wd, decay;
    uint32_t flags;
    NNF_HD Hyper(const double* h, uint32_t f)
        : alpha(scalar_t<V>(h[0])), one_minus_alpha(scalar_t<V>(h[1])), lr(scalar_t<V>(h[2])),
          eps(scalar_t<V>(h[3])), momentum(scalar_t<V>(h[4])), wd(scalar_t<V>(h[5])), decay(scalar_t<V>(h[6])),
          flags(f) {}
  };
  template <class V>
  NNF_HD static void step(V& p, V g, V* s, const Hyper<V>& h) {
    apply_weight_decay(p, g, h.wd, h.decay, h.flags);
    s[0] = fma(h.alpha, s[0], h.one_minus_alpha * (g * g));
    V w = s[0];
    if (h.flags & kOptCentered) {
      s[1] = fma(h.alpha, s[1], h.one_minus_alpha * g);
      w = w - s[1] * s[1];
    }
    if (h.flags & kOptKeras) {
      V inc = (h.lr * g) / vsqrt(w + h.eps);
      if (h.flags & kOptMomentum) {
        s[2] = fma(h.momentum, s[2], inc);
        p = p - s[2];
      } else {
        p = p - inc;
      }
      return;
    }
    V d = vsqrt(w) + h.eps;
    if (h.flags & kOptMomentum) {
      s[2] = fma(h.momentum, s[2], g / d);
      p = p - h.lr * s[2];
    } else {
      p = p - h.lr * (g / d);
    }
  }
};

// Adagrad.  s = {sum}.
//   sum <- sum + g^2
//   torch: p <- p - clr g / (sqrt(sum) + eps),  clr = lr / (1 + (t - 1) lr_decay)
//   keras: p <- p - clr g / sqrt(sum + eps)
struct AdagradOp {
  template <class V>
  struct Hyper {
    V clr, eps, wd, decay;
    uint32_t flags;
    NNF_HD Hyper(const double* h, uint32_t f)
        : clr(scalar_t<V>(h[0])), eps(scalar_t<V>(h[1])), wd(scalar_t<V>(h[2])), decay(scalar_t<V>(h[3])),
          flags(f) {}
  };
  template <class V>
  NNF_HD static void step(V& p, V g, V* s, const Hyper<V>& h) {
    apply_weight_decay(p, g, h.wd, h.decay, h.flags);
    s[0] = fma(g, g, s[0]);
    V d = (h.flags & kOptKeras) ? vsqrt(s[0] + h.eps) : vsqrt(s[0]) + h.eps;
    p = p - h.clr * (g / d);
  }
};

NNF_NS_END
