#include "cache/random_scores.h"

#include <cstdint>

namespace nq {

void randomScores(const CacheOptions& o, size_t seq, size_t layer, size_t head, size_t appended, size_t tokens, float* scores) {
  const uint64_t seed = (static_cast<uint64_t>(o.seed) << 32) ^ (seq * 1000003ull + layer * 7919ull + head) ^ appended;
  uint64_t x = seed ^ 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < tokens; ++i) {
    // splitmix64: a full-period generator whose output is well mixed from any seed.
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    scores[i] = static_cast<float>(z >> 40) / static_cast<float>(1ull << 24);
  }
}

}  // namespace nq
