#include "cpu/paged_store.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>

#include "cache/nq_error.h"
#include "cpu/ops/cpu_ops.h"
#include "cpu/rope.h"
#include "nq_half.h"

namespace nq {

[[noreturn]] void throwOutOfMemory(const char* what, size_t bytes) {
  throw NqError("OUT_OF_MEMORY", std::string("could not allocate ") + std::to_string(bytes) + " bytes for " + what + ": the limit was " +
                                     allocationFailureReason() + "; dispose caches, raise the limit or use a smaller context");
}

std::vector<const uint8_t*> SeqLayerStore::pagePointers() const {
  std::vector<const uint8_t*> p;
  p.reserve(pages.size());
  for (const HostBuffer& b : pages) p.push_back(b.data());
  return p;
}

PagedStore::PagedStore(size_t batch, size_t layers, const PageLayout& layout, uint32_t codecSeed, const TransformTables* transform)
    : layout_(layout), layers_(layers), seed_(codecSeed), transform_(transform), stores_(batch * layers) {}

HostBuffer PagedStore::newPage(size_t seq, size_t layer, size_t index) const {
  HostBuffer page;
  if (!page.allocate(layout_.pageBytes, layout_.split())) throwOutOfMemory("a cache page", layout_.pageBytes);
  std::memset(page.data(), 0, layout_.pageBytes);
  const format::PageHeader h{0, static_cast<uint32_t>(layer), static_cast<uint32_t>(seq), static_cast<uint32_t>(index)};
  std::memcpy(page.data(), &h, sizeof h);
  return page;
}

void PagedStore::writeSlotCounts(std::vector<HostBuffer>& pages, size_t used) const {
  const size_t P = layout_.pageTokens;
  for (size_t p = 0; p < pages.size(); ++p) {
    format::PageHeader* hdr = reinterpret_cast<format::PageHeader*>(pages[p].data());
    hdr->slotsUsed = static_cast<uint32_t>(std::min(P, used > p * P ? used - p * P : 0));
  }
}

uint16_t* PagedStore::residualRows(SeqLayerStore& s, size_t kv, size_t head) const {
  return reinterpret_cast<uint16_t*>(s.residual.data()) + (kv * layout_.kvHeads + head) * s.residualCap * layout_.headDim;
}
const uint16_t* PagedStore::residualRows(const SeqLayerStore& s, size_t kv, size_t head) const {
  return reinterpret_cast<const uint16_t*>(s.residual.data()) + (kv * layout_.kvHeads + head) * s.residualCap * layout_.headDim;
}

void PagedStore::setResidualCapacity(SeqLayerStore& s, size_t cap) const {
  const size_t H = layout_.kvHeads, d = layout_.headDim;
  const size_t bytes = format::residualSlotBytes(H, d, cap);
  HostBuffer next;
  if (bytes > 0 && !next.allocate(bytes, oneCategory(MemCategory::Residual, bytes))) throwOutOfMemory("the FP16 residual window", bytes);
  const size_t keep = std::min(s.residualCount, cap);
  for (size_t kv = 0; kv < 2; ++kv)
    for (size_t h = 0; h < H; ++h)
      if (keep > 0)
        std::memcpy(next.data() + ((kv * H + h) * cap) * d * 2, residualRows(s, kv, h), keep * d * 2);
  s.residual = std::move(next);
  s.residualCap = cap;
  s.residualCount = keep;
  syncScores(s);
}

namespace {

// Reallocates the slot scores to `cap` slots per head, keeping the first min(held, cap).
void resizeScores(SeqLayerStore& s, size_t H, size_t scoreBytes, size_t cap) {
  HostBuffer next;
  const size_t bytes = H * cap * scoreBytes;
  if (bytes > 0) {
    if (!next.allocate(bytes, oneCategory(MemCategory::Scores, bytes))) throwOutOfMemory("token scores", bytes);
    std::memset(next.data(), 0, bytes);
    const size_t keep = std::min(cap, s.scoreCap);
    for (size_t h = 0; h < H && keep > 0; ++h) std::memcpy(next.data() + h * cap * scoreBytes, s.scores.data() + h * s.scoreCap * scoreBytes, keep * scoreBytes);
  }
  s.scores = std::move(next);
  s.scoreCap = cap;
}

}  // namespace

void PagedStore::syncScores(SeqLayerStore& s) const {
  if (layout_.scoreBytes == 0 || s.scoreCap == s.compressed + s.residualCap) return;
  resizeScores(s, layout_.kvHeads, layout_.scoreBytes, s.compressed + s.residualCap);
}

float PagedStore::slotScore(const SeqLayerStore& s, size_t head, size_t slot) const {
  const uint8_t* p = s.scores.data() + (head * s.scoreCap + slot) * layout_.scoreBytes;
  if (layout_.scoreBytes == 4) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return halfToFloat(h);
}

int32_t PagedStore::slotPosition(const SeqLayerStore& s, size_t head, size_t slot) const {
  if (!layout_.storesPositions) return static_cast<int32_t>(slot);  // nothing is ever evicted
  const size_t P = layout_.pageTokens;
  const uint8_t* page = s.pages[slot / P].data();
  int32_t pos;
  std::memcpy(&pos, page + layout_.offsets.positions + (head * P + slot % P) * sizeof(int32_t), sizeof pos);
  return pos;
}

template <typename Out>
void PagedStore::decodeRuns(const SeqLayerStore& s, bool key, size_t head, size_t begin, size_t end, bool unrotate, Out* out) const {
  const size_t P = layout_.pageTokens, d = layout_.headDim;
  const format::PageOffsets& off = layout_.offsets;
  ops::DecodeLaunch a;
  a.codec = ops::codecArgs(static_cast<int>(d), key ? layout_.spec.keyBits : layout_.spec.valueBits, true, seed_);
  a.outF16 = std::is_same_v<Out, uint16_t>;
  a.unrotate = unrotate;
  a.codec.transform = transformOf(static_cast<size_t>(&s - stores_.data()) % layers_, key ? 0 : 1, head);
  const size_t cb = key ? layout_.keyCodeBytes : layout_.valueCodeBytes;
  for (size_t t = begin; t < end;) {
    const size_t page = t / P, j = t % P, n = std::min(end - t, P - j);
    const uint8_t* base = s.pages[page].data();
    a.codes = base + (key ? off.keyCodes : off.valueCodes) + (head * P + j) * cb;
    a.scales = reinterpret_cast<const uint16_t*>(base + (key ? off.keyScales : off.valueScales)) + head * P + j;
    a.vectors = n;
    a.out = out + (t - begin) * d;
    ops::cpuDecode(a);
    t += n;
  }
}

void PagedStore::decodeSlots(const SeqLayerStore& s, bool key, size_t head, size_t begin, size_t end, bool unrotate, float* out) const {
  decodeRuns(s, key, head, begin, end, unrotate, out);
}

void PagedStore::decodeSlotsF16(const SeqLayerStore& s, bool key, size_t head, size_t begin, size_t end, uint16_t* out) const {
  decodeRuns(s, key, head, begin, end, true, out);
}

void PagedStore::decodeKeys(const SeqLayerStore& s, size_t head, size_t begin, size_t end, const RopeTable& rope, float* out) const {
  decodeSlots(s, true, head, begin, end, true, out);
  if (rope.active())
    for (size_t t = begin; t < end; ++t) rope.apply(out + (t - begin) * layout_.headDim, slotPosition(s, head, t), false);
}

CacheComponentBytes PagedStore::bytes() const {
  CacheComponentBytes b;
  for (const SeqLayerStore& s : stores_) {
    for (const HostBuffer& p : s.pages) {
      const CategoryBytes& sp = p.split();
      b.codes += sp[static_cast<int>(MemCategory::Codes)];
      b.scales += sp[static_cast<int>(MemCategory::Scales)];
      b.positions += sp[static_cast<int>(MemCategory::Positions)];
      b.headers += sp[static_cast<int>(MemCategory::Headers)];
    }
    b.residual += s.residual.size();
    b.scores += s.scores.size();
  }
  if (transform_) b.transform = transform_->bytes();
  return b;
}

}  // namespace nq
