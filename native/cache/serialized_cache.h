// The "NQKV" bytes of a whole cache (kernels/nq_format.h SerializedCacheHeader: "NQKV", a version,
// the options), then every (sequence, layer) store in order (its counters, pages, residual rows and
// accumulated mass), then a CRC32 of everything before it. Written here once for every backend, each
// reading its stores from its own memory through a StoreSource; read back by the CPU cache
// (cpu/kv_cache_io.cc KvCache::deserialize), which checks every field.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cache/compress_policy.h"
#include "cache/compressed_cache.h"
#include "cache/page_layout.h"
#include "nq_format.h"

namespace nq {

// A cache's stores as the serializer reads them; `store` is seq * layers + layer. Each copy writes
// into host memory that may be unaligned (a byte stream).
class StoreSource {
 public:
  virtual ~StoreSource() = default;
  virtual const StoreCounters& counters(size_t store) const = 0;
  virtual size_t pageCount(size_t store) const = 0;
  // Page `page`, whole (PageLayout::pageBytes).
  virtual void copyPage(size_t store, size_t page, uint8_t* out) const = 0;
  // The residualCount FP16 rows of one head's keys (kv 0) or values (kv 1).
  virtual void copyResidualRows(size_t store, size_t kv, size_t head, uint8_t* out) const = 0;
  // The first held() scores of one head (PageLayout::scoreBytes each; only when the layout keeps scores).
  virtual void copyScores(size_t store, size_t head, uint8_t* out) const = 0;
};

std::vector<uint8_t> serializeCache(const CacheOptions& o, const PageLayout& layout, const StoreSource& source);

// The header that records `o`.
format::SerializedCacheHeader serializedHeader(const CacheOptions& o);

// CRC-32 (IEEE, reflected), the checksum that ends the serialized bytes.
uint32_t crc32(const uint8_t* p, size_t n);

}  // namespace nq
