#include "cpu/scoring.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace nq {
namespace {

float dot(const float* a, const float* b, size_t n) {
  float acc = 0.f;
  for (size_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// Adds softmax(q·k_i * scale) over keys [0, limit) into out[i].
void addSoftmaxMass(const float* q, const float* keys, size_t limit, size_t headDim, float scale, std::vector<float>& logits, float* out) {
  if (limit == 0) return;
  logits.resize(limit);
  float mx = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < limit; ++i) {
    logits[i] = dot(q, keys + i * headDim, headDim) * scale;
    mx = std::max(mx, logits[i]);
  }
  double sum = 0;
  for (size_t i = 0; i < limit; ++i) {
    logits[i] = std::exp(logits[i] - mx);
    sum += logits[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (size_t i = 0; i < limit; ++i) out[i] += logits[i] * inv;
}

}  // namespace

void scoreKeyNorm(const ScoreShape& s, const float* keys, float* scores) {
  for (size_t h = 0; h < s.kvHeads; ++h)
    for (size_t t = 0; t < s.tokens; ++t) {
      const float* k = keys + (h * s.tokens + t) * s.headDim;
      scores[h * s.tokens + t] = -std::sqrt(dot(k, k, s.headDim));
    }
}

void scoreKeyKey(const ScoreShape& s, const float* keys, size_t window, float* scores) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.headDim));
  window = std::min(window, s.tokens);
  std::vector<float> logits;
  for (size_t h = 0; h < s.kvHeads; ++h) {
    const float* kh = keys + h * s.tokens * s.headDim;
    float* out = scores + h * s.tokens;
    std::fill(out, out + s.tokens, 0.f);
    for (size_t j = s.tokens - window; j < s.tokens; ++j) addSoftmaxMass(kh + j * s.headDim, kh, j + 1, s.headDim, scale, logits, out);
  }
}

void scoreObserved(const ScoreShape& s, const float* keys, const float* queries, size_t queryHeads, size_t window, size_t pool,
                   float* scores) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.headDim));
  const size_t group = queryHeads / s.kvHeads;
  std::vector<float> logits;
  std::fill(scores, scores + s.kvHeads * s.tokens, 0.f);
  for (size_t qh = 0; qh < queryHeads; ++qh) {
    const size_t h = qh / group;
    const float* kh = keys + h * s.tokens * s.headDim;
    for (size_t j = 0; j < window; ++j) {
      // Query j of the window sits at position tokens - window + j and sees keys up to it.
      const size_t limit = s.tokens >= window ? s.tokens - window + j + 1 : std::min(s.tokens, j + 1);
      addSoftmaxMass(queries + (qh * window + j) * s.headDim, kh, limit, s.headDim, scale, logits, scores + h * s.tokens);
    }
  }
  maxPoolScores(s, pool, scores);
}

void maxPoolScores(const ScoreShape& s, size_t pool, float* scores) {
  if (pool <= 1) return;
  const size_t half = pool / 2;
  std::vector<float> row(s.tokens);
  for (size_t h = 0; h < s.kvHeads; ++h) {
    float* r = scores + h * s.tokens;
    std::copy(r, r + s.tokens, row.begin());
    for (size_t t = 0; t < s.tokens; ++t) {
      const size_t lo = t >= half ? t - half : 0, hi = std::min(s.tokens, t + half + 1);
      r[t] = *std::max_element(row.begin() + lo, row.begin() + hi);
    }
  }
}

}  // namespace nq
