#include "cpu/cpu_store_steps.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cache/random_scores.h"
#include "cpu/ops/cpu_ops.h"
#include "cpu/parallel.h"
#include "nq_half.h"

namespace nq {

HeldTokens CpuStoreSteps::held() const { return s_.heldTokens(!s_.pages.empty()); }

void CpuStoreSteps::appendRows(size_t first, size_t count) {
  const size_t H = o_.kvHeads, d = o_.headDim, total = append_.count;
  for (size_t kv = 0; kv < 2; ++kv) {
    const void* src = kv == 0 ? append_.keys : append_.values;
    for (size_t h = 0; h < H; ++h) {
      uint16_t* dst = store_.residualRows(s_, kv, h) + s_.residualCount * d;
      const size_t at = (h * total + first) * d;
      if (append_.f16) {
        std::copy(static_cast<const uint16_t*>(src) + at, static_cast<const uint16_t*>(src) + at + count * d, dst);
      } else {
        const float* row = static_cast<const float*>(src) + at;
        for (size_t i = 0; i < count * d; ++i) dst[i] = floatToHalf(row[i]);
      }
    }
  }
  s_.residualCount += count;
  s_.appended += count;
  s_.scoresCurrent = false;  // the new tokens have no reconstruction score yet (their slots' scores are 0)
}

void CpuStoreSteps::residualRowsF32(size_t kv, size_t head, size_t firstPosition, float* rows) const {
  const size_t n = s_.residualCount, d = o_.headDim;
  const uint16_t* src = store_.residualRows(s_, kv, head);
  for (size_t i = 0; i < n * d; ++i) rows[i] = halfToFloat(src[i]);
  if (kv == 0 && rope_.active())
    for (size_t r = 0; r < n; ++r) rope_.apply(rows + r * d, static_cast<int64_t>(firstPosition + r), true);
}

void CpuStoreSteps::quantizeResidual() {
  const PageLayout& L = store_.layout();
  const size_t P = L.pageTokens, H = o_.kvHeads, d = o_.headDim;
  const size_t n = s_.residualCount, first = s_.compressed, firstPosition = s_.firstResidualPosition();
  while (s_.pages.size() * P < first + n) s_.pages.push_back(store_.newPage(seq_, layer_, s_.pages.size()));
  // Heads are independent: quantize them in parallel (each worker has its own row buffer).
  parallelFor(2 * H, 1, [&](size_t b, size_t e) {
    Scratch<float> rows(n * d);
    for (size_t job = b; job < e; ++job) {
      const size_t kv = job / H, h = job % H;
      const bool key = kv == 0;
      const size_t cb = key ? L.keyCodeBytes : L.valueCodeBytes;
      residualRowsF32(kv, h, firstPosition, rows.data());
      ops::EncodeLaunch a;
      a.codec = ops::codecArgs(static_cast<int>(d), key ? L.spec.keyBits : L.spec.valueBits, true, o_.seed);
      a.codec.transform = store_.transformOf(layer_, kv, h);
      a.inputF16 = false;
      for (size_t t = 0; t < n;) {
        const size_t slot = first + t, page = slot / P, j = slot % P, m = std::min(n - t, P - j);
        uint8_t* base = s_.pages[page].data();
        a.input = rows.data() + t * d;
        a.vectors = m;
        a.codes = base + (key ? L.offsets.keyCodes : L.offsets.valueCodes) + (h * P + j) * cb;
        a.scales = reinterpret_cast<uint16_t*>(base + (key ? L.offsets.keyScales : L.offsets.valueScales)) + h * P + j;
        ops::cpuEncode(a);
        if (key && L.storesPositions) {
          int32_t* pos = reinterpret_cast<int32_t*>(base + L.offsets.positions) + h * P + j;
          for (size_t i = 0; i < m; ++i) pos[i] = static_cast<int32_t>(firstPosition + t + i);
        }
        t += m;
      }
    }
  });
  s_.compressed += n;
  store_.writeSlotCounts(s_.pages, s_.compressed);
  s_.residualCount = 0;  // scores keep their slot order: residual slots became page slots
  store_.syncScores(s_);
}

void CpuStoreSteps::beginEviction(size_t target) {
  const size_t H = o_.kvHeads, nc = s_.compressed, nr = s_.residualCount;
  total_ = nc + nr;
  target_ = target;
  scores_.emplace(H * total_);
  positions_.emplace(H * total_);
  const size_t firstResidualPos = s_.firstResidualPosition();
  int32_t* pos = positions_->data();
  for (size_t h = 0; h < H; ++h) {
    for (size_t t = 0; t < nc; ++t) pos[h * total_ + t] = store_.slotPosition(s_, h, t);
    for (size_t r = 0; r < nr; ++r) pos[h * total_ + nc + r] = static_cast<int32_t>(firstResidualPos + r);
  }
}

void CpuStoreSteps::score(const ObservedQueries& observed) {
  const size_t H = o_.kvHeads, d = o_.headDim, nc = s_.compressed, nr = s_.residualCount, total = total_;
  const Scorer scorer = scorerFor(o_, observed, s_);
  const bool fromKeys = scorer == Scorer::KeyNorm || scorer == Scorer::KeyKey || scorer == Scorer::Observed;
  // One head at a time per worker: the decoded keys of one head, not of all, are held at once.
  parallelFor(H, 1, [&](size_t hb, size_t he) {
    Scratch<float> keys(fromKeys ? total * d : 0);
    for (size_t h = hb; h < he; ++h) {
      float* sc = scores_->data() + h * total;
      if (fromKeys) {
        store_.decodeKeys(s_, h, 0, nc, rope_, keys.data());
        const uint16_t* res = store_.residualRows(s_, 0, h);
        for (size_t i = 0; i < nr * d; ++i) keys[nc * d + i] = halfToFloat(res[i]);
        ops::ScoreLaunch a;
        a.scorer = scorer;
        a.kvHeads = 1;
        a.tokens = static_cast<int>(total);
        a.headDim = static_cast<int>(d);
        a.keys = keys.data();
        a.scores = sc;
        if (scorer == Scorer::Observed) {
          const size_t group = observed.queryHeads / H;
          a.queries = observed.queries + h * group * observed.window * d;
          a.queryHeads = static_cast<int>(group);
          a.window = static_cast<int>(observed.window);
          a.pool = static_cast<int>(o_.poolKernel);
        } else {
          a.window = static_cast<int>(o_.scorerWindow);
        }
        ops::cpuScore(a);
      } else if (format::keepsSlotScores(scorer)) {
        for (size_t t = 0; t < total; ++t) sc[t] = store_.slotScore(s_, h, t);
      } else {
        randomScores(o_, seq_, layer_, h, s_.appended, total, sc);
      }
    }
  });
}

void CpuStoreSteps::select(const ops::SelectLaunch& shape) {
  kept_.emplace(o_.kvHeads * target_);
  ops::SelectLaunch a = shape;
  a.scores = scores_->data();
  a.positions = positions_->data();
  a.kept = kept_->data();
  ops::cpuSelect(a);
}

void CpuStoreSteps::encodeResidual() {
  const PageLayout& L = store_.layout();
  const size_t H = o_.kvHeads, d = o_.headDim, nr = s_.residualCount, firstPosition = s_.firstResidualPosition();
  resKeyCodes_.emplace(H * nr * L.keyCodeBytes);
  resValueCodes_.emplace(H * nr * L.valueCodeBytes);
  resKeyScales_.emplace(H * nr);
  resValueScales_.emplace(H * nr);
  if (nr == 0) return;
  parallelFor(2 * H, 1, [&](size_t b, size_t e) {
    Scratch<float> rows(nr * d);
    for (size_t job = b; job < e; ++job) {
      const size_t kv = job / H, h = job % H;
      const bool key = kv == 0;
      residualRowsF32(kv, h, firstPosition, rows.data());
      ops::EncodeLaunch a;
      a.codec = ops::codecArgs(static_cast<int>(d), key ? L.spec.keyBits : L.spec.valueBits, true, o_.seed);
      a.codec.transform = store_.transformOf(layer_, kv, h);
      a.input = rows.data();
      a.inputF16 = false;
      a.vectors = nr;
      a.codes = key ? resKeyCodes_->data() + h * nr * L.keyCodeBytes : resValueCodes_->data() + h * nr * L.valueCodeBytes;
      a.scales = (key ? resKeyScales_->data() : resValueScales_->data()) + h * nr;
      ops::cpuEncode(a);
    }
  });
}

// Page by page: new page p takes kept slots [p*P, (p+1)*P) of every head, and an old page is freed as
// soon as no later new page reads it. Kept slots ascend and kept[h][t] >= t, so the sources run ahead
// of the destinations: the store holds the old pages plus about one new page at a time, never two
// copies of the layer (the peak of an eviction follows what is held).
void CpuStoreSteps::compact() {
  const PageLayout& L = store_.layout();
  const size_t H = o_.kvHeads, target = target_, P = L.pageTokens;
  const uint32_t* kept = kept_->data();
  const std::vector<const uint8_t*> oldPages = s_.pagePointers();
  const size_t newCount = format::pagesFor(target, L.spec);
  std::vector<HostBuffer> pages;
  pages.reserve(newCount);
  Scratch<uint32_t> slice(H * P);
  size_t freed = 0;  // old pages [0, freed) are released
  for (size_t p = 0; p < newCount; ++p) {
    pages.push_back(store_.newPage(seq_, layer_, p));
    const size_t first = p * P, m = std::min(P, target - first);
    for (size_t h = 0; h < H; ++h) std::copy(kept + h * target + first, kept + h * target + first + m, slice.data() + h * m);
    uint8_t* page = pages.back().data();
    ops::CompactLaunch a = L.compactLaunch(m);
    a.kept = slice.data();
    a.oldPages = oldPages.data();
    a.oldCompressed = static_cast<int>(s_.compressed);
    a.resKeyCodes = resKeyCodes_->data();
    a.resValueCodes = resValueCodes_->data();
    a.resKeyScales = resKeyScales_->data();
    a.resValueScales = resValueScales_->data();
    a.residualRows = static_cast<int>(s_.residualCount);
    a.positions = positions_->data();
    a.newPages = &page;
    ops::cpuCompact(a);
    // The next new page reads old slots from min over heads of its first kept slot on.
    size_t next = SIZE_MAX;
    if (p + 1 < newCount)
      for (size_t h = 0; h < H; ++h) next = std::min<size_t>(next, kept[h * target + first + P]);
    while (freed < s_.pages.size() && (freed + 1) * P <= next) s_.pages[freed++].reset();
  }
  store_.writeSlotCounts(pages, target);
  const size_t sb = store_.layout().scoreBytes;
  if (sb > 0) {  // the kept slots' scores move with them (kept slots ascend, so in place is safe)
    uint8_t* base = s_.scores.data();
    const uint32_t* kept = kept_->data();
    for (size_t h = 0; h < H; ++h) {
      uint8_t* row = base + h * s_.scoreCap * sb;
      for (size_t t = 0; t < target; ++t) std::memmove(row + t * sb, row + kept[h * target + t] * sb, sb);
    }
  }
  s_.pages = std::move(pages);
  s_.compressed = target;
  s_.residualCount = 0;
  store_.syncScores(s_);
}

void CpuStoreSteps::endEviction() {
  positions_.reset();
  scores_.reset();
  kept_.reset();
  resKeyCodes_.reset();
  resValueCodes_.reset();
  resKeyScales_.reset();
  resValueScales_.reset();
  // This layer's old pages go back to the OS now, not at the end of compress(): glibc returns a freed
  // page to the arena of the thread that allocated it, and the next layer's new pages come from this
  // thread's arena, so freed memory was not reused within one compress and the process peak held the
  // old and the new pages of every layer (bench memory, 16-layer shape, 16K tokens: preset high's KV
  // share of peak RSS 119 MB for 58 MB held; 58 MB with one malloc arena).
  returnFreedHostMemory();
}

}  // namespace nq
