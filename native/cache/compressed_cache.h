// What the binding's NativeCache drives, whichever backend holds the data: the CPU cache
// (cpu/kv_cache.h) or the CUDA cache (cuda/cuda_kv_cache.h, CUDA builds only). Both run the same
// compress policy (cache/compress_policy.h) over their own store and ops. Methods throw NqError.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cache/transform_tables.h"
#include "nq_format.h"

namespace nq {

using Scorer = format::Scorer;  // ids in kernels/nq_format.h

struct CacheOptions {
  size_t batch = 1, layers = 1, kvHeads = 1, headDim = 128;
  format::Spec spec{};
  Scorer scorer = Scorer::KeyKey;
  uint32_t seed = 0;           // Hadamard sign-flip seed, shared by keys and values
  size_t scorerWindow = format::kDefaultScorerWindow;  // proxy/observation window of key-key and observed
  size_t poolKernel = format::kDefaultPoolKernel;      // max-pool width of observed
  size_t queryHeads = 1;       // query heads per layer (GQA), recorded so a deserialized cache knows them
  size_t budgetTokens = 0;     // 0: off; else at most this many tokens per sequence and layer
  // > 0: keys are stored with RoPE (rotate-half convention, this theta) removed, and RoPE is
  // re-applied at each key's position when keys are read back. 0: keys are stored as they come.
  double ropeTheta = 0;
  // The calibrated transforms (issue 26) for this cache's spec; null: the seeded Hadamard code for
  // every head. CPU only (the CUDA cache refuses it).
  std::shared_ptr<const TransformTables> transform;
};

struct CacheComponentBytes {
  size_t codes = 0, scales = 0, positions = 0, residual = 0, headers = 0, scores = 0, scratch = 0, transform = 0;
  size_t total() const { return codes + scales + positions + residual + headers + scores + scratch + transform; }
};

// Refuses an append holding NaN/Inf or a value beyond the FP16 range (INVALID_DATA naming the head
// and token), so that a bad append leaves a cache as it was. Rows [H][count][d].
void checkAppendRows(const float* k, const float* v, size_t kvHeads, size_t count, size_t headDim);
void checkAppendRows(const uint16_t* k, const uint16_t* v, size_t kvHeads, size_t count, size_t headDim);

// INVALID_ARGUMENT unless (seq, layer) is a store of a cache with options `o`; for compress(), layer
// < 0 (every layer) is allowed too.
void checkStoreIndex(const CacheOptions& o, size_t seq, size_t layer);
void checkCompressIndex(const CacheOptions& o, size_t seq, long layer);

class CompressedCache {
 public:
  virtual ~CompressedCache() = default;
  virtual const CacheOptions& options() const = 0;

  // Appends T tokens; k and v are [H][T][d] host arrays, f32 or FP16 bits (compress_policy.h
  // appendTokens decides where they go).
  virtual void append(size_t seq, size_t layer, const float* k, const float* v, size_t T) = 0;
  virtual void appendF16(size_t seq, size_t layer, const uint16_t* k, const uint16_t* v, size_t T) = 0;

  // Applies the spec to every layer of `seq` (layer < 0) or one layer: score, evict to the kept count
  // for the sequence's true length (or the budget), quantize the residual. `observed` (Observed
  // scorer) gives, per layer, host queries [queryHeads][window][d]; null entries fall back to key-key.
  virtual void compress(size_t seq, long layer, const std::vector<const float*>* observed, size_t queryHeads, size_t observedWindow) = 0;

  // Softmax attention of host queries [qHeads][nq][d] on the codes of (seq, layer) and its residual.
  // Query j sits at position qpos[j] (default: the last nq appended positions) and sees keys at
  // positions <= it. `out` is host memory [qHeads][nq][d].
  virtual void attention(size_t seq, size_t layer, const float* q, size_t qHeads, size_t nq, const int32_t* qpos, float scale, float* out) = 0;

  // Reconstruction attention (the Reconstruct scorer, KVzip-style): queries [qHeads][nq][d] of a
  // re-read of recent context attend to what (seq, layer) holds plus the re-read's own keys/values
  // `extraK`/`extraV` ([kvHeads][nq][d], at the query positions, causal, never stored); each held slot's
  // score becomes the max of its score and the attention probability it receives from any of these
  // queries (over the query heads of its KV head). recentSlots > 0 restricts the held slots attended
  // to the first sinkTokens slots and the last recentSlots (work bounded by the re-read); 0 attends to
  // all. `out` as attention(). Marks the store's scores current (a compress() then uses them).
  virtual void reconstructionAttention(size_t seq, size_t layer, const float* q, size_t qHeads, size_t nq, const int32_t* qpos, float scale,
                                       const float* extraK, const float* extraV, size_t recentSlots, float* out) = 0;

  // After a reconstruction pass through the first `sourceLayers` layers only (a cheaper re-read): every
  // held token of `seq` in the other layers, in every head, takes the highest score any head of those
  // layers gives the token at its position (or keeps a higher one it had), and their scores count as
  // current. The re-read layers keep their own scores.
  virtual void shareScores(size_t seq, size_t sourceLayers) = 0;

  // The dense view into host memory: keys/values [H][tokens][d] as f32 or FP16 bits, positions [H][tokens].
  virtual void materializeInto(size_t seq, size_t layer, bool f16, void* keys, void* values, int32_t* positions) const = 0;

  virtual size_t tokens(size_t seq, size_t layer) const = 0;    // tokens held (compressed + residual)
  virtual size_t appended(size_t seq, size_t layer) const = 0;  // tokens ever appended (the true length)
  virtual size_t compressedTokens(size_t seq, size_t layer) const = 0;
  virtual bool compressed(size_t seq) const = 0;
  // Bytes held by component (host memory for the CPU cache, device memory for the CUDA one).
  virtual CacheComponentBytes bytes() const = 0;

  // The whole state in the "NQKV" format (kernels/nq_format.h SerializedCacheHeader), the same bytes
  // from either backend.
  virtual std::vector<uint8_t> serialize() const = 0;
};

}  // namespace nq
