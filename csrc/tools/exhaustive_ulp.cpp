// Exhaustive float32 accuracy check of the activation functors: every float
// input in a range, against a long double reference, with the error in ULPs
// as docs/accuracy.md measures it (ULP of the float32 reference,
// 2^(max(floor(log2|r|), -126) - 23); for the *floor* rows, ULP of
// |g| times the sum of the derivative's terms' magnitudes).
//
// The sampled table (python -m nnfuse.accuracy) checks 10^6 points per op;
// this walks every float, which is what found GELU's forward above its bound
// once (2.21 ULP at x = -1.409, sampled 1.76). It runs the scalar
// instantiation of the shared functors: the AVX2 and AVX-512 kernels return
// the same bits (tests/test_api.py, test_activations.py check this).
//
// Build (OpenMP optional) and run; a range of |x| is walked with both signs,
// about 2 minutes per 2^31 inputs on 2 cores (|x| <= 1 is 2.1e9 of them):
//   g++ -O2 -std=c++17 -ffp-contract=off -fopenmp -Icsrc/include csrc/tools/exhaustive_ulp.cpp -o exhaustive_ulp
//   ./exhaustive_ulp gelu forward             every |x| in [0, 20]
//   ./exhaustive_ulp sigmoid forward 0 1      |x| in [0, 1] only
// Backward directions use grad = 1.37 (a value whose products round).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "nnfuse/ops/activations.h"

using nnfuse::ActArgs;

