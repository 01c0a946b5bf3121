#include "cpu/dense_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/parallel.h"

namespace nq {

void denseAttentionF32(const float* keys, const float* values, size_t kvHeads, size_t n, size_t d, const float* q, size_t qHeads,
                       float scale, float* out) {
  const size_t group = qHeads / kvHeads;
  parallelFor(kvHeads, 1, [&](size_t hb, size_t he) {
    std::vector<float> logits(n);
    for (size_t h = hb; h < he; ++h) {
      const float* K = keys + h * n * d;
      const float* V = values + h * n * d;
      for (size_t g = 0; g < group; ++g) {
        const float* qv = q + (h * group + g) * d;
        float mx = -std::numeric_limits<float>::infinity();
        for (size_t t = 0; t < n; ++t) {
          float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          for (size_t i = 0; i < d; i += 8)
            for (int k = 0; k < 8; ++k) s[k] += qv[i + k] * K[t * d + i + k];
          logits[t] = (((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))) * scale;
          mx = std::max(mx, logits[t]);
        }
        double sum = 0;
        for (size_t t = 0; t < n; ++t) sum += (logits[t] = std::exp(logits[t] - mx));
        float* o = out + (h * group + g) * d;
        std::fill(o, o + d, 0.f);
        const float inv = static_cast<float>(1.0 / sum);
        for (size_t t = 0; t < n; ++t) {
          const float w = logits[t] * inv;
          for (size_t i = 0; i < d; ++i) o[i] += w * V[t * d + i];
        }
      }
    }
  });
}

}  // namespace nq
