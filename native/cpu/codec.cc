#include "codec.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "codec_tables.h"
#include "hadamard.h"
#include "../../kernels/nq_e8_root.h"
#include "../../kernels/nq_scale.h"

namespace nq {

const DecodeTables& decodeTables() {
  static const DecodeTables t = [] {
    DecodeTables x{};
    for (int e = 0; e < e8::kAbsEntries; ++e) {
      const uint32_t entry = e8::kAbsTable[e];
      for (int i = 0; i < 8; ++i) x.abs[e][i] = static_cast<float>((entry >> (2 * i)) & 3u) + 0.5f;
      x.parity[e] = static_cast<uint8_t>(e8::absParity(entry));
    }
    for (int s = 0; s < 256; ++s)
      for (int i = 0; i < 8; ++i) x.sign[s][i] = ((s >> i) & 1) ? 0x80000000u : 0u;
    for (uint32_t k = 0; k < 256; ++k) e8::finePoint(k, 2, x.fine2[k]);
    return x;
  }();
  return t;
}

const int8_t (*fine4Points())[8] { return e8::hostFine4Table().v; }

const float (*rootPoints())[8] {
  struct Table {
    alignas(32) float p[256][8];
  };
  static const Table table = [] {
    Table t{};
    for (uint32_t c = 0; c < 256; ++c) e8::decodeRoot(c, t.p[c]);
    return t;
  }();
  return table.p;
}

namespace {
inline void point2(uint32_t code, const DecodeTables& t, float p[8]);
}

const int8_t (*point2x4Table())[8] {
  static const std::vector<int8_t> table = [] {
    std::vector<int8_t> x(65536 * 8);
    const DecodeTables& t = decodeTables();
    for (uint32_t code = 0; code < 65536; ++code) {
      float p[8];
      point2(code, t, p);
      for (int i = 0; i < 8; ++i) x[code * 8 + i] = static_cast<int8_t>(std::lround(4.0f * p[i]));
    }
    return x;
  }();
  return reinterpret_cast<const int8_t(*)[8]>(table.data());
}

namespace {

// The per-rate scale factors, the input and group clamps (kInputClamp, kGroupClamp) and chooseScale live in kernels/nq_scale.h,
// shared with the CUDA encoder. Both clamp bounds lie far outside anything a non-saturated scale produces: |y| <= sqrt(headDim) / k, times
// at most 1.5 when the scale is an FP16 subnormal, < 150.

bool validParams(const CodecParams& p) { return codecSupports(p.headDim, p.bits); }

// The 2-bit point of a code, from the float tables.
inline void point2(uint32_t code, const DecodeTables& t, float p[8]) {
  const uint32_t idx = code & 0xFFu;
  const uint32_t neg7 = (code >> 8) & 0x7Fu;
  const uint32_t neg = neg7 | (((static_cast<uint32_t>(__builtin_popcount(neg7)) & 1u) ^ t.parity[idx]) << 7);
  const float shift = (code & 0x8000u) ? -0.25f : 0.25f;
  const float* a = t.abs[idx];
  const uint32_t* s = t.sign[neg];
  for (int i = 0; i < 8; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &a[i], 4);
    bits ^= s[i];
    float v;
    std::memcpy(&v, &bits, 4);
    p[i] = v + shift;
  }
}

inline uint32_t loadCode(const uint8_t* c, int bits) {
  uint32_t w = 0;
  for (int j = 0; j < bits; ++j) w |= static_cast<uint32_t>(c[j]) << (8 * j);
  return w;
}

inline void storeCode(uint8_t* c, int bits, uint32_t w) {
  for (int j = 0; j < bits; ++j) c[j] = static_cast<uint8_t>(w >> (8 * j));
}

// Lattice point (codebook units) of one group at any rate.
inline void groupPoint(uint32_t code, int bits, const DecodeTables& t, float p[8]) {
  point2(code, t, p);
  if (bits == 3) {
    const float* v = t.fine2[(code >> 16) & 0xFFu];
    for (int i = 0; i < 8; ++i) p[i] += v[i];
  } else if (bits == 4) {
    const int8_t* v = e8::hostFine4Table().v[code >> 16];
    for (int i = 0; i < 8; ++i) p[i] += 0.125f * static_cast<float>(v[i]);
  }
}

// Scales and lattice points of one vector in the rotated domain.
void decodeVectorRotated(const CodecParams& p, const DecodeTables& t, const uint8_t* codes, float s, float* out) {
  const int groups = p.headDim / 8;
  for (int g = 0; g < groups; ++g) {
    float pt[8];
    groupPoint(loadCode(codes + static_cast<size_t>(g) * p.bits, p.bits), p.bits, t, pt);
    for (int i = 0; i < 8; ++i) out[8 * g + i] = s * pt[i];
  }
}

template <typename T>
inline bool isNonFinite(T v);
template <>
inline bool isNonFinite<float>(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return (b & 0x7F800000u) == 0x7F800000u;
}
template <>
inline bool isNonFinite<uint16_t>(uint16_t v) {
  return halfIsNonFinite(v);
}

inline float toFloat(float v) { return v; }
inline float toFloat(uint16_t v) { return halfToFloat(v); }
// Ternaries compile to minss/maxss (std::fmin is a libm call without -ffast-math).
inline float clampTo(float v, float bound) {
  v = v < bound ? v : bound;
  return v > -bound ? v : -bound;
}

template <typename In>
EncodeResult encodeImpl(const CodecParams& p, const In* in, size_t begin, size_t end, uint8_t* codes, uint16_t* scales) {
  if (!validParams(p) || begin > end) return {Status::InvalidArgument, 0};
  if (begin == end) return {Status::Ok, 0};
  if (!in || !codes || !scales) return {Status::InvalidArgument, 0};
  const size_t d = static_cast<size_t>(p.headDim);
  for (size_t v = begin; v < end; ++v) {
    const In* x = in + v * d;
    bool bad = false;
    for (size_t i = 0; i < d; ++i) bad |= isNonFinite(x[i]);
    if (bad) return {Status::NonFinite, v};
  }
  const e8::EncodeTables& T = e8EncodeTables();
  const size_t codeBytes = codeBytesPerVector(p);
  const int groups = p.headDim / 8;
  const float factor = scaleFactor(p.bits);
  std::vector<float> buf(d), signs;
  if (p.rotate) {
    signs.resize(d);
    rotationSigns(p.seed, p.headDim, signs.data());
  }
  const float zero[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const uint32_t zeroCode = e8::encodeGroup(zero, p.bits, T, e8::kAbsTable);
  for (size_t v = begin; v < end; ++v) {
    const In* x = in + v * d;
    for (size_t i = 0; i < d; ++i) buf[i] = clampTo(toFloat(x[i]), kInputClamp);
    if (p.rotate) rotateForward(buf.data(), p.headDim, signs.data());
    const uint16_t sc = chooseScale(buf.data(), p.headDim, factor);
    const float s = halfToFloat(sc);
    scales[v] = sc;
    uint8_t* out = codes + v * codeBytes;
    if (s == 0.0f) {
      for (int g = 0; g < groups; ++g) storeCode(out + g * p.bits, p.bits, zeroCode);
      continue;
    }
    const float inv = 1.0f / s;
    for (int g = 0; g < groups; ++g) {
      float y[8];
      for (int i = 0; i < 8; ++i) y[i] = clampTo(buf[8 * g + i] * inv, kGroupClamp);
      storeCode(out + g * p.bits, p.bits, e8::encodeGroup(y, p.bits, T, e8::kAbsTable));
    }
  }
  return {Status::Ok, 0};
}

inline void store(float* o, float v) { *o = v + 0.0f; }  // + 0 turns -0 into +0
inline void store(uint16_t* o, float v) { *o = floatToHalf(v + 0.0f); }

template <typename Out>
Status decodeImpl(const CodecParams& p, const uint8_t* codes, const uint16_t* scales, size_t begin, size_t end, Out* out) {
  if (!validParams(p) || begin > end) return Status::InvalidArgument;
  if (begin == end) return Status::Ok;
  if (!codes || !scales || !out) return Status::InvalidArgument;
  const DecodeTables& t = decodeTables();
  const size_t d = static_cast<size_t>(p.headDim);
  const size_t codeBytes = codeBytesPerVector(p);
  std::vector<float> buf(d), signs;
  if (p.rotate) {
    signs.resize(d);
    rotationSigns(p.seed, p.headDim, signs.data());
  }
  for (size_t v = begin; v < end; ++v) {
    Out* o = out + v * d;
    const float s = halfToFloat(scales[v]);
    if (s == 0.0f) {
      for (size_t i = 0; i < d; ++i) store(o + i, 0.0f);
      continue;
    }
    decodeVectorRotated(p, t, codes + v * codeBytes, s, buf.data());
    if (p.rotate) rotateInverse(buf.data(), p.headDim, signs.data());
    for (size_t i = 0; i < d; ++i) store(o + i, buf[i]);
  }
  return Status::Ok;
}

}  // namespace

bool codecSupports(int headDim, int bits) {
  return (bits == 2 || bits == 3 || bits == 4) && headDim >= 8 && headDim <= kMaxHeadDim && headDim % 8 == 0;
}

size_t codeBytesPerVector(const CodecParams& p) { return static_cast<size_t>(p.headDim / 8) * static_cast<size_t>(p.bits); }

void groupPointOf(const uint8_t* code, int bits, float point[8]) { groupPoint(loadCode(code, bits), bits, decodeTables(), point); }

const e8::EncodeTables& e8EncodeTables() {
  static const e8::EncodeTables t = [] {
    e8::EncodeTables x;
    e8::buildEncodeTables(e8::kAbsTable, x);  // cannot fail for kAbsTable (codec_check verifies)
    return x;
  }();
  return t;
}

EncodeResult encodeF32(const CodecParams& p, const float* in, size_t begin, size_t end, uint8_t* codes, uint16_t* scales) {
  return encodeImpl(p, in, begin, end, codes, scales);
}
EncodeResult encodeF16(const CodecParams& p, const uint16_t* in, size_t begin, size_t end, uint8_t* codes, uint16_t* scales) {
  return encodeImpl(p, in, begin, end, codes, scales);
}
Status decodeF32(const CodecParams& p, const uint8_t* codes, const uint16_t* scales, size_t begin, size_t end, float* out) {
  return decodeImpl(p, codes, scales, begin, end, out);
}
Status decodeF16(const CodecParams& p, const uint8_t* codes, const uint16_t* scales, size_t begin, size_t end, uint16_t* out) {
  return decodeImpl(p, codes, scales, begin, end, out);
}

Status rotateVector(const CodecParams& p, float* v) {
  if (!validParams(p) || !v) return Status::InvalidArgument;
  if (!p.rotate) return Status::Ok;
  std::vector<float> signs(static_cast<size_t>(p.headDim));
  rotationSigns(p.seed, p.headDim, signs.data());
  rotateForward(v, p.headDim, signs.data());
  return Status::Ok;
}

Status unrotateVector(const CodecParams& p, float* v) {
  if (!validParams(p) || !v) return Status::InvalidArgument;
  if (!p.rotate) return Status::Ok;
  std::vector<float> signs(static_cast<size_t>(p.headDim));
  rotationSigns(p.seed, p.headDim, signs.data());
  rotateInverse(v, p.headDim, signs.data());
  return Status::Ok;
}

Status decodeRotated(const CodecParams& p, const uint8_t* vectorCodes, uint16_t scale, float* out) {
  if (!validParams(p) || !vectorCodes || !out) return Status::InvalidArgument;
  decodeVectorRotated(p, decodeTables(), vectorCodes, halfToFloat(scale), out);
  for (int i = 0; i < p.headDim; ++i) out[i] += 0.0f;
  return Status::Ok;
}

namespace {
float dotOne(const CodecParams& p, const DecodeTables& t, const float* qRot, const uint8_t* vectorCodes, uint16_t scale) {
  const int groups = p.headDim / 8;
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int g = 0; g < groups; ++g) {
    float pt[8];
    groupPoint(loadCode(vectorCodes + static_cast<size_t>(g) * p.bits, p.bits), p.bits, t, pt);
    for (int i = 0; i < 8; ++i) acc[i] += qRot[8 * g + i] * pt[i];
  }
  float s = 0.0f;
  for (int i = 0; i < 8; ++i) s += acc[i];
  return s * halfToFloat(scale);
}
}  // namespace

float dotRotated(const CodecParams& p, const float* qRot, const uint8_t* vectorCodes, uint16_t scale) {
  if (!validParams(p) || !qRot || !vectorCodes) return 0.0f;
  return dotOne(p, decodeTables(), qRot, vectorCodes, scale);
}

Status dotRotatedRange(const CodecParams& p, const float* qRot, const uint8_t* codes, const uint16_t* scales,
                       size_t begin, size_t end, float* scores) {
  if (!validParams(p) || begin > end) return Status::InvalidArgument;
  if (begin == end) return Status::Ok;
  if (!qRot || !codes || !scales || !scores) return Status::InvalidArgument;
  const DecodeTables& t = decodeTables();
  const size_t cb = codeBytesPerVector(p);
  for (size_t v = begin; v < end; ++v) scores[v - begin] = dotOne(p, t, qRot, codes + v * cb, scales[v]);
  return Status::Ok;
}

}  // namespace nq
