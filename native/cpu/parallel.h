// parallelFor splits [0, n) into contiguous chunks over the CPU threads. Threads are started per call:
// calls are coarse (thousands of vectors), so the ~20 µs start cost is noise, and there is no pool
// state to share between concurrent async jobs.
#pragma once
#include <cstddef>
#include <functional>

namespace nq {

// Threads used by CPU work: NEXUSQUANT_THREADS if set (>= 1), else std::thread::hardware_concurrency().
int cpuThreads();

// Calls fn(begin, end) on disjoint chunks covering [0, n). Chunks are at least `minChunk` items, so
// small jobs run on the calling thread alone. `threads` <= 0 means cpuThreads().
void parallelFor(size_t n, size_t minChunk, const std::function<void(size_t, size_t)>& fn, int threads = 0);

}  // namespace nq
