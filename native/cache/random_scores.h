// The random scorer (the eviction baseline): pseudo-random scores per (cache seed, sequence, layer,
// head, true length), generated on the host by every backend alike, so that a CPU and a CUDA cache
// with the same options evict the same tokens.
#pragma once
#include <cstddef>

#include "cache/compressed_cache.h"

namespace nq {

// Scores [tokens] of one head of (seq, layer) when the sequence's true length is `appended`.
void randomScores(const CacheOptions& o, size_t seq, size_t layer, size_t head, size_t appended, size_t tokens, float* scores);

}  // namespace nq
