// Run-time choice of the CPU kernel table, and the threaded entry points the
// bindings call. Compiled with baseline flags: runs on any x86-64.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cpu/cpu_api.h"

namespace nnfuse {

// ISAs compiled into this build, in increasing order: "scalar", "avx2", "avx512".
std::vector<std::string> compiled_isas();
// Those this CPU and OS can run.
std::vector<std::string> supported_isas();
// The ISA the kernels use now: the best supported one, or NNFUSE_CPU_ISA, or
// the last set_cpu_isa().
std::string current_isa();
// Throws std::invalid_argument naming the ISA if it is unknown or unsupported.
void set_cpu_isa(const std::string& name);
const CpuKernelTable& kernels();

// 0 = scalar, 1 = AVX2, 2 = AVX-512: the level the kernels use now.
int active_isa_level();

// Whether CPUID's vendor string is AuthenticAMD (for tuning choices measured
// to go opposite ways on the Intel and AMD machines benchmarked).
bool cpu_vendor_is_amd();

// A tuning switch from the environment: variable `name` set to "1" (true)
// or "0" (false); unset or empty: fallback(). Any other value throws
// std::invalid_argument naming the variable.
bool env_switch(const char* name, bool (*fallback)());

// Each feature (activations, softmax, optimizers) has its own table of kernel
// entry points, defined once per ISA by a function `fn` in the ISA's inline
// namespace. NNF_DECLARE_ISA_TABLES declares the three definitions;
// pick_isa_table returns the one of the active ISA.
#define NNF_DECLARE_ISA_TABLES(Table, fn) \
  namespace isa_scalar {                  \
  const Table& fn();                      \
  }                                       \
  namespace isa_avx2 {                    \
  const Table& fn();                      \
  }                                       \
  namespace isa_avx512 {                  \
  const Table& fn();                      \
  }

template <class Table>
const Table& pick_isa_table(const Table& (*scalar)(), const Table& (*avx2)(), const Table& (*avx512)()) {
  switch (active_isa_level()) {
    case 2: return avx512();
    case 1: return avx2();
    default: return scalar();
  }
}

size_t dtype_size(DType dtype);

void run_activation(const ActRange& r, int64_t n);
void run_prelu_forward(PreluRange r, int64_t rows);
// weight_grad receives `channels` doubles, the same bits for every thread count.
void run_prelu_backward(PreluRange r, int64_t rows, double* weight_grad);
void run_rrelu_training(const RreluRange& r, int64_t n);

}  // namespace nnfuse
