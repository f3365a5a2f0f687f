#include "cpu/dispatch.h"

#include <cpuid.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/parallel.h"

namespace nnfuse {
NNF_DECLARE_ISA_TABLES(CpuKernelTable, cpu_kernel_table)

namespace {

enum IsaLevel { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };
const char* const kIsaNames[] = {"scalar", "avx2", "avx512"};

uint64_t read_xcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

// The best level this CPU and OS support: CPUID feature bits, and XCR0 bits
// saying the OS saves the YMM (bits 1-2) and opmask/ZMM (bits 5-7) state.
int detect_level() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return kScalar;
  bool osxsave = ecx & (1u << 27), avx = ecx & (1u << 28), fma = ecx & (1u << 12), f16c = ecx & (1u << 29);
  if (!(osxsave && avx && fma && f16c)) return kScalar;
  uint64_t xcr0 = read_xcr0();
  if ((xcr0 & 0x6) != 0x6) return kScalar;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return kScalar;
  bool avx2 = ebx & (1u << 5);
  if (!avx2) return kScalar;
  bool avx512 = (ebx & (1u << 16)) && (ebx & (1u << 17)) && (ebx & (1u << 30)) && (ebx & (1u << 31));
  if (avx512 && (xcr0 & 0xe0) == 0xe0) return kAvx512;
  return kAvx2;
}

bool read_vendor_is_amd() {
  unsigned max_leaf, vendor[3];
  if (!__get_cpuid(0, &max_leaf, &vendor[0], &vendor[2], &vendor[1])) return false;
  return std::string(reinterpret_cast<const char*>(vendor), sizeof(vendor)) == "AuthenticAMD";
}

int level_of(const std::string& name) {
  for (int i = 0; i < 3; ++i)
    if (name == kIsaNames[i]) return i;
  return -1;
}

int supported_level() {
  static const int level = detect_level();
  return level;
}

std::atomic<int> g_level{-1};

void check_runnable(const std::string& name, int level, const char* source) {
  if (level < 0)
    throw std::invalid_argument(std::string(source) + ": unknown CPU ISA '" + name +
                                "' (expected one of: scalar, avx2, avx512)");
  if (level > supported_level())
    throw std::invalid_argument(std::string(source) + ": this CPU cannot run ISA '" + name +
                                "' (best supported: " + kIsaNames[supported_level()] + ")");
}

int active_level() {
  int level = g_level.load(std::memory_order_acquire);
  if (level >= 0) return level;
  static std::once_flag once;
  std::call_once(once, [] {
    int chosen = supported_level();
    if (const char* env = std::getenv("NNFUSE_CPU_ISA"); env && *env) {
      chosen = level_of(env);
      check_runnable(env, chosen, "NNFUSE_CPU_ISA");
    }
    int expected = -1;
    g_level.compare_exchange_strong(expected, chosen);
  });
  return g_level.load(std::memory_order_acquire);
}

// Chunk boundaries on 64 elements keep every chunk's stores cache-line aligned
// for 4-byte and wider types.
constexpr int64_t kChunkAlign = 64;
// PReLU's weight-gradient blocks hold at least this many elements; blocks are
// fixed by the shape alone, so the reduction is the same for any thread count.
constexpr int64_t kPreluBlockElements = 1 << 16;

}  // namespace

std::vector<std::string> compiled_isas() { return {"scalar", "avx2", "avx512"}; }

std::vector<std::string> supported_isas() {
  std::vector<std::string> out;
  for (int i = 0; i <= supported_level(); ++i) out.emplace_back(kIsaNames[i]);
  return out;
}

std::string current_isa() { return kIsaNames[active_level()]; }

void set_cpu_isa(const std::string& name) {
  int level = level_of(name);
  check_runnable(name, level, "set_cpu_isa");
  // Resolve the environment first so that it cannot override this call later.
  // A bad NNFUSE_CPU_ISA is exactly what this call replaces: its error (which
  // every kernel call reports until a level is set) does not stop it.
  try {
    active_level();
  } catch (const std::invalid_argument&) {
  }
  g_level.store(level, std::memory_order_release);
}

int active_isa_level() { return active_level(); }

const CpuKernelTable& kernels() {
  return pick_isa_table(isa_scalar::cpu_kernel_table, isa_avx2::cpu_kernel_table, isa_avx512::cpu_kernel_table);
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::float32: return 4;
    case DType::float64: return 8;
    case DType::float16:
    case DType::bfloat16: return 2;
  }
  return 0;
}

