// Fused softmax attention over key/value sources read block by block: the codes of a compressed
// cache, its FP16 residual window, or dense FP32/FP16 rows (the benchmark baselines run the same
// loop). Each KV head's query heads (GQA) and queries share one pass over its rows; work is split
// over heads and over token ranges, each range keeping a partial softmax state (max, sum, weighted
// values) that are combined at the end (flash-decoding). Scratch does not grow with the context:
// two blocks of rows per thread and one partial state per (range, query).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "cpu/attention_ops.h"

namespace nq {

constexpr size_t kAttentionBlock = 32;  // rows decoded at a time (two blocks of d floats stay in L1)

// One block of rows of one head, as the kernel reads it. Scales, when present, multiply the row
// (codes: rows are lattice points). positions[t] is the token position (causal mask).
struct KvBlock {
  const float* keys = nullptr;
  const float* keyScales = nullptr;
  const float* values = nullptr;
  const float* valueScales = nullptr;
  const int32_t* positions = nullptr;
};

// Per-thread buffers a source may fill: keys/values kAttentionBlock * d floats, scales and positions
// kAttentionBlock each.
struct BlockBuffers {
  float* keys;
  float* values;
  float* keyScales;
  float* valueScales;
  int32_t* positions;
};

class KvSource {
 public:
  virtual ~KvSource() = default;
  virtual size_t tokens() const = 0;
  // Rows [t, t + n) of `head`; n <= blockLimit(t).
  virtual void read(const AttentionOps& ops, size_t head, size_t t, size_t n, const BlockBuffers& buf, KvBlock& out) const = 0;
  // Elements of a head's key (value) rows that can be nonzero: a prefix of d, 0 meaning all of it (a
  // calibrated transform's trailing 0-bit bands decode to zero and are skipped).
  virtual size_t keyLength(size_t head) const { return 0; }
  virtual size_t valueLength(size_t head) const { return 0; }
  // Largest block starting at t (e.g. up to the end of a page); at most kAttentionBlock.
  virtual size_t blockLimit(size_t t) const { return kAttentionBlock; }
  // Token ranges are split at multiples of this (a page).
  virtual size_t granularity() const { return kAttentionBlock; }
  bool keysRotated = false;    // keys are in the rotated domain: dot with the rotated query
  bool valuesRotated = false;  // values are in the rotated domain: un-rotated once at the end
  size_t slotOffset = 0;       // index of row 0 in the accumulated-scores row
  bool scored = true;          // false: rows attended but never scored (a re-read's transient K/V)
};

struct AttentionProblem {
  size_t kvHeads = 1, group = 1, nq = 1, d = 0;
  const float* q = nullptr;     // [kvHeads * group][nq][d], original domain
  const float* qRot = nullptr;  // same shape, rotated (needed when a source has keysRotated)
  const int32_t* qpos = nullptr;  // [nq]: query j sees rows at positions <= qpos[j]; null: sees all
  float scale = 1.f;
  float* out = nullptr;  // [kvHeads * group][nq][d]; a query with no visible row gets zeros
  // Added to the logits of keysRotated rows, per (kvHead, query row): a calibrated transform's
  // scale · q·mean, the part of q·x̂ every coded key shares (nq_transform.h). Null: none.
  const float* keyBias = nullptr;  // [kvHeads][group * nq]
  // Takes one head's accumulated valuesRotated rows (Σ w_t · row_t, `weight` = Σ w_t) back to the
  // original domain, in place.
  std::function<void(size_t head, float* v, float weight)> unrotate;
  float* accumulated = nullptr;  // optional [kvHeads][accumulatedStride]: += probability of each row, summed over queries
  size_t accumulatedStride = 0;
  // Instead of `accumulated`: maxScores[row] = max(maxScores[row], FP16 of the probability any query gives it).
  uint16_t* maxScores = nullptr;
};

void fusedAttention(const AttentionOps& ops, const AttentionProblem& p, const std::vector<const KvSource*>& sources);

// Dense rows [kvHeads][n][d] at positions 0..n-1, FP32 or FP16 bits (the benchmark baselines).
class DenseSource : public KvSource {
 public:
  DenseSource(const void* keys, const void* values, bool f16, size_t n, size_t d) : k_(keys), v_(values), f16_(f16), n_(n), d_(d) {}
  size_t tokens() const override { return n_; }
  void read(const AttentionOps& ops, size_t head, size_t t, size_t n, const BlockBuffers& buf, KvBlock& out) const override;

 private:
  const void *k_, *v_;
  bool f16_;
  size_t n_, d_;
};

}  // namespace nq
