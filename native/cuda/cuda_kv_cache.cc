#include "cuda/cuda_kv_cache.h"

#include "cpu/nq_error.h"

#if !defined(NQ_WITH_CUDA)

namespace nq {

std::unique_ptr<CompressedCache> makeCudaCache(const CacheOptions&) {
  throw NqError("BACKEND_UNAVAILABLE", "this build of the addon has no CUDA backend (built with NEXUSQUANT_CUDA=OFF or without nvcc); use backend \"cpu\"");
}

}  // namespace nq

#else

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/compress_policy.h"
#include "cpu/kv_cache.h"
#include "cpu/paged_store.h"
#include "cpu/scoring.h"
#include "cpu/scratch.h"
#include "nq_cuda_api.h"
#include "nq_half.h"
#include "nq_page_pack.h"
#include "nq_scale.h"

namespace nq {
namespace {

using cuda::CudaStatus;
using cuda::DeviceBuffer;

void check(const CudaStatus& st) {
  if (!st.ok()) throw NqError(st.errorCode(), "CUDA backend: " + st.message);
}

DeviceBuffer deviceBuffer(size_t bytes, MemCategory c) {
  DeviceBuffer b;
  check(b.allocate(std::max<size_t>(bytes, 1), c));
  return b;
}

// Host array -> a fresh device buffer (category Scratch).
template <typename T>
DeviceBuffer upload(const T* data, size_t count, cuda::StreamHandle stream) {
  DeviceBuffer b = deviceBuffer(count * sizeof(T), MemCategory::Scratch);
  check(cuda::copyToDevice(b.data(), data, count * sizeof(T), stream));
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

// One (sequence, layer) in device memory; counters on the host.
struct DeviceStore : StoreCounters {
  std::vector<DeviceBuffer> pages;
  DeviceBuffer pageTable;    // device array of the page pointers, for attention
  DeviceBuffer residual;     // FP16 [2][H][residualCap][d]
  DeviceBuffer accumulated;  // f32 [H][accCap], Accumulated scorer only
};

class CudaKvCache;

// The policy's steps on one DeviceStore, with the CUDA launchers as the ops.
class CudaStoreSteps : public StoreSteps {
 public:
  CudaStoreSteps(CudaKvCache& cache, size_t seq, size_t layer);
  void setAppendSource(const void* keys, const void* values, bool f16, size_t count) {
    keys_ = keys;
    values_ = values;
    f16_ = f16;
    count_ = count;
  }
  HeldTokens held() const override;
  size_t residualSlots() const override { return s_.residualCap; }
  void appendRows(size_t first, size_t count) override;
  void quantizeResidual() override;
  void setResidualSlots(size_t slots) override;
  void markCompressed() override { s_.compressedOnce = true; }
  void beginEviction(size_t target) override;
  void score(const ObservedQueries& observed) override;
  void select(const ops::SelectLaunch& shape) override;
  void encodeResidual() override;
  void compact() override;
  void endEviction() override;

 private:
  const uint16_t* residualRows(size_t kv, size_t head) const;

  CudaKvCache& c_;
  size_t seq_, layer_;
  DeviceStore& s_;
  const void* keys_ = nullptr;
  const void* values_ = nullptr;
  bool f16_ = false;
  size_t count_ = 0;
  size_t total_ = 0, target_ = 0;
  std::optional<DeviceBuffer> positions_, scores_, kept_, resKeyCodes_, resValueCodes_, resKeyScales_, resValueScales_;
};

class CudaKvCache : public CompressedCache {
 public:
  explicit CudaKvCache(const CacheOptions& o) : o_(o), layout_(o.kvHeads, o.headDim, o.spec), stores_(o.batch * o.layers) {
    std::vector<cuda::DeviceInfo> devices;
    std::string reason;
    if (!cuda::probeDevices(devices, reason)) throw NqError("BACKEND_UNAVAILABLE", "CUDA is not available: " + reason);
    if (o.ropeTheta > 0) throw NqError("UNSUPPORTED", "keyStorage \"unrope\" is CPU only: the CUDA attention kernel reads keys as stored");
    if (!cuda::attentionSupported(static_cast<int>(o.headDim), o.spec.keyBits, o.spec.valueBits) ||
        !cuda::codecSupported(static_cast<int>(o.headDim), o.spec.keyBits) || !cuda::codecSupported(static_cast<int>(o.headDim), o.spec.valueBits))
      throw NqError("UNSUPPORTED", "the CUDA cache supports head_dim a multiple of 8 up to " + std::to_string(cuda::kCudaMaxAttentionHeadDim));
    if (o.budgetTokens > 0 && !layout_.storesPositions) throw NqError("INVALID_ARGUMENT", "a token budget needs a spec that evicts (evictFraction > 0)");
    check(cuda::createStream(&stream_));
  }
  ~CudaKvCache() override {
    stores_.clear();  // buffers first: freeing memory with work queued is fine, the stream goes last
    cuda::synchronize(stream_);
    cuda::destroyStream(stream_);
  }

  const CacheOptions& options() const override { return o_; }

  void append(size_t seq, size_t layer, const float* k, const float* v, size_t T) override { appendImpl(seq, layer, k, v, T); }
  void appendF16(size_t seq, size_t layer, const uint16_t* k, const uint16_t* v, size_t T) override { appendImpl(seq, layer, k, v, T); }

  void compress(size_t seq, long layer, const std::vector<const float*>* observed, size_t queryHeads, size_t observedWindow) override {
    if (seq >= o_.batch) throw NqError("INVALID_ARGUMENT", "sequence " + std::to_string(seq) + " is out of range");
    if (layer >= static_cast<long>(o_.layers)) throw NqError("INVALID_ARGUMENT", "layer " + std::to_string(layer) + " is out of range");
    compressLayers(o_, layer, observed, queryHeads, observedWindow, [&](size_t l) { return CudaStoreSteps(*this, seq, l); });
  }

  void attention(size_t seq, size_t layer, const float* q, size_t qHeads, size_t nq, const int32_t* qpos, float scale, float* out) override {
    checkRange(seq, layer);
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
    const bool accumulate = o_.scorer == Scorer::Accumulated && s.accCap > 0;
    if (accumulate) {
      kv.accumulated = s.accumulated.as<float>();
      kv.accPitch = static_cast<int>(s.accCap);
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
    a.stream = stream_;
    a.workspaceBytes = cuda::attentionWorkspaceBytes(a);
    DeviceBuffer ws = deviceBuffer(a.workspaceBytes, MemCategory::Scratch);
    a.workspace = ws.data();
    check(cuda::launchAttention(a));
    check(cuda::copyToHost(out, dOut.data(), qHeads * nq * d * sizeof(float), stream_));
  }

  void materializeInto(size_t seq, size_t layer, bool f16, void* keys, void* values, int32_t* positions) const override {
    checkRange(seq, layer);
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
          a.codec = codec(o_, key ? o_.spec.keyBits : o_.spec.valueBits);
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

  size_t tokens(size_t seq, size_t layer) const override { return at(seq, layer).compressed + at(seq, layer).residualCount; }
  size_t appended(size_t seq, size_t layer) const override { return at(seq, layer).appended; }
  size_t compressedTokens(size_t seq, size_t layer) const override { return at(seq, layer).compressed; }
  bool compressed(size_t seq) const override {
    for (size_t l = 0; l < o_.layers; ++l)
      if (!at(seq, l).compressedOnce) return false;
    return true;
  }

  CacheComponentBytes bytes() const override {
    CacheComponentBytes b;
    const CategoryBytes split = layout_.split();
    for (const DeviceStore& s : stores_) {
      b.codes += s.pages.size() * split[static_cast<int>(MemCategory::Codes)];
      b.scales += s.pages.size() * split[static_cast<int>(MemCategory::Scales)];
      b.positions += s.pages.size() * split[static_cast<int>(MemCategory::Positions)];
      b.headers += s.pages.size() * split[static_cast<int>(MemCategory::Headers)];
      b.residual += s.residualCap > 0 ? s.residual.size() : 0;
      b.scratch += s.accCap > 0 ? s.accumulated.size() : 0;
    }
    return b;
  }

  // Through a host KvCache holding the same stores: one serializer for both backends.
  std::vector<uint8_t> serialize() const override {
    KvCache host(o_);
    PagedStore& hs = host.pagedStore();
    const size_t H = o_.kvHeads, d = o_.headDim;
    for (size_t seq = 0; seq < o_.batch; ++seq)
      for (size_t layer = 0; layer < o_.layers; ++layer) {
        const DeviceStore& s = at(seq, layer);
        SeqLayerStore& h = hs.at(seq, layer);
        for (size_t p = 0; p < s.pages.size(); ++p) {
          HostBuffer page = hs.newPage(seq, layer, p);
          check(cuda::copyToHost(page.data(), s.pages[p].data(), layout_.pageBytes, stream_));
          h.pages.push_back(std::move(page));
        }
        h.compressed = s.compressed;
        h.appended = s.appended;
        h.compressedOnce = s.compressedOnce;
        hs.setResidualCapacity(h, s.residualCount);  // while h holds no rows: nothing to carry over
        h.residualCount = s.residualCount;
        for (size_t kv = 0; kv < 2; ++kv)
          for (size_t head = 0; head < H; ++head)
            check(cuda::copyToHost(hs.residualRows(h, kv, head), s.residual.as<uint16_t>() + (kv * H + head) * s.residualCap * d,
                                   s.residualCount * d * 2, stream_));
        if (o_.scorer == Scorer::Accumulated && s.accCap > 0) {
          hs.ensureAccumulated(h, s.accCap);
          for (size_t head = 0; head < H; ++head)
            check(cuda::copyToHost(h.accumulated.data() + head * h.accCap * 4, s.accumulated.as<float>() + head * s.accCap, s.accCap * 4, stream_));
        }
      }
    return host.serialize();
  }

 private:
  friend class CudaStoreSteps;

  template <typename T>
  void appendImpl(size_t seq, size_t layer, const T* k, const T* v, size_t count) {
    checkRange(seq, layer);
    checkAppendRows(k, v, o_.kvHeads, count, o_.headDim);  // before touching state
    CudaStoreSteps steps(*this, seq, layer);
    steps.setAppendSource(k, v, std::is_same_v<T, uint16_t>, count);
    appendTokens(steps, compressRules(o_), count);
  }

  void checkRange(size_t seq, size_t layer) const {
    if (seq >= o_.batch || layer >= o_.layers) throw NqError("INVALID_ARGUMENT", "sequence or layer out of range");
  }
  DeviceStore& at(size_t seq, size_t layer) { return stores_[seq * o_.layers + layer]; }
  const DeviceStore& at(size_t seq, size_t layer) const { return stores_[seq * o_.layers + layer]; }

  // A zeroed device page whose header names it.
  DeviceBuffer newPage(size_t seq, size_t layer, size_t index) const {
    DeviceBuffer page;
    check(page.allocate(layout_.pageBytes, layout_.split()));
    check(cuda::fillDevice(page.data(), 0, layout_.pageBytes, stream_));
    const format::PageHeader h{0, static_cast<uint32_t>(layer), static_cast<uint32_t>(seq), static_cast<uint32_t>(index)};
    check(cuda::copyToDevice(page.data(), &h, sizeof h, stream_));
    return page;
  }

  // Headers' slotsUsed for `used` slots, and the device page table.
  void finishPages(DeviceStore& s, size_t used) const {
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
  std::vector<int32_t> slotPositions(const DeviceStore& s) const {
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

  void ensureAccumulated(DeviceStore& s, size_t slots) const {
    if (o_.scorer != Scorer::Accumulated || slots <= s.accCap) return;
    const size_t H = o_.kvHeads;
    size_t cap = std::max<size_t>(s.accCap * 2, 64);
    while (cap < slots) cap *= 2;
    DeviceBuffer next = deviceBuffer(H * cap * 4, MemCategory::Scratch);
    check(cuda::fillDevice(next.data(), 0, H * cap * 4, stream_));
    for (size_t h = 0; h < H && s.accCap > 0; ++h)
      check(cuda::copyOnDevice(next.as<float>() + h * cap, s.accumulated.as<float>() + h * s.accCap, s.accCap * 4, stream_));
    s.accumulated = std::move(next);
    s.accCap = cap;
  }

  CacheOptions o_;
  PageLayout layout_;
  std::vector<DeviceStore> stores_;
  cuda::StreamHandle stream_ = nullptr;
};

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
  c_.ensureAccumulated(s_, s_.compressed + s_.residualCount);
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
        a.codec = codec(c_.o_, key ? L.spec.keyBits : L.spec.valueBits);
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
  s_.residualCount = 0;  // accumulated scores keep their slot order: residual slots became page slots
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
  const Scorer scorer = o.scorer == Scorer::Observed && observed.queries == nullptr ? Scorer::KeyKey : o.scorer;
  float* scores = scores_->as<float>();
  if (scorer == Scorer::Accumulated) {
    for (size_t h = 0; h < H; ++h) check(cuda::copyOnDevice(scores + h * total, s_.accumulated.as<float>() + h * s_.accCap, total * 4, c_.stream_));
    return;
  }
  if (scorer == Scorer::Random) {  // a seed per (cache seed, sequence, layer, head, length), as the CPU store
    std::vector<float> host(H * total);
    for (size_t h = 0; h < H; ++h) {
      const uint64_t seed = (static_cast<uint64_t>(o.seed) << 32) ^ (seq_ * 1000003ull + layer_ * 7919ull + h) ^ s_.appended;
      scoreRandom(ScoreShape{1, total, d}, seed, host.data() + h * total);
    }
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
      a.codec = codec(o, o.spec.keyBits);
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
      a.codec = codec(c_.o_, key ? L.spec.keyBits : L.spec.valueBits);
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
  if (c_.o_.scorer == Scorer::Accumulated) {  // the kept slots' mass moves with them (on the host: small)
    std::vector<float> acc(H * s_.accCap), moved(H * s_.accCap, 0.f);
    std::vector<uint32_t> kept(H * target);
    check(cuda::copyToHost(acc.data(), s_.accumulated.data(), acc.size() * 4, c_.stream_));
    check(cuda::copyToHost(kept.data(), kept_->data(), kept.size() * 4, c_.stream_));
    for (size_t h = 0; h < H; ++h)
      for (size_t t = 0; t < target; ++t) moved[h * s_.accCap + t] = acc[h * s_.accCap + kept[h * target + t]];
    check(cuda::copyToDevice(s_.accumulated.data(), moved.data(), moved.size() * 4, c_.stream_));
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

}  // namespace

std::unique_ptr<CompressedCache> makeCudaCache(const CacheOptions& options) { return std::make_unique<CudaKvCache>(options); }

}  // namespace nq

#endif
