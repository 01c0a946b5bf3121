// parallelFor splits [0, n) into contiguous chunks run by a persistent pool of worker threads plus
// the calling thread. The pool starts at first use with cpuThreads() - 1 workers; a worker that
// cannot be created is simply not there (the work runs on fewer threads), so thread exhaustion never
// aborts the process. One parallel job runs on the pool at a time: a call made while the pool is
// busy (another async job, or a nested call from inside a chunk) runs its chunks on its own thread.
#pragma once
#include <cstddef>
#include <functional>

namespace nq {

// NEXUSQUANT_THREADS if set (clamped to [1, hardware threads]), else the hardware thread count.
int cpuThreads();

// Threads the pool really has (workers that started + the caller); starts the pool if needed.
int poolThreads();

// Calls fn(begin, end) on disjoint chunks covering [0, n) (up to 4 per thread). Chunks are at least
// `minChunk` items, so small jobs run on the calling thread alone. `threads` <= 0 means cpuThreads(). The first exception
// a chunk throws is rethrown on the calling thread after every chunk has finished.
void parallelFor(size_t n, size_t minChunk, const std::function<void(size_t, size_t)>& fn, int threads = 0);

}  // namespace nq
