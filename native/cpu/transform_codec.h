// The E8 codec under a calibrated transform (kernels/nq_transform.h): encode and decode head vectors,
// and the two per-head steps attention on codes needs (the query into the transformed domain, the
// accumulated values back out). The CPU oracle of the transform; the flat codec is cpu/codec.h.
#pragma once
#include <cstddef>
#include <cstdint>

#include "cpu/codec.h"
#include "nq_transform.h"

namespace nq {

// Vectors [0, n) of `in` (f32 rows of headDim) -> codes (Σ rates bytes each) and FP16 scales ρ. Every
// vector is checked for NaN/Inf before anything is written (NonFinite names the first bad one).
EncodeResult encodeTransformed(const HeadTransform& t, const float* in, size_t n, uint8_t* codes, uint16_t* scales);

// The inverse, to the original domain: f32 rows, or FP16 bits when `outF16`.
void decodeTransformed(const HeadTransform& t, const uint8_t* codes, const uint16_t* scales, size_t n, float* out);
void decodeTransformedF16(const HeadTransform& t, const uint8_t* codes, const uint16_t* scales, size_t n, uint16_t* out);

// qOut = bandScale ⊙ (matrix · q): dotted with a code's lattice points and times its ρ, it gives
// q · (x̂ − mean). Returns q · mean, the part every coded key shares.
float transformQuery(const HeadTransform& t, const float* q, float* qOut);

// acc holds Σ_t w_t ρ_t point_t of attended codes, `weight` = Σ_t w_t: acc becomes
// matrixᵀ · (bandScale ⊙ acc) + mean · weight, i.e. Σ_t w_t x̂_t.
void untransformAccumulated(const HeadTransform& t, float* acc, float weight);

// Code bytes of one vector: Σ rates.
size_t transformCodeBytes(const HeadTransform& t);

}  // namespace nq
