#include "cpu/compress_policy.h"

#include <algorithm>

namespace nq {
namespace {

// Quantizes the residual onto pages unless a page-less store would hold more as pages than in FP16.
void quantizeIfPagingPays(CompressSteps& steps, const CompressRules& rules, const HeldTokens& h) {
  if (h.residual == 0) return;
  if (!h.hasPages && !format::pagingPays(rules.kvHeads, rules.headDim, rules.spec, h.residual)) return;
  steps.quantizeResidual();
}

// Frees the eviction buffers however the steps end.
struct EvictionScope {
  CompressSteps& steps;
  EvictionScope(CompressSteps& s, size_t target) : steps(s) { steps.beginEviction(target); }
  ~EvictionScope() { steps.endEviction(); }
  EvictionScope(const EvictionScope&) = delete;
  EvictionScope& operator=(const EvictionScope&) = delete;
};

void evict(CompressSteps& steps, const CompressRules& rules, const HeldTokens& h, size_t target, const ObservedQueries& observed) {
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

}  // namespace

size_t compressTarget(const CompressRules& rules, const HeldTokens& h) {
  size_t target = std::min(h.total(), format::keptTokenCount(h.appended, rules.spec));
  if (rules.budgetTokens > 0) target = std::min(target, rules.budgetTokens);
  return target;
}

void compressStore(CompressSteps& steps, const CompressRules& rules, const ObservedQueries& observed) {
  const HeldTokens h = steps.held();
  const size_t target = compressTarget(rules, h);
  if (target < h.total()) {
    evict(steps, rules, h, target, observed);
    return;
  }
  // Nothing to evict (and within any budget): quantize the residual onto the pages.
  steps.markCompressed();
  quantizeIfPagingPays(steps, rules, h);
  // Empty now (appends grow it again, format::residualCapacity), or holding the tokens of a store
  // too short for paging to pay: then trimmed to exactly them, so it holds their FP16 bytes.
  steps.setResidualSlots(steps.held().residual);
}

void flushFullResidual(CompressSteps& steps, const CompressRules& rules) {
  const HeldTokens h = steps.held();
  if (rules.budgetTokens > 0 && h.total() > rules.budgetTokens) {
    evict(steps, rules, h, compressTarget(rules, h), ObservedQueries{});
    return;
  }
  quantizeIfPagingPays(steps, rules, h);
}

}  // namespace nq
