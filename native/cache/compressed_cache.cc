#include "cache/compressed_cache.h"

#include <cmath>
#include <string>
#include <type_traits>

#include "cache/nq_error.h"
#include "nq_half.h"

namespace nq {

namespace {

template <typename T>
void checkRows(const T* k, const T* v, size_t kvHeads, size_t count, size_t d) {
  const size_t n = kvHeads * count * d;
  for (size_t i = 0; i < n; ++i) {
    const bool bad = [&] {
      if constexpr (std::is_same_v<T, float>) return !std::isfinite(k[i]) || !std::isfinite(v[i]) || std::fabs(k[i]) > 65504.f || std::fabs(v[i]) > 65504.f;
      else return halfIsNonFinite(k[i]) || halfIsNonFinite(v[i]);
    }();
    if (bad) {
      const size_t head = i / (count * d), token = (i / d) % count;
      throw NqError("INVALID_DATA", "keys/values hold a non-finite value or one beyond the FP16 range (+-65504) at head " + std::to_string(head) +
                                        ", token " + std::to_string(token) + " of this append; the cache was not changed");
    }
  }
}

}  // namespace

void checkAppendRows(const float* k, const float* v, size_t kvHeads, size_t count, size_t headDim) { checkRows(k, v, kvHeads, count, headDim); }
void checkAppendRows(const uint16_t* k, const uint16_t* v, size_t kvHeads, size_t count, size_t headDim) { checkRows(k, v, kvHeads, count, headDim); }

void checkStoreIndex(const CacheOptions& o, size_t seq, size_t layer) {
  if (seq >= o.batch) throw NqError("INVALID_ARGUMENT", "sequence " + std::to_string(seq) + " is out of range [0, " + std::to_string(o.batch) + ")");
  if (layer >= o.layers) throw NqError("INVALID_ARGUMENT", "layer " + std::to_string(layer) + " is out of range [0, " + std::to_string(o.layers) + ")");
}

void checkCompressIndex(const CacheOptions& o, size_t seq, long layer) {
  if (seq >= o.batch) throw NqError("INVALID_ARGUMENT", "sequence " + std::to_string(seq) + " is out of range");
  if (layer >= static_cast<long>(o.layers)) throw NqError("INVALID_ARGUMENT", "layer " + std::to_string(layer) + " is out of range");
}

}  // namespace nq
