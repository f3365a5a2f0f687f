// The one place where a dtype code becomes a storage type, shared by the CPU
// kernels (every ISA) and the CUDA launchers.
#pragma once

#include <type_traits>
#include <utility>

#include "cpu/cpu_api.h"
#include "nnfuse/common/dtypes.h"

NNF_NS_BEGIN

template <class T>
struct type_tag {
  using type = T;
};

// Returns f(type_tag<T>{}) with T the storage type of `dtype`. A code outside
// DType yields R() (no call): the Python layer only ever passes valid codes.
template <class F, class R = decltype(std::declval<F>()(type_tag<float>{}))>
inline R dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::float32: return f(type_tag<float>{});
    case DType::float64: return f(type_tag<double>{});
    case DType::float16: return f(type_tag<half_t>{});
    case DType::bfloat16: return f(type_tag<bfloat16_t>{});
  }
  if constexpr (!std::is_void_v<R>) return R();
}

NNF_NS_END
