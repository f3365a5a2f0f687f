// Storage types for 16-bit floats and their scalar conversions. Functors never
// see these types: loaders widen to float, stores narrow with round-to-nearest-
// even, and a NaN stays a (quiet) NaN.
#pragma once

#include <cstdint>

#include "nnfuse/common/macros.h"
#include "nnfuse/vec/scalar.h"

NNF_NS_BEGIN

struct half_t {
  uint16_t bits;
};
struct bfloat16_t {
  uint16_t bits;
};

// bfloat16 is the top half of a float32: widening is a shift.
NNF_HD float to_float(bfloat16_t h) {
  return bit_cast_value<float>(static_cast<uint32_t>(h.bits) << 16);
}

// Round to nearest even on the 16 dropped bits; NaN keeps its sign and top
// payload bits with the quiet bit forced, so it cannot round to infinity.
NNF_HD bfloat16_t to_bfloat16(float f) {
  uint32_t u = bit_cast_value<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bfloat16_t{static_cast<uint16_t>((u >> 16) | 0x0040u)};
  uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return bfloat16_t{static_cast<uint16_t>((u + rounding) >> 16)};
}

// IEEE binary16 -> binary32, exact (every half is a float).
NNF_HD float to_float(half_t h) {
  uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  uint32_t exponent = (h.bits >> 10) & 0x1fu;
  uint32_t mantissa = h.bits & 0x3ffu;
  uint32_t out;
  if (exponent == 0x1fu) {
    out = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    out = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    out = sign;
  } else {
    // Subnormal half: value = mantissa * 2^-24, exactly representable as float.
    float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    out = sign | bit_cast_value<uint32_t>(magnitude);
  }
  return bit_cast_value<float>(out);
}

// binary32 -> binary16, round to nearest even (the same result as F16C's
// vcvtps2ph with imm 0, which the AVX2 and AVX-512 stores use).
NNF_HD half_t to_half(float f) {
  uint32_t u = bit_cast_value<uint32_t>(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return half_t{static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu))};
  if (a >= 0x477ff000u) return half_t{static_cast<uint16_t>(sign | 0x7c00u)};  // rounds to >= 65520: inf
  if (a >= 0x38800000u) {                                                      // normal half
    uint32_t rounding = 0xfffu + ((a >> 13) & 1u);
    return half_t{static_cast<uint16_t>(sign | ((a - 0x38000000u + rounding) >> 13))};
  }
  if (a < 0x33000000u) return half_t{sign};  // below half of the smallest subnormal: +-0
  // Subnormal half: shift the implicit-one mantissa right, rounding to nearest even.
  uint32_t exponent = a >> 23;
  uint32_t mantissa = (a & 0x7fffffu) | 0x800000u;
  uint32_t shift = 126u - exponent;  // 14..24
  uint32_t half_mantissa = mantissa >> shift;
  uint32_t remainder = mantissa & ((1u << shift) - 1u);
  uint32_t halfway = 1u << (shift - 1u);
  if (remainder > halfway || (remainder == halfway && (half_mantissa & 1u))) ++half_mantissa;
  return half_t{static_cast<uint16_t>(sign | half_mantissa)};
}

NNF_HD float to_float(float f) { return f; }
NNF_HD double to_float(double d) { return d; }

// Narrowing store of a computed float (or double) into each storage type.
template <class T>
struct StoreAs;
template <>
struct StoreAs<float> {
  NNF_HD static float from(float v) { return v; }
};
template <>
struct StoreAs<double> {
  NNF_HD static double from(double v) { return v; }
};
template <>
struct StoreAs<half_t> {
  NNF_HD static half_t from(float v) { return to_half(v); }
};
template <>
struct StoreAs<bfloat16_t> {
  NNF_HD static bfloat16_t from(float v) { return to_bfloat16(v); }
};

// The type a storage type computes in.
template <class T>
struct ComputeType {
  using type = float;
};
template <>
struct ComputeType<double> {
  using type = double;
};
template <class T>
using compute_t = typename ComputeType<T>::type;

NNF_NS_END