namespace {

// Whether the pages under [out, out + bytes) are backed by memory (Linux:
// mincore of the first, middle and last page; assumed elsewhere).
bool output_resident(const void* out, int64_t bytes) {
#ifdef __linux__
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t first = reinterpret_cast<uintptr_t>(out);
  const uintptr_t samples[3] = {first, first + static_cast<uintptr_t>(bytes / 2),
                                first + static_cast<uintptr_t>(bytes - 1)};
  for (uintptr_t address : samples) {
    unsigned char in_core = 0;
    if (mincore(reinterpret_cast<void*>(address & ~(page - 1)), 1, &in_core) != 0) return true;
    if (!(in_core & 1)) return false;
  }
#else
  (void)out;
  (void)bytes;
#endif
  return true;
}

// A core's L2 in bytes (1 MiB where the system does not say).
int64_t l2_bytes() {
#ifdef _SC_LEVEL2_CACHE_SIZE
  const long bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (bytes > 0) return bytes;
#endif
  return int64_t(1) << 20;
}

const CpuKernelTable& table_at_level(int level) {
  switch (level) {
    case kAvx512: return isa_avx512::cpu_kernel_table();
    case kAvx2: return isa_avx2::cpu_kernel_table();
    default: return isa_scalar::cpu_kernel_table();
  }
}

// The measurement of stream_mid_size (cpu_api.h), with the best kernels this
// CPU runs (the scalar ones never stream, so streaming does not win there).
bool measure_mid_size_streaming() {
  // Two L2s of output (at most kStreamBytes, above which large outputs stream anyway).
  const int64_t n = std::min(2 * l2_bytes(), kStreamBytes) / static_cast<int64_t>(sizeof(float));
  std::vector<float> x(static_cast<size_t>(n), 1.0f), y(static_cast<size_t>(n), 0.0f);
  ActRange r{ActOp::relu, ActDirection::forward, DType::float32, x.data(), nullptr, y.data(), 0.0, 0.0};
  r.total = n;
  const CpuKernelTable& table = table_at_level(supported_level());
  auto seconds = [&](bool stream) {
    r.stream = stream;
    const auto start = std::chrono::steady_clock::now();
    table.activation(r, 0, n);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  constexpr int kRounds = 7;
  std::vector<double> plain, streamed;
  seconds(false);
  seconds(true);
  for (int round = 0; round < kRounds; ++round) {
    plain.push_back(seconds(false));
    streamed.push_back(seconds(true));
  }
  std::nth_element(plain.begin(), plain.begin() + kRounds / 2, plain.end());
  std::nth_element(streamed.begin(), streamed.begin() + kRounds / 2, streamed.end());
  return streamed[kRounds / 2] < 0.9 * plain[kRounds / 2];
}

}  // namespace

bool cpu_vendor_is_amd() {
  static const bool amd = read_vendor_is_amd();
  return amd;
}

bool env_switch(const char* name, bool (*fallback)()) {
  const char* env = std::getenv(name);
  if (!env || !*env) return fallback();
  const std::string setting(env);
  if (setting == "1") return true;
  if (setting == "0") return false;
  throw std::invalid_argument(std::string(name) + ": expected 1 or 0, got '" + setting + "'");
}

bool stream_mid_size() {
  static const bool value = env_switch("NNFUSE_STREAM_MID_SIZE", measure_mid_size_streaming);
  return value;
}

bool stream_large_output(const void* out, int64_t bytes) {
  return bytes >= kStreamBytes && output_resident(out, bytes);
}

bool stream_output(const void* out, int64_t bytes) {
  if (bytes >= kStreamBytes) return stream_large_output(out, bytes);
  const int64_t threads = std::max(1, get_num_threads());
  return bytes / threads >= l2_bytes() && stream_mid_size() && output_resident(out, bytes);
}

// Every activation is split from kMinElementsPerThread (2^15) elements per
// thread, the cheap piecewise-linear ones too: relu at 2^16 float32 on two
// threads took ~5 us split against ~6.5 us on one thread (PyTorch ~4.8 us),
// 2^17 ~8 us against ~14 us.
void run_activation(const ActRange& range, int64_t n) {
  const CpuKernelTable& table = kernels();
  ActRange r = range;
  r.total = n;
  r.stream = stream_output(r.out, n * static_cast<int64_t>(dtype_size(r.dtype)));
  parallel_for(n, kMinElementsPerThread, kChunkAlign,
               [&](int64_t begin, int64_t end) { table.activation(r, begin, end); });
}

void run_rrelu_training(const RreluRange& r, int64_t n) {
  const CpuKernelTable& table = kernels();
  parallel_for(n, kMinElementsPerThread, kChunkAlign,
               [&](int64_t begin, int64_t end) { table.rrelu_training(r, begin, end); });
}

void run_prelu_forward(PreluRange r, int64_t rows) {
  const CpuKernelTable& table = kernels();
  parallel_for(rows, min_rows_per_thread(r.channels * r.inner), 1,
               [&](int64_t begin, int64_t end) { table.prelu_forward(r, begin, end); });
}

void run_prelu_backward(PreluRange r, int64_t rows, double* weight_grad) {
  const CpuKernelTable& table = kernels();
  int64_t row_size = std::max<int64_t>(1, r.channels * r.inner);
  int64_t rows_per_block = std::max<int64_t>(1, kPreluBlockElements / row_size);
  int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
  std::vector<double> partials(static_cast<size_t>(blocks * r.channels), 0.0);
  parallel_for(blocks, 1, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      PreluRange block = r;
      block.weight_grad_partial = partials.data() + b * r.channels;
      int64_t row_end = std::min(rows, (b + 1) * rows_per_block);
      table.prelu_backward(block, b * rows_per_block, row_end);
    }
  });
  for (int64_t c = 0; c < r.channels; ++c) weight_grad[c] = 0.0;
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t c = 0; c < r.channels; ++c) weight_grad[c] += partials[static_cast<size_t>(b * r.channels + c)];
}

}  // namespace nnfuse
