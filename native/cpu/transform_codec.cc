#include "cpu/transform_codec.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "nq_e8_encode.h"
#include "nq_e8_root.h"
#include "nq_half.h"
#include "nq_scale.h"

namespace nq {
namespace {

inline void storeCode(uint8_t* c, int bits, uint32_t w) {
  for (int j = 0; j < bits; ++j) c[j] = static_cast<uint8_t>(w >> (8 * j));
}
inline float clampTo(float v, float bound) {
  v = v < bound ? v : bound;
  return v > -bound ? v : -bound;
}
inline bool nonFinite(float v) { return !std::isfinite(v); }

// y = matrix · v (d² MACs per vector, and per query head in attention). Eight independent partial
// sums per row (d is a multiple of 8): the compiler turns them into vector registers, where one
// running sum would stay scalar (float addition is not reassociated without -ffast-math); the
// scalar loop cost attention ~15% at 16K tokens.
void applyMatrix(const float* m, const float* v, size_t d, float* y) {
  for (size_t i = 0; i < d; ++i) {
    const float* row = m + i * d;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t j = 0; j < d; j += 8)
      for (size_t k = 0; k < 8; ++k) acc[k] += row[j + k] * v[j + k];
    y[i] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  }
}

// out = matrixᵀ · c + mean · weight.
void applyTranspose(const float* m, const float* c, const float* mean, float weight, size_t d, float* out) {
  for (size_t j = 0; j < d; ++j) out[j] = mean[j] * weight;
  for (size_t i = 0; i < d; ++i) {
    const float ci = c[i];
    if (ci == 0.f) continue;
    const float* row = m + i * d;
    for (size_t j = 0; j < d; ++j) out[j] += row[j] * ci;
  }
}

// One band's lattice point from its code at `bits` (1: the roots code of nq_e8_root.h).
void bandPoint(const uint8_t* code, int bits, float* o) {
  if (bits == 1) e8::decodeRoot(code[0], o);
  else groupPointOf(code, bits, o);
}

// Scale ⊙ lattice points of one vector in the transformed domain (0-bit bands zero).
void transformedPoint(const HeadTransform& t, const uint8_t* codes, float rho, float* c) {
  const size_t groups = static_cast<size_t>(t.headDim) / 8;
  for (size_t b = 0; b < groups; ++b) {
    float* o = c + 8 * b;
    const int r = t.rates[b];
    if (r == 0 || rho == 0.f) {
      for (int i = 0; i < 8; ++i) o[i] = 0.f;
      continue;
    }
    bandPoint(codes + t.codeOffset[b], r, o);
    const float s = rho * t.bandScale[b];
    for (int i = 0; i < 8; ++i) o[i] *= s;
  }
}

}  // namespace

size_t transformCodeBytes(const HeadTransform& t) {
  size_t n = 0;
  for (int b = 0; b < t.headDim / 8; ++b) n += t.rates[b];
  return n;
}

