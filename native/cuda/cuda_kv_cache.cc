#include "cuda/cuda_kv_cache.h"

#include "cache/nq_error.h"

#if !defined(NQ_WITH_CUDA)

namespace nq {

std::unique_ptr<CompressedCache> makeCudaCache(const CacheOptions&) {
  throw NqError("BACKEND_UNAVAILABLE", "this build of the addon has no CUDA backend (built with NEXUSQUANT_CUDA=OFF or without nvcc); use backend \"cpu\"");
}

}  // namespace nq

#else

#include <algorithm>
#include <cstring>

#include "cache/scratch.h"
#include "cache/serialized_cache.h"
#include "cuda/cuda_cache_internal.h"
#include "nq_half.h"
#include "nq_page_pack.h"
#include "nq_scale.h"

namespace nq {
namespace cudacache {

void check(const CudaStatus& st) {
  if (!st.ok()) throw NqError(st.errorCode(), "CUDA backend: " + st.message);
}

DeviceBuffer deviceBuffer(size_t bytes, MemCategory c) {
  DeviceBuffer b;
  check(b.allocate(std::max<size_t>(bytes, 1), c));
  return b;
}

ops::CodecArgs codec(const CacheOptions& o, int bits) {
  ops::CodecArgs c;
  c.headDim = static_cast<int>(o.headDim);
  c.bits = bits;
  c.rotate = true;
  c.seed = o.seed;
  c.scaleFactor = scaleFactor(bits);
  return c;
}

CudaKvCache::CudaKvCache(const CacheOptions& o) : o_(o), layout_(o.kvHeads, o.headDim, o.spec, o.scorer), stores_(o.batch * o.layers) {
  std::vector<cuda::DeviceInfo> devices;
  std::string reason;
  if (!cuda::probeDevices(devices, reason)) throw NqError("BACKEND_UNAVAILABLE", "CUDA is not available: " + reason);
  if (o.ropeTheta > 0) throw NqError("UNSUPPORTED", "keyStorage \"unrope\" is CPU only: the CUDA attention kernel reads keys as stored");
  if (o.scorer == Scorer::Reconstruct)
    throw NqError("UNSUPPORTED", "the reconstruct scorer is CPU only: the CUDA attention kernel has no reconstruction pass yet (use backend \"cpu\")");
  const int d = static_cast<int>(o.headDim);
  const bool supported = o.transform ? cuda::transformedAttentionSupported(d, o.spec.keyBits, o.spec.valueBits)
                                     : cuda::attentionSupported(d, o.spec.keyBits, o.spec.valueBits) && cuda::codecSupported(d, o.spec.keyBits) &&
                                           cuda::codecSupported(d, o.spec.valueBits);
  if (!supported) throw NqError("UNSUPPORTED", "the CUDA cache supports head_dim a multiple of 8 up to " + std::to_string(cuda::kCudaMaxAttentionHeadDim));
  if (o.budgetTokens > 0 && !layout_.storesPositions) throw NqError("INVALID_ARGUMENT", "a token budget needs a spec that evicts (evictFraction > 0)");
  check(cuda::createStream(&stream_));
  if (o.transform) {
    const TransformTables& t = *o.transform;
    const CudaStatus st = transforms_.upload(t.data(), t.bytes(), t.heads(0, 0), t.entryCount(), stream_);
    if (!st.ok()) {
      cuda::destroyStream(stream_);  // the destructor does not run for a throwing constructor
      check(st);
    }
  }
}

CudaKvCache::~CudaKvCache() {
  stores_.clear();  // buffers first: freeing memory with work queued is fine, the stream goes last
  cuda::synchronize(stream_);
  cuda::destroyStream(stream_);
}

void CudaKvCache::compress(size_t seq, long layer, const std::vector<const float*>* observed, size_t queryHeads, size_t observedWindow) {
  checkCompressIndex(o_, seq, layer);
  compressLayers(o_, layer, observed, queryHeads, observedWindow, [&](size_t l) { return CudaStoreSteps(*this, seq, l); });
}

void CudaKvCache::attention(size_t seq, size_t layer, const float* q, size_t qHeads, size_t nq, const int32_t* qpos, float scale, float* out) {
  checkStoreIndex(o_, seq, layer);
  DeviceStore& s = at(seq, layer);
  const size_t H = o_.kvHeads, d = o_.headDim;
  if (qHeads == 0 || qHeads % H != 0) throw NqError("INVALID_ARGUMENT", "query heads must be a positive multiple of the KV heads");
  if (nq == 0) return;
  std::vector<int32_t> positions(nq);
  for (size_t j = 0; j < nq; ++j)  // default: the last nq appended positions
    positions[j] = qpos ? qpos[j] : static_cast<int32_t>(static_cast<int64_t>(s.appended) - static_cast<int64_t>(nq) + static_cast<int64_t>(j));
  ops::SeqKV kv;
  kv.pages = s.compressed > 0 ? s.pageTable.as<const uint8_t* const>() : nullptr;
  kv.compressed = static_cast<int>(s.compressed);
  // An empty window still gets one row of device memory, as cuda::hostAttention gives the kernel.
  DeviceBuffer emptyWindow;
  if (s.residualCap == 0) emptyWindow = deviceBuffer(format::residualSlotBytes(H, d, 1), MemCategory::Scratch);
  kv.residual = s.residualCap > 0 ? s.residual.as<const uint16_t>() : emptyWindow.as<const uint16_t>();
  kv.residualCap = static_cast<int>(std::max<size_t>(s.residualCap, 1));
  kv.residualCount = static_cast<int>(s.residualCount);
  kv.firstResidualPos = static_cast<int>(s.appended - s.residualCount);
  const bool accumulate = o_.scorer == Scorer::Accumulated && s.scoreCap > 0;  // only Accumulated keeps f32 scores on the GPU
  if (accumulate) {
    kv.accumulated = s.scores.as<float>();
    kv.accPitch = static_cast<int>(s.scoreCap);
  }
  DeviceBuffer dSeq = upload(&kv, 1, stream_);
  DeviceBuffer dQ = upload(q, qHeads * nq * d, stream_);
  DeviceBuffer dPos = upload(positions.data(), nq, stream_);
  DeviceBuffer dOut = deviceBuffer(qHeads * nq * d * sizeof(float), MemCategory::Scratch);
  ops::AttentionLaunch a = ops::pagedAttentionLaunch(static_cast<int>(H), static_cast<int>(qHeads), static_cast<int>(d), static_cast<int>(nq),
                                                     o_.spec, o_.seed, scale);
  a.batch = 1;
  a.seqs = dSeq.as<ops::SeqKV>();
  a.maxCompressed = kv.compressed;
  a.maxResidual = kv.residualCount;
  a.queries = dQ.as<float>();
  a.queryPositions = dPos.as<int>();
  a.out = dOut.as<float>();
  a.accumulate = accumulate;
  if (o_.transform) {
    a.keyTransforms = transforms_.device((layer * 2 + 0) * H);
    a.valueTransforms = transforms_.device((layer * 2 + 1) * H);
  }
  a.stream = stream_;
  a.workspaceBytes = cuda::attentionWorkspaceBytes(a);
  DeviceBuffer ws = deviceBuffer(a.workspaceBytes, MemCategory::Scratch);
  a.workspace = ws.data();
  check(cuda::launchAttention(a));
  check(cuda::copyToHost(out, dOut.data(), qHeads * nq * d * sizeof(float), stream_));
}

void CudaKvCache::materializeInto(size_t seq, size_t layer, bool f16, void* keys, void* values, int32_t* positions) const {
  checkStoreIndex(o_, seq, layer);
  const DeviceStore& s = at(seq, layer);
  const size_t H = o_.kvHeads, d = o_.headDim, nc = s.compressed, nr = s.residualCount, n = nc + nr, P = layout_.pageTokens;
  const size_t elem = f16 ? 2 : 4;
  DeviceBuffer rows = deviceBuffer(std::max<size_t>(nc, 1) * d * elem, MemCategory::Scratch);
  Scratch<uint16_t> res(nr * d);
  for (size_t kv = 0; kv < 2; ++kv) {
    const bool key = kv == 0;
    for (size_t h = 0; h < H; ++h) {
      uint8_t* out = static_cast<uint8_t*>(key ? keys : values) + h * n * d * elem;
      for (size_t t = 0; t < nc;) {  // page runs of this head
        const size_t page = t / P, j = t % P, m = std::min(nc - t, P - j);
        ops::DecodeLaunch a;
        a.codec = codecOf(layer, kv, h);
        const uint8_t* base = s.pages[page].as<const uint8_t>();
        a.codes = base + (key ? layout_.offsets.keyCodes : layout_.offsets.valueCodes) + (h * P + j) * (key ? layout_.keyCodeBytes : layout_.valueCodeBytes);
        a.scales = reinterpret_cast<const uint16_t*>(base + (key ? layout_.offsets.keyScales : layout_.offsets.valueScales)) + h * P + j;
        a.vectors = m;
        a.out = rows.as<uint8_t>() + t * d * elem;
        a.outF16 = f16;
        a.stream = stream_;
        check(cuda::launchDecode(a));
        t += m;
      }
      check(cuda::copyToHost(out, rows.data(), nc * d * elem, stream_));
      check(cuda::copyToHost(res.data(), s.residual.as<uint16_t>() + (kv * H + h) * s.residualCap * d, nr * d * 2, stream_));
      if (f16) std::memcpy(out + nc * d * elem, res.data(), nr * d * 2);
      else
        for (size_t i = 0; i < nr * d; ++i) reinterpret_cast<float*>(out)[nc * d + i] = halfToFloat(res[i]);
    }
  }
  std::vector<int32_t> pagePos = slotPositions(s);
  for (size_t h = 0; h < H; ++h) {
    std::copy(pagePos.begin() + h * nc, pagePos.begin() + (h + 1) * nc, positions + h * n);
    for (size_t t = 0; t < nr; ++t) positions[h * n + nc + t] = static_cast<int32_t>(s.appended - nr + t);
  }
}

bool CudaKvCache::compressed(size_t seq) const {
  for (size_t l = 0; l < o_.layers; ++l)
    if (!at(seq, l).compressedOnce) return false;
  return true;
}

CacheComponentBytes CudaKvCache::bytes() const {
  CacheComponentBytes b;
  const CategoryBytes split = layout_.split();
  for (const DeviceStore& s : stores_) {
    b.codes += s.pages.size() * split[static_cast<int>(MemCategory::Codes)];
    b.scales += s.pages.size() * split[static_cast<int>(MemCategory::Scales)];
    b.positions += s.pages.size() * split[static_cast<int>(MemCategory::Positions)];
    b.headers += s.pages.size() * split[static_cast<int>(MemCategory::Headers)];
    b.residual += s.residualCap > 0 ? s.residual.size() : 0;
    b.scores += s.scoreCap > 0 ? s.scores.size() : 0;
  }
  b.transform = o_.transform ? transforms_.bytes() : 0;  // this cache's device copy of the tables
  return b;
}

// The device stores as serializeCache reads them: each piece copied from device memory straight into
// the serialized bytes.
class DeviceStoreSource : public StoreSource {
 public:
  DeviceStoreSource(const CacheOptions& o, const PageLayout& layout, const std::vector<DeviceStore>& stores, cuda::StreamHandle stream)
      : o_(o), layout_(layout), stores_(stores), stream_(stream) {}
  const StoreCounters& counters(size_t i) const override { return stores_[i]; }
  size_t pageCount(size_t i) const override { return stores_[i].pages.size(); }
  void copyPage(size_t i, size_t page, uint8_t* out) const override {
    check(cuda::copyToHost(out, stores_[i].pages[page].data(), layout_.pageBytes, stream_));
  }
  void copyResidualRows(size_t i, size_t kv, size_t head, uint8_t* out) const override {
    const DeviceStore& s = stores_[i];
    const size_t d = o_.headDim;
    check(cuda::copyToHost(out, s.residual.as<uint16_t>() + (kv * o_.kvHeads + head) * s.residualCap * d, s.residualCount * d * 2, stream_));
  }
  void copyScores(size_t i, size_t head, uint8_t* out) const override {
    const DeviceStore& s = stores_[i];
    check(cuda::copyToHost(out, s.scores.as<float>() + head * s.scoreCap, s.held() * 4, stream_));
  }

