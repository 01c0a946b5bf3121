#include "cpu/kv_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>

#include "cache/compress_policy.h"
#include "cpu/cpu_store_steps.h"
#include "cache/nq_error.h"
#include "cpu/ops/cpu_ops.h"
#include "cpu/parallel.h"
#include "cache/scratch.h"
#include "nq_half.h"
#include "nq_page_pack.h"

namespace nq {
KvCache::KvCache(const CacheOptions& o)
    : o_(o), store_(o.batch, o.layers, PageLayout(o.kvHeads, o.headDim, o.spec, o.scorer), o.seed, o.transform.get()), rope_(o.ropeTheta, o.headDim) {
  // Evicting needs stored positions (evictFraction > 0); TypeScript and deserialize() refuse a budget
  // without them, and so does the binding's direct use.
  if (o.budgetTokens > 0 && !format::storesPositions(o.spec))
    throw NqError("INVALID_ARGUMENT", "a token budget needs a spec that evicts (evictFraction > 0)");
}

// ---- append: checked here, then the policy's residual rules (appendTokens) --------------------------

template <typename T>
void KvCache::appendImpl(size_t seq, size_t layer, const T* k, const T* v, size_t count) {
  checkStoreIndex(o_, seq, layer);
  checkAppendRows(k, v, o_.kvHeads, count, o_.headDim);  // before touching state
  AppendSource src;
  src.keys = k;
  src.values = v;
  src.f16 = std::is_same_v<T, uint16_t>;
  src.count = count;
  CpuStoreSteps steps(store_, o_, rope_, seq, layer);
  steps.setAppendSource(src);
  appendTokens(steps, compressRules(o_), count);
}

void KvCache::append(size_t seq, size_t layer, const float* k, const float* v, size_t T) { appendImpl(seq, layer, k, v, T); }
void KvCache::appendF16(size_t seq, size_t layer, const uint16_t* k, const uint16_t* v, size_t T) { appendImpl(seq, layer, k, v, T); }

// ---- compress: the policy (score -> select -> encode -> compact) on each layer ---------------------

void KvCache::compress(size_t seq, long layer, const std::vector<const float*>* observed, size_t queryHeads, size_t observedWindow) {
  checkCompressIndex(o_, seq, layer);
  compressLayers(o_, layer, observed, queryHeads, observedWindow, [&](size_t l) { return CpuStoreSteps(store_, o_, rope_, seq, l); });
  returnFreedHostMemory();  // the evicted pages' memory back to the OS, not kept by malloc (allocator.h)
}

// ---- attention on codes: the CPU attention op on this store ----------------------------------------

void KvCache::attention(size_t seq, size_t layer, const float* q, size_t qHeads, size_t nq, const int32_t* qpos, float scale, float* out) {
  AttentionCall c{q, qHeads, nq, qpos, scale, out};
  c.accumulate = o_.scorer == Scorer::Accumulated;
  runAttention(seq, layer, c);
}

void KvCache::reconstructionAttention(size_t seq, size_t layer, const float* q, size_t qHeads, size_t nq, const int32_t* qpos, float scale,
                                      const float* extraK, const float* extraV, size_t recentSlots, float* out) {
  if (o_.scorer != Scorer::Reconstruct)
    throw NqError("INVALID_ARGUMENT", "a reconstruction pass scores tokens for the \"reconstruct\" scorer; this cache uses another scorer");
  if (!qpos || !extraK || !extraV) throw NqError("INVALID_ARGUMENT", "a reconstruction pass needs query positions and the re-read's keys and values");
  AttentionCall c{q, qHeads, nq, qpos, scale, out};
  c.captureMax = true;
  c.extraK = extraK;
  c.extraV = extraV;
  c.recentSlots = recentSlots;
  runAttention(seq, layer, c);
  store_.at(seq, layer).scoresCurrent = true;
}

void KvCache::shareScores(size_t seq, size_t sourceLayers) {
  if (o_.scorer != Scorer::Reconstruct) throw NqError("INVALID_ARGUMENT", "shared scores are reconstruction scores; this cache uses another scorer");
  if (seq >= o_.batch || sourceLayers == 0 || sourceLayers > o_.layers) throw NqError("INVALID_ARGUMENT", "sequence or source layer count out of range");
  const size_t H = o_.kvHeads, appended = store_.at(seq, 0).appended;
  // The best score of each position over the source layers' heads (positions are < appended).
  // FP16 bits of non-negative scores order like the scores themselves: max on the bits is max on the values.
  std::vector<uint16_t> best(appended, 0);
  for (size_t l = 0; l < sourceLayers; ++l) {
    SeqLayerStore& s = store_.at(seq, l);
    if (s.scoreCap < s.held()) continue;  // no pass has scored this layer
    for (size_t h = 0; h < H; ++h) {
      const uint16_t* row = store_.maxScoreRow(s, h);
      for (size_t t = 0; t < s.held(); ++t) {
        const size_t pos = static_cast<size_t>(t < s.compressed ? store_.slotPosition(s, h, t) : s.firstResidualPosition() + (t - s.compressed));
        if (pos < appended) best[pos] = std::max(best[pos], row[t]);
      }
    }
  }
  // The layers the re-read ran through keep their own per-head scores (measured: KL 0.0071 against
  // 0.0178 when they took the shared ones too; bench/results/quality.md).
  for (size_t l = sourceLayers; l < o_.layers; ++l) {
    SeqLayerStore& s = store_.at(seq, l);
    for (size_t h = 0; h < H; ++h) {
      uint16_t* row = store_.maxScoreRow(s, h);
      for (size_t t = 0; t < s.held(); ++t) {
        const size_t pos = static_cast<size_t>(t < s.compressed ? store_.slotPosition(s, h, t) : s.firstResidualPosition() + (t - s.compressed));
        if (pos < appended) row[t] = std::max(row[t], best[pos]);
      }
    }
    s.scoresCurrent = true;
  }
}

void KvCache::runAttention(size_t seq, size_t layer, const AttentionCall& c) {
  if (seq >= o_.batch || layer >= o_.layers) throw NqError("INVALID_ARGUMENT", "sequence or layer out of range");
  SeqLayerStore& s = store_.at(seq, layer);
  const size_t H = o_.kvHeads;
  const size_t qHeads = c.qHeads, nq = c.nq;
  const int32_t* qpos = c.qpos;
  if (qHeads == 0 || qHeads % H != 0) throw NqError("INVALID_ARGUMENT", "query heads must be a positive multiple of the KV heads");
  if (nq == 0) return;
  std::vector<int32_t> defaultPos;
  if (!qpos) {  // the last nq appended positions
    for (size_t j = 0; j < nq; ++j) defaultPos.push_back(static_cast<int32_t>(static_cast<int64_t>(s.appended) - static_cast<int64_t>(nq) + static_cast<int64_t>(j)));
    qpos = defaultPos.data();
  }
  const std::vector<const uint8_t*> pages = s.pagePointers();
  ops::SeqKV kv;
  kv.pages = pages.data();
  kv.compressed = static_cast<int>(s.compressed);
  kv.residual = reinterpret_cast<const uint16_t*>(s.residual.data());
  kv.residualCap = static_cast<int>(s.residualCap);
  kv.residualCount = static_cast<int>(s.residualCount);
  kv.firstResidualPos = static_cast<int>(s.firstResidualPosition());
  if (o_.scorer == Scorer::Accumulated) kv.accumulated = store_.accumulatedRow(s, 0);
  if (o_.scorer == Scorer::Reconstruct) kv.maxScores = store_.maxScoreRow(s, 0);
  kv.accPitch = static_cast<int>(s.scoreCap);
  ops::AttentionLaunch a = ops::pagedAttentionLaunch(static_cast<int>(H), static_cast<int>(qHeads), static_cast<int>(o_.headDim),
                                                     static_cast<int>(nq), o_.spec, o_.seed, c.scale);
  a.batch = 1;
  a.ropeTheta = o_.ropeTheta;
  if (o_.transform) {
    a.keyTransforms = o_.transform->heads(layer, 0);
    a.valueTransforms = o_.transform->heads(layer, 1);
  }
  a.seqs = &kv;
  a.maxCompressed = kv.compressed;
  a.maxResidual = kv.residualCount;
  a.queries = c.q;
  a.queryPositions = qpos;
  a.out = c.out;
  a.accumulate = c.accumulate;
  a.captureMax = c.captureMax;
  a.extraKeys = c.extraK;
  a.extraValues = c.extraV;
  a.recentSlots = static_cast<int>(std::min<size_t>(c.recentSlots, static_cast<size_t>(format::kMaxPositions)));
  a.sinkSlots = o_.spec.sinkTokens;
  ops::cpuAttention(a);
}

// ---- dense view ----------------------------------------------------------------------------------

DenseKV KvCache::materialize(size_t seq, size_t layer) const {
  if (seq >= o_.batch || layer >= o_.layers) throw NqError("INVALID_ARGUMENT", "sequence or layer out of range");
  DenseKV r;
  r.tokens = tokens(seq, layer);
  r.keys.resize(o_.kvHeads * r.tokens * o_.headDim);
  r.values.resize(r.keys.size());
  r.positions.resize(o_.kvHeads * r.tokens);
  materializeInto(seq, layer, false, r.keys.data(), r.values.data(), r.positions.data());
  return r;
}

void KvCache::materializeInto(size_t seq, size_t layer, bool f16, void* keys, void* values, int32_t* positions) const {
  if (seq >= o_.batch || layer >= o_.layers) throw NqError("INVALID_ARGUMENT", "sequence or layer out of range");
  const SeqLayerStore& s = store_.at(seq, layer);
  const size_t H = o_.kvHeads, d = o_.headDim, nc = s.compressed, nr = s.residualCount, n = nc + nr;
  parallelFor(2 * H, 1, [&](size_t b, size_t e) {
    for (size_t job = b; job < e; ++job) {
      const bool key = job < H;
      const size_t h = job % H;
      const uint16_t* res = store_.residualRows(s, key ? 0 : 1, h);
      if (f16) {
        uint16_t* out = static_cast<uint16_t*>(key ? keys : values) + h * n * d;
        if (key && rope_.active()) {
          Scratch<float> rows(nc * d);
          store_.decodeKeys(s, h, 0, nc, rope_, rows.data());
          for (size_t i = 0; i < nc * d; ++i) out[i] = floatToHalf(rows[i]);
        } else {
          store_.decodeSlotsF16(s, key, h, 0, nc, out);
        }
        if (nr > 0) std::memcpy(out + nc * d, res, nr * d * sizeof(uint16_t));
      } else {
        float* out = static_cast<float*>(key ? keys : values) + h * n * d;
        if (key) store_.decodeKeys(s, h, 0, nc, rope_, out);
        else store_.decodeSlots(s, key, h, 0, nc, true, out);
        for (size_t i = 0; i < nr * d; ++i) out[nc * d + i] = halfToFloat(res[i]);
      }
      if (key) {
        for (size_t t = 0; t < nc; ++t) positions[h * n + t] = store_.slotPosition(s, h, t);
        for (size_t t = 0; t < nr; ++t) positions[h * n + nc + t] = static_cast<int32_t>(s.appended - nr + t);
      }
    }
  });
}

size_t KvCache::tokens(size_t seq, size_t layer) const { return store_.at(seq, layer).held(); }
size_t KvCache::appended(size_t seq, size_t layer) const { return store_.at(seq, layer).appended; }
size_t KvCache::compressedTokens(size_t seq, size_t layer) const { return store_.at(seq, layer).compressed; }
bool KvCache::compressed(size_t seq) const {
  for (size_t l = 0; l < o_.layers; ++l)
    if (!store_.at(seq, l).compressedOnce) return false;
  return true;
}

CacheComponentBytes KvCache::bytes() const { return store_.bytes(); }

}  // namespace nq
