// Dense FP32 decode attention, the baseline that attention on codes is benchmarked against (and the
// same loop structure: one pass per KV head, its GQA query heads sharing it, heads in parallel).
#pragma once
#include <cstddef>

namespace nq {

// keys/values [kvHeads][n][d]; q [qHeads][d] (one query per head, all n tokens visible); out [qHeads][d].
void denseAttentionF32(const float* keys, const float* values, size_t kvHeads, size_t n, size_t d, const float* q, size_t qHeads,
                       float scale, float* out);

}  // namespace nq
