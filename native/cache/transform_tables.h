// A profile's calibrated transforms (kernels/nq_transform.h) for one (key bits, value bits), one per
// (layer, K|V, KV head), held in one allocation from the accounting allocator (category "transform").
// Built from the arrays of a profile (src/transform): the key entries carry the rates of the key
// budget, the value entries those of the value budget. An entry the calibration left flat (its guard
// found no gain) has no matrix: that head uses the seeded Hadamard code as without a profile.
// Immutable once built; shared by every cache built with it (binding/transform_binding.h); a
// serialized cache records its id, not the tables.
#pragma once
#include <cstddef>
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "memory/allocator.h"
#include "nq_transform.h"

namespace nq {

// The arrays as the binding and the serialized cache carry them, [layers][2][kvHeads] order (kv 0
// keys, 1 values): mean [.][d], matrix [.][d][d], bandRms [.][d/8], rates [.][d/8] (for the entry's
// budget), calibrated [.] (0: flat).
struct TransformArrays {
  size_t layers = 0, kvHeads = 0, headDim = 0;
  const float* mean = nullptr;
  const float* matrix = nullptr;
  const float* bandRms = nullptr;
  const uint8_t* rates = nullptr;
  const uint8_t* calibrated = nullptr;
  // What identifies these tables (src/runtime/transform-tables.ts: SHA-256 of the arrays and bits):
  // a serialized cache records it instead of the tables, and is loaded only with tables of the same id.
  const uint8_t* id = nullptr;  // kTransformIdBytes
};

constexpr size_t kTransformIdBytes = 32;

class TransformTables {
 public:
  // Checks every array (finite, σ > 0, rates in {0,1,2,3,4} summing to d/8 · bits of the entry's K or V
  // budget) and copies them; throws INVALID_ARGUMENT naming the entry, OUT_OF_MEMORY.
  TransformTables(const TransformArrays& a, int keyBits, int valueBits);

  size_t layers() const { return layers_; }
  size_t kvHeads() const { return kvHeads_; }
  size_t headDim() const { return headDim_; }
  int keyBits() const { return keyBits_; }
  int valueBits() const { return valueBits_; }
  // The [kvHeads] entries of one layer's keys (kv 0) or values (kv 1).
  const HeadTransform* heads(size_t layer, size_t kv) const { return entries_.data() + (layer * 2 + kv) * kvHeads_; }
  const HeadTransform* head(size_t layer, size_t kv, size_t h) const {
    const HeadTransform* t = heads(layer, kv) + h;
    return t->matrix ? t : nullptr;
  }
  size_t bytes() const { return buffer_.size(); }
  // The one buffer every entry's arrays point into (the CUDA cache copies it to the device verbatim).
  const uint8_t* data() const { return buffer_.data(); }
  size_t entryCount() const { return entries_.size(); }
  const std::array<uint8_t, kTransformIdBytes>& id() const { return id_; }

  // Bytes the tables take for a shape (layout.ts transformBytes): per entry mean, matrix, bandRms,
  // bandScale (f32), code offsets (u16), rates (u8) and the calibrated flag (u8), packed in that order.
  static size_t bytesFor(size_t layers, size_t kvHeads, size_t headDim);

 private:
  size_t layers_, kvHeads_, headDim_;
  int keyBits_, valueBits_;
  std::array<uint8_t, kTransformIdBytes> id_{};
  HostBuffer buffer_;
  std::vector<HeadTransform> entries_;
};

}  // namespace nq
