#include "cpu/parallel.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace nnfuse {
namespace {

class ThreadPool {
 public:
  explicit ThreadPool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this, i] { worker_loop(i + 1); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int workers() const { return static_cast<int>(threads_.size()); }

  // Runs task(ctx, chunk) for chunk in [0, chunks): chunk 0 on the caller.
  void run(int chunks, void (*task)(void*, int), void* ctx) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = task;
      ctx_ = ctx;
      chunks_ = chunks;
      pending_.store(chunks - 1, std::memory_order_relaxed);
      ++generation_;
    }
    wake_.notify_all();
    task(ctx, 0);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
  }

 private:
  void worker_loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      void (*task)(void*, int);
      void* ctx;
      int chunks;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (stopping_) return;
        task = task_;
        ctx = ctx_;
        chunks = chunks_;
      }
      if (index < chunks) {
        task(ctx, index);
        if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          std::lock_guard<std::mutex> lock(mutex_);
          done_.notify_one();
        }
      }
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  void (*task_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
  int chunks_ = 0;
  std::atomic<int> pending_{0};
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

void set_num_threads(int n) { g_num_threads.store(n > 0 ? n : 0, std::memory_order_relaxed); }

void parallel_for(int64_t n, int64_t min_chunk, int64_t align, void (*fn)(void*, int64_t, int64_t), void* ctx) {
  if (n <= 0) return;
  int threads = get_num_threads();
  int64_t by_size = std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk));
  int chunks = static_cast<int>(std::min<int64_t>(threads, by_size));
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
