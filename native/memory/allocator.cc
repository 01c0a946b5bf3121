#include "memory/allocator.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace nq {

const char* memCategoryName(MemCategory c) {
  switch (c) {
    case MemCategory::Codes: return "codes";
    case MemCategory::Scales: return "scales";
    case MemCategory::Positions: return "positions";
    case MemCategory::Residual: return "residual";
    case MemCategory::Headers: return "headers";
    case MemCategory::Scratch: return "scratch";
    case MemCategory::Tensor: return "tensor";
    default: return "unknown";
  }
}

void MemoryCounters::add(const CategoryBytes& split, int64_t sign) {
  int64_t total = 0;
  for (int i = 0; i < kMemCategories; ++i) {
    if (split[i] == 0) continue;
    live_[i].fetch_add(sign * static_cast<int64_t>(split[i]), std::memory_order_relaxed);
    total += static_cast<int64_t>(split[i]);
  }
  const int64_t now = total_.fetch_add(sign * total, std::memory_order_relaxed) + sign * total;
  count_.fetch_add(sign, std::memory_order_relaxed);
  int64_t peak = peak_.load(std::memory_order_relaxed);
  while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

MemorySnapshot MemoryCounters::snapshot() const {
  MemorySnapshot s;
  for (int i = 0; i < kMemCategories; ++i) s.live[i] = live_[i].load(std::memory_order_relaxed);
  s.totalLive = total_.load(std::memory_order_relaxed);
  s.peak = peak_.load(std::memory_order_relaxed);
  s.allocations = count_.load(std::memory_order_relaxed);
  return s;
}

void MemoryCounters::resetPeak() { peak_.store(total_.load(std::memory_order_relaxed), std::memory_order_relaxed); }

MemoryCounters& counters(MemSpace space) {
  static MemoryCounters host;
  static MemoryCounters device;
  return space == MemSpace::Host ? host : device;
}

size_t sumBytes(const CategoryBytes& split) {
  size_t total = 0;
  for (size_t b : split) total += b;
  return total;
}

uint64_t hostAvailableBytes() {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  uint64_t kb = 0;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "MemAvailable:", 13) == 0) {
      kb = std::strtoull(line + 13, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  return kb * 1024;
}

// Requests at least this large are checked against MemAvailable first: with overcommit, malloc would
// succeed and the kernel would kill the process on first touch. Smaller ones skip the /proc read,
// which would otherwise sit on hot paths (attention scratch, cache pages).
constexpr size_t kCheckAvailableFrom = size_t{64} << 20;

void* hostAllocate(size_t bytes, const CategoryBytes& split) {
  if (bytes == 0) return nullptr;
  if (bytes >= kCheckAvailableFrom) {
    const uint64_t available = hostAvailableBytes();
    if (available != 0 && bytes > available) return nullptr;
  }
  const size_t rounded = (bytes + 63) & ~size_t{63};
  void* p = std::aligned_alloc(64, rounded);
  if (p) counters(MemSpace::Host).add(split, +1);
  return p;
}

void hostRelease(void* ptr, const CategoryBytes& split) {
  if (!ptr) return;
  std::free(ptr);
  counters(MemSpace::Host).add(split, -1);
}

HostBuffer& HostBuffer::operator=(HostBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    split_ = std::exchange(o.split_, CategoryBytes{});
  }
  return *this;
}

bool HostBuffer::allocate(size_t bytes, const CategoryBytes& split) {
  reset();
  if (bytes == 0) return true;
  void* p = hostAllocate(bytes, split);
  if (!p) return false;
  ptr_ = p;
  bytes_ = bytes;
  split_ = split;
  return true;
}

void HostBuffer::reset() {
  if (ptr_) hostRelease(ptr_, split_);
  ptr_ = nullptr;
  bytes_ = 0;
  split_ = CategoryBytes{};
}

}  // namespace nq
