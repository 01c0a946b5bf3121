// The CPU cache's storage: for each (sequence, layer) pages of lattice codes, FP16 scales and kept
// positions (cache/page_layout.h: layout and page header from kernels/nq_format.h only), an FP16 residual window for
// tokens not yet quantized, and the Accumulated scorer's attention mass. Bookkeeping only: what is
// computed on it (encode, score, select, compact, attention) lives in cpu/ops/ and the compress
// policy in cache/compress_policy.h. Every byte comes from the accounting allocator.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cache/compress_policy.h"
#include "cache/compressed_cache.h"
#include "cache/page_layout.h"
#include "cache/transform_tables.h"
#include "memory/allocator.h"
#include "nq_format.h"

namespace nq {

class RopeTable;

// One (sequence, layer).
struct SeqLayerStore : StoreCounters {
  std::vector<HostBuffer> pages;
  HostBuffer residual;     // FP16 [2][H][residualCap][d]: keys then values
  // [H][scoreCap] slot scores (PageLayout::scoreBytes each): Accumulated's summed mass (f32) or
  // Reconstruct's most attention received (FP16); empty for the other scorers.
  HostBuffer scores;
  std::vector<const uint8_t*> pagePointers() const;
};

[[noreturn]] void throwOutOfMemory(const char* what, size_t bytes);

class PagedStore {
 public:
  // `transform` (may be null) outlives the store: the cache holds both.
  PagedStore(size_t batch, size_t layers, const PageLayout& layout, uint32_t codecSeed, const TransformTables* transform);
  // The calibrated transform of (layer, kv, head), or null for the flat code.
  const HeadTransform* transformOf(size_t layer, size_t kv, size_t head) const { return transform_ ? transform_->head(layer, kv, head) : nullptr; }

  const PageLayout& layout() const { return layout_; }
  size_t layers() const { return layers_; }
  SeqLayerStore& at(size_t seq, size_t layer) { return stores_[seq * layers_ + layer]; }
  const SeqLayerStore& at(size_t seq, size_t layer) const { return stores_[seq * layers_ + layer]; }
  std::vector<SeqLayerStore>& all() { return stores_; }
  const std::vector<SeqLayerStore>& all() const { return stores_; }

  // A zeroed page whose header names it (unused slots of the last page are serialized: keep them defined).
  HostBuffer newPage(size_t seq, size_t layer, size_t index) const;
  // Sets each page header's slotsUsed for `used` slots in all.
  void writeSlotCounts(std::vector<HostBuffer>& pages, size_t used) const;

  // FP16 rows of the residual: kv 0 keys, 1 values; [residualCap][d] per head.
  uint16_t* residualRows(SeqLayerStore& s, size_t kv, size_t head) const;
  const uint16_t* residualRows(const SeqLayerStore& s, size_t kv, size_t head) const;
  // Reallocates the residual to `cap` slots, keeping the first min(count, cap) rows (and the scores in step).
  void setResidualCapacity(SeqLayerStore& s, size_t cap) const;
  // The slot scores have room for exactly the slots the store has room for: compressed + residual
  // capacity (zero-filled when they grow). Every change of either calls it, so the scores follow the
  // residual's rules (format::residualSlots) and, after compress(), hold exactly the held tokens, as
  // compressedLayout counts. A no-op when the layout keeps no scores.
  void syncScores(SeqLayerStore& s) const;
  // One head's scores: Accumulated's f32 mass, Reconstruct's FP16 maxima.
  float* accumulatedRow(SeqLayerStore& s, size_t head) const { return reinterpret_cast<float*>(s.scores.data()) + head * s.scoreCap; }
  uint16_t* maxScoreRow(SeqLayerStore& s, size_t head) const { return reinterpret_cast<uint16_t*>(s.scores.data()) + head * s.scoreCap; }
  // Score of one slot as a float, whatever the storage.
  float slotScore(const SeqLayerStore& s, size_t head, size_t slot) const;

  int32_t slotPosition(const SeqLayerStore& s, size_t head, size_t slot) const;
  // Slots [begin, end) of one head, decoded by cpuDecode page run by page run: f32 (unrotate=false:
  // scale * lattice point, rotated domain) or FP16 bits.
  void decodeSlots(const SeqLayerStore& s, bool key, size_t head, size_t begin, size_t end, bool unrotate, float* out) const;
  void decodeSlotsF16(const SeqLayerStore& s, bool key, size_t head, size_t begin, size_t end, uint16_t* out) const;
  // Keys in the original domain as appended: RoPE re-applied when `rope` is active (un-RoPE'd storage).
  void decodeKeys(const SeqLayerStore& s, size_t head, size_t begin, size_t end, const RopeTable& rope, float* out) const;

  CacheComponentBytes bytes() const;

 private:
  template <typename Out>
  void decodeRuns(const SeqLayerStore& s, bool key, size_t head, size_t begin, size_t end, bool unrotate, Out* out) const;

  PageLayout layout_;
  size_t layers_;
  uint32_t seed_;
  const TransformTables* transform_;
  std::vector<SeqLayerStore> stores_;
};

}  // namespace nq
