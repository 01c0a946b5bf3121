// KvCache serialization: the "NQKV" bytes of cache/serialized_cache.h, written from the paged store,
// and read back. deserialize() checks the checksum, the declared sizes and every field before
// allocating, so a truncated or corrupted buffer is a CORRUPT_DATA error, never a crash.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "cache/nq_error.h"
#include "cache/serialized_cache.h"
#include "cpu/codec.h"
#include "cpu/kv_cache.h"
#include "nq_half.h"

namespace nq {
namespace {

struct Reader {
  const uint8_t* p;
  size_t n, at = 0;
  [[noreturn]] void corrupt(const std::string& why) const {
    throw NqError("CORRUPT_DATA", "not a valid serialized CompressedKVCache: " + why);
  }
  template <typename T>
  T get(const char* what) {
    if (n - at < sizeof(T)) corrupt(std::string("truncated while reading ") + what);
    T v;
    std::memcpy(&v, p + at, sizeof(T));
    at += sizeof(T);
    return v;
  }
  const uint8_t* take(size_t bytes, const char* what) {
    if (n - at < bytes) corrupt(std::string("truncated while reading ") + what);
    const uint8_t* r = p + at;
    at += bytes;
    return r;
  }
};

// The CPU stores as serializeCache reads them: everything is in host memory already.
class PagedStoreSource : public StoreSource {
 public:
  explicit PagedStoreSource(const PagedStore& store) : store_(store) {}
  const StoreCounters& counters(size_t i) const override { return store_.all()[i]; }
  size_t pageCount(size_t i) const override { return store_.all()[i].pages.size(); }
  void copyPage(size_t i, size_t page, uint8_t* out) const override {
    const HostBuffer& p = store_.all()[i].pages[page];
    std::memcpy(out, p.data(), p.size());
  }
  void copyResidualRows(size_t i, size_t kv, size_t head, uint8_t* out) const override {
    const SeqLayerStore& s = store_.all()[i];
    std::memcpy(out, store_.residualRows(s, kv, head), s.residualCount * store_.layout().headDim * 2);
  }
  void copyScores(size_t i, size_t head, uint8_t* out) const override {
    const SeqLayerStore& s = store_.all()[i];
    const size_t sb = store_.layout().scoreBytes;
    std::memcpy(out, s.scores.data() + head * s.scoreCap * sb, s.held() * sb);
  }

