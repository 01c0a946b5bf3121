// C++ mirror of src/format/layout.ts: the byte layout of compressed pages and quantized tensors.
// The TypeScript file is the definition; test/format/native-agreement.test.ts asserts this header
// computes the same bytes for many shapes, so the allocator and the estimator cannot drift apart.
// Plain constexpr arithmetic, usable from host C++ and CUDA device code.
#pragma once
#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define NQ_FMT_HD __host__ __device__
#else
#define NQ_FMT_HD
#endif

namespace nq::format {

constexpr size_t kGroupSize = 8;               // elements per lattice group
constexpr size_t kScaleBytes = 2;              // one FP16 scale per head vector
constexpr size_t kPositionBytes = 4;           // int32 position per kept slot per KV head
constexpr size_t kFp16Bytes = 2;
constexpr size_t kPageHeaderBytes = 16;
constexpr size_t kQuantizedTensorHeaderBytes = 32;

// Ranges the format supports; the binding and deserialize() refuse anything outside them, so no
// size computed from a spec can overflow (and src/format validates against the same figures).
constexpr int64_t kMaxPositions = 2147483647;      // token positions are int32
constexpr int64_t kMaxWindowTokens = 1 << 30;      // sinkTokens, recentWindow (their sum fits int32)
constexpr int64_t kMaxResidualWindow = 1 << 20;    // FP16 residual slots per (sequence, layer)
constexpr int64_t kMaxPageTokens = 1 << 16;        // token slots per page
constexpr int64_t kMaxHeads = 4096;                // kvHeads
constexpr int64_t kMaxQueryHeads = 1 << 16;        // queryHeads (a multiple of kvHeads)
constexpr int64_t kMaxStores = 1 << 24;            // batch x layers
constexpr int kMaxHeadDim = 8192;                  // head vector length, a multiple of kGroupSize

// Eviction scorers, by the id the binding, the CUDA scorer launch and the serialized header use
// (src/format/spec.ts SCORER_IDS). CUDA implements KeyNorm, KeyKey and Observed.
// Reconstruct (KVzip-style): a token's score is the most attention it received from the queries of a
// re-read of the context (reconstruction attention); query-agnostic, and state of the store.
enum class Scorer : uint8_t { KeyNorm = 0, KeyKey = 1, Observed = 2, Accumulated = 3, Random = 4, Reconstruct = 5 };
constexpr int kScorerCount = 6;

// Scorers whose scores are state of the store (a score per held slot, kept through compaction and
// serialized), not a function of the keys at compress time.
NQ_FMT_HD constexpr bool keepsSlotScores(Scorer s) { return s == Scorer::Accumulated || s == Scorer::Reconstruct; }
// The scorers' default shape (src/format/spec.ts SCORER_DEFAULTS): the window of key-key's proxy
// queries and of observed's observation queries, and observed's max-pool width (odd).
constexpr int kDefaultScorerWindow = 32;
constexpr int kDefaultPoolKernel = 7;

// The first kPageHeaderBytes of every page (CPU pages and CUDA pages alike).
struct PageHeader {
  uint32_t slotsUsed, layer, sequence, index;
};
static_assert(sizeof(PageHeader) == kPageHeaderBytes, "the page header is 16 bytes");

// Fixed header of a standalone QuantizedTensor (docs/format.md):
// [header][scales: vectors x 2 B][codes: vectors x headDim*bits/8 B].
constexpr char kQuantizedTensorMagic[5] = "NQQT";
constexpr uint16_t kQuantizedTensorVersion = 1;
struct QuantizedTensorHeader {
  char magic[4];     // "NQQT"
  uint16_t version;  // kQuantizedTensorVersion
  uint8_t bits;      // 2, 3, 4
  uint8_t flags;     // bit 0: rotated
  uint32_t headDim;
  uint32_t seed;
  uint64_t vectors;
  uint8_t reserved[8];
};
static_assert(sizeof(QuantizedTensorHeader) == kQuantizedTensorHeaderBytes, "the tensor header is 32 bytes");

// Header of a serialized cache ("NQKV", docs/cache.md): the options the cache was created with, then
// every (sequence, layer) store, then a CRC32 of everything before it. Written and read as this struct
// (natural alignment, no padding: the static_asserts pin every offset), little-endian hosts only.
constexpr uint32_t kSerializedMagic = 0x564B514Eu;  // "NQKV" little-endian
constexpr uint32_t kSerializedVersion = 1;
// Version 2: the same, with the 32-byte id of the cache's calibrated transform tables (nq_transform.h)
// right after the header: the codes can be read only with those tables (the profile's), which are
// model data and are not repeated in every saved cache. Written only by a cache that has them, so
// version-1 readers refuse it.
constexpr uint32_t kSerializedVersionTransform = 2;
struct SerializedCacheHeader {
  uint32_t magic, version;
  uint32_t batch, layers, kvHeads, headDim;
  uint8_t keyBits, valueBits, scorer, padding;
  uint8_t evictFraction[8];  // a double, stored unaligned (offset 28)
  uint32_t sinkTokens, recentWindow, residualWindow, pageTokens;
  uint32_t seed, scorerWindow, poolKernel, queryHeads;
  uint8_t budgetTokens[8];  // uint64 at offset 68
  uint8_t ropeTheta[8];     // double at offset 76
};
static_assert(sizeof(SerializedCacheHeader) == 84 && offsetof(SerializedCacheHeader, evictFraction) == 28 &&
                  offsetof(SerializedCacheHeader, sinkTokens) == 36 && offsetof(SerializedCacheHeader, queryHeads) == 64 &&
                  offsetof(SerializedCacheHeader, budgetTokens) == 68 && offsetof(SerializedCacheHeader, ropeTheta) == 76,
              "the serialized header keeps version 1's byte offsets");

struct Spec {
  int keyBits;
  int valueBits;
  double evictFraction;
  int sinkTokens;
  int recentWindow;
  int residualWindow;
  int pageTokens;
};

NQ_FMT_HD constexpr size_t codeBytesPerVector(size_t headDim, int bits) { return headDim / kGroupSize * static_cast<size_t>(bits); }

NQ_FMT_HD constexpr bool storesPositions(const Spec& s) { return s.evictFraction > 0.0; }

// Bytes of one held token's score per KV head, kept beside the pages when the scorer keeps slot
// scores and the spec evicts (nothing else reads them): FP16 for Reconstruct (the most attention a
// token received), f32 for Accumulated (summed attention mass); none otherwise. Same rule as
// layout.ts scoreBytesPerSlot.
NQ_FMT_HD constexpr size_t scoreBytesPerSlot(const Spec& s, Scorer scorer) {
  return !storesPositions(s) ? 0 : scorer == Scorer::Reconstruct ? 2 : scorer == Scorer::Accumulated ? 4 : 0;
}

NQ_FMT_HD constexpr size_t slotBytes(size_t headDim, const Spec& s) {
  return codeBytesPerVector(headDim, s.keyBits) + codeBytesPerVector(headDim, s.valueBits) + 2 * kScaleBytes +
         (storesPositions(s) ? kPositionBytes : 0);
}

NQ_FMT_HD constexpr size_t pageBytes(size_t kvHeads, size_t headDim, const Spec& s) {
  return kPageHeaderBytes + kvHeads * static_cast<size_t>(s.pageTokens) * slotBytes(headDim, s);
}

// Offsets of the components inside one page: [header][K codes][V codes][K scales][V scales][positions].
struct PageOffsets {
  size_t keyCodes, valueCodes, keyScales, valueScales, positions, end;
};
NQ_FMT_HD constexpr PageOffsets pageOffsets(size_t kvHeads, size_t headDim, const Spec& s) {
  const size_t slots = kvHeads * static_cast<size_t>(s.pageTokens);
  PageOffsets o{};
  o.keyCodes = kPageHeaderBytes;
  o.valueCodes = o.keyCodes + slots * codeBytesPerVector(headDim, s.keyBits);
  o.keyScales = o.valueCodes + slots * codeBytesPerVector(headDim, s.valueBits);
  o.valueScales = o.keyScales + slots * kScaleBytes;
  o.positions = o.valueScales + slots * kScaleBytes;
  o.end = o.positions + (storesPositions(s) ? slots * kPositionBytes : 0);
  return o;
}

// FP16 residual slots held once `tokens` have been appended since the last compress(): the next power
// of two, capped at the window (0 when nothing waits). Decode appends then grow it in O(log window)
// copies and it never holds more than twice the tokens it waits with. Same rule as layout.ts.
NQ_FMT_HD constexpr size_t residualCapacity(size_t tokens, const Spec& s) {
  const size_t window = static_cast<size_t>(s.residualWindow);
  if (tokens == 0 || window == 0) return 0;
  size_t cap = 1;
  while (cap < tokens && cap < window) cap *= 2;
  return cap < window ? cap : window;
}

// Bytes of an FP16 residual (K and V) of one sequence and layer with `slots` token slots.
NQ_FMT_HD constexpr size_t residualSlotBytes(size_t kvHeads, size_t headDim, size_t slots) { return 2 * kvHeads * slots * headDim * kFp16Bytes; }
// The most the residual ever holds: its whole window.
NQ_FMT_HD constexpr size_t residualBytes(size_t kvHeads, size_t headDim, const Spec& s) {
  return residualSlotBytes(kvHeads, headDim, static_cast<size_t>(s.residualWindow));
}

// Pages a store needs for `keptTokens` slots.
NQ_FMT_HD constexpr size_t pagesFor(size_t keptTokens, const Spec& s) {
  return (keptTokens + static_cast<size_t>(s.pageTokens) - 1) / static_cast<size_t>(s.pageTokens);
}

// The one rule of what a compressed (sequence, layer) store may hold: `pages` pages plus
// `residualSlots` FP16 residual slots cost no more than its `tokens` appended tokens in FP16 (K and V,
// every KV head). It decides when a short store's tokens go onto pages (pagingPays) and how far the
// residual of a compressed store grows (residualSlots), so that a cache holds no more than FP16 from
// its first compress() on: ratio >= 1. Same rule as layout.ts.
NQ_FMT_HD constexpr bool fitsFp16(size_t kvHeads, size_t headDim, const Spec& s, size_t pages, size_t residualSlots, size_t tokens) {
  return pages * pageBytes(kvHeads, headDim, s) + residualSlotBytes(kvHeads, headDim, residualSlots) <= residualSlotBytes(kvHeads, headDim, tokens);
}

// Whether compress() puts the `tokens` tokens of a page-less (sequence, layer) store on pages: only
// when the pages they need fit in the tokens' FP16 bytes (fitsFp16). Below that (a few tokens against
// one page of pageTokens slots) the store keeps them in its FP16 residual, trimmed to their count.
// Stores that already have pages, or must evict, page as always. Same rule as layout.ts.
NQ_FMT_HD constexpr bool pagingPays(size_t kvHeads, size_t headDim, const Spec& s, size_t tokens) {
  return fitsFp16(kvHeads, headDim, s, pagesFor(tokens, s), 0, tokens);
}

// FP16 residual slots of a store after its first compress(), holding `pages` pages, with `waiting`
// tokens in its residual and `tokens` appended in all: the growth rule (residualCapacity) as far as
// fitsFp16 allows, never fewer than `waiting`. A page-less store therefore holds exactly its tokens;
// a paged one grows by powers of two once its pages have left room. Same rule as layout.ts.
NQ_FMT_HD constexpr size_t residualSlots(size_t kvHeads, size_t headDim, const Spec& s, size_t pages, size_t waiting, size_t tokens) {
  const size_t row = residualSlotBytes(kvHeads, headDim, 1);
  const size_t paged = pages * pageBytes(kvHeads, headDim, s);
  const size_t fp16 = residualSlotBytes(kvHeads, headDim, tokens);
  const size_t affordable = fp16 > paged ? (fp16 - paged) / row : 0;
  const size_t grown = residualCapacity(waiting, s);
  const size_t slots = grown < affordable ? grown : affordable;
  return slots > waiting ? slots : waiting;
}

// Tokens kept after eviction: sinks and the recent window always; of the evictable rest, all but
// floor(evictable * evictFraction). Same rounding as keptTokenCount in layout.ts.
inline size_t keptTokenCount(size_t tokens, const Spec& s) {
  if (s.evictFraction == 0.0) return tokens;
  // Summed in size_t: two int fields near INT_MAX must not overflow (a corrupted header could hold them).
  const size_t window = static_cast<size_t>(s.sinkTokens) + static_cast<size_t>(s.recentWindow);
  const size_t protectedTokens = tokens < window ? tokens : window;
  const size_t evictable = tokens - protectedTokens;
  // floor(evictable * f) computed in double exactly as JS does (both IEEE-754 binary64).
  const double evicted = static_cast<double>(evictable) * s.evictFraction;
  return tokens - static_cast<size_t>(evicted);
}


NQ_FMT_HD constexpr size_t quantizedTensorBytes(size_t vectors, size_t headDim, int bits) {
  return kQuantizedTensorHeaderBytes + vectors * (codeBytesPerVector(headDim, bits) + kScaleBytes);
}

static_assert(pageOffsets(8, 128, Spec{2, 2, 0.6, 4, 64, 128, 64}).end == pageBytes(8, 128, Spec{2, 2, 0.6, 4, 64, 128, 64}),
              "page offsets must cover the page exactly");
static_assert(!pagingPays(8, 128, Spec{2, 2, 0.6, 4, 64, 128, 64}, 1) && pagingPays(8, 128, Spec{2, 2, 0.6, 4, 64, 128, 64}, 64),
              "one token does not pay for a page; a full page does");
static_assert(residualSlots(2, 64, Spec{2, 2, 0.6, 4, 64, 128, 64}, 0, 5, 5) == 5 && residualSlots(2, 64, Spec{2, 2, 0.6, 4, 64, 128, 64}, 1, 5, 205) == 8,
              "a page-less store holds exactly its tokens; a paged one with room grows by powers of two");
static_assert(codeBytesPerVector(128, 2) == 32 && codeBytesPerVector(128, 3) == 48 && codeBytesPerVector(128, 4) == 64,
              "a group of 8 elements takes `bits` bytes");

}  // namespace nq::format
