#include "cpu/parallel.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace nnfuse {
namespace {

// Spin this long before sleeping: waking a thread blocked on a condition
// variable took tens of microseconds on the 2-vCPU machines we measure on,
// longer than a whole 2^16-element kernel, so a worker that has just finished
// keeps polling for the next region for a short while (as OpenMP runtimes do).
constexpr auto kSpinBeforeSleep = std::chrono::microseconds(50);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

class ThreadPool {
 public:
  explicit ThreadPool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { worker_loop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      generation_.store(generation_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int workers() const { return static_cast<int>(threads_.size()); }

  // Runs task(ctx, chunk) for every chunk in [0, chunks). Chunks are claimed
  // from a shared counter by the caller and by whichever workers are awake,
  // so a worker the OS has not scheduled yet delays nothing: the caller takes
  // its chunks. (Which thread runs a chunk never changes a result.)
  void run(int chunks, void (*task)(void*, int), void* ctx) {
    task_.store(task, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    finished_.store(0, std::memory_order_relaxed);
    uint64_t generation;
    {
      // The increment happens under the mutex so that a worker deciding to
      // sleep (which re-checks the generation under the same mutex) cannot
      // miss it.
      std::lock_guard<std::mutex> lock(mutex_);
      generation = generation_.load(std::memory_order_relaxed) + 1;
      claim_.store((generation << 32) | (static_cast<uint64_t>(chunks) << 16), std::memory_order_release);
      generation_.store(generation, std::memory_order_release);
    }
    if (sleepers_.load(std::memory_order_acquire) > 0) wake_.notify_all();
    claim_and_run(generation);
    for (int spins = 0; finished_.load(std::memory_order_acquire) != chunks; ++spins) {
      if (spins < 4096) {
        cpu_relax();
      } else {
        std::this_thread::yield();  // oversubscribed: let the worker holding a chunk run
      }
    }
  }

 private:
  // claim_ holds (generation << 32) | (chunks << 16) | next unclaimed chunk.
  // A claim is a CAS on that whole word, so it succeeds only within the
  // claimant's generation and against that generation's own chunk count: a
  // worker still looking at a finished region can never take (or count) a
  // chunk of the next one. (The count once lived in a separate variable that
  // run() set before opening the next generation; a worker that read the old
  // word, exhausted, and then the new, larger count could claim one more chunk
  // of the old generation, run it with the new task, and count it in the new
  // region, whose caller then waited forever for the count to come out even.)
  // task_ and ctx_ cannot change while a claimed chunk of the current
  // generation is unfinished, because run() waits for it.
  void claim_and_run(uint64_t generation) {
    uint64_t current = claim_.load(std::memory_order_acquire);
    for (;;) {
      if ((current >> 32) != generation) return;
      uint64_t chunk = current & 0xffffu;
      if (chunk >= ((current >> 16) & 0xffffu)) return;
      if (!claim_.compare_exchange_weak(current, current + 1, std::memory_order_acq_rel,
                                        std::memory_order_acquire))
        continue;
      task_.load(std::memory_order_relaxed)(ctx_.load(std::memory_order_relaxed), static_cast<int>(chunk));
      finished_.fetch_add(1, std::memory_order_acq_rel);
      current = claim_.load(std::memory_order_acquire);
    }
  }

  void worker_loop() {
    uint64_t seen = 0;
    for (;;) {
      seen = wait_for_generation(seen);
      if (stopping_) return;
      claim_and_run(seen);
    }
  }

  uint64_t wait_for_generation(uint64_t seen) {
    auto start = std::chrono::steady_clock::now();
    for (int spins = 0;; ++spins) {
      uint64_t current = generation_.load(std::memory_order_acquire);
      if (current != seen) return current;
      cpu_relax();
      if ((spins & 255) == 255 && std::chrono::steady_clock::now() - start > kSpinBeforeSleep) break;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    sleepers_.fetch_add(1, std::memory_order_acq_rel);
    wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
    sleepers_.fetch_sub(1, std::memory_order_acq_rel);
    return generation_.load(std::memory_order_acquire);
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> finished_{0};
  bool stopping_ = false;
  // Written by the caller before claim_ opens a generation (release); read by
  // a thread only after a successful claim in that generation (acquire).
  std::atomic<void (*)(void*, int)> task_{nullptr};
  std::atomic<void*> ctx_{nullptr};
};

std::mutex g_pool_mutex;  // one parallel region at a time; guards the pool's lifetime
ThreadPool* g_pool = nullptr;
std::atomic<int> g_num_threads{0};

void forget_pool_in_child() {
  // After fork() only the forking thread exists: drop the pool without joining
  // threads that are not there (the memory is leaked on purpose), and let the
  // child build a fresh one on first use.
  g_pool = nullptr;
  new (&g_pool_mutex) std::mutex();
}

struct ForkHandlerInstaller {
  ForkHandlerInstaller() { pthread_atfork(nullptr, nullptr, forget_pool_in_child); }
} g_fork_handler_installer;

constexpr int kMaxChunks = 0xffff;

struct ChunkPlan {
  int64_t n, chunk;
  void (*fn)(void*, int64_t, int64_t);
  void* ctx;
};

void run_chunk(void* plan_ptr, int index) {
  auto* plan = static_cast<ChunkPlan*>(plan_ptr);
  int64_t begin = static_cast<int64_t>(index) * plan->chunk;
  int64_t end = std::min(plan->n, begin + plan->chunk);
  if (begin < end) plan->fn(plan->ctx, begin, end);
}

}  // namespace

int default_num_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int get_num_threads() {
  int n = g_num_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : default_num_threads();
}

void set_num_threads(int n) { g_num_threads.store(n > 0 ? std::min(n, kMaxThreads) : 0, std::memory_order_relaxed); }

void parallel_for(int64_t n, int64_t min_chunk, int64_t align, void (*fn)(void*, int64_t, int64_t), void* ctx) {
  if (n <= 0) return;
  int threads = get_num_threads();
  int64_t by_size = std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk));
  // At most kMaxChunks: the pool's claim word holds a chunk count in 16 bits.
  int chunks = static_cast<int>(std::min<int64_t>(std::min(threads, kMaxChunks), by_size));
  if (chunks <= 1) {
    fn(ctx, 0, n);
    return;
  }
  int64_t chunk = (n + chunks - 1) / chunks;
  chunk = (chunk + align - 1) / align * align;
  chunks = static_cast<int>((n + chunk - 1) / chunk);
  ChunkPlan plan{n, chunk, fn, ctx};
  std::unique_lock<std::mutex> lock(g_pool_mutex, std::try_to_lock);
  if (!lock.owns_lock()) {
    // Another Python thread is inside a parallel region: run serially rather
    // than wait (the GIL is released, so this can happen).
    fn(ctx, 0, n);
    return;
  }
  if (g_pool == nullptr || g_pool->workers() < chunks - 1) {
    delete g_pool;
    g_pool = new ThreadPool(std::max(chunks - 1, threads - 1));
  }
  g_pool->run(chunks, run_chunk, &plan);
}

}  // namespace nnfuse
