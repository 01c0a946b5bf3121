// cpuScore / cpuSelect / cpuCompact: the eviction steps of compress() behind the ScoreLaunch,
// SelectLaunch and CompactLaunch structs (the CUDA twins: kernels/scoring.cu, select.cu).
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "cache/nq_error.h"
#include "cpu/ops/cpu_ops.h"
#include "cpu/scoring.h"

namespace nq::ops {

void cpuScore(const ScoreLaunch& a) {
  if (a.tokens <= 0 || a.kvHeads <= 0) return;
  if (!a.keys || !a.scores || a.headDim <= 0) throw NqError("INVALID_ARGUMENT", "score: null pointer or bad headDim");
  const ScoreShape shape{static_cast<size_t>(a.kvHeads), static_cast<size_t>(a.tokens), static_cast<size_t>(a.headDim)};
  switch (a.scorer) {
    case format::Scorer::KeyNorm: scoreKeyNorm(shape, a.keys, a.scores); return;
    case format::Scorer::KeyKey: scoreKeyKey(shape, a.keys, static_cast<size_t>(a.window), a.scores); return;
    case format::Scorer::Observed:
      if (!a.queries || a.queryHeads <= 0 || a.queryHeads % a.kvHeads != 0 || a.window <= 0)
        throw NqError("INVALID_ARGUMENT", "score: observed needs queries, a window and queryHeads a multiple of kvHeads");
      scoreObserved(shape, a.keys, a.queries, static_cast<size_t>(a.queryHeads), static_cast<size_t>(a.window), static_cast<size_t>(a.pool),
                    a.scores);
      return;
    case format::Scorer::Accumulated:
    case format::Scorer::Random:
    case format::Scorer::Reconstruct: break;
  }
  throw NqError("UNSUPPORTED", "score: scorer " + std::to_string(static_cast<int>(a.scorer)) +
                                   " is state of the cache, not a function of the keys (the store computes it)");
}

void cpuSelect(const SelectLaunch& a) {
  if (a.kvHeads <= 0 || a.target <= 0) return;
  if (a.target > a.tokens) throw NqError("INVALID_ARGUMENT", "select: target exceeds the tokens");
  if (!a.scores || !a.positions || !a.kept) throw NqError("INVALID_ARGUMENT", "select: null pointer");
  const size_t total = static_cast<size_t>(a.tokens), target = static_cast<size_t>(a.target);
  const size_t recentWindow = static_cast<size_t>(std::max(a.recentWindow, 0));
  const size_t recentStart = total > recentWindow ? total - recentWindow : 0;
  std::vector<uint32_t> prot, cand;
  for (size_t h = 0; h < static_cast<size_t>(a.kvHeads); ++h) {
    prot.clear();
    cand.clear();
    const int32_t* positions = a.positions + h * total;
    for (size_t t = 0; t < total; ++t) {
      if (positions[t] < a.sinkTokens || t >= recentStart) prot.push_back(static_cast<uint32_t>(t));
      else cand.push_back(static_cast<uint32_t>(t));
    }
    const size_t want = target > prot.size() ? target - prot.size() : 0;
    const float* sc = a.scores + h * total;
    // Ties: the earlier token wins, so results are deterministic (and equal to the CUDA kernel's).
    auto better = [sc](uint32_t x, uint32_t y) { return sc[x] > sc[y] || (sc[x] == sc[y] && x < y); };
    if (want < cand.size()) {
      std::nth_element(cand.begin(), cand.begin() + want, cand.end(), better);
      cand.resize(want);
    }
    if (prot.size() > target) prot.resize(target);  // a budget smaller than sinks + window keeps the earliest
    uint32_t* kept = a.kept + h * target;
    std::copy(prot.begin(), prot.end(), kept);
    std::copy(cand.begin(), cand.end(), kept + prot.size());
    std::sort(kept, kept + target);
  }
}

void cpuCompact(const CompactLaunch& a) {
  if (a.kvHeads <= 0 || a.target <= 0) return;
  if (!a.kept || !a.newPages || (a.oldCompressed > 0 && !a.oldPages) || (a.storesPositions && !a.positions) ||
      (a.residualRows > 0 && (!a.resKeyCodes || !a.resValueCodes || !a.resKeyScales || !a.resValueScales)))
    throw NqError("INVALID_ARGUMENT", "compact: null pointer");
  const size_t P = static_cast<size_t>(a.pageTokens), H = static_cast<size_t>(a.kvHeads), target = static_cast<size_t>(a.target);
  const size_t nc = static_cast<size_t>(a.oldCompressed), nr = static_cast<size_t>(a.residualRows), total = nc + nr;
  const size_t kcb = static_cast<size_t>(a.keyCodeBytes), vcb = static_cast<size_t>(a.valueCodeBytes);
  for (size_t h = 0; h < H; ++h) {
    for (size_t t = 0; t < target; ++t) {
      const uint32_t src = a.kept[h * target + t];
      if (src >= total) throw NqError("INVALID_ARGUMENT", "compact: kept slot " + std::to_string(src) + " is past the old tokens");
      uint8_t* dst = a.newPages[t / P];
      const size_t dj = h * P + t % P;
      const uint8_t *kc, *vc;
      uint16_t ks, vs;
      if (src < nc) {
        const uint8_t* sp = a.oldPages[src / P];
        const size_t sj = h * P + src % P;
        kc = sp + a.keyCodesOff + sj * kcb;
        vc = sp + a.valueCodesOff + sj * vcb;
        std::memcpy(&ks, sp + a.keyScalesOff + sj * 2, 2);
        std::memcpy(&vs, sp + a.valueScalesOff + sj * 2, 2);
      } else {
        const size_t r = src - nc;
        kc = a.resKeyCodes + (h * nr + r) * kcb;
        vc = a.resValueCodes + (h * nr + r) * vcb;
        ks = a.resKeyScales[h * nr + r];
        vs = a.resValueScales[h * nr + r];
      }
      std::memcpy(dst + a.keyCodesOff + dj * kcb, kc, kcb);
      std::memcpy(dst + a.valueCodesOff + dj * vcb, vc, vcb);
      std::memcpy(dst + a.keyScalesOff + dj * 2, &ks, 2);
      std::memcpy(dst + a.valueScalesOff + dj * 2, &vs, 2);
      if (a.storesPositions) {
        const int32_t pos = a.positions[h * total + src];
        std::memcpy(dst + a.positionsOff + dj * 4, &pos, 4);
      }
    }
  }
}

}  // namespace nq::ops
