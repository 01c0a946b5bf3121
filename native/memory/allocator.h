// The accounting allocator: every byte a cache or a quantized tensor holds is allocated here, so
// memoryStats() reports exactly what is live, by category. Device memory has its own counters with
// the same categories (filled by the CUDA backend).
#pragma once
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace nq {

enum class MemCategory : int { Codes = 0, Scales, Positions, Residual, Headers, Scratch, Tensor, Count };
constexpr int kMemCategories = static_cast<int>(MemCategory::Count);
const char* memCategoryName(MemCategory c);

enum class MemSpace : int { Host = 0, Device = 1 };

using CategoryBytes = std::array<size_t, kMemCategories>;

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
  void resetPeak();

 private:
  std::array<std::atomic<int64_t>, kMemCategories> live_{};
  std::atomic<int64_t> total_{0};
  std::atomic<int64_t> peak_{0};
  std::atomic<int64_t> count_{0};
};

MemoryCounters& counters(MemSpace space);

// Host allocations, 64-byte aligned (cache lines; also what AVX loads like). Returns nullptr when
// the request cannot be met (larger than the host's available memory, or malloc failure); the caller
// turns that into OUT_OF_MEMORY. `split` says how the bytes divide into categories (sums to bytes).
void* hostAllocate(size_t bytes, const CategoryBytes& split);
void hostRelease(void* ptr, const CategoryBytes& split);
inline CategoryBytes oneCategory(MemCategory c, size_t bytes) {
  CategoryBytes s{};
  s[static_cast<int>(c)] = bytes;
  return s;
}
size_t sumBytes(const CategoryBytes& split);

// MemAvailable from /proc/meminfo (0 when unknown). Used to refuse impossible requests up front
// instead of letting the kernel's overcommit kill the process later.
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
};

}  // namespace nq
