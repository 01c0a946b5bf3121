#include "cpu/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace nq {

int cpuThreads() {
  const unsigned hw0 = std::thread::hardware_concurrency();
  const int hw = hw0 == 0 ? 1 : static_cast<int>(std::min<unsigned>(hw0, 1024));
  if (const char* env = std::getenv("NEXUSQUANT_THREADS")) {
    const long n = std::strtol(env, nullptr, 10);
    if (n >= 1) return static_cast<int>(std::min<long>(n, hw));
  }
  return hw;
}

namespace {

// Workers sleep on a condition variable between jobs; a job is a chunk counter they drain.
class Pool {
 public:
  explicit Pool(int wanted) {
    for (int i = 0; i < wanted; ++i) {
      try {
        workers_.emplace_back([this] { loop(); });
      } catch (...) {
        break;  // out of threads or memory for stacks: run with the workers we have
      }
    }
  }
  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs chunks [0, chunks) of `job` on the workers and the caller; returns false, running nothing,
  // when another job holds the pool.
  bool run(size_t chunks, const std::function<void(size_t)>& job) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> l(m_);
      job_ = &job;
      chunks_ = chunks;
      next_.store(0);
      done_ = 0;
      ++generation_;
    }
    wake_.notify_all();
    drain(job, chunks);
    std::unique_lock<std::mutex> l(m_);
    // Also wait for every worker to leave drain(), so none carries a stale chunk into the next job.
    finished_.wait(l, [&] { return done_ == chunks_ && active_ == 0; });
    job_ = nullptr;
    return true;
  }

 private:
  void drain(const std::function<void(size_t)>& job, size_t chunks) {
    for (;;) {
      const size_t c = next_.fetch_add(1);
      if (c >= chunks) return;
      job(c);  // never throws: parallelFor catches inside
      std::lock_guard<std::mutex> l(m_);
      if (++done_ == chunks) finished_.notify_all();
    }
  }
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(size_t)>* job;
      size_t chunks;
      {
        std::unique_lock<std::mutex> l(m_);
        wake_.wait(l, [&] { return generation_ != seen; });
        seen = generation_;
        if (!job_) continue;
        job = job_;
        chunks = chunks_;
        ++active_;
      }
      drain(*job, chunks);
      std::lock_guard<std::mutex> l(m_);
      --active_;
      finished_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex busy_, m_;
  std::condition_variable wake_, finished_;
  const std::function<void(size_t)>* job_ = nullptr;
  size_t chunks_ = 0, done_ = 0, active_ = 0;
  std::atomic<size_t> next_{0};
  uint64_t generation_ = 0;
};

// Never destroyed: joining sleeping workers from a static destructor at exit could hang.
Pool& pool() {
  static Pool* p = new Pool(cpuThreads() - 1);
  return *p;
}

}  // namespace

int poolThreads() { return pool().threads(); }

void parallelFor(size_t n, size_t minChunk, const std::function<void(size_t, size_t)>& fn, int threads) {
  if (n == 0) return;
  if (threads <= 0) threads = cpuThreads();
  minChunk = std::max<size_t>(minChunk, 1);
  const size_t maxWorkers = std::max<size_t>(1, n / minChunk);
  const size_t workers = std::min<size_t>({static_cast<size_t>(threads), maxWorkers, static_cast<size_t>(poolThreads())});
  if (workers <= 1) {
    fn(0, n);
    return;
  }
  // Up to 4 chunks per thread, claimed dynamically: a thread the OS preempts (a busy machine) holds
  // back one small chunk, not a quarter of the work.
  const size_t wantedChunks = std::min(maxWorkers, 4 * workers);
  const size_t chunk = (n + wantedChunks - 1) / wantedChunks;
  const size_t chunks = (n + chunk - 1) / chunk;
  std::vector<std::exception_ptr> errors(chunks);
  const std::function<void(size_t)> job = [&](size_t c) {
    try {
      fn(c * chunk, std::min(n, (c + 1) * chunk));
    } catch (...) {
      errors[c] = std::current_exception();
    }
  };
  if (!pool().run(chunks, job))
    for (size_t c = 0; c < chunks; ++c) job(c);  // pool busy: this thread runs every chunk
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace nq
