// Vec<float, Avx2>: eight float lanes in a __m256, with the primitive vocabulary
// documented in vec/scalar.h. Only translation units compiled with
// -mavx2 -mfma -mf16c include this header.
#pragma once

#include <immintrin.h>

#include <cstring>

#include "nnfuse/common/dtypes.h"
#include "nnfuse/vec/scalar.h"

NNF_NS_BEGIN

struct Avx2 {};
template <class T, class Isa>
struct Vec;

struct MaskAvx2 {
  __m256 m;
};

template <>
struct Vec<float, Avx2> {
  static constexpr int lanes = 8;
  __m256 v;
  Vec() = default;
  NNF_HD Vec(float s) : v(_mm256_set1_ps(s)) {}
  NNF_HD Vec(__m256 raw) : v(raw) {}
};
using VecAvx2 = Vec<float, Avx2>;

template <>
struct VecTraits<VecAvx2> {
  using scalar = float;
  using mask = MaskAvx2;
  static constexpr int lanes = 8;
};

NNF_HD VecAvx2 operator+(VecAvx2 a, VecAvx2 b) { return _mm256_add_ps(a.v, b.v); }
NNF_HD VecAvx2 operator-(VecAvx2 a, VecAvx2 b) { return _mm256_sub_ps(a.v, b.v); }
NNF_HD VecAvx2 operator*(VecAvx2 a, VecAvx2 b) { return _mm256_mul_ps(a.v, b.v); }
NNF_HD VecAvx2 operator/(VecAvx2 a, VecAvx2 b) { return _mm256_div_ps(a.v, b.v); }
// A sign-bit flip through the compiler's vector type (see the AVX-512 form).
NNF_HD VecAvx2 operator-(VecAvx2 a) { return -a.v; }
NNF_HD VecAvx2& operator+=(VecAvx2& a, VecAvx2 b) { return a = a + b; }
NNF_HD VecAvx2& operator-=(VecAvx2& a, VecAvx2 b) { return a = a - b; }
NNF_HD VecAvx2& operator*=(VecAvx2& a, VecAvx2 b) { return a = a * b; }
NNF_HD VecAvx2& operator/=(VecAvx2& a, VecAvx2 b) { return a = a / b; }

NNF_HD MaskAvx2 operator<(VecAvx2 a, VecAvx2 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
NNF_HD MaskAvx2 operator<=(VecAvx2 a, VecAvx2 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
NNF_HD MaskAvx2 operator>(VecAvx2 a, VecAvx2 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
NNF_HD MaskAvx2 operator>=(VecAvx2 a, VecAvx2 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ)}; }
NNF_HD MaskAvx2 operator==(VecAvx2 a, VecAvx2 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ)}; }
NNF_HD MaskAvx2 operator!=(VecAvx2 a, VecAvx2 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_NEQ_UQ)}; }
NNF_HD MaskAvx2 operator&(MaskAvx2 a, MaskAvx2 b) { return {_mm256_and_ps(a.m, b.m)}; }
NNF_HD MaskAvx2 operator|(MaskAvx2 a, MaskAvx2 b) { return {_mm256_or_ps(a.m, b.m)}; }
NNF_HD MaskAvx2 mask_not(MaskAvx2 a) {
  return {_mm256_xor_ps(a.m, _mm256_castsi256_ps(_mm256_set1_epi32(-1)))};
}
NNF_HD bool any_lane(MaskAvx2 a) { return _mm256_movemask_ps(a.m) != 0; }
NNF_HD bool all_lanes(MaskAvx2 a) { return _mm256_movemask_ps(a.m) == 0xff; }

