// Vec<float, Avx512>: sixteen float lanes in a __m512, with the primitive
// vocabulary documented in vec/scalar.h. Only translation units compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512dq include this header.
#pragma once

#include <immintrin.h>

#include "nnfuse/common/dtypes.h"
#include "nnfuse/vec/scalar.h"

NNF_NS_BEGIN

struct Avx512 {};
template <class T, class Isa>
struct Vec;

struct MaskAvx512 {
  __mmask16 m;
};

template <>
struct Vec<float, Avx512> {
  static constexpr int lanes = 16;
  __m512 v;
  Vec() = default;
  NNF_HD Vec(float s) : v(_mm512_set1_ps(s)) {}
  NNF_HD Vec(__m512 raw) : v(raw) {}
};
using VecAvx512 = Vec<float, Avx512>;

template <>
struct VecTraits<VecAvx512> {
  using scalar = float;
  using mask = MaskAvx512;
  static constexpr int lanes = 16;
};

NNF_HD VecAvx512 operator+(VecAvx512 a, VecAvx512 b) { return _mm512_add_ps(a.v, b.v); }
NNF_HD VecAvx512 operator-(VecAvx512 a, VecAvx512 b) { return _mm512_sub_ps(a.v, b.v); }
NNF_HD VecAvx512 operator*(VecAvx512 a, VecAvx512 b) { return _mm512_mul_ps(a.v, b.v); }
NNF_HD VecAvx512 operator/(VecAvx512 a, VecAvx512 b) { return _mm512_div_ps(a.v, b.v); }
// Negation through the compiler's vector type (a sign-bit flip, as the xor
// it compiles to), so that it can fold into fused forms: fma(a, b, -c) is one
// vfmsub instead of a vxorps and a vfmadd. Exact, so the same bits; float32,
// 1 thread, in L1, 0-7% fewer ns per element (mish 1.06 -> 1.00, GELU-tanh
// backward 1.46 -> 1.37, silu backward 0.51 -> 0.48).
NNF_HD VecAvx512 operator-(VecAvx512 a) { return -a.v; }
NNF_HD VecAvx512& operator+=(VecAvx512& a, VecAvx512 b) { return a = a + b; }
NNF_HD VecAvx512& operator-=(VecAvx512& a, VecAvx512 b) { return a = a - b; }
NNF_HD VecAvx512& operator*=(VecAvx512& a, VecAvx512 b) { return a = a * b; }
NNF_HD VecAvx512& operator/=(VecAvx512& a, VecAvx512 b) { return a = a / b; }

NNF_HD MaskAvx512 operator<(VecAvx512 a, VecAvx512 b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
NNF_HD MaskAvx512 operator<=(VecAvx512 a, VecAvx512 b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ)}; }
NNF_HD MaskAvx512 operator>(VecAvx512 a, VecAvx512 b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ)}; }
NNF_HD MaskAvx512 operator>=(VecAvx512 a, VecAvx512 b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ)}; }
NNF_HD MaskAvx512 operator==(VecAvx512 a, VecAvx512 b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ)}; }
NNF_HD MaskAvx512 operator!=(VecAvx512 a, VecAvx512 b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_NEQ_UQ)}; }
NNF_HD MaskAvx512 operator&(MaskAvx512 a, MaskAvx512 b) { return {static_cast<__mmask16>(a.m & b.m)}; }
NNF_HD MaskAvx512 operator|(MaskAvx512 a, MaskAvx512 b) { return {static_cast<__mmask16>(a.m | b.m)}; }
NNF_HD MaskAvx512 mask_not(MaskAvx512 a) { return {static_cast<__mmask16>(~a.m)}; }
NNF_HD bool any_lane(MaskAvx512 a) { return a.m != 0; }
NNF_HD bool all_lanes(MaskAvx512 a) { return a.m == 0xffff; }