 private:
  const CacheOptions& o_;
  const PageLayout& layout_;
  const std::vector<DeviceStore>& stores_;
  cuda::StreamHandle stream_;
};

std::vector<uint8_t> CudaKvCache::serialize() const {
  return serializeCache(o_, layout_, DeviceStoreSource(o_, layout_, stores_, stream_));
}

// A zeroed device page whose header names it.
DeviceBuffer CudaKvCache::newPage(size_t seq, size_t layer, size_t index) const {
  DeviceBuffer page;
  check(page.allocate(layout_.pageBytes, layout_.split()));
  check(cuda::fillDevice(page.data(), 0, layout_.pageBytes, stream_));
  const format::PageHeader h{0, static_cast<uint32_t>(layer), static_cast<uint32_t>(seq), static_cast<uint32_t>(index)};
  check(cuda::copyToDevice(page.data(), &h, sizeof h, stream_));
  return page;
}

// Headers' slotsUsed for `used` slots, and the device page table.
void CudaKvCache::finishPages(DeviceStore& s, size_t used) const {
  const size_t P = layout_.pageTokens;
  std::vector<const uint8_t*> ptrs;
  for (size_t p = 0; p < s.pages.size(); ++p) {
    const uint32_t slots = static_cast<uint32_t>(std::min(P, used > p * P ? used - p * P : 0));
    check(cuda::copyToDevice(s.pages[p].data(), &slots, sizeof slots, stream_));  // slotsUsed is the header's first field
    ptrs.push_back(s.pages[p].as<const uint8_t>());
  }
  s.pageTable = ptrs.empty() ? DeviceBuffer() : upload(ptrs.data(), ptrs.size(), stream_);
}

// Positions of the page slots [H][compressed], read back from the pages (slot index without eviction).
std::vector<int32_t> CudaKvCache::slotPositions(const DeviceStore& s) const {
  const size_t H = o_.kvHeads, nc = s.compressed, P = layout_.pageTokens;
  std::vector<int32_t> out(H * nc);
  if (!layout_.storesPositions) {
    for (size_t h = 0; h < H; ++h)
      for (size_t t = 0; t < nc; ++t) out[h * nc + t] = static_cast<int32_t>(t);
    return out;
  }
  std::vector<int32_t> page(H * P);
  for (size_t p = 0; p * P < nc; ++p) {
    check(cuda::copyToHost(page.data(), s.pages[p].as<uint8_t>() + layout_.offsets.positions, H * P * 4, stream_));
    for (size_t h = 0; h < H; ++h)
      for (size_t j = 0; j < P && p * P + j < nc; ++j) out[h * nc + p * P + j] = page[h * P + j];
  }
  return out;
}

namespace {

// Reallocates a store's f32 scores to `cap` slots per head, keeping the first min(cap, scoreCap).
void resizeScores(DeviceStore& s, size_t H, size_t cap, cuda::StreamHandle stream) {
  DeviceBuffer next = deviceBuffer(H * cap * 4, MemCategory::Scores);
  check(cuda::fillDevice(next.data(), 0, H * cap * 4, stream));
  const size_t keep = std::min(cap, s.scoreCap);
  for (size_t h = 0; h < H && keep > 0; ++h) check(cuda::copyOnDevice(next.as<float>() + h * cap, s.scores.as<float>() + h * s.scoreCap, keep * 4, stream));
  s.scores = std::move(next);
  s.scoreCap = cap;
}

}  // namespace

void CudaKvCache::syncScores(DeviceStore& s) const {
  const size_t cap = s.compressed + s.residualCap;
  if (layout_.scoreBytes == 0 || s.scoreCap == cap) return;
  if (cap == 0) {
    s.scores = DeviceBuffer();
    s.scoreCap = 0;
    return;
  }
  resizeScores(s, o_.kvHeads, cap, stream_);
}

}  // namespace cudacache

std::unique_ptr<CompressedCache> makeCudaCache(const CacheOptions& options) { return std::make_unique<cudacache::CudaKvCache>(options); }

}  // namespace nq

#endif