EncodeResult encodeTransformed(const HeadTransform& t, const float* in, size_t n, uint8_t* codes, uint16_t* scales) {
  const size_t d = static_cast<size_t>(t.headDim), groups = d / 8, cb = transformCodeBytes(t);
  for (size_t v = 0; v < n; ++v)
    for (size_t i = 0; i < d; ++i)
      if (nonFinite(in[v * d + i])) return {Status::NonFinite, v};
  const e8::EncodeTables& T = e8EncodeTables();
  uint32_t zeroCode[5] = {};  // the code of the zero group per rate (a zero-scale vector); 1 bit: the origin, 0
  const float zero[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int r = 2; r <= 4; ++r) zeroCode[r] = e8::encodeGroup(zero, r, T, e8::kAbsTable);
  double expected = 0;  // Σ 8 σ_b² over the coded bands
  for (size_t b = 0; b < groups; ++b)
    if (t.rates[b] > 0) expected += 8.0 * static_cast<double>(t.bandRms[b]) * t.bandRms[b];
  std::vector<float> x(d), y(d);
  for (size_t v = 0; v < n; ++v) {
    for (size_t i = 0; i < d; ++i) x[i] = clampTo(in[v * d + i], kInputClamp) - t.mean[i];
    applyMatrix(t.matrix, x.data(), d, y.data());
    double energy = 0;
    for (size_t b = 0; b < groups; ++b)
      if (t.rates[b] > 0)
        for (int i = 0; i < 8; ++i) energy += static_cast<double>(y[8 * b + i]) * y[8 * b + i];
    const double rho = expected > 0 ? std::sqrt(energy / expected) : 0.0;
    const uint16_t sc = rho >= 65504.0 ? kMaxFiniteHalf : floatToHalf(static_cast<float>(rho));
    const float r = halfToFloat(sc);
    scales[v] = sc;
    uint8_t* out = codes + v * cb;
    for (size_t b = 0; b < groups; ++b) {
      const int bits = t.rates[b];
      if (bits == 0) continue;
      uint8_t* c = out + t.codeOffset[b];
      if (r == 0.f) {
        storeCode(c, bits, zeroCode[bits]);
        continue;
      }
      const float inv = 1.0f / (r * t.bandScale[b]);
      float u[8];
      for (int i = 0; i < 8; ++i) u[i] = clampTo(y[8 * b + i] * inv, kGroupClamp);
      storeCode(c, bits, bits == 1 ? e8::encodeRoot(u) : e8::encodeGroup(u, bits, T, e8::kAbsTable));
    }
  }
  return {Status::Ok, 0};
}

namespace {

// Vectors [0, n) to the original domain as f32, each handed to `emit(v, row)`; one scratch for all.
template <typename Emit>
void decodeRows(const HeadTransform& t, const uint8_t* codes, const uint16_t* scales, size_t n, Emit emit) {
  const size_t d = static_cast<size_t>(t.headDim), cb = transformCodeBytes(t);
  std::vector<float> c(d), row(d);
  for (size_t v = 0; v < n; ++v) {
    transformedPoint(t, codes + v * cb, halfToFloat(scales[v]), c.data());
    applyTranspose(t.matrix, c.data(), t.mean, 1.f, d, row.data());
    emit(v, row.data());
  }
}

}  // namespace

void decodeTransformed(const HeadTransform& t, const uint8_t* codes, const uint16_t* scales, size_t n, float* out) {
  const size_t d = static_cast<size_t>(t.headDim);
  decodeRows(t, codes, scales, n, [&](size_t v, const float* row) {
    for (size_t i = 0; i < d; ++i) out[v * d + i] = row[i] + 0.0f;  // -0 -> +0, as the flat decoder
  });
}

void decodeTransformedF16(const HeadTransform& t, const uint8_t* codes, const uint16_t* scales, size_t n, uint16_t* out) {
  const size_t d = static_cast<size_t>(t.headDim);
  decodeRows(t, codes, scales, n, [&](size_t v, const float* row) {
    for (size_t i = 0; i < d; ++i) out[v * d + i] = floatToHalf(row[i]);
  });
}

float transformQuery(const HeadTransform& t, const float* q, float* qOut) {
  const size_t d = static_cast<size_t>(t.headDim);
  applyMatrix(t.matrix, q, d, qOut);
  for (size_t b = 0; b < d / 8; ++b)
    for (int i = 0; i < 8; ++i) qOut[8 * b + i] *= t.bandScale[b];
  float bias = 0.f;
  for (size_t i = 0; i < d; ++i) bias += q[i] * t.mean[i];
  return bias;
}

void untransformAccumulated(const HeadTransform& t, float* acc, float weight) {
  const size_t d = static_cast<size_t>(t.headDim);
  // Once per head and query row of every attention call: no allocation after a thread's first.
  thread_local std::vector<float> c;
  c.assign(acc, acc + d);
  for (size_t b = 0; b < d / 8; ++b)
    for (int i = 0; i < 8; ++i) c[8 * b + i] *= t.bandScale[b];
  applyTranspose(t.matrix, c.data(), t.mean, weight, d, acc);
}

}  // namespace nq