NNF_HD VecAvx512 fma(VecAvx512 a, VecAvx512 b, VecAvx512 c) { return _mm512_fmadd_ps(a.v, b.v, c.v); }
NNF_HD VecAvx512 select(MaskAvx512 m, VecAvx512 a, VecAvx512 b) { return _mm512_mask_blend_ps(m.m, b.v, a.v); }
// vmin, vmax, vsqrt, vrint and pow2i use the zero-masking forms with every
// lane selected: the same instructions (vminps, vmaxps, vsqrtps, vrndscaleps,
// vcvtps2dq, vpslld), without the undefined pass-through operand of the plain
// intrinsics, about which GCC 12 warns (-Wuninitialized, a false positive)
// once they are inlined into some of the loops (the optimizers', softmax's).
NNF_HD VecAvx512 vmin(VecAvx512 a, VecAvx512 b) { return _mm512_maskz_min_ps(0xffff, a.v, b.v); }
NNF_HD VecAvx512 vmax(VecAvx512 a, VecAvx512 b) { return _mm512_maskz_max_ps(0xffff, a.v, b.v); }
NNF_HD VecAvx512 vabs(VecAvx512 a) {
  return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(0x7fffffff)));
}
NNF_HD VecAvx512 vsqrt(VecAvx512 a) { return _mm512_maskz_sqrt_ps(0xffff, a.v); }
NNF_HD VecAvx512 vrint(VecAvx512 a) {
  return _mm512_maskz_roundscale_ps(0xffff, a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
NNF_HD VecAvx512 copysign(VecAvx512 mag, VecAvx512 sgn) {
  // ternary logic 0xca is "a ? b : c" bitwise: the magnitude bits from mag, the sign bit from sgn.
  return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_set1_epi32(0x7fffffff),
                                                       _mm512_castps_si512(mag.v),
                                                       _mm512_castps_si512(sgn.v), 0xca));
}
NNF_HD MaskAvx512 is_nan(VecAvx512 a) { return {_mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q)}; }
// vfpclassps: quiet and signalling NaN, +inf, -inf (0x01 | 0x80 | 0x08 | 0x10).
NNF_HD MaskAvx512 is_inf_or_nan(VecAvx512 a) { return {_mm512_fpclass_ps_mask(a.v, 0x99)}; }
NNF_HD VecAvx512 pow2i(VecAvx512 k) {
  __m512i e = _mm512_add_epi32(_mm512_maskz_cvtps_epi32(0xffff, k.v), _mm512_set1_epi32(127));
  return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xffff, e, 23));
}
NNF_HD VecAvx512 pow2_rounded(VecAvx512 t, VecAvx512 e) {
  return _mm512_castsi512_ps(
      _mm512_add_epi32(_mm512_maskz_slli_epi32(0xffff, _mm512_castps_si512(t.v), 23), _mm512_castps_si512(pow2i(e).v)));
}
// vscalefps: v 2^floor(k) rounded once, the product v * pow2i(k) in one
// instruction instead of four (k integral here).
NNF_HD VecAvx512 scale_pow2(VecAvx512 v, VecAvx512 k) { return _mm512_maskz_scalef_ps(0xffff, v.v, k.v); }
NNF_HD VecAvx512 exponent_of(VecAvx512 a) {
  __m512i bits = _mm512_maskz_srli_epi32(0xffff, _mm512_castps_si512(a.v), 23);
  bits = _mm512_and_si512(bits, _mm512_set1_epi32(0xff));
  return _mm512_maskz_cvtepi32_ps(0xffff, _mm512_sub_epi32(bits, _mm512_set1_epi32(127)));
}
NNF_HD VecAvx512 mantissa_of(VecAvx512 a) {
  __m512i bits = _mm512_and_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(0x007fffff));
  return _mm512_castsi512_ps(_mm512_or_si512(bits, _mm512_set1_epi32(0x3f800000)));
}
NNF_HD VecAvx512 quarter_octave_lookup(const float* table, VecAvx512 key) {
  // vpermps reads the low four bits of each index lane.
  __m512i index = _mm512_srli_epi32(_mm512_castps_si512(key.v), 21);
  return _mm512_permutexvar_ps(index, _mm512_loadu_ps(table));
}
NNF_HD VecAvx512 piece_lookup32(const float* table, VecAvx512 key) {
  // vpermt2ps reads the low five bits of each index lane: bit 4 picks the table half.
  return _mm512_permutex2var_ps(_mm512_loadu_ps(table), _mm512_castps_si512(key.v), _mm512_loadu_ps(table + 16));
}
// vgather is left out: on the AMD Zen 4 this was measured on, a 16-lane
// gather cost about 6 ns, against under 1 ns for a load and a vpermps (its
// one user transposes with vpermt2ps instead).
NNF_HD VecAvx512 vpermute(VecAvx512 a, const int32_t* index) {
  return _mm512_maskz_permutexvar_ps(0xffff, _mm512_loadu_si512(index), a.v);
}

// ---- widening loads and narrowing stores; tails use AVX-512 masked moves -----
NNF_HD __mmask16 first_lanes(int n) { return static_cast<__mmask16>((1u << n) - 1u); }

