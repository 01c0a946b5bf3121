#include "cache/compress_policy.h"

#include <algorithm>

namespace nq {
namespace {

// Quantizes the residual onto pages unless a page-less store would hold more as pages than in FP16.
void quantizeIfPagingPays(StoreSteps& steps, const CompressRules& rules, const HeldTokens& h) {
  if (h.residual == 0) return;
  if (!h.hasPages && !format::pagingPays(rules.kvHeads, rules.headDim, rules.spec, h.residual)) return;
  steps.quantizeResidual();
}

// Frees the eviction buffers however the steps end.
struct EvictionScope {
  StoreSteps& steps;
  EvictionScope(StoreSteps& s, size_t target) : steps(s) { steps.beginEviction(target); }
  ~EvictionScope() { steps.endEviction(); }
  EvictionScope(const EvictionScope&) = delete;
  EvictionScope& operator=(const EvictionScope&) = delete;
};

void evict(StoreSteps& steps, const CompressRules& rules, const HeldTokens& h, size_t target, const ObservedQueries& observed) {
  EvictionScope scope(steps, target);
  steps.score(observed);
  ops::SelectLaunch shape;
  shape.kvHeads = static_cast<int>(rules.kvHeads);
  shape.tokens = static_cast<int>(h.total());
  shape.target = static_cast<int>(target);
  shape.sinkTokens = rules.spec.sinkTokens;
  shape.recentWindow = rules.spec.recentWindow;
  steps.select(shape);
  steps.encodeResidual();
  steps.compact();
  steps.markCompressed();
  steps.setResidualSlots(0);  // empty now: appends grow it again (format::residualCapacity)
}

// Before the first compress() the residual is the whole FP16 cache (preset "none"): it grows by a
// quarter, not double, so it never holds more than 1.25x the FP16 bytes; amortized copying stays O(n).
// No floor: a few tokens get a few slots.
void growResidual(StoreSteps& steps, size_t minSlots) {
  const size_t cap = steps.residualSlots();
  if (minSlots <= cap) return;
  steps.setResidualSlots(std::max(cap + cap / 4, minSlots));
}

// The residual of a store after its first compress(), for `need` waiting tokens: format::residualSlots
// (the growth rule, bounded by the rule that decides paging), so its pages and residual never cost
// more than its tokens in FP16, between compressions too.
void fitResidual(StoreSteps& steps, const CompressRules& rules, const HeldTokens& h, size_t need) {
  const size_t slots = format::residualSlots(rules.kvHeads, rules.headDim, rules.spec, format::pagesFor(h.compressed, rules.spec), need,
                                             h.appended + need - h.residual);
  if (slots > steps.residualSlots()) steps.setResidualSlots(slots);
}

}  // namespace

void appendTokens(StoreSteps& steps, const CompressRules& rules, size_t count) {
  const size_t window = static_cast<size_t>(rules.spec.residualWindow);
  size_t done = 0;
  while (done < count) {
    const HeldTokens h = steps.held();
    const size_t left = count - done;
    size_t room;
    if (!h.compressedOnce) {
      growResidual(steps, h.residual + left);
      room = left;
    } else if (!h.hasPages) {
      // A page-less store keeps its tokens in FP16 until paging pays (at the window or the next
      // compress), in exactly their slots (fitResidual: 1.00x). It fills up to the window, then takes
      // one token at a time, so the flush below pages it as soon as a page pays, and a long append
      // after a short compressed prompt still goes to pages window by window.
      room = h.residual < window ? std::min(left, window - h.residual) : 1;
      fitResidual(steps, rules, h, h.residual + room);
    } else if (window == 0) {
      steps.setResidualSlots(left);  // no residual window: quantize straight away
      room = left;
    } else {
      // The window grows with the tokens waiting in it (powers of two up to its size, as far as the
      // store stays within FP16), so a short prompt's compressed cache does not carry an empty window.
      fitResidual(steps, rules, h, std::min(window, h.residual + left));
      room = steps.residualSlots() - h.residual;
    }
    const size_t take = std::min(room, left);
    steps.appendRows(done, take);
    done += take;
    const HeldTokens now = steps.held();
    if (now.compressedOnce && now.residual >= window) {
      flushFullResidual(steps, rules);
      // Flushed onto pages: the residual is empty, as after compress(); later appends grow it again.
      if (steps.held().residual == 0) steps.setResidualSlots(0);
    }
  }
}

CompressRules compressRules(const CacheOptions& o) {
  CompressRules r;
  r.spec = o.spec;
  r.budgetTokens = o.budgetTokens;
  r.kvHeads = o.kvHeads;
  r.headDim = o.headDim;
  return r;
}

size_t compressTarget(const CompressRules& rules, const HeldTokens& h) {
  size_t target = std::min(h.total(), format::keptTokenCount(h.appended, rules.spec));
  if (rules.budgetTokens > 0) target = std::min(target, rules.budgetTokens);
  return target;
}

void compressStore(StoreSteps& steps, const CompressRules& rules, const ObservedQueries& observed) {
  const HeldTokens h = steps.held();
  const size_t target = compressTarget(rules, h);
  if (target < h.total()) {
    evict(steps, rules, h, target, observed);
  } else {
    // Nothing to evict (and within any budget): quantize the residual onto the pages.
    steps.markCompressed();
    quantizeIfPagingPays(steps, rules, h);
    // Empty now (appends grow it again, format::residualCapacity), or holding the tokens of a store
    // too short for paging to pay: then trimmed to exactly them, so it holds their FP16 bytes.
    steps.setResidualSlots(steps.held().residual);
  }
}

void flushFullResidual(StoreSteps& steps, const CompressRules& rules) {
  const HeldTokens h = steps.held();
  if (rules.budgetTokens > 0 && h.total() > rules.budgetTokens) {
    evict(steps, rules, h, compressTarget(rules, h), ObservedQueries{});
    return;
  }
  quantizeIfPagingPays(steps, rules, h);
}

}  // namespace nq
