#include "cpu/parallel.h"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <thread>
#include <vector>

namespace nq {

int cpuThreads() {
  if (const char* env = std::getenv("NEXUSQUANT_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

void parallelFor(size_t n, size_t minChunk, const std::function<void(size_t, size_t)>& fn, int threads) {
  if (n == 0) return;
  if (threads <= 0) threads = cpuThreads();
  minChunk = std::max<size_t>(minChunk, 1);
  const size_t maxWorkers = std::max<size_t>(1, n / minChunk);
  const size_t workers = std::min<size_t>(static_cast<size_t>(threads), maxWorkers);
  if (workers <= 1) {
    fn(0, n);
    return;
  }
  const size_t chunk = (n + workers - 1) / workers;
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(workers);
  pool.reserve(workers - 1);
  for (size_t w = 1; w < workers; ++w) {
    const size_t b = w * chunk, e = std::min(n, b + chunk);
    if (b >= e) break;
    pool.emplace_back([&, w, b, e] {
      try {
        fn(b, e);
      } catch (...) {
        errors[w] = std::current_exception();
      }
    });
  }
  try {
    fn(0, std::min(n, chunk));
  } catch (...) {
    errors[0] = std::current_exception();
  }
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace nq
