#include "cache/transform_tables.h"

#include <cmath>
#include <cstring>
#include <string>

#include "cache/nq_error.h"
#include "nq_scale.h"

namespace nq {

size_t TransformTables::bytesFor(size_t layers, size_t kvHeads, size_t headDim) {
  const size_t n = layers * 2 * kvHeads, d = headDim, g = headDim / 8;
  return n * (4 * d + 4 * d * d + 4 * g + 4 * g + 2 * g + g + 1);
}

namespace {

std::string entryName(size_t i, size_t kvHeads) {
  const size_t layer = i / (2 * kvHeads), kv = (i / kvHeads) % 2, head = i % kvHeads;
  return std::string("transform of layer ") + std::to_string(layer) + (kv == 0 ? " keys" : " values") + ", head " + std::to_string(head);
}

bool allFinite(const float* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) return false;
  return true;
}

}  // namespace

TransformTables::TransformTables(const TransformArrays& a, int keyBits, int valueBits)
    : layers_(a.layers), kvHeads_(a.kvHeads), headDim_(a.headDim), keyBits_(keyBits), valueBits_(valueBits) {
  const size_t d = headDim_, g = d / 8, n = layers_ * 2 * kvHeads_;
  if (d == 0 || d % 8 != 0 || n == 0) throw NqError("INVALID_ARGUMENT", "transform: empty shape or head_dim not a multiple of 8");
  if (!a.mean || !a.matrix || !a.bandRms || !a.rates || !a.calibrated || !a.id) throw NqError("INVALID_ARGUMENT", "transform: missing arrays");
  std::memcpy(id_.data(), a.id, kTransformIdBytes);
  // Check everything before allocating: a bad profile leaves nothing behind.
  for (size_t i = 0; i < n; ++i) {
    const int bits = (i / kvHeads_) % 2 == 0 ? keyBits : valueBits;
    if (a.calibrated[i] > 1) throw NqError("INVALID_ARGUMENT", entryName(i, kvHeads_) + ": calibrated flag must be 0 or 1");
    if (bits < 1 || bits > 4) throw NqError("INVALID_ARGUMENT", "transform: bits must be 1 to 4");
    if (bits == 1 && !a.calibrated[i])
      throw NqError("INVALID_ARGUMENT", entryName(i, kvHeads_) + ": a 1-bit code must be calibrated (there is no flat 1-bit code)");
    if (!allFinite(a.mean + i * d, d) || !allFinite(a.matrix + i * d * d, d * d))
      throw NqError("INVALID_ARGUMENT", entryName(i, kvHeads_) + ": mean or matrix holds a non-finite value");
    size_t sum = 0;
    for (size_t b = 0; b < g; ++b) {
      const uint8_t r = a.rates[i * g + b];
      const float s = a.bandRms[i * g + b];
      if (r > 4) throw NqError("INVALID_ARGUMENT", entryName(i, kvHeads_) + ": rates must be 0, 1, 2, 3 or 4");
      if (!(std::isfinite(s) && s > 0)) throw NqError("INVALID_ARGUMENT", entryName(i, kvHeads_) + ": band RMS must be finite and > 0");
      sum += r;
    }
    if (sum != g * static_cast<size_t>(bits))
      throw NqError("INVALID_ARGUMENT", entryName(i, kvHeads_) + ": rates sum to " + std::to_string(sum) + " bytes, the " + std::to_string(bits) +
                                            "-bit code takes " + std::to_string(g * bits) + " (calibrate for this preset's bits)");
  }
  const size_t bytes = bytesFor(layers_, kvHeads_, d);
  if (!buffer_.allocate(bytes, oneCategory(MemCategory::Transform, bytes)))
    throw NqError("OUT_OF_MEMORY", "could not allocate " + std::to_string(bytes) + " bytes for the calibrated transform: " + allocationFailureReason());
  float* mean = reinterpret_cast<float*>(buffer_.data());
  float* matrix = mean + n * d;
  float* bandRms = matrix + n * d * d;
  float* bandScale = bandRms + n * g;
  uint16_t* offsets = reinterpret_cast<uint16_t*>(bandScale + n * g);
  uint8_t* rates = reinterpret_cast<uint8_t*>(offsets + n * g);
  uint8_t* calibrated = rates + n * g;
  std::memcpy(mean, a.mean, n * d * 4);
  std::memcpy(matrix, a.matrix, n * d * d * 4);
  std::memcpy(bandRms, a.bandRms, n * g * 4);
  std::memcpy(rates, a.rates, n * g);
  std::memcpy(calibrated, a.calibrated, n);
  entries_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    uint16_t at = 0;
    for (size_t b = 0; b < g; ++b) {
      const uint8_t r = rates[i * g + b];
      bandScale[i * g + b] = r == 0 ? 0.f : scaleFactor(r) * bandRms[i * g + b];
      offsets[i * g + b] = at;
      at = static_cast<uint16_t>(at + r);
    }
    HeadTransform& t = entries_[i];
    t.headDim = static_cast<int>(d);
    if (!calibrated[i]) continue;  // flat: no matrix, the seeded Hadamard code
    t.mean = mean + i * d;
    t.matrix = matrix + i * d * d;
    t.bandRms = bandRms + i * g;
    t.bandScale = bandScale + i * g;
    t.rates = rates + i * g;
    t.codeOffset = offsets + i * g;
    for (size_t b = 0; b < g; ++b)
      if (rates[i * g + b] > 0) t.activeDim = static_cast<int>(8 * (b + 1));
  }
}

}  // namespace nq
