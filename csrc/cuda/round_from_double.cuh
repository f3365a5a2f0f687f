// Device-side rounding of a double (a float64 reduction: the PReLU weight
// gradient, cross-entropy losses) to the output type, shared by the CUDA
// translation units.
#pragma once

#include <cstdint>

#include "nnfuse/common/dtypes.h"
#include "nnfuse/common/macros.h"
#include "nnfuse/vec/scalar.h"

NNF_NS_BEGIN

// double -> T rounded once: float32 and float64 directly; 16-bit through float
// rounded to odd (float carries more than two extra bits, so float -> 16-bit
// round-to-nearest-even then equals the direct rounding, as NumPy's astype on
// the CPU).
template <class T>
__device__ __forceinline__ T round_from_double(double d) {
  if constexpr (sizeof(T) == sizeof(double)) {
    return d;
  } else if constexpr (sizeof(T) == sizeof(float)) {
    return __double2float_rn(d);
  } else {
    float f = __double2float_rz(d);
    if (static_cast<double>(f) != d && d == d) f = bit_cast_value<float>(bit_cast_value<uint32_t>(f) | 1u);
    return StoreAs<T>::from(f);
  }
}

NNF_NS_END
