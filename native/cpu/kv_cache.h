// CompressedKVCache, CPU backend: paged storage of lattice codes, FP16 scales and kept-token
// positions for each (sequence, layer), plus an FP16 residual window for tokens appended after a
// compression. Every byte comes from the accounting allocator, laid out by kernels/nq_format.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cpu/scoring.h"
#include "memory/allocator.h"
#include "nq_format.h"

namespace nq {

struct CacheOptions {
  size_t batch = 1, layers = 1, kvHeads = 1, headDim = 128;
  format::Spec spec{};
  Scorer scorer = Scorer::KeyKey;
  uint32_t seed = 0;           // Hadamard sign-flip seed, shared by keys and values
  size_t scorerWindow = 32;    // proxy/observation window of key-key and observed
  size_t poolKernel = 7;       // max-pool width of observed
  size_t queryHeads = 1;       // query heads per layer (GQA), recorded so a deserialized cache knows them
  size_t budgetTokens = 0;     // 0: off; else at most this many tokens per sequence and layer
  // > 0: keys are stored with RoPE (rotate-half convention, this theta) removed, and RoPE is
  // re-applied at each key's position when keys are read back. 0: keys are stored as they come.
  double ropeTheta = 0;
};

// Dense view of one (sequence, layer): K and V rows [H][n][d] in f32 and positions [H][n].
struct DenseKV {
  size_t tokens = 0;
  std::vector<float> keys, values;
  std::vector<int32_t> positions;
};

struct CacheComponentBytes {
  size_t codes = 0, scales = 0, positions = 0, residual = 0, headers = 0, scratch = 0;
  size_t total() const { return codes + scales + positions + residual + headers + scratch; }
};

class KvCache {
 public:
  explicit KvCache(const CacheOptions& o);

  const CacheOptions& options() const { return o_; }

  // Appends T tokens; k and v are [H][T][d], f32 or FP16 bits. The residual grows freely until the
  // first compress(); afterwards it has `residualWindow` slots and full blocks are quantized.
  void append(size_t seq, size_t layer, const float* k, const float* v, size_t T);
  void appendF16(size_t seq, size_t layer, const uint16_t* k, const uint16_t* v, size_t T);

  // Applies the spec to every layer of `seq`: score, evict to the kept count for the sequence's
  // true length (or the budget), quantize the residual. `observed` (Observed scorer) gives, per layer,
  // queries [queryHeads][window][d]; null entries fall back to key-key for that layer.
  // layer < 0 compresses every layer.
  void compress(size_t seq, long layer, const std::vector<const float*>* observed, size_t queryHeads, size_t observedWindow);

  // Softmax attention of queries [qHeads][nq][d] on the codes of (seq, layer) and its residual.
  // Query j sits at position qpos[j] (default: the last nq appended positions) and sees keys at
  // positions <= it. The rotation is folded into the query and applied once to the output.
  void attention(size_t seq, size_t layer, const float* q, size_t qHeads, size_t nq, const int32_t* qpos, float scale,
                 float* out);

  DenseKV materialize(size_t seq, size_t layer) const;
  // Writes the dense view into caller memory: keys/values [H][tokens][d] as f32 or FP16 bits, and
  // positions [H][tokens]. Heads run in parallel. Sizes come from tokens(seq, layer).
  void materializeInto(size_t seq, size_t layer, bool f16, void* keys, void* values, int32_t* positions) const;

  size_t tokens(size_t seq, size_t layer) const;       // tokens held (compressed + residual)
  size_t appended(size_t seq, size_t layer) const;     // tokens ever appended (the true length)
  size_t compressedTokens(size_t seq, size_t layer) const;
  bool compressed(size_t seq) const;
  CacheComponentBytes bytes() const;

  // Serialization of the whole state (options + every store), and the inverse. deserialize throws
  // CORRUPT_DATA for anything inconsistent before allocating what the header claims.
  std::vector<uint8_t> serialize() const;
  static KvCache deserialize(const uint8_t* data, size_t size);

 private:
  struct Store {
    std::vector<HostBuffer> pages;
    size_t compressed = 0;  // slots used in pages (same for every head)
    HostBuffer residual;    // FP16 [2][H][cap][d]
    size_t residualCap = 0, residualCount = 0;
    size_t appended = 0;
    bool compressedOnce = false;
    HostBuffer accumulated;  // f32 [H][accCap], Accumulated scorer only (scratch)
    size_t accCap = 0;
  };

  Store& store(size_t seq, size_t layer) { return stores_[seq * o_.layers + layer]; }
  const Store& store(size_t seq, size_t layer) const { return stores_[seq * o_.layers + layer]; }

  template <typename T>
  void appendImpl(size_t seq, size_t layer, const T* k, const T* v, size_t T_);
  void growResidual(Store& s, size_t minCap);
  void setResidualCapacity(Store& s, size_t cap);
  void flushResidual(Store& s, size_t layer, size_t seq, bool evictToBudget);
  void compressStore(Store& s, size_t seq, size_t layer, const float* observed, size_t queryHeads, size_t observedWindow);
  void ensureAccumulated(Store& s, size_t slots);
  int32_t slotPosition(const Store& s, size_t head, size_t slot) const;
  void decodeSlots(const Store& s, bool key, size_t head, size_t begin, size_t end, bool rotate, float* out) const;
  void decodeSlotsF16(const Store& s, bool key, size_t head, size_t begin, size_t end, uint16_t* out) const;
  // Keys of one head in the original domain as appended (RoPE re-applied in un-RoPE'd storage).
  void decodeKeys(const Store& s, size_t head, size_t begin, size_t end, float* out) const;
  // Rotates a key row by RoPE at `position` (inverse: by -position).
  void rope(float* row, int64_t position, bool inverse) const;
  HostBuffer newPage(size_t seq, size_t layer, size_t index) const;

  CacheOptions o_;
  format::PageOffsets off_;
  size_t pageBytes_, kcBytes_, vcBytes_;
  std::vector<Store> stores_;
  std::vector<double> invFreq_;  // RoPE frequencies, when ropeTheta > 0
};

}  // namespace nq
