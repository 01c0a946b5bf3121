#include "baselines.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/hadamard.h"

namespace nq {

namespace {

struct LloydMaxTable {
  float levels[3][16];
  float thresholds[3][15];
};

// Lloyd's iteration on N(0, 1) in double: thresholds at midpoints, levels at the centroid of their
// cell, (phi(a) - phi(b)) / (Phi(b) - Phi(a)). Converges to the classical tables (Max, 1960).
LloydMaxTable buildLloydMax() {
  LloydMaxTable t{};
  const double invSqrt2Pi = 0.3989422804014327;
  auto pdf = [&](double x) { return std::isinf(x) ? 0.0 : invSqrt2Pi * std::exp(-0.5 * x * x); };
  auto cdf = [](double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); };
  for (int b = 2; b <= 4; ++b) {
    const int n = 1 << b;
    std::vector<double> l(n), th(n + 1);
    for (int j = 0; j < n; ++j) l[j] = -3.0 + 6.0 * (j + 0.5) / n;
    for (int it = 0; it < 5000; ++it) {
      th[0] = -INFINITY;
      th[n] = INFINITY;
      for (int j = 1; j < n; ++j) th[j] = 0.5 * (l[j - 1] + l[j]);
      for (int j = 0; j < n; ++j) l[j] = (pdf(th[j]) - pdf(th[j + 1])) / (cdf(th[j + 1]) - cdf(th[j]));
    }
    for (int j = 0; j < n; ++j) t.levels[b - 2][j] = static_cast<float>(l[j]);
    for (int j = 1; j < n; ++j) t.thresholds[b - 2][j - 1] = static_cast<float>(0.5 * (l[j - 1] + l[j]));
  }
  return t;
}

const LloydMaxTable& lloydMax() {
  static const LloydMaxTable t = buildLloydMax();
  return t;
}

inline float toFloat(float v) { return v; }
inline float toFloat(uint16_t v) { return halfToFloat(v); }
inline bool nonFinite(float v) { return !std::isfinite(v); }
inline bool nonFinite(uint16_t v) { return halfIsNonFinite(v); }
inline void store(float* o, float v) { *o = v + 0.0f; }
inline void store(uint16_t* o, float v) { *o = floatToHalf(v + 0.0f); }

uint16_t saturatedHalf(double s) { return s >= 65504.0 ? 0x7BFFu : floatToHalf(static_cast<float>(s)); }

template <typename In>
EncodeResult encodeImpl(ScalarQuantizer q, const CodecParams& p, const In* in, size_t begin, size_t end, uint8_t* codes,
                        uint16_t* scales) {
  if (!codecSupports(p.headDim, p.bits) || begin > end) return {Status::InvalidArgument, 0};
  if (begin == end) return {Status::Ok, 0};
  if (!in || !codes || !scales) return {Status::InvalidArgument, 0};
  const size_t d = static_cast<size_t>(p.headDim);
  for (size_t v = begin; v < end; ++v)
    for (size_t i = 0; i < d; ++i)
      if (nonFinite(in[v * d + i])) return {Status::NonFinite, v};
  const LloydMaxTable& lm = lloydMax();
  const int n = 1 << p.bits;
  const float* th = lm.thresholds[p.bits - 2];
  const size_t codeBytes = codeBytesPerVector(p);
  std::vector<float> buf(d), signs;
  std::vector<uint8_t> idx(d);
  if (p.rotate) {
    signs.resize(d);
    rotationSigns(p.seed, p.headDim, signs.data());
  }
  for (size_t v = begin; v < end; ++v) {
    for (size_t i = 0; i < d; ++i) buf[i] = toFloat(in[v * d + i]);
    if (p.rotate) rotateForward(buf.data(), p.headDim, signs.data());
    double stat = 0.0;
    if (q == ScalarQuantizer::Uniform) {
      for (size_t i = 0; i < d; ++i) stat = std::fmax(stat, std::fabs(buf[i]));
    } else {
      for (size_t i = 0; i < d; ++i) stat += static_cast<double>(buf[i]) * buf[i];
      stat = std::sqrt(stat / d);
    }
    const uint16_t sc = saturatedHalf(stat);
    scales[v] = sc;
    const float s = halfToFloat(sc);
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (size_t i = 0; i < d; ++i) {
      const float y = buf[i] * inv;
      int k;
      if (q == ScalarQuantizer::Uniform) {
        k = static_cast<int>(std::floor((y + 1.0f) * 0.5f * n));
        k = k < 0 ? 0 : (k >= n ? n - 1 : k);
      } else {
        k = 0;
        for (int j = 0; j < n - 1; ++j) k += y > th[j];
      }
      idx[i] = static_cast<uint8_t>(k);
    }
    uint8_t* out = codes + v * codeBytes;
    std::memset(out, 0, codeBytes);
    for (size_t i = 0; i < d; ++i) {
      const size_t bit = i * p.bits;
      const uint32_t w = static_cast<uint32_t>(idx[i]) << (bit % 8);
      out[bit / 8] |= static_cast<uint8_t>(w);
      if ((bit % 8) + p.bits > 8) out[bit / 8 + 1] |= static_cast<uint8_t>(w >> 8);
    }
  }
  return {Status::Ok, 0};
}

template <typename Out>
Status decodeImpl(ScalarQuantizer q, const CodecParams& p, const uint8_t* codes, const uint16_t* scales, size_t begin,
                  size_t end, Out* out) {
  if (!codecSupports(p.headDim, p.bits) || begin > end) return Status::InvalidArgument;
  if (begin == end) return Status::Ok;
  if (!codes || !scales || !out) return Status::InvalidArgument;
  const size_t d = static_cast<size_t>(p.headDim);
  const int n = 1 << p.bits;
  float levels[16];
  for (int k = 0; k < n; ++k)
    levels[k] = q == ScalarQuantizer::Uniform ? (2.0f * (k + 0.5f) / n - 1.0f) : lloydMax().levels[p.bits - 2][k];
  const size_t codeBytes = codeBytesPerVector(p);
  std::vector<float> buf(d), signs;
  if (p.rotate) {
    signs.resize(d);
    rotationSigns(p.seed, p.headDim, signs.data());
  }
  for (size_t v = begin; v < end; ++v) {
    const float s = halfToFloat(scales[v]);
    const uint8_t* c = codes + v * codeBytes;
    for (size_t i = 0; i < d; ++i) {
      const size_t bit = i * p.bits;
      const uint32_t w = c[bit / 8] | (((bit % 8) + p.bits > 8) ? static_cast<uint32_t>(c[bit / 8 + 1]) << 8 : 0u);
      buf[i] = s * levels[(w >> (bit % 8)) & (n - 1)];
    }
    if (s == 0.0f) std::fill(buf.begin(), buf.end(), 0.0f);
    else if (p.rotate) rotateInverse(buf.data(), p.headDim, signs.data());
    for (size_t i = 0; i < d; ++i) store(out + v * d + i, buf[i]);
  }
  return Status::Ok;
}

}  // namespace

const float* lloydMaxLevels(int bits) { return (bits >= 2 && bits <= 4) ? lloydMax().levels[bits - 2] : nullptr; }

EncodeResult scalarEncodeF32(ScalarQuantizer q, const CodecParams& p, const float* in, size_t begin, size_t end,
                             uint8_t* codes, uint16_t* scales) {
  return encodeImpl(q, p, in, begin, end, codes, scales);
}
EncodeResult scalarEncodeF16(ScalarQuantizer q, const CodecParams& p, const uint16_t* in, size_t begin, size_t end,
                             uint8_t* codes, uint16_t* scales) {
  return encodeImpl(q, p, in, begin, end, codes, scales);
}
Status scalarDecodeF32(ScalarQuantizer q, const CodecParams& p, const uint8_t* codes, const uint16_t* scales,
                       size_t begin, size_t end, float* out) {
  return decodeImpl(q, p, codes, scales, begin, end, out);
}
Status scalarDecodeF16(ScalarQuantizer q, const CodecParams& p, const uint8_t* codes, const uint16_t* scales,
                       size_t begin, size_t end, uint16_t* out) {
  return decodeImpl(q, p, codes, scales, begin, end, out);
}

}  // namespace nq
