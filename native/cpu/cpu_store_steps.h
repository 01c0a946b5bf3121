// The CPU store's side of the compress policy: each step of compress_policy.h on one (sequence,
// layer) of a PagedStore, with host scratch buffers and the CPU ops of cpu/ops/cpu_ops.h.
#pragma once
#include <cstddef>
#include <optional>

#include "cache/compress_policy.h"
#include "cpu/kv_cache.h"
#include "cpu/paged_store.h"
#include "cpu/rope.h"
#include "cache/scratch.h"

namespace nq {

// The rows an append brings: keys and values [H][count][d], f32 or FP16 bits.
struct AppendSource {
  const void* keys = nullptr;
  const void* values = nullptr;
  bool f16 = false;
  size_t count = 0;
};

class CpuStoreSteps : public StoreSteps {
 public:
  CpuStoreSteps(PagedStore& store, const CacheOptions& options, const RopeTable& rope, size_t seq, size_t layer)
      : store_(store), o_(options), rope_(rope), seq_(seq), layer_(layer), s_(store.at(seq, layer)) {}

  HeldTokens held() const override;
  size_t residualSlots() const override { return s_.residualCap; }
  void setAppendSource(const AppendSource& src) { append_ = src; }
  void appendRows(size_t first, size_t count) override;
  void quantizeResidual() override;
  void setResidualSlots(size_t slots) override { store_.setResidualCapacity(s_, slots); }
  void markCompressed() override { s_.compressedOnce = true; }
  void beginEviction(size_t target) override;
  void score(const ObservedQueries& observed) override;
  void select(const ops::SelectLaunch& shape) override;
  void encodeResidual() override;
  void compact() override;
  void endEviction() override;

 private:
  // Residual rows of one head as f32 in the storage domain (keys un-RoPE'd when storage is).
  void residualRowsF32(size_t kv, size_t head, size_t firstPosition, float* rows) const;

  PagedStore& store_;
  const CacheOptions& o_;
  const RopeTable& rope_;
  size_t seq_, layer_;
  SeqLayerStore& s_;
  AppendSource append_;
  // Eviction state, between beginEviction and endEviction.
  size_t total_ = 0, target_ = 0;
  std::optional<Scratch<int32_t>> positions_;  // [H][total]
  std::optional<Scratch<float>> scores_;       // [H][total]
  std::optional<Scratch<uint32_t>> kept_;      // [H][target]
  std::optional<Scratch<uint8_t>> resKeyCodes_, resValueCodes_;
  std::optional<Scratch<uint16_t>> resKeyScales_, resValueScales_;
};

}  // namespace nq