NNF_HD VecAvx512 vload(const float* p) { return _mm512_loadu_ps(p); }
NNF_HD VecAvx512 vload(const half_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
NNF_HD VecAvx512 vload(const bfloat16_t* p) {
  __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
NNF_HD VecAvx512 vload_partial(const float* p, int n) { return _mm512_maskz_loadu_ps(first_lanes(n), p); }
NNF_HD VecAvx512 vload_partial(const half_t* p, int n) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first_lanes(n), p));
}
NNF_HD VecAvx512 vload_partial(const bfloat16_t* p, int n) {
  __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(first_lanes(n), p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}

NNF_HD __m256i narrow_to_half(VecAvx512 a) { return _mm512_cvtps_ph(a.v, _MM_FROUND_TO_NEAREST_INT); }
// a rounded to bfloat16 (nearest even on the dropped 16 bits), in the high
// half of each lane (the low half is left over); NaN lanes get the quiet bit.
NNF_HD __m512i round_to_bfloat16_high(VecAvx512 a) {
  __m512i u = _mm512_castps_si512(a.v);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  __mmask16 nan_lanes = _mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q);
  return _mm512_mask_or_epi32(rounded, nan_lanes, u, _mm512_set1_epi32(0x00400000));
}
NNF_HD __m256i narrow_to_bfloat16(VecAvx512 a) {
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(round_to_bfloat16_high(a), 16));
}

// 32 bfloat16 values as two vectors, the even-indexed ones (w << 16) and the
// odd-indexed ones (w with the low halves cleared): one load and two
// instructions, where vload spends a widening shuffle on every 16 values.
// vstore_pair rounds both and interleaves them with one blend. For
// element-wise loops, where which lane holds an element does not matter.
struct Bfloat16Pair {
  VecAvx512 even, odd;
};
NNF_HD Bfloat16Pair vload_pair(const bfloat16_t* p) {
  __m512i w = _mm512_loadu_si512(p);
  return {VecAvx512(_mm512_castsi512_ps(_mm512_slli_epi32(w, 16))),
          VecAvx512(_mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32(static_cast<int>(0xffff0000u)))))};
}
NNF_HD __m512i narrow_pair_to_bfloat16(VecAvx512 even, VecAvx512 odd) {
  return _mm512_mask_blend_epi16(0xaaaaaaaau, _mm512_srli_epi32(round_to_bfloat16_high(even), 16),
                                 round_to_bfloat16_high(odd));
}
NNF_HD void vstore_pair(bfloat16_t* p, VecAvx512 even, VecAvx512 odd) {
  _mm512_storeu_si512(p, narrow_pair_to_bfloat16(even, odd));
}
// Non-temporal (p 64-byte aligned), as vstore_stream(float*).
NNF_HD void vstore_stream_pair(bfloat16_t* p, VecAvx512 even, VecAvx512 odd) {
  _mm512_stream_si512(reinterpret_cast<__m512i*>(p), narrow_pair_to_bfloat16(even, odd));
}

NNF_HD void vstore(float* p, VecAvx512 a) { _mm512_storeu_ps(p, a.v); }
// Non-temporal store (p 64-byte aligned): bypasses the caches, no read for
// ownership of the line; callers end a streaming loop with _mm_sfence().
NNF_HD void vstore_stream(float* p, VecAvx512 a) { _mm512_stream_ps(p, a.v); }
NNF_HD void vstore(half_t* p, VecAvx512 a) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), narrow_to_half(a));
}
NNF_HD void vstore(bfloat16_t* p, VecAvx512 a) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), narrow_to_bfloat16(a));
}
// Non-temporal 16-bit stores (p 32-byte aligned), as vstore_stream(float*).
NNF_HD void vstore_stream(half_t* p, VecAvx512 a) {
  _mm256_stream_si256(reinterpret_cast<__m256i*>(p), narrow_to_half(a));
}
NNF_HD void vstore_stream(bfloat16_t* p, VecAvx512 a) {
  _mm256_stream_si256(reinterpret_cast<__m256i*>(p), narrow_to_bfloat16(a));
}
NNF_HD void vstore_partial(float* p, VecAvx512 a, int n) { _mm512_mask_storeu_ps(p, first_lanes(n), a.v); }
NNF_HD void vstore_partial(half_t* p, VecAvx512 a, int n) {
  _mm256_mask_storeu_epi16(p, first_lanes(n), narrow_to_half(a));
}
NNF_HD void vstore_partial(bfloat16_t* p, VecAvx512 a, int n) {
  _mm256_mask_storeu_epi16(p, first_lanes(n), narrow_to_bfloat16(a));
}

NNF_NS_END