NNF_HD VecAvx2 fma(VecAvx2 a, VecAvx2 b, VecAvx2 c) { return _mm256_fmadd_ps(a.v, b.v, c.v); }
NNF_HD VecAvx2 select(MaskAvx2 m, VecAvx2 a, VecAvx2 b) { return _mm256_blendv_ps(b.v, a.v, m.m); }
NNF_HD VecAvx2 vmin(VecAvx2 a, VecAvx2 b) { return _mm256_min_ps(a.v, b.v); }
NNF_HD VecAvx2 vmax(VecAvx2 a, VecAvx2 b) { return _mm256_max_ps(a.v, b.v); }
NNF_HD VecAvx2 vabs(VecAvx2 a) {
  return _mm256_and_ps(a.v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}
NNF_HD VecAvx2 vsqrt(VecAvx2 a) { return _mm256_sqrt_ps(a.v); }
NNF_HD VecAvx2 vrint(VecAvx2 a) {
  return _mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
NNF_HD VecAvx2 copysign(VecAvx2 mag, VecAvx2 sgn) {
  __m256 sign_bit = _mm256_set1_ps(-0.0f);
  return _mm256_or_ps(_mm256_andnot_ps(sign_bit, mag.v), _mm256_and_ps(sign_bit, sgn.v));
}
NNF_HD MaskAvx2 is_nan(VecAvx2 a) { return {_mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q)}; }
// |a| not below inf (unordered: NaN too).
NNF_HD MaskAvx2 is_inf_or_nan(VecAvx2 a) {
  return {_mm256_cmp_ps(vabs(a).v, _mm256_set1_ps(__builtin_inff()), _CMP_NLT_UQ)};
}
NNF_HD VecAvx2 pow2i(VecAvx2 k) {
  __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(k.v), _mm256_set1_epi32(127));
  return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
NNF_HD VecAvx2 pow2_rounded(VecAvx2 t, VecAvx2 e) {
  return _mm256_castsi256_ps(
      _mm256_add_epi32(_mm256_slli_epi32(_mm256_castps_si256(t.v), 23), _mm256_castps_si256(pow2i(e).v)));
}
NNF_HD VecAvx2 scale_pow2(VecAvx2 v, VecAvx2 k) { return v * pow2i(k); }
NNF_HD VecAvx2 exponent_of(VecAvx2 a) {
  __m256i bits = _mm256_srli_epi32(_mm256_castps_si256(a.v), 23);
  bits = _mm256_and_si256(bits, _mm256_set1_epi32(0xff));
  return _mm256_cvtepi32_ps(_mm256_sub_epi32(bits, _mm256_set1_epi32(127)));
}
NNF_HD VecAvx2 mantissa_of(VecAvx2 a) {
  __m256i bits = _mm256_and_si256(_mm256_castps_si256(a.v), _mm256_set1_epi32(0x007fffff));
  return _mm256_castsi256_ps(_mm256_or_si256(bits, _mm256_set1_epi32(0x3f800000)));
}
NNF_HD VecAvx2 quarter_octave_lookup(const float* table, VecAvx2 key) {
  // Entry bits 0-2 (key bits 21-23) pick within each half of the table
  // (vpermps reads the low three bits of each index lane); entry bit 3 (key
  // bit 24), moved to the sign bit, picks the half.
  __m256i bits = _mm256_castps_si256(key.v);
  __m256i index = _mm256_srli_epi32(bits, 21);
  __m256 low = _mm256_permutevar8x32_ps(_mm256_loadu_ps(table), index);
  __m256 high = _mm256_permutevar8x32_ps(_mm256_loadu_ps(table + 8), index);
  return _mm256_blendv_ps(low, high, _mm256_castsi256_ps(_mm256_slli_epi32(bits, 7)));
}
NNF_HD VecAvx2 piece_lookup32(const float* table, VecAvx2 key) {
  // vpermps reads the low three bits of each index lane, picking within each
  // quarter of the table; key bits 3 and 4, moved to the sign bit, pick the
  // quarter (bit 3 within each half, then bit 4 between the halves).
  __m256i bits = _mm256_castps_si256(key.v);
  __m256 bit3 = _mm256_castsi256_ps(_mm256_slli_epi32(bits, 28));
  __m256 low = _mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(table), bits),
                                _mm256_permutevar8x32_ps(_mm256_loadu_ps(table + 8), bits), bit3);
  __m256 high = _mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(table + 16), bits),
                                 _mm256_permutevar8x32_ps(_mm256_loadu_ps(table + 24), bits), bit3);
  return _mm256_blendv_ps(low, high, _mm256_castsi256_ps(_mm256_slli_epi32(bits, 27)));
}
template <>
NNF_HD VecAvx2 vgather<VecAvx2>(const float* p, const int32_t* index) {
  return _mm256_i32gather_ps(p, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(index)), 4);
}
NNF_HD VecAvx2 vpermute(VecAvx2 a, const int32_t* index) {
  return _mm256_permutevar8x32_ps(a.v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(index)));
}

