// Float tables that turn a lattice code into its point: shared by the codec's decoder and the fused
// attention kernels (native/cpu/attention_ops.inc), so both read one definition of the code layout.
//
// A 16-bit 2-bit-stage code is [shift:1][neg7:7][abs index:8]; coordinate i of the point is
// (abs[idx][i] with its sign bit xored by sign[neg][i]) + (shift ? -0.25 : +0.25), where the eighth
// sign bit is the parity fix of the seven stored ones. 3-bit codes add fine2[(code >> 16) & 0xFF];
// 4-bit codes add 0.125 * e8::hostFine4Table().v[code >> 16].
#pragma once
#include <cstdint>

#include "../../kernels/nq_e8_encode.h"

namespace nq {

struct DecodeTables {
  alignas(32) float abs[e8::kAbsEntries][8];
  alignas(32) uint32_t sign[256][8];
  uint8_t parity[e8::kAbsEntries];
  alignas(32) float fine2[256][8];  // 3-bit fine points v(k), m = 2
};

// Built once (thread-safe static).
const DecodeTables& decodeTables();

// The 2-bit point of every 16-bit code, times 4 (odd integers in [-15, 15]): one 8-byte load per
// group instead of the bit manipulation above (512 KiB, L2-resident while attention runs).
const int8_t (*point2x4Table())[8];

// e8::hostFine4Table().v: the 65,536 4-bit fine points in units of 1/8.
const int8_t (*fine4Points())[8];

// The 1-bit band code's point (e8::decodeRoot, nq_e8_root.h) of every byte value (241..255: origin).
const float (*rootPoints())[8];

}  // namespace nq
