// Internal to native/cuda/: the CUDA cache's classes, shared by cuda_kv_cache.cc (the cache) and
// cuda_store_steps.cc (the compress policy's steps on its device stores). CUDA builds only.
#pragma once
#if defined(NQ_WITH_CUDA)
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "cache/compress_policy.h"
#include "cache/compressed_cache.h"
#include "cache/nq_error.h"
#include "cache/page_layout.h"
#include "nq_cuda_api.h"

namespace nq::cudacache {

using cuda::CudaStatus;
using cuda::DeviceBuffer;

// A failed CUDA status as the NqError the binding turns into a NexusQuantError.
void check(const CudaStatus& st);
// A device buffer of at least one byte, counted under `c`.
DeviceBuffer deviceBuffer(size_t bytes, MemCategory c);
// The codec arguments of the cache's keys or values (rotated, the cache's seed, nq_scale.h's factor).
ops::CodecArgs codec(const CacheOptions& o, int bits);

// Host array -> a fresh device buffer (category Scratch).
template <typename T>
DeviceBuffer upload(const T* data, size_t count, cuda::StreamHandle stream) {
  DeviceBuffer b = deviceBuffer(count * sizeof(T), MemCategory::Scratch);
  check(cuda::copyToDevice(b.data(), data, count * sizeof(T), stream));
  return b;
}

// One (sequence, layer) in device memory; counters on the host.
struct DeviceStore : StoreCounters {
  std::vector<DeviceBuffer> pages;
  DeviceBuffer pageTable;    // device array of the page pointers, for attention
  DeviceBuffer residual;     // FP16 [2][H][residualCap][d]
  DeviceBuffer scores;       // f32 [H][scoreCap], Accumulated scorer only (Reconstruct is CPU only)
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
  explicit CudaKvCache(const CacheOptions& o);
  ~CudaKvCache() override;

  const CacheOptions& options() const override { return o_; }

  void append(size_t seq, size_t layer, const float* k, const float* v, size_t T) override { appendImpl(seq, layer, k, v, T); }
  void appendF16(size_t seq, size_t layer, const uint16_t* k, const uint16_t* v, size_t T) override { appendImpl(seq, layer, k, v, T); }

  void compress(size_t seq, long layer, const std::vector<const float*>* observed, size_t queryHeads, size_t observedWindow) override;

  void attention(size_t seq, size_t layer, const float* q, size_t qHeads, size_t nq, const int32_t* qpos, float scale, float* out) override;
  // The Reconstruct scorer is CPU only (the constructor refuses it), so this always throws UNSUPPORTED.
  void reconstructionAttention(size_t, size_t, const float*, size_t, size_t, const int32_t*, float, const float*, const float*, size_t,
                               float*) override {
    throw NqError("UNSUPPORTED", "the reconstruction pass is CPU only");
  }
  void shareScores(size_t, size_t) override { throw NqError("UNSUPPORTED", "the reconstruction pass is CPU only"); }

  void materializeInto(size_t seq, size_t layer, bool f16, void* keys, void* values, int32_t* positions) const override;

  size_t tokens(size_t seq, size_t layer) const override { return at(seq, layer).compressed + at(seq, layer).residualCount; }
  size_t appended(size_t seq, size_t layer) const override { return at(seq, layer).appended; }
  size_t compressedTokens(size_t seq, size_t layer) const override { return at(seq, layer).compressed; }
  bool compressed(size_t seq) const override;

  CacheComponentBytes bytes() const override;

  // The same bytes as the CPU cache's (cache/serialized_cache.h), read from device memory.
  std::vector<uint8_t> serialize() const override;

 private:
  friend class CudaStoreSteps;

  template <typename T>
  void appendImpl(size_t seq, size_t layer, const T* k, const T* v, size_t count) {
    checkStoreIndex(o_, seq, layer);
    checkAppendRows(k, v, o_.kvHeads, count, o_.headDim);  // before touching state
    CudaStoreSteps steps(*this, seq, layer);
    steps.setAppendSource(k, v, std::is_same_v<T, uint16_t>, count);
    appendTokens(steps, compressRules(o_), count);
  }

  // The calibrated transform of (layer, K|V, head) for the codec launchers (device arrays), or null:
  // no profile, or a head the calibration left flat.
  const HeadTransform* transformOf(size_t layer, size_t kv, size_t head) const {
    if (!o_.transform) return nullptr;
    const HeadTransform* t = transforms_.host((layer * 2 + kv) * o_.kvHeads + head);
    return t->matrix ? t : nullptr;
  }
  // The codec arguments of one (layer, K|V, head): the cache's bits and seed, and its transform.
  ops::CodecArgs codecOf(size_t layer, size_t kv, size_t head) const {
    ops::CodecArgs c = codec(o_, kv == 0 ? o_.spec.keyBits : o_.spec.valueBits);
    c.transform = transformOf(layer, kv, head);
    return c;
  }

  DeviceStore& at(size_t seq, size_t layer) { return stores_[seq * o_.layers + layer]; }
  const DeviceStore& at(size_t seq, size_t layer) const { return stores_[seq * o_.layers + layer]; }

  // A zeroed device page whose header names it.
  DeviceBuffer newPage(size_t seq, size_t layer, size_t index) const;

  // Headers' slotsUsed for `used` slots, and the device page table.
  void finishPages(DeviceStore& s, size_t used) const;

  // Positions of the page slots [H][compressed], read back from the pages (slot index without eviction).
  std::vector<int32_t> slotPositions(const DeviceStore& s) const;

  // Scores for compressed + residual-capacity slots, as the CPU store keeps them (PagedStore::syncScores).
  void syncScores(DeviceStore& s) const;

  CacheOptions o_;
  PageLayout layout_;
  std::vector<DeviceStore> stores_;
  cuda::StreamHandle stream_ = nullptr;
  // The profile's tables in device memory (this cache's own copy), when it has one.
  cuda::DeviceTransforms transforms_;
};

}  // namespace nq::cudacache

#endif