namespace {

using LD = long double;

constexpr float kGrad = 1.37f;
const LD kSqrt1_2 = 0.70710678118654752440084436210484903928L;
const LD kInvSqrt2Pi = 0.39894228040143267793994605993438186848L;
const LD kSqrt2OverPi = 0.79788456080286535587989211986876373695L;

struct Result {
  LD value;
  LD floor;  // 0: plain ULP measure
};

LD sigmoid_ld(LD x) { return x >= 0 ? 1 / (1 + expl(-x)) : expl(x) / (1 + expl(x)); }
// sigmoid(x) (1 - sigmoid(x)) without cancellation.
LD dsigmoid_ld(LD x) {
  LD e = expl(-fabsl(x));
  return e / ((1 + e) * (1 + e));
}
LD softplus_ld(LD x) { return x > 0 ? x + log1pl(expl(-x)) : log1pl(expl(x)); }

struct Op {
  const char* name;
  bool backward;
  float default_bound;  // |x| beyond which the float result is saturated
  float (*run)(float x);
  Result (*reference)(LD x);
};

template <class F>
float fwd(float x) {
  return F::fwd(x, ActArgs<float>{1.0f, 20.0f});
}
template <class F>
float bwd(float x) {
  return F::bwd(kGrad, x, ActArgs<float>{1.0f, 20.0f});
}

// gelu tanh: u2 = 2u = 2 sqrt(2/pi) (x + 0.044715 x^3), y = x sigmoid(u2),
// y' = sigmoid(u2) + x u2' sigmoid'(u2).
LD gelu_tanh_u2(LD x) { return 2 * kSqrt2OverPi * (x + 0.044715L * x * x * x); }

const Op kOps[] = {
    {"sigmoid", false, 128, fwd<nnfuse::Sigmoid>, [](LD x) { return Result{sigmoid_ld(x), 0}; }},
    {"sigmoid", true, 128, bwd<nnfuse::Sigmoid>, [](LD x) { return Result{kGrad * dsigmoid_ld(x), 0}; }},
    {"tanh", false, 16, fwd<nnfuse::Tanh>, [](LD x) { return Result{tanhl(x), 0}; }},
    {"tanh", true, 64, bwd<nnfuse::Tanh>, [](LD x) { return Result{kGrad * 4 * dsigmoid_ld(2 * x), 0}; }},
    {"silu", false, 128, fwd<nnfuse::Silu>, [](LD x) { return Result{x * sigmoid_ld(x), 0}; }},
    {"silu", true, 128, bwd<nnfuse::Silu>,
     [](LD x) {
       LD s = sigmoid_ld(x), ds = dsigmoid_ld(x);
       return Result{kGrad * (s + x * ds), kGrad * (s + fabsl(x) * ds)};
     }},
    {"gelu", false, 20, fwd<nnfuse::Gelu>, [](LD x) { return Result{x * erfcl(-x * kSqrt1_2) / 2, 0}; }},
    {"gelu", true, 20, bwd<nnfuse::Gelu>,
     [](LD x) {
       LD cdf = erfcl(-x * kSqrt1_2) / 2, pdf = kInvSqrt2Pi * expl(-x * x / 2);
       return Result{kGrad * (cdf + x * pdf), kGrad * (cdf + fabsl(x) * pdf)};
     }},
    {"gelu_tanh", false, 16, fwd<nnfuse::GeluTanh>, [](LD x) { return Result{x * sigmoid_ld(gelu_tanh_u2(x)), 0}; }},
    {"gelu_tanh", true, 16, bwd<nnfuse::GeluTanh>,
     [](LD x) {
       LD u2 = gelu_tanh_u2(x), du2 = 2 * kSqrt2OverPi * (1 + 3 * 0.044715L * x * x);
       LD s = sigmoid_ld(u2), ds = dsigmoid_ld(u2);
       return Result{kGrad * (s + x * du2 * ds), kGrad * (s + fabsl(x) * du2 * ds)};
     }},
    {"mish", false, 128, fwd<nnfuse::Mish>, [](LD x) { return Result{x * tanhl(softplus_ld(x)), 0}; }},
    {"mish", true, 128, bwd<nnfuse::Mish>,
     [](LD x) {
       LD sp = softplus_ld(x), t = tanhl(sp);
       LD sech2 = 4 * dsigmoid_ld(2 * sp);  // 1 - t^2 without cancellation
       LD s = sigmoid_ld(x);
       return Result{kGrad * (t + x * sech2 * s), kGrad * (fabsl(t) + fabsl(x) * sech2 * s)};
     }},
    {"softplus", false, 128, fwd<nnfuse::Softplus>, [](LD x) { return Result{softplus_ld(x), 0}; }},
    {"softplus", true, 128, bwd<nnfuse::Softplus>, [](LD x) { return Result{kGrad * sigmoid_ld(x), 0}; }},
    {"logsigmoid", false, 128, fwd<nnfuse::Logsigmoid>, [](LD x) { return Result{-softplus_ld(-x), 0}; }},
    {"logsigmoid", true, 128, bwd<nnfuse::Logsigmoid>, [](LD x) { return Result{kGrad * sigmoid_ld(-x), 0}; }},
};

double ulp_of(LD r) {
  int e = r == 0 ? -126 : static_cast<int>(std::floor(std::log2(static_cast<double>(fabsl(r)))));
  return std::ldexp(1.0, (e < -126 ? -126 : e) - 23);
}

uint32_t bits_of(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s OP forward|backward [LOW HIGH]   (|x| range; OP one of:", argv[0]);
    for (const Op& op : kOps)
      if (!op.backward) std::fprintf(stderr, " %s", op.name);
    std::fprintf(stderr, ")\n");
    return 2;
  }
  const std::string name = argv[1], direction = argv[2];
  const Op* op = nullptr;
  for (const Op& candidate : kOps)
    if (name == candidate.name && (direction == "backward") == candidate.backward) op = &candidate;
  if (op == nullptr || (direction != "forward" && direction != "backward")) {
    std::fprintf(stderr, "unknown op or direction: %s %s\n", argv[1], argv[2]);
    return 2;
  }
  const float low = argc > 3 ? std::strtof(argv[3], nullptr) : 0.0f;
  const float high = argc > 4 ? std::strtof(argv[4], nullptr) : op->default_bound;
  const int64_t first = bits_of(low), last = bits_of(high);

  double worst = 0.0;
  float worst_x = 0.0f;
  int64_t checked = 0;
#pragma omp parallel
  {
    double local_worst = 0.0;
    float local_x = 0.0f;
    int64_t local_count = 0;
#pragma omp for schedule(dynamic, 65536)
    for (int64_t b = first; b <= last; ++b) {
      for (uint32_t sign : {0u, 0x80000000u}) {
        uint32_t u = static_cast<uint32_t>(b) | sign;
        float x;
        std::memcpy(&x, &u, 4);
        Result ref = op->reference(static_cast<LD>(x));
        float got = op->run(x);
        LD scale = fabsl(ref.value) > ref.floor ? fabsl(ref.value) : ref.floor;
        double err = static_cast<double>(fabsl(static_cast<LD>(got) - ref.value)) / ulp_of(scale);
        if (std::isnan(err)) err = INFINITY;  // a NaN result counts as the worst
        if (err > local_worst) {
          local_worst = err;
          local_x = x;
        }
        ++local_count;
      }
    }
#pragma omp critical
    {
      if (local_worst > worst) {
        worst = local_worst;
        worst_x = local_x;
      }
      checked += local_count;
    }
  }
  std::printf("%s %s%s: max %.3f ulp at x = %.9g (%lld inputs, |x| in [%g, %g])\n", op->name, direction.c_str(),
              op->reference(1.0L).floor != 0 ? " (floor measure)" : "", worst, static_cast<double>(worst_x),
              static_cast<long long>(checked), static_cast<double>(low), static_cast<double>(high));
  return 0;
}