 private:
  const PagedStore& store_;
};

}  // namespace

std::vector<uint8_t> KvCache::serialize() const { return serializeCache(o_, store_.layout(), PagedStoreSource(store_)); }

KvCache KvCache::deserialize(const uint8_t* data, size_t size, std::shared_ptr<const TransformTables> transform) {
  Reader r{data, size};
  if (!data || size < 16) r.corrupt("the buffer is only " + std::to_string(size) + " bytes");
  format::SerializedCacheHeader h;
  std::memcpy(&h.magic, data, 4);
  if (h.magic != format::kSerializedMagic) r.corrupt("bad magic (expected \"NQKV\")");
  std::memcpy(&h.version, data + 4, 4);
  if (h.version != format::kSerializedVersion && h.version != format::kSerializedVersionTransform)
    r.corrupt("unsupported version " + std::to_string(h.version) + " (this build reads versions " + std::to_string(format::kSerializedVersion) + " and " +
              std::to_string(format::kSerializedVersionTransform) + ")");
  uint32_t stored;
  std::memcpy(&stored, data + size - 4, 4);
  if (crc32(data, size - 4) != stored) r.corrupt("checksum mismatch (the data was modified or truncated)");
  r.n = size - 4;
  h = r.get<format::SerializedCacheHeader>("the header");

  CacheOptions o;
  o.batch = h.batch;
  o.layers = h.layers;
  o.kvHeads = h.kvHeads;
  o.headDim = h.headDim;
  o.spec.keyBits = h.keyBits;
  o.spec.valueBits = h.valueBits;
  const uint8_t scorer = h.scorer;
  std::memcpy(&o.spec.evictFraction, h.evictFraction, 8);
  o.spec.sinkTokens = static_cast<int>(h.sinkTokens);
  o.spec.recentWindow = static_cast<int>(h.recentWindow);
  o.spec.residualWindow = static_cast<int>(h.residualWindow);
  o.spec.pageTokens = static_cast<int>(h.pageTokens);
  o.seed = h.seed;
  o.scorerWindow = h.scorerWindow;
  o.poolKernel = h.poolKernel;
  o.queryHeads = h.queryHeads;
  uint64_t budget;
  std::memcpy(&budget, h.budgetTokens, 8);
  o.budgetTokens = budget;
  std::memcpy(&o.ropeTheta, h.ropeTheta, 8);
  // Every field within the range the format supports (kernels/nq_format.h), and consistent with the
  // rules the TypeScript constructor applies, so that anything this accepts also loads there.
  // 1 bit per element only under a calibrated transform (version 2; the tables check every entry).
  auto bitsOk = [&](int b) { return (b >= 2 && b <= 4) || (b == 1 && h.version == format::kSerializedVersionTransform); };
  auto within = [](uint64_t v, int64_t lo, int64_t hi) { return v >= static_cast<uint64_t>(lo) && v <= static_cast<uint64_t>(hi); };
  if (!within(o.batch, 1, format::kMaxStores) || !within(o.layers, 1, format::kMaxStores) || o.batch * o.layers > static_cast<uint64_t>(format::kMaxStores))
    r.corrupt("invalid batch or layer count in the header");
  if (!within(o.kvHeads, 1, format::kMaxHeads) || !bitsOk(o.spec.keyBits) || !bitsOk(o.spec.valueBits) ||
      !codecSupports(static_cast<int>(std::min<size_t>(o.headDim, 1 << 20)), std::max(2, o.spec.keyBits)) ||
      !codecSupports(static_cast<int>(std::min<size_t>(o.headDim, 1 << 20)), std::max(2, o.spec.valueBits)))
    r.corrupt("invalid head count, head size or bits in the header");
  if (!within(o.queryHeads, 1, format::kMaxQueryHeads) || o.queryHeads % o.kvHeads != 0) r.corrupt("invalid queryHeads in the header");
  if (scorer >= format::kScorerCount || !(o.spec.evictFraction >= 0 && o.spec.evictFraction < 1))
    r.corrupt("invalid scorer or evictFraction in the header");
  if (!within(o.spec.pageTokens, 8, format::kMaxPageTokens) || o.spec.pageTokens % 8 != 0 || !within(o.spec.residualWindow, 0, format::kMaxResidualWindow) ||
      !within(o.spec.recentWindow, 0, format::kMaxWindowTokens) || !within(o.spec.sinkTokens, o.spec.evictFraction > 0 ? 1 : 0, format::kMaxWindowTokens))
    r.corrupt("invalid page size or token windows in the header");
  if (o.scorerWindow == 0 || o.poolKernel == 0 || o.poolKernel % 2 == 0 || o.scorerWindow > static_cast<size_t>(format::kMaxPositions) ||
      o.poolKernel > static_cast<size_t>(format::kMaxPositions))
    r.corrupt("invalid scorer window or pool kernel in the header");
  if (o.budgetTokens > 0 && (o.spec.evictFraction == 0 || o.budgetTokens > static_cast<uint64_t>(format::kMaxPositions) ||
                             o.budgetTokens < static_cast<uint64_t>(o.spec.sinkTokens) + static_cast<uint64_t>(o.spec.recentWindow)))
    r.corrupt("invalid token budget in the header");
  if (!(o.ropeTheta == 0 || (o.ropeTheta > 1 && o.ropeTheta < 1e12)) || (o.ropeTheta > 0 && o.headDim % 2 != 0)) r.corrupt("invalid ropeTheta in the header");
  o.scorer = static_cast<Scorer>(scorer);
  if (h.version == format::kSerializedVersionTransform) {
    // Coded under a calibrated transform: only the tables with the recorded id can read the codes.
    const uint8_t* id = r.take(kTransformIdBytes, "the transform id");
    if (!transform)
      throw NqError("PROFILE_MISMATCH", "this cache was coded with a calibrated transform profile: load it with that profile (deserialize(bytes, { profile }); "
                                        "a conversation resumes with the model's profile, withNexusQuant(model, { state, profile }))");
    if (std::memcmp(id, transform->id().data(), kTransformIdBytes) != 0 || transform->layers() != o.layers || transform->kvHeads() != o.kvHeads ||
        transform->headDim() != o.headDim || transform->keyBits() != o.spec.keyBits || transform->valueBits() != o.spec.valueBits)
      throw NqError("PROFILE_MISMATCH", "this cache was coded with another transform profile than the one given (its tables' id differs): load it with the profile it was made with");
    o.transform = std::move(transform);
  }

  // The smallest store takes 25 bytes (its counters): check the count against the bytes present
  // before creating the stores, so a mutated batch or layer count costs nothing.
  constexpr size_t kStoreHeaderBytes = 3 * 8 + 1;
  const size_t stores = o.batch * o.layers;
  if (stores > (r.n - r.at) / kStoreHeaderBytes) r.corrupt("the header declares " + std::to_string(stores) + " stores but the data is too short for them");

  KvCache c(o);
  const size_t H = o.kvHeads, d = o.headDim, P = static_cast<size_t>(o.spec.pageTokens);
  const bool positions = format::storesPositions(o.spec);
  const PageLayout& L = c.store_.layout();
  for (size_t i = 0; i < c.store_.all().size(); ++i) {
    SeqLayerStore& s = c.store_.all()[i];
    const size_t seq = i / o.layers, layer = i % o.layers;
    const uint64_t appended = r.get<uint64_t>("token count"), compressed = r.get<uint64_t>("compressed count"),
                   residualCount = r.get<uint64_t>("residual count");
    const uint8_t state = r.get<uint8_t>("state");
    if (state > 3) r.corrupt("invalid store state flags");
    const bool compressedOnce = (state & 1) != 0;
    // Positions are int32: nothing beyond kMaxPositions can have been appended.
    if (appended > static_cast<uint64_t>(format::kMaxPositions) || compressed > appended || residualCount > appended - compressed)
      r.corrupt("a store holds more tokens than were appended, or more than int32 positions allow");
    if (!positions && compressed + residualCount != appended) r.corrupt("a store without eviction holds fewer tokens than were appended");
    // Bound every size by the bytes actually present before allocating anything.
    const size_t left = r.n - r.at;
    const size_t pages = (compressed + P - 1) / P;
    if (pages > left / L.pageBytes) r.corrupt("truncated page data");
    const size_t resRowBytes = 2 * H * d * 2;  // one token of K and V, every head, FP16
    if (residualCount > (left - pages * L.pageBytes) / resRowBytes) r.corrupt("truncated residual window");
    const size_t held = compressed + residualCount;
    if (L.scoreBytes > 0 && held > (left - pages * L.pageBytes - residualCount * resRowBytes) / (H * L.scoreBytes))
      r.corrupt("truncated slot scores");
    s.appended = appended;
    s.compressed = compressed;
    s.compressedOnce = compressedOnce;
    s.scoresCurrent = (state & 2) != 0;

    for (size_t p = 0; p < pages; ++p) {
      HostBuffer page = c.store_.newPage(seq, layer, p);
      std::memcpy(page.data(), r.take(L.pageBytes, "a page"), L.pageBytes);
      s.pages.push_back(std::move(page));
    }
    for (size_t t = 0; t < s.compressed; ++t) {
      const uint8_t* page = s.pages[t / P].data();
      for (size_t h = 0; h < H; ++h) {
        if (positions) {
          const int32_t pos = c.store_.slotPosition(s, h, t);
          if (pos < 0 || static_cast<size_t>(pos) >= s.appended) r.corrupt("a token position is out of range");
        }
        uint16_t ks, vs;
        std::memcpy(&ks, page + L.offsets.keyScales + (h * P + t % P) * 2, 2);
        std::memcpy(&vs, page + L.offsets.valueScales + (h * P + t % P) * 2, 2);
        if (halfIsNonFinite(ks) || halfIsNonFinite(vs)) r.corrupt("a code scale is not finite");
      }
    }
    // The residual's capacity: what the growth rule of a compressed store gives for the tokens waiting
    // (format::residualSlots, as the compress policy sizes it: exactly its count for a store without
    // pages), else its count.
    c.store_.setResidualCapacity(s, s.compressedOnce ? format::residualSlots(H, d, o.spec, pages, residualCount, appended) : residualCount);
    s.residualCount = residualCount;
    for (size_t kv = 0; kv < 2; ++kv)
      for (size_t h = 0; h < H; ++h) {
        const size_t bytes = s.residualCount * d * 2;
        const uint8_t* src = r.take(bytes, "the residual window");
        for (size_t e = 0; e < bytes / 2; ++e) {
          uint16_t v;
          std::memcpy(&v, src + 2 * e, 2);
          if (halfIsNonFinite(v)) r.corrupt("the residual window holds a non-finite FP16 value");
        }
        if (bytes > 0) std::memcpy(c.store_.residualRows(s, kv, h), src, bytes);
      }
    if (L.scoreBytes > 0 && held > 0) {
      for (size_t h = 0; h < H; ++h) {
        const uint8_t* src = r.take(held * L.scoreBytes, "slot scores");
        for (size_t e = 0; e < held; ++e) {
          bool bad;
          if (L.scoreBytes == 4) {
            float v;
            std::memcpy(&v, src + 4 * e, 4);
            bad = !std::isfinite(v) || v < 0;
          } else {
            uint16_t v;
            std::memcpy(&v, src + 2 * e, 2);
            bad = halfIsNonFinite(v) || (v & 0x8000) != 0;
          }
          if (bad) r.corrupt("a slot score is not finite or negative");
        }
        std::memcpy(s.scores.data() + h * s.scoreCap * L.scoreBytes, src, held * L.scoreBytes);
      }
    }
  }
  if (r.at != r.n) r.corrupt(std::to_string(r.n - r.at) + " unexpected trailing bytes");
  return c;
}

}  // namespace nq
