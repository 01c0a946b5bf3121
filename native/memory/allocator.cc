#include "memory/allocator.h"

#include <cstdio>
#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <cstring>
#include <string>
#include <vector>
#include <utility>

namespace nq {

const char* memCategoryName(MemCategory c) {
  switch (c) {
    case MemCategory::Codes: return "codes";
    case MemCategory::Scales: return "scales";
    case MemCategory::Positions: return "positions";
    case MemCategory::Residual: return "residual";
    case MemCategory::Headers: return "headers";
    case MemCategory::Scores: return "scores";
    case MemCategory::Scratch: return "scratch";
    case MemCategory::Tensor: return "tensor";
    case MemCategory::Transform: return "transform";
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

void countDeviceBytes(const CategoryBytes& split, int64_t sign) { counters(MemSpace::Device).add(split, sign); }

namespace {

// First unsigned integer of a small file ("max" and missing files give 0: no limit known).
uint64_t readNumberFile(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return 0;
  char buf[64] = {0};
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  if (buf[0] < '0' || buf[0] > '9') return 0;
  return std::strtoull(buf, nullptr, 10);
}

uint64_t memAvailable() {
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

// The directories whose memory limits apply to this process, innermost first: the cgroup v2 path
// from /proc/self/cgroup and its ancestors under /sys/fs/cgroup, then cgroup v1's memory controller.
// A container usually mounts its own cgroup at the root, which the list always includes.
struct CgroupDirs {
  std::vector<std::string> v2, v1;
};

const CgroupDirs& cgroupDirs() {
  static const CgroupDirs dirs = [] {
    CgroupDirs d;
    std::string v2Path, v1Path;
    if (FILE* f = std::fopen("/proc/self/cgroup", "r")) {
      char line[1024];
      while (std::fgets(line, sizeof line, f)) {
        std::string l(line);
        while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
        const size_t a = l.find(':'), b = a == std::string::npos ? a : l.find(':', a + 1);
        if (b == std::string::npos) continue;
        const std::string controllers = l.substr(a + 1, b - a - 1), path = l.substr(b + 1);
        if (l.compare(0, a, "0") == 0 && controllers.empty()) v2Path = path;
        else if (controllers.find("memory") != std::string::npos) v1Path = path;
      }
      std::fclose(f);
    }
    auto withAncestors = [](const std::string& root, std::string path, std::vector<std::string>& out) {
      while (!path.empty() && path != "/") {
        out.push_back(root + path);
        const size_t slash = path.rfind('/');
        path = slash == std::string::npos ? "" : path.substr(0, slash);
      }
      out.push_back(root);
    };
    // NEXUSQUANT_CGROUP_ROOT: another mount point (tests use a directory of fake limit files).
    const char* rootEnv = std::getenv("NEXUSQUANT_CGROUP_ROOT");
    const std::string root = rootEnv && *rootEnv ? rootEnv : "/sys/fs/cgroup";
    withAncestors(root, v2Path, d.v2);
    withAncestors(root + "/memory", v1Path, d.v1);
    return d;
  }();
  return dirs;
}

// Bytes the cgroup still lets this process take (0: no cgroup limit found).
uint64_t cgroupHeadroom() {
  constexpr uint64_t kUnlimited = uint64_t{1} << 60;  // v1 reports "no limit" as ~2^63
  uint64_t best = 0;
  auto consider = [&](uint64_t limit, uint64_t usage) {
    if (limit == 0 || limit >= kUnlimited) return;
    const uint64_t room = usage >= limit ? 1 : limit - usage;  // 1: "nothing left", distinct from unknown
    if (best == 0 || room < best) best = room;
  };
  for (const std::string& dir : cgroupDirs().v2) consider(readNumberFile(dir + "/memory.max"), readNumberFile(dir + "/memory.current"));
  for (const std::string& dir : cgroupDirs().v1) consider(readNumberFile(dir + "/memory.limit_in_bytes"), readNumberFile(dir + "/memory.usage_in_bytes"));
  return best;
}

// Allocations smaller than this do not read /proc on their own; instead the system's headroom is
// read again once this many bytes have been allocated since the last look. So a cache that grows
// page by page is checked as it grows, at one read per 64 MiB, never per small allocation.
constexpr size_t kCheckAvailableEvery = size_t{64} << 20;
// Kept free when refusing for the system's sake: allocating the very last byte of RAM gets the
// process killed anyway, by the kernel rather than by us.
constexpr uint64_t kSystemReserve = uint64_t{128} << 20;

std::atomic<uint64_t> gProcessLimit{0};
std::atomic<size_t> gSinceCheck{0};
thread_local MemoryBudget* tCurrentBudget = nullptr;
thread_local std::string tFailure;

void refuse(const std::string& why) { tFailure = why; }

bool systemCanHold(size_t bytes) {
  if (bytes < kCheckAvailableEvery && gSinceCheck.fetch_add(bytes, std::memory_order_relaxed) + bytes < kCheckAvailableEvery) return true;
  gSinceCheck.store(0, std::memory_order_relaxed);
  const uint64_t available = hostAvailableBytes();
  if (available == 0) return true;  // unknown: let malloc decide
  if (static_cast<uint64_t>(bytes) + kSystemReserve <= available) return true;
  refuse("the memory this system (MemAvailable and the cgroup's memory.max) has left: " + std::to_string(available) + " bytes, of which " +
         std::to_string(kSystemReserve) + " are kept free");
  return false;
}

}  // namespace

uint64_t hostAvailableBytes() {
  const uint64_t mem = memAvailable(), cg = cgroupHeadroom();
  if (mem == 0) return cg;
  if (cg == 0) return mem;
  return cg < mem ? cg : mem;
}

const char* allocationFailureReason() { return tFailure.empty() ? "the C allocator failed" : tFailure.c_str(); }

void setHostMemoryLimit(uint64_t bytes) { gProcessLimit.store(bytes, std::memory_order_relaxed); }
uint64_t hostMemoryLimit() { return gProcessLimit.load(std::memory_order_relaxed); }

bool MemoryBudget::tryCharge(size_t bytes) {
  uint64_t cur = live_.load(std::memory_order_relaxed);
  do {
    if (limit_ != 0 && (bytes > limit_ || cur > limit_ - bytes)) {
      refuse("the cache's memoryLimitBytes (" + std::to_string(limit_) + " bytes; " + std::to_string(cur) + " already held)");
      return false;
    }
  } while (!live_.compare_exchange_weak(cur, cur + bytes, std::memory_order_relaxed));
  return true;
}

BudgetScope::BudgetScope(MemoryBudget* budget) : previous_(tCurrentBudget) { tCurrentBudget = budget; }
BudgetScope::~BudgetScope() { tCurrentBudget = previous_; }

void* hostAllocate(size_t bytes, const CategoryBytes& split) {
  if (bytes == 0) return nullptr;
  tFailure.clear();
  const uint64_t limit = gProcessLimit.load(std::memory_order_relaxed);
  if (limit != 0) {
    const int64_t live = counters(MemSpace::Host).total();
    if (bytes > limit || static_cast<uint64_t>(live) > limit - bytes) {
      refuse("the process-wide host memory limit (" + std::to_string(limit) + " bytes; " + std::to_string(live) + " already held)");
      return nullptr;
    }
  }
  if (!systemCanHold(bytes)) return nullptr;
  const size_t rounded = (bytes + 63) & ~size_t{63};
  if (rounded < bytes) return nullptr;
  void* p = std::aligned_alloc(64, rounded);
  if (p) counters(MemSpace::Host).add(split, +1);
  return p;
}

void hostRelease(void* ptr, const CategoryBytes& split) {
  if (!ptr) return;
  std::free(ptr);
  counters(MemSpace::Host).add(split, -1);
}

void returnFreedHostMemory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

HostBuffer& HostBuffer::operator=(HostBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    split_ = std::exchange(o.split_, CategoryBytes{});
    budget_ = std::exchange(o.budget_, nullptr);
  }
  return *this;
}

bool HostBuffer::allocate(size_t bytes, const CategoryBytes& split) {
  reset();
  if (bytes == 0) return true;
  MemoryBudget* budget = tCurrentBudget;
  if (budget && !budget->tryCharge(bytes)) return false;
  void* p = hostAllocate(bytes, split);
  if (!p) {
    if (budget) budget->release(bytes);
    return false;
  }
  ptr_ = p;
  bytes_ = bytes;
  split_ = split;
  budget_ = budget;
  return true;
}

void HostBuffer::reset() {
  if (ptr_) hostRelease(ptr_, split_);
  if (ptr_ && budget_) budget_->release(bytes_);
  ptr_ = nullptr;
  budget_ = nullptr;
  bytes_ = 0;
  split_ = CategoryBytes{};
}

}  // namespace nq
