#include "cache/serialized_cache.h"

#include <cstring>

namespace nq {
namespace {

struct Writer {
  std::vector<uint8_t> out;
  template <typename T>
  void put(T v) {
    const size_t at = out.size();
    out.resize(at + sizeof(T));
    std::memcpy(out.data() + at, &v, sizeof(T));
  }
  // `n` more bytes at the end, for a source to copy into (valid until the next call).
  uint8_t* grow(size_t n) {
    const size_t at = out.size();
    out.resize(at + n);
    return out.data() + at;
  }
};

}  // namespace

uint32_t crc32(const uint8_t* p, size_t n) {
  static uint32_t table[256];
  static bool ready = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)ready;
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

format::SerializedCacheHeader serializedHeader(const CacheOptions& o) {
  format::SerializedCacheHeader h{};
  h.magic = format::kSerializedMagic;
  h.version = o.transform ? format::kSerializedVersionTransform : format::kSerializedVersion;
  h.batch = static_cast<uint32_t>(o.batch);
  h.layers = static_cast<uint32_t>(o.layers);
  h.kvHeads = static_cast<uint32_t>(o.kvHeads);
  h.headDim = static_cast<uint32_t>(o.headDim);
  h.keyBits = static_cast<uint8_t>(o.spec.keyBits);
  h.valueBits = static_cast<uint8_t>(o.spec.valueBits);
  h.scorer = static_cast<uint8_t>(o.scorer);
  std::memcpy(h.evictFraction, &o.spec.evictFraction, 8);
  h.sinkTokens = static_cast<uint32_t>(o.spec.sinkTokens);
  h.recentWindow = static_cast<uint32_t>(o.spec.recentWindow);
  h.residualWindow = static_cast<uint32_t>(o.spec.residualWindow);
  h.pageTokens = static_cast<uint32_t>(o.spec.pageTokens);
  h.seed = o.seed;
  h.scorerWindow = static_cast<uint32_t>(o.scorerWindow);
  h.poolKernel = static_cast<uint32_t>(o.poolKernel);
  h.queryHeads = static_cast<uint32_t>(o.queryHeads);
  const uint64_t budget = o.budgetTokens;
  std::memcpy(h.budgetTokens, &budget, 8);
  std::memcpy(h.ropeTheta, &o.ropeTheta, 8);
  return h;
}

std::vector<uint8_t> serializeCache(const CacheOptions& o, const PageLayout& layout, const StoreSource& source) {
  const size_t pageBytes = layout.pageBytes;
  Writer w;
  w.put(serializedHeader(o));
  const size_t H = o.kvHeads, d = o.headDim;
  if (o.transform) std::memcpy(w.grow(kTransformIdBytes), o.transform->id().data(), kTransformIdBytes);
  for (size_t i = 0; i < o.batch * o.layers; ++i) {
    const StoreCounters& s = source.counters(i);
    w.put<uint64_t>(s.appended);
    w.put<uint64_t>(s.compressed);
    w.put<uint64_t>(s.residualCount);
    // State flags: bit 0 compressed once, bit 1 the reconstruction scores are current.
    w.put<uint8_t>(static_cast<uint8_t>((s.compressedOnce ? 1 : 0) | (s.scoresCurrent ? 2 : 0)));
    for (size_t p = 0; p < source.pageCount(i); ++p) source.copyPage(i, p, w.grow(pageBytes));
    if (s.residualCount > 0)
      for (size_t kv = 0; kv < 2; ++kv)
        for (size_t h = 0; h < H; ++h) source.copyResidualRows(i, kv, h, w.grow(s.residualCount * d * 2));
    if (layout.scoreBytes > 0 && s.held() > 0)
      for (size_t h = 0; h < H; ++h) source.copyScores(i, h, w.grow(s.held() * layout.scoreBytes));
  }
  w.put<uint32_t>(crc32(w.out.data(), w.out.size()));
  return std::move(w.out);
}

}  // namespace nq