// ---- widening loads and narrowing stores ------------------------------------
NNF_HD VecAvx2 vload(const float* p) { return _mm256_loadu_ps(p); }
NNF_HD VecAvx2 vload(const half_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
NNF_HD VecAvx2 vload(const bfloat16_t* p) {
  __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
NNF_HD void vstore(float* p, VecAvx2 a) { _mm256_storeu_ps(p, a.v); }
// Non-temporal store (p 32-byte aligned): bypasses the caches, no read for
// ownership of the line; callers end a streaming loop with _mm_sfence().
NNF_HD void vstore_stream(float* p, VecAvx2 a) { _mm256_stream_ps(p, a.v); }
NNF_HD __m128i narrow_to_half(VecAvx2 a) { return _mm256_cvtps_ph(a.v, _MM_FROUND_TO_NEAREST_INT); }
// a rounded to bfloat16 (nearest even on the dropped 16 bits), in the high
// half of each lane (the low half is left over); NaN lanes get the quiet bit.
NNF_HD __m256i round_to_bfloat16_high(VecAvx2 a) {
  __m256i u = _mm256_castps_si256(a.v);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i rounded = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
  __m256i quiet_nan = _mm256_or_si256(u, _mm256_set1_epi32(0x00400000));
  __m256 nan_lanes = _mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q);
  return _mm256_castps_si256(
      _mm256_blendv_ps(_mm256_castsi256_ps(rounded), _mm256_castsi256_ps(quiet_nan), nan_lanes));
}
NNF_HD __m128i narrow_to_bfloat16(VecAvx2 a) {
  __m256i out = _mm256_srli_epi32(round_to_bfloat16_high(a), 16);
  __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(out, out), 0x08);
  return _mm256_castsi256_si128(packed);
}

// 16 bfloat16 values as two vectors, the even-indexed ones (w << 16) and the
// odd-indexed ones (w with the low halves cleared); vstore_pair rounds both
// and interleaves them with one blend (see the AVX-512 version).
struct Bfloat16Pair {
  VecAvx2 even, odd;
};
NNF_HD Bfloat16Pair vload_pair(const bfloat16_t* p) {
  __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return {VecAvx2(_mm256_castsi256_ps(_mm256_slli_epi32(w, 16))),
          VecAvx2(_mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32(static_cast<int>(0xffff0000u)))))};
}
NNF_HD __m256i narrow_pair_to_bfloat16(VecAvx2 even, VecAvx2 odd) {
  return _mm256_blend_epi16(_mm256_srli_epi32(round_to_bfloat16_high(even), 16), round_to_bfloat16_high(odd), 0xaa);
}
NNF_HD void vstore_pair(bfloat16_t* p, VecAvx2 even, VecAvx2 odd) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), narrow_pair_to_bfloat16(even, odd));
}
// Non-temporal (p 32-byte aligned), as vstore_stream(float*).
NNF_HD void vstore_stream_pair(bfloat16_t* p, VecAvx2 even, VecAvx2 odd) {
  _mm256_stream_si256(reinterpret_cast<__m256i*>(p), narrow_pair_to_bfloat16(even, odd));
}
NNF_HD void vstore(half_t* p, VecAvx2 a) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), narrow_to_half(a)); }
NNF_HD void vstore(bfloat16_t* p, VecAvx2 a) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), narrow_to_bfloat16(a));
}
// Non-temporal 16-bit stores (p 16-byte aligned), as vstore_stream(float*).
NNF_HD void vstore_stream(half_t* p, VecAvx2 a) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), narrow_to_half(a)); }
NNF_HD void vstore_stream(bfloat16_t* p, VecAvx2 a) {
  _mm_stream_si128(reinterpret_cast<__m128i*>(p), narrow_to_bfloat16(a));
}

// Loop tails: the n < 8 remaining elements go through a zero-padded copy and
// the very same vector instructions as the body.
template <class T>
NNF_HD VecAvx2 vload_partial(const T* p, int n) {
  T buffer[8] = {};
  std::memcpy(buffer, p, sizeof(T) * static_cast<size_t>(n));
  return vload(buffer);
}
template <class T>
NNF_HD void vstore_partial(T* p, VecAvx2 a, int n) {
  T buffer[8];
  vstore(buffer, a);
  std::memcpy(p, buffer, sizeof(T) * static_cast<size_t>(n));
}

NNF_NS_END
