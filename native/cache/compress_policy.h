// The compress policy of a paged cache, one for every backend: how an append fills the FP16 residual
// window (its capacity rules), how many tokens a (sequence, layer) keeps (true length, eviction spec,
// token budget), when the residual window goes onto pages, and the order of the eviction ops
// (score -> select -> encode residual -> compact). It decides; the store runs each step with its own
// buffers and ops (CPU: cpu/cpu_store_steps.h with cpu/ops/; a CUDA store implements the same
// interface with device buffers and the launchers of nq_cuda_api.h).
#pragma once
#include <cstddef>

#include <vector>

#include "cache/compressed_cache.h"
#include "nq_format.h"
#include "nq_ops_params.h"

namespace nq {

// What one (sequence, layer) holds, as the policy sees it.
struct HeldTokens {
  size_t compressed = 0;  // slots on pages
  size_t residual = 0;    // FP16 rows waiting in the residual window
  size_t appended = 0;    // the sequence's true length
  bool hasPages = false;
  bool compressedOnce = false;  // compress() ran on this store: appends then go window by window
  size_t total() const { return compressed + residual; }
};

// The counters every store keeps per (sequence, layer), whatever memory holds its data.
struct StoreCounters {
  size_t compressed = 0;     // slots used in pages (same for every head)
  size_t residualCap = 0;    // FP16 residual slots allocated
  size_t residualCount = 0;  // residual slots holding tokens
  size_t appended = 0;       // tokens ever appended: the sequence's true length
  size_t scoreCap = 0;         // slot-score slots per head (scorers that keep slot scores: format::keepsSlotScores)
  bool compressedOnce = false;
  // Reconstruct scorer: a reconstruction pass ran after the last append, so every held slot has a
  // score from the context it belongs to. Appends clear it; without it compress() scores key-key.
  bool scoresCurrent = false;

  size_t held() const { return compressed + residualCount; }
  // Residual row 0 sits at this position (residual tokens are the last ones appended).
  size_t firstResidualPosition() const { return appended - residualCount; }
  HeldTokens heldTokens(bool hasPages) const {
    HeldTokens h;
    h.compressed = compressed;
    h.residual = residualCount;
    h.appended = appended;
    h.hasPages = hasPages;
    h.compressedOnce = compressedOnce;
    return h;
  }
};

// Observation-window queries of the Observed scorer for one layer: [queryHeads][window][headDim].
// Null queries: the scorer falls back to key-key for that layer.
struct ObservedQueries {
  const float* queries = nullptr;
  size_t queryHeads = 0, window = 0;
};

// The scorer a compress() of this store runs: its own, except that Observed without queries for the
// layer, and Reconstruct when tokens were appended after the last reconstruction pass (their scores
// would be missing), fall back to key-key, so a runtime that cannot provide them still evicts sensibly.
inline Scorer scorerFor(const CacheOptions& o, const ObservedQueries& observed, const StoreCounters& store) {
  if (o.scorer == Scorer::Observed && observed.queries == nullptr) return Scorer::KeyKey;
  if (o.scorer == Scorer::Reconstruct && !store.scoresCurrent) return Scorer::KeyKey;
  return o.scorer;
}

struct CompressRules {
  format::Spec spec{};
  size_t budgetTokens = 0;  // 0: off
  size_t kvHeads = 1, headDim = 0;
};
CompressRules compressRules(const CacheOptions& o);

// The steps a store offers the policy, for one (sequence, layer).
class StoreSteps {
 public:
  virtual ~StoreSteps() = default;
  virtual HeldTokens held() const = 0;
  virtual size_t residualSlots() const = 0;  // capacity of the residual window now
  // Copies tokens [first, first + count) of the append in progress after the residual rows (there is
  // room: the policy sized the residual) and counts them as appended.
  virtual void appendRows(size_t first, size_t count) = 0;
  // Quantizes every residual row onto page slots after the compressed ones (no eviction).
  virtual void quantizeResidual() = 0;
  // Reallocates the residual to exactly `slots` rows (it holds at most that many then).
  virtual void setResidualSlots(size_t slots) = 0;
  virtual void markCompressed() = 0;
  // Eviction, in this order, between beginEviction and endEviction (which frees what it held, also
  // when a step threw): positions and scores [H][total], kept [H][target], the residual encoded,
  // then new pages built from the kept slots and swapped in (the residual is then empty).
  virtual void beginEviction(size_t target) = 0;
  virtual void score(const ObservedQueries& observed) = 0;
  virtual void select(const ops::SelectLaunch& shape) = 0;
  virtual void encodeResidual() = 0;
  virtual void compact() = 0;
  virtual void endEviction() = 0;
};

// Slots kept by a compress() of a store holding `h`: the spec's kept count for the true length (or
// fewer under a budget), never more than held.
size_t compressTarget(const CompressRules& rules, const HeldTokens& h);

// compress() of one (sequence, layer): evict to compressTarget, or, when nothing is to be evicted,
// quantize the residual (if paging pays) and trim the residual to what it still holds.
void compressStore(StoreSteps& steps, const CompressRules& rules, const ObservedQueries& observed);

// An append of `count` tokens (the store's appendRows source): grows the residual by the capacity
// rules (before the first compress() by a quarter; afterwards format::residualSlots: powers of two up
// to the window as far as the store stays within FP16) and flushes it whenever a full window waits
// (flushFullResidual).
void appendTokens(StoreSteps& steps, const CompressRules& rules, size_t count);

// compress() of one sequence's layer `layer` (< 0: every layer): `stepsFor(l)` returns layer l's steps
// (by value); `observed` as CompressedCache::compress.
template <typename StepsFor>
void compressLayers(const CacheOptions& o, long layer, const std::vector<const float*>* observed, size_t queryHeads, size_t window,
                    StepsFor&& stepsFor) {
  const size_t first = layer < 0 ? 0 : static_cast<size_t>(layer), end = layer < 0 ? o.layers : first + 1;
  for (size_t l = first; l < end; ++l) {
    ObservedQueries q;
    q.queries = observed && l < observed->size() ? (*observed)[l] : nullptr;
    q.queryHeads = queryHeads;
    q.window = window;
    auto steps = stepsFor(l);
    compressStore(steps, compressRules(o), q);
  }
}

// The residual window filled after a compress(): quantize it onto pages; under a budget that the
// store would pass, evict down to the budget instead. A page-less store whose tokens cost more as
// pages than in FP16 keeps them (format::pagingPays): that holds a short prompt's ratio at >= 1.
void flushFullResidual(StoreSteps& steps, const CompressRules& rules);

}  // namespace nq
