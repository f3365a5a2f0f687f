// The primitive vocabulary that vec/math.h and the op functors are written in,
// for the scalar types float and double (scalar CPU path and CUDA device code).
// The AVX2 and AVX-512 vector types in avx2.h / avx512.h provide the same free
// functions with the same semantics, so a functor written against this list
// compiles, and gives the same bits, for every target:
//
//   V(s)                       broadcast of a scalar constant
//   + - * / unary-             IEEE, correctly rounded (no reciprocal approximations)
//   fma(a, b, c)               a*b + c with one rounding
//   < <= > >= == !=            -> mask_t<V>;  masks combine with & | and mask_not(m)
//   select(m, a, b)            m ? a : b, lane by lane
//   vmin(a, b), vmax(a, b)     x86 minps/maxps semantics: a < b ? a : b (resp. a > b):
//                              when either is NaN, b is returned — put the operand that
//                              must propagate NaN second
//   vabs, vsqrt, vrint         |a|, correctly rounded sqrt, round to nearest even
//   copysign(mag, sgn)         |mag| with the sign bit of sgn
//   is_nan(a)                  mask of NaN lanes
//   is_inf_or_nan(a)           mask of the lanes that are not finite
//   pow2i(k)                   2^k for integral-valued k in [-126, 127] (float) /
//                              [-1022, 1023] (double), built from exponent bits;
//                              k = -127 (float) / -1023 (double) gives +0
//   pow2_rounded(t, e)         2^(k + e) for a float t = 1.5 2^23 + k (k integral, |k| <
//                              2^22: the low significand bits of t are k) and integral-valued
//                              e, k + e in [-126, 127]: t's bits shifted into the exponent
//                              field plus pow2i(e)'s bits, as integers (so e alone may lie
//                              outside pow2i's range: the sum wraps back into it; float only)
//   scale_pow2(v, k)           v 2^k rounded once, for integral-valued k in [-126, 127]
//                              (float) / [-1022, 1023] (double): v * pow2i(k), one
//                              instruction where the ISA has one (AVX-512 vscalefps)
//   exponent_of(a)             floor(log2|a|) as V for normal, finite, nonzero a
//   mantissa_of(a)             a scaled by 2^-exponent_of(a): in [1, 2) for normal a
//   any_lane(m), all_lanes(m)  reductions of a mask, for early exits only
//   quarter_octave_lookup(t, key)
//                              t[(bits(key) >> 21) & 15] for a float key and a table t of
//                              16 floats: for key in [2, 32), the entry of key's quarter
//                              octave (exponent's two low bits, mantissa's top two bits)
//   piece_lookup32(t, key)     t[bits(key) & 31] for a float key and a table t of 32 floats:
//                              for key = 1.5 2^23 + i (i integral, |i| < 2^22), entry i mod 32
//   vgather<V>(p, index)       lane l = p[index[l]] for a float pointer p and lanes int32
//                              offsets (scalar and AVX2 only: see vec/avx512.h)
//   vpermute(a, index)         lane l = lane index[l] of a, for lanes int32 indices in
//                              [0, lanes) (the scalar forms: index[0] = 0)
//
// The build compiles every CPU translation unit with -ffp-contract=off and CUDA
// with --fmad=false: an fma happens only where the code says fma, which is what
// keeps scalar, AVX2, AVX-512 and CUDA results identical to the bit.
#pragma once

#include <cmath>
#include <cstring>

#include "nnfuse/common/macros.h"

NNF_NS_BEGIN

template <class V>
struct VecTraits;  // scalar type, lane count, mask type of a value type

template <>
struct VecTraits<float> {
  using scalar = float;
  using mask = bool;
  static constexpr int lanes = 1;
};
template <>
struct VecTraits<double> {
  using scalar = double;
  using mask = bool;
  static constexpr int lanes = 1;
};

template <class V>
using scalar_t = typename VecTraits<V>::scalar;
template <class V>
using mask_t = typename VecTraits<V>::mask;

