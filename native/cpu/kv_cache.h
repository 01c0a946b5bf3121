// CompressedKVCache, CPU backend: the paged store (cpu/paged_store.h) driven by the backend-neutral
// compress policy (cache/compress_policy.h) through the CPU ops (cpu/ops/cpu_ops.h). This class checks
// arguments and holds the pieces together behind the CompressedCache surface the binding uses.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cache/compressed_cache.h"
#include "cpu/paged_store.h"
#include "cpu/rope.h"
#include "memory/allocator.h"
#include "nq_format.h"

namespace nq {

// Dense view of one (sequence, layer): K and V rows [H][n][d] in f32 and positions [H][n].
struct DenseKV {
  size_t tokens = 0;
  std::vector<float> keys, values;
  std::vector<int32_t> positions;
};

class KvCache : public CompressedCache {
 public:
  explicit KvCache(const CacheOptions& o);

  const CacheOptions& options() const override { return o_; }

  // Appends T tokens; k and v are [H][T][d], f32 or FP16 bits. The residual grows freely until the
  // first compress(); afterwards it has `residualWindow` slots and full blocks are quantized.
  void append(size_t seq, size_t layer, const float* k, const float* v, size_t T) override;
  void appendF16(size_t seq, size_t layer, const uint16_t* k, const uint16_t* v, size_t T) override;

  // Applies the spec to every layer of `seq`: score, evict to the kept count for the sequence's
  // true length (or the budget), quantize the residual. `observed` (Observed scorer) gives, per layer,
  // queries [queryHeads][window][d]; null entries fall back to key-key for that layer.
  // layer < 0 compresses every layer.
  void compress(size_t seq, long layer, const std::vector<const float*>* observed, size_t queryHeads, size_t observedWindow) override;

  // Softmax attention of queries [qHeads][nq][d] on the codes of (seq, layer) and its residual.
  // Query j sits at position qpos[j] (default: the last nq appended positions) and sees keys at
  // positions <= it. The rotation is folded into the query and applied once to the output.
  void attention(size_t seq, size_t layer, const float* q, size_t qHeads, size_t nq, const int32_t* qpos, float scale,
                 float* out) override;

  // The reconstruction pass of the Reconstruct scorer (compressed_cache.h).
  void reconstructionAttention(size_t seq, size_t layer, const float* q, size_t qHeads, size_t nq, const int32_t* qpos, float scale,
                               const float* extraK, const float* extraV, size_t recentSlots, float* out) override;

  void shareScores(size_t seq, size_t sourceLayers) override;

  DenseKV materialize(size_t seq, size_t layer) const;
  // Writes the dense view into caller memory: keys/values [H][tokens][d] as f32 or FP16 bits, and
  // positions [H][tokens]. Heads run in parallel. Sizes come from tokens(seq, layer).
  void materializeInto(size_t seq, size_t layer, bool f16, void* keys, void* values, int32_t* positions) const override;

  size_t tokens(size_t seq, size_t layer) const override;
  size_t appended(size_t seq, size_t layer) const override;
  size_t compressedTokens(size_t seq, size_t layer) const override;
  bool compressed(size_t seq) const override;
  CacheComponentBytes bytes() const override;

  // Serialization of the whole state (options + every store), and the inverse. deserialize throws
  // CORRUPT_DATA for anything inconsistent before allocating what the header claims. A cache coded
  // under a calibrated transform records the tables' id and loads only with `transform` of that id
  // (PROFILE_MISMATCH otherwise); `transform` is ignored for a cache without one.
  std::vector<uint8_t> serialize() const override;
  static KvCache deserialize(const uint8_t* data, size_t size, std::shared_ptr<const TransformTables> transform = nullptr);

 private:
  // One attention launch on (seq, layer): a plain call, or a reconstruction pass.
  struct AttentionCall {
    const float* q = nullptr;
    size_t qHeads = 0, nq = 0;
    const int32_t* qpos = nullptr;
    float scale = 0;
    float* out = nullptr;
    bool accumulate = false, captureMax = false;
    const float *extraK = nullptr, *extraV = nullptr;
    size_t recentSlots = 0;
  };
  void runAttention(size_t seq, size_t layer, const AttentionCall& c);

  template <typename T>
  void appendImpl(size_t seq, size_t layer, const T* k, const T* v, size_t T_);

  CacheOptions o_;
  PagedStore store_;
  RopeTable rope_;  // active when ropeTheta > 0 (un-RoPE'd key storage)
};

}  // namespace nq
