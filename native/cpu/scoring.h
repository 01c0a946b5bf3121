// Token importance scores for eviction, one score per (KV head, token); higher = keep. These are the
// CPU reference of the scorers the CUDA backend mirrors (the random baseline: cache/random_scores.h). Inputs are dense f32 rows in the original
// (unrotated) domain, head-major: keys[h][t][d].
#pragma once
#include <cstddef>
#include <cstdint>

namespace nq {

struct ScoreShape {
  size_t kvHeads;
  size_t tokens;
  size_t headDim;
};

// -||k||: low-norm keys draw the most attention (Devoto et al. 2024, "A simple and effective L2
// norm-based strategy for KV cache compression"), so the smallest norms score highest.
void scoreKeyNorm(const ScoreShape& s, const float* keys, float* scores);

// The last `window` keys act as proxy queries: for each proxy j (causal: keys i <= j), softmax over
// q_j·k_i/sqrt(d), summed over the window. Tokens inside the window also collect their own mass.
void scoreKeyKey(const ScoreShape& s, const float* keys, size_t window, float* scores);

// SnapKV: observation-window queries q[qh][w][d] (qh = kvHeads * group) attend to every key (the
// window's own keys causally, assuming the window queries are the last w positions); softmax mass is
// summed over the window and the query heads of each GQA group, then max-pooled over `pool`
// neighbouring positions (odd, centred) so that kept tokens come with their context.
void scoreObserved(const ScoreShape& s, const float* keys, const float* queries, size_t queryHeads, size_t window, size_t pool,
                   float* scores);

// Max-pool along tokens with an odd window, per head, in place (uses a scratch row).
void maxPoolScores(const ScoreShape& s, size_t pool, float* scores);

}  // namespace nq
