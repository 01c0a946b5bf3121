// The compress policy's steps (cache/compress_policy.h StoreSteps) on one device store of the CUDA
// cache: the CUDA launchers with the Params structs of kernels/nq_ops_params.h.
#if defined(NQ_WITH_CUDA)
#include <algorithm>
#include <vector>

#include "cache/random_scores.h"
#include "cache/scratch.h"
#include "cuda/cuda_cache_internal.h"
#include "nq_half.h"

namespace nq::cudacache {

CudaStoreSteps::CudaStoreSteps(CudaKvCache& cache, size_t seq, size_t layer) : c_(cache), seq_(seq), layer_(layer), s_(cache.at(seq, layer)) {}

HeldTokens CudaStoreSteps::held() const { return s_.heldTokens(!s_.pages.empty()); }

const uint16_t* CudaStoreSteps::residualRows(size_t kv, size_t head) const {
  return s_.residual.as<uint16_t>() + (kv * c_.o_.kvHeads + head) * s_.residualCap * c_.o_.headDim;
}

void CudaStoreSteps::appendRows(size_t first, size_t count) {
  const size_t H = c_.o_.kvHeads, d = c_.o_.headDim;
  Scratch<uint16_t> rows(count * d);  // staging: one head's rows in FP16
  for (size_t kv = 0; kv < 2; ++kv) {
    const void* src = kv == 0 ? keys_ : values_;
    for (size_t h = 0; h < H; ++h) {
      const size_t at = (h * count_ + first) * d;
      if (f16_) std::copy(static_cast<const uint16_t*>(src) + at, static_cast<const uint16_t*>(src) + at + count * d, rows.data());
      else
        for (size_t i = 0; i < count * d; ++i) rows[i] = floatToHalf(static_cast<const float*>(src)[at + i]);
      uint16_t* dst = s_.residual.as<uint16_t>() + ((kv * H + h) * s_.residualCap + s_.residualCount) * d;
      check(cuda::copyToDevice(dst, rows.data(), count * d * 2, c_.stream_));
    }
  }
  s_.residualCount += count;
  s_.appended += count;
}

void CudaStoreSteps::setResidualSlots(size_t cap) {
  const size_t H = c_.o_.kvHeads, d = c_.o_.headDim;
  const size_t bytes = format::residualSlotBytes(H, d, cap);
  DeviceBuffer next;
  if (bytes > 0) next = deviceBuffer(bytes, MemCategory::Residual);
  const size_t keep = std::min(s_.residualCount, cap);
  for (size_t kv = 0; kv < 2; ++kv)
    for (size_t h = 0; h < H; ++h)
      check(cuda::copyOnDevice(next.as<uint16_t>() + (kv * H + h) * cap * d, residualRows(kv, h), keep * d * 2, c_.stream_));
  check(cuda::synchronize(c_.stream_));  // the old buffer is freed next
  s_.residual = std::move(next);
  s_.residualCap = cap;
  s_.residualCount = keep;
  c_.syncScores(s_);
}

void CudaStoreSteps::quantizeResidual() {
  const PageLayout& L = c_.layout_;
  const size_t P = L.pageTokens, H = c_.o_.kvHeads, d = c_.o_.headDim;
  const size_t n = s_.residualCount, first = s_.compressed, firstPosition = s_.appended - n;
  while (s_.pages.size() * P < first + n) s_.pages.push_back(c_.newPage(seq_, layer_, s_.pages.size()));
  std::vector<int32_t> pos;
  for (size_t kv = 0; kv < 2; ++kv) {
    const bool key = kv == 0;
    const size_t cb = key ? L.keyCodeBytes : L.valueCodeBytes;
    for (size_t h = 0; h < H; ++h)
      for (size_t t = 0; t < n;) {
        const size_t slot = first + t, page = slot / P, j = slot % P, m = std::min(n - t, P - j);
        uint8_t* base = s_.pages[page].as<uint8_t>();
        ops::EncodeLaunch a;
        a.codec = c_.codecOf(layer_, kv, h);
        a.input = residualRows(kv, h) + t * d;
        a.inputF16 = true;
        a.vectors = m;
        a.codes = base + (key ? L.offsets.keyCodes : L.offsets.valueCodes) + (h * P + j) * cb;
        a.scales = reinterpret_cast<uint16_t*>(base + (key ? L.offsets.keyScales : L.offsets.valueScales)) + h * P + j;
        a.stream = c_.stream_;
        check(cuda::launchEncode(a));
        if (key && L.storesPositions) {
          pos.resize(m);
          for (size_t i = 0; i < m; ++i) pos[i] = static_cast<int32_t>(firstPosition + t + i);
          check(cuda::copyToDevice(reinterpret_cast<int32_t*>(base + L.offsets.positions) + h * P + j, pos.data(), m * 4, c_.stream_));
        }
        t += m;
      }
  }
  s_.compressed += n;
  c_.finishPages(s_, s_.compressed);
  s_.residualCount = 0;  // scores keep their slot order: residual slots became page slots
  c_.syncScores(s_);
}

void CudaStoreSteps::beginEviction(size_t target) {
  const size_t H = c_.o_.kvHeads, nc = s_.compressed, nr = s_.residualCount;
  total_ = nc + nr;
  target_ = target;
  std::vector<int32_t> pagePos = c_.slotPositions(s_), pos(H * total_);
  for (size_t h = 0; h < H; ++h) {
    std::copy(pagePos.begin() + h * nc, pagePos.begin() + (h + 1) * nc, pos.begin() + h * total_);
    for (size_t r = 0; r < nr; ++r) pos[h * total_ + nc + r] = static_cast<int32_t>(s_.appended - nr + r);
  }
  positions_ = upload(pos.data(), pos.size(), c_.stream_);
  scores_ = deviceBuffer(H * total_ * 4, MemCategory::Scratch);
}

void CudaStoreSteps::score(const ObservedQueries& observed) {
  const CacheOptions& o = c_.o_;
  const PageLayout& L = c_.layout_;
  const size_t H = o.kvHeads, d = o.headDim, nc = s_.compressed, nr = s_.residualCount, total = total_, P = L.pageTokens;
  const Scorer scorer = scorerFor(o, observed, s_);
  float* scores = scores_->as<float>();
  if (scorer == Scorer::Accumulated) {
    for (size_t h = 0; h < H; ++h) check(cuda::copyOnDevice(scores + h * total, s_.scores.as<float>() + h * s_.scoreCap, total * 4, c_.stream_));
    return;
  }
  if (scorer == Scorer::Random) {  // generated on the host, as the CPU store does
    std::vector<float> host(H * total);
    for (size_t h = 0; h < H; ++h) randomScores(o, seq_, layer_, h, s_.appended, total, host.data() + h * total);
    check(cuda::copyToDevice(scores, host.data(), host.size() * 4, c_.stream_));
    return;
  }
  // Keys [H][total][d] in the original domain: page slots decoded, residual rows widened.
  DeviceBuffer keys = deviceBuffer(H * total * d * 4, MemCategory::Scratch);
  for (size_t h = 0; h < H; ++h) {
    for (size_t t = 0; t < nc;) {
      const size_t page = t / P, j = t % P, m = std::min(nc - t, P - j);
      const uint8_t* base = s_.pages[page].as<const uint8_t>();
      ops::DecodeLaunch a;
      a.codec = c_.codecOf(layer_, 0, h);
      a.codes = base + L.offsets.keyCodes + (h * P + j) * L.keyCodeBytes;
      a.scales = reinterpret_cast<const uint16_t*>(base + L.offsets.keyScales) + h * P + j;
      a.vectors = m;
      a.out = keys.as<float>() + (h * total + t) * d;
      a.stream = c_.stream_;
      check(cuda::launchDecode(a));
      t += m;
    }
    check(cuda::launchHalfToFloat(residualRows(0, h), nr * d, keys.as<float>() + (h * total + nc) * d, c_.stream_));
  }
  ops::ScoreLaunch a;
  a.scorer = scorer;
  a.kvHeads = static_cast<int>(H);
  a.tokens = static_cast<int>(total);
  a.headDim = static_cast<int>(d);
  a.keys = keys.as<float>();
  a.scores = scores;
  a.stream = c_.stream_;
  std::optional<DeviceBuffer> queries;
  if (scorer == Scorer::Observed) {
    queries = upload(observed.queries, observed.queryHeads * observed.window * d, c_.stream_);
    a.queries = queries->as<float>();
    a.queryHeads = static_cast<int>(observed.queryHeads);
    a.window = static_cast<int>(observed.window);
    a.pool = static_cast<int>(o.poolKernel);
  } else {
    a.window = static_cast<int>(o.scorerWindow);
  }
  a.workspaceBytes = cuda::scoreWorkspaceBytes(a);
  DeviceBuffer ws = deviceBuffer(a.workspaceBytes, MemCategory::Scratch);
  a.workspace = ws.data();
  check(cuda::launchScore(a));
  check(cuda::synchronize(c_.stream_));  // keys, queries and workspace are freed on return
}

void CudaStoreSteps::select(const ops::SelectLaunch& shape) {
  kept_ = deviceBuffer(c_.o_.kvHeads * target_ * 4, MemCategory::Scratch);
  ops::SelectLaunch a = shape;
  a.scores = scores_->as<float>();
  a.positions = positions_->as<int32_t>();
  a.kept = kept_->as<uint32_t>();
  a.stream = c_.stream_;
  check(cuda::launchSelect(a));
}

void CudaStoreSteps::encodeResidual() {
  const PageLayout& L = c_.layout_;
  const size_t H = c_.o_.kvHeads, nr = s_.residualCount;
  resKeyCodes_ = deviceBuffer(H * nr * L.keyCodeBytes, MemCategory::Scratch);
  resValueCodes_ = deviceBuffer(H * nr * L.valueCodeBytes, MemCategory::Scratch);
  resKeyScales_ = deviceBuffer(H * nr * 2, MemCategory::Scratch);
  resValueScales_ = deviceBuffer(H * nr * 2, MemCategory::Scratch);
  for (size_t kv = 0; kv < 2 && nr > 0; ++kv) {
    const bool key = kv == 0;
    for (size_t h = 0; h < H; ++h) {
      ops::EncodeLaunch a;
      a.codec = c_.codecOf(layer_, kv, h);
      a.input = residualRows(kv, h);
      a.inputF16 = true;
      a.vectors = nr;
      a.codes = (key ? resKeyCodes_ : resValueCodes_)->as<uint8_t>() + h * nr * (key ? L.keyCodeBytes : L.valueCodeBytes);
      a.scales = (key ? resKeyScales_ : resValueScales_)->as<uint16_t>() + h * nr;
      a.stream = c_.stream_;
      check(cuda::launchEncode(a));
    }
  }
}

void CudaStoreSteps::compact() {
  const PageLayout& L = c_.layout_;
  const size_t H = c_.o_.kvHeads, target = target_;
  std::vector<DeviceBuffer> pages;
  for (size_t p = 0; p < format::pagesFor(target, L.spec); ++p) pages.push_back(c_.newPage(seq_, layer_, p));
  std::vector<uint8_t*> newPtrs;
  for (DeviceBuffer& p : pages) newPtrs.push_back(p.as<uint8_t>());
  std::vector<const uint8_t*> oldPtrs;
  for (const DeviceBuffer& p : s_.pages) oldPtrs.push_back(p.as<const uint8_t>());
  if (oldPtrs.empty()) oldPtrs.push_back(nullptr);  // a store evicting before it had pages: only residual rows are read
  DeviceBuffer dNew = upload(newPtrs.data(), newPtrs.size(), c_.stream_);
  DeviceBuffer dOld = upload(oldPtrs.data(), oldPtrs.size(), c_.stream_);
  ops::CompactLaunch a = L.compactLaunch(target);
  a.kept = kept_->as<uint32_t>();
  a.oldPages = dOld.as<const uint8_t* const>();
  a.oldCompressed = static_cast<int>(s_.compressed);
  a.resKeyCodes = resKeyCodes_->as<uint8_t>();
  a.resValueCodes = resValueCodes_->as<uint8_t>();
  a.resKeyScales = resKeyScales_->as<uint16_t>();
  a.resValueScales = resValueScales_->as<uint16_t>();
  a.residualRows = static_cast<int>(s_.residualCount);
  a.positions = positions_->as<int32_t>();
  a.newPages = dNew.as<uint8_t* const>();
  a.stream = c_.stream_;
  check(cuda::launchCompact(a));
  if (c_.layout_.scoreBytes > 0) {  // the kept slots' mass moves with them (on the host: small)
    std::vector<float> acc(H * s_.scoreCap), moved(H * s_.scoreCap, 0.f);
    std::vector<uint32_t> kept(H * target);
    check(cuda::copyToHost(acc.data(), s_.scores.data(), acc.size() * 4, c_.stream_));
    check(cuda::copyToHost(kept.data(), kept_->data(), kept.size() * 4, c_.stream_));
    for (size_t h = 0; h < H; ++h)
      for (size_t t = 0; t < target; ++t) moved[h * s_.scoreCap + t] = acc[h * s_.scoreCap + kept[h * target + t]];
    check(cuda::copyToDevice(s_.scores.data(), moved.data(), moved.size() * 4, c_.stream_));
  }
  check(cuda::synchronize(c_.stream_));  // the old pages are freed next
  s_.pages = std::move(pages);
  s_.compressed = target;
  s_.residualCount = 0;
  c_.finishPages(s_, target);
}

void CudaStoreSteps::endEviction() {
  cuda::synchronize(c_.stream_);  // nothing queued may still read what is freed here
  positions_.reset();
  scores_.reset();
  kept_.reset();
  resKeyCodes_.reset();
  resValueCodes_.reset();
  resKeyScales_.reset();
  resValueScales_.reset();
}

}  // namespace nq::cudacache

#endif
