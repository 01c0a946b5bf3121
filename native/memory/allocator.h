// The accounting allocator: every byte a cache or a quantized tensor holds is allocated here, so
// memoryStats() reports exactly what is live, by category. Device memory has its own counters with
// the same categories (filled by the CUDA backend).
#pragma once
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "nq_memory.h"  // MemCategory, CategoryBytes, oneCategory, sumBytes, countDeviceBytes

namespace nq {

const char* memCategoryName(MemCategory c);

enum class MemSpace : int { Host = 0, Device = 1 };

struct MemorySnapshot {
  std::array<int64_t, kMemCategories> live{};
  int64_t totalLive = 0;
  int64_t peak = 0;
  int64_t allocations = 0;  // live allocation count
};

// Counters for one memory space. Lock-free; safe from worker threads.
class MemoryCounters {
 public:
  void add(const CategoryBytes& split, int64_t sign);
  MemorySnapshot snapshot() const;
  int64_t total() const { return total_.load(std::memory_order_relaxed); }
  void resetPeak();

 private:
  std::array<std::atomic<int64_t>, kMemCategories> live_{};
  std::atomic<int64_t> total_{0};
  std::atomic<int64_t> peak_{0};
  std::atomic<int64_t> count_{0};
};

MemoryCounters& counters(MemSpace space);

// Host allocations, 64-byte aligned (cache lines; also what AVX loads like). Returns nullptr when
// the request cannot be met, and records why for allocationFailureReason(); the caller turns that
// into OUT_OF_MEMORY. Refused when: the process-wide limit (setHostMemoryLimit) would be passed by
// live + bytes; or the system cannot hold it (MemAvailable and the cgroup's memory.max, read again
// after every 64 MiB allocated, so the check is cumulative without a syscall per small allocation);
// or malloc fails. `split` says how the bytes divide into categories (sums to bytes).
void* hostAllocate(size_t bytes, const CategoryBytes& split);
void hostRelease(void* ptr, const CategoryBytes& split);

// Hands memory that was freed back to the OS (glibc: malloc_trim). An eviction allocates the kept
// pages and frees the old ones; glibc keeps such freed heap memory, in the arena of the thread that
// allocated it, where another thread's next allocation cannot reuse it. Called after each store's
// eviction (cpu_store_steps.cc) and after compress(): without it the process's RSS held ~4x the
// cache's live bytes (bench memory, preset high at 16K tokens: 273 MB of peak RSS over the
// short-prompt case for 77 MB of allocator peak); trimmed only once per compress(), the old and new
// pages of every layer (119 MB for 58 MB held); per store, 75 MB. A no-op without glibc.
void returnFreedHostMemory();

// Why the last failed allocation on this thread was refused, e.g. "the cache's memoryLimitBytes
// (1048576 bytes; 1040000 held)". Meant to follow "could not allocate N bytes for X".
const char* allocationFailureReason();

// A process-wide cap on live host bytes through the allocator; 0 removes it.
void setHostMemoryLimit(uint64_t bytes);
uint64_t hostMemoryLimit();

// What one owner (a cache) may hold: live bytes charged to it and an optional limit (0: none).
// Allocations made through HostBuffer on a thread inside a BudgetScope are charged to its budget
// and returned to it when released; the budget must outlive every buffer charged to it.
class MemoryBudget {
 public:
  explicit MemoryBudget(uint64_t limitBytes = 0) : limit_(limitBytes) {}
  uint64_t live() const { return live_.load(std::memory_order_relaxed); }
  uint64_t limit() const { return limit_; }
  bool tryCharge(size_t bytes);  // false (nothing charged) when live + bytes would pass the limit
  void release(size_t bytes) { live_.fetch_sub(bytes, std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> live_{0};
  uint64_t limit_;
};

// Routes this thread's HostBuffer allocations to `budget` while in scope (nests; null: none).
class BudgetScope {
 public:
  explicit BudgetScope(MemoryBudget* budget);
  ~BudgetScope();
  BudgetScope(const BudgetScope&) = delete;
  BudgetScope& operator=(const BudgetScope&) = delete;

 private:
  MemoryBudget* previous_;
};
// What the system lets this process still allocate: the smaller of MemAvailable (/proc/meminfo) and
// the cgroup's headroom (v2 memory.max - memory.current, or v1 limit_in_bytes - usage_in_bytes,
// over the cgroup and its ancestors); 0 when unknown. Used to refuse impossible requests up front
// instead of letting the kernel's overcommit (or the container's OOM killer) end the process later.
uint64_t hostAvailableBytes();

// An owning host buffer that returns its bytes to the counters when destroyed.
class HostBuffer {
 public:
  HostBuffer() = default;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  HostBuffer(HostBuffer&& o) noexcept { *this = std::move(o); }
  HostBuffer& operator=(HostBuffer&& o) noexcept;
  ~HostBuffer() { reset(); }

  // Returns false (leaving the buffer empty) when the allocation fails.
  bool allocate(size_t bytes, const CategoryBytes& split);
  void reset();
  uint8_t* data() const { return static_cast<uint8_t*>(ptr_); }
  size_t size() const { return bytes_; }
  const CategoryBytes& split() const { return split_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  CategoryBytes split_{};
  MemoryBudget* budget_ = nullptr;  // the budget charged for these bytes, if any
};

}  // namespace nq
