// The memory categories every allocated byte is counted under (host and device alike), and the hook
// through which the CUDA allocator (device_alloc.cu) reports device bytes. Plain C++: the kernels
// library and the addon's accounting allocator (native/memory/allocator.h) both include it, so the
// kernels need nothing from native/.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

namespace nq {

// Transform: a cache's calibrated transform tables (nq_transform.h), held once per cache.
enum class MemCategory : int { Codes = 0, Scales, Positions, Residual, Headers, Scores, Scratch, Tensor, Transform, Count };
constexpr int kMemCategories = static_cast<int>(MemCategory::Count);

// How the bytes of one allocation divide into categories (sums to its size).
using CategoryBytes = std::array<size_t, kMemCategories>;

inline CategoryBytes oneCategory(MemCategory c, size_t bytes) {
  CategoryBytes s{};
  s[static_cast<int>(c)] = bytes;
  return s;
}

inline size_t sumBytes(const CategoryBytes& split) {
  size_t total = 0;
  for (size_t b : split) total += b;
  return total;
}

// Adds (sign +1) or removes (-1) device bytes in the process's device counters. Defined by the
// addon's accounting allocator (native/memory/allocator.cc), which memoryStats() reads; the kernels
// library calls it for every cudaMalloc/cudaFree and arena carve it makes.
void countDeviceBytes(const CategoryBytes& split, int64_t sign);

}  // namespace nq