template <class To, class From>
NNF_HD To bit_cast_value(From from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast_value needs equal sizes");
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

// ---- float ----------------------------------------------------------------
NNF_HD float fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return __builtin_fmaf(a, b, c);
#endif
}
NNF_HD float select(bool m, float a, float b) { return m ? a : b; }
NNF_HD float vmin(float a, float b) { return a < b ? a : b; }
NNF_HD float vmax(float a, float b) { return a > b ? a : b; }
NNF_HD float vabs(float a) {
  return bit_cast_value<float>(bit_cast_value<uint32_t>(a) & 0x7fffffffu);
}
NNF_HD float vsqrt(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return __builtin_sqrtf(a);
#endif
}
NNF_HD float vrint(float a) {
#if defined(__CUDA_ARCH__)
  return rintf(a);
#else
  return __builtin_rintf(a);
#endif
}
NNF_HD float copysign(float mag, float sgn) {
  uint32_t m = bit_cast_value<uint32_t>(mag) & 0x7fffffffu;
  uint32_t s = bit_cast_value<uint32_t>(sgn) & 0x80000000u;
  return bit_cast_value<float>(m | s);
}
NNF_HD bool is_nan(float a) { return a != a; }
NNF_HD bool is_inf_or_nan(float a) { return !(vabs(a) <= 3.402823466e+38f); }
NNF_HD float pow2i(float k) {
  return bit_cast_value<float>(static_cast<uint32_t>(static_cast<int32_t>(k) + 127) << 23);
}
NNF_HD float exponent_of(float a) {
  return static_cast<float>(static_cast<int32_t>((bit_cast_value<uint32_t>(a) >> 23) & 0xffu) - 127);
}
NNF_HD float mantissa_of(float a) {
  return bit_cast_value<float>((bit_cast_value<uint32_t>(a) & 0x007fffffu) | 0x3f800000u);
}
NNF_HD float pow2_rounded(float t, float e) {
  return bit_cast_value<float>((bit_cast_value<uint32_t>(t) << 23) + bit_cast_value<uint32_t>(pow2i(e)));
}
NNF_HD float scale_pow2(float v, float k) { return v * pow2i(k); }
NNF_HD float quarter_octave_lookup(const float* table, float key) {
  return table[(bit_cast_value<uint32_t>(key) >> 21) & 15u];
}
NNF_HD float piece_lookup32(const float* table, float key) {
  return table[bit_cast_value<uint32_t>(key) & 31u];
}
template <class V>
NNF_HD V vgather(const float* p, const int32_t* index);
template <>
NNF_HD float vgather<float>(const float* p, const int32_t* index) {
  return p[index[0]];
}
NNF_HD float vpermute(float a, const int32_t*) { return a; }

// ---- double ---------------------------------------------------------------
NNF_HD double fma(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return __builtin_fma(a, b, c);
#endif
}
NNF_HD double select(bool m, double a, double b) { return m ? a : b; }
NNF_HD double vmin(double a, double b) { return a < b ? a : b; }
NNF_HD double vmax(double a, double b) { return a > b ? a : b; }
NNF_HD double vabs(double a) {
  return bit_cast_value<double>(bit_cast_value<uint64_t>(a) & 0x7fffffffffffffffull);
}
NNF_HD double vsqrt(double a) {
#if defined(__CUDA_ARCH__)
  return __dsqrt_rn(a);
#else
  return __builtin_sqrt(a);
#endif
}
NNF_HD double vrint(double a) {
#if defined(__CUDA_ARCH__)
  return rint(a);
#else
  return __builtin_rint(a);
#endif
}
NNF_HD double copysign(double mag, double sgn) {
  uint64_t m = bit_cast_value<uint64_t>(mag) & 0x7fffffffffffffffull;
  uint64_t s = bit_cast_value<uint64_t>(sgn) & 0x8000000000000000ull;
  return bit_cast_value<double>(m | s);
}
NNF_HD bool is_nan(double a) { return a != a; }
NNF_HD bool is_inf_or_nan(double a) { return !(vabs(a) <= 1.7976931348623157e+308); }
NNF_HD double pow2i(double k) {
  return bit_cast_value<double>(static_cast<uint64_t>(static_cast<int64_t>(k) + 1023) << 52);
}
NNF_HD double scale_pow2(double v, double k) { return v * pow2i(k); }
NNF_HD double exponent_of(double a) {
  return static_cast<double>(static_cast<int64_t>((bit_cast_value<uint64_t>(a) >> 52) & 0x7ffu) - 1023);
}
NNF_HD double mantissa_of(double a) {
  return bit_cast_value<double>((bit_cast_value<uint64_t>(a) & 0x000fffffffffffffull) |
                                0x3ff0000000000000ull);
}

// ---- masks (bool) -----------------------------------------------------------
NNF_HD bool mask_not(bool m) { return !m; }
NNF_HD bool any_lane(bool m) { return m; }
NNF_HD bool all_lanes(bool m) { return m; }

NNF_NS_END
