// The inner loops of attention, one table per instruction-set level (native/cpu/isa.h). Each table is
// the same source (attention_ops.inc) compiled with that level's flags; attention.cc drives them.
// Rows are head vectors of `d` floats; a "point" row is a lattice point in codebook units (its FP16
// scale not applied), in the rotated domain.
#pragma once
#include <cstddef>
#include <cstdint>

#include "cpu/isa.h"

namespace nq {

struct AttentionOps {
  // out[t][0..d) = lattice point of codes row t (bits 2, 3 or 4; d / 8 * bits bytes a row), t < n.
  void (*decodePoints)(int bits, size_t d, const uint8_t* codes, size_t n, float* out);
  // The same for per-band rates (a calibrated transform, nq_transform.h): band g of a row of rowBytes
  // is rates[g] bytes at codeOffset[g]; a 0-bit band decodes to zero.
  void (*decodePointsRates)(const uint8_t* rates, const uint16_t* codeOffset, size_t d, size_t rowBytes, const uint8_t* codes, size_t n,
                            float* out);
  // out[i] = FP16 in[i] as float, i < count.
  void (*halfToFloat)(const uint16_t* in, size_t count, float* out);
  // logits[r * ldl + t] = scale * rowScale[t] * dot(q[r], rows[t]) (rowScale null: 1), r < R, t < n, over
  // the first `len` elements of rows of stride d (len a multiple of the level's register width, <= d:
  // a calibrated transform's trailing 0-bit bands are skipped).
  void (*dots)(const float* q, size_t R, const float* rows, size_t n, size_t d, size_t len, const float* rowScale, float scale,
               float* logits, size_t ldl);
  // acc[r][0..len) += sum_t w[r * ldw + t] * rows[t][0..len), r < R, t < n; rows and acc of stride d.
  void (*accumulate)(const float* w, size_t R, size_t ldw, const float* rows, size_t n, size_t d, size_t len, float* acc);
  // x[i] = exp(x[i]) for x[i] >= -87 and 0 below (masked logits are -inf), i < n; ~2 ulp.
  void (*expInPlace)(float* x, size_t n);
};

// The ops of `isa`, or of a narrower level when head_dim is not a multiple of its register width.
const AttentionOps& attentionOps(Isa isa, size_t headDim);

// Defined by each attention_ops_<isa>.cc (null when the level is not compiled in).
const AttentionOps* attentionOpsScalar();
const AttentionOps* attentionOpsAvx2();
const AttentionOps* attentionOpsAvx512();

}  // namespace nq
