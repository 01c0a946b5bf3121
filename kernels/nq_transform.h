// A calibrated transform of one (layer, KV head, K or V) (issue 26, docs/transform.md): instead of
// the seeded Hadamard rotation with equal bits per 8-element group, a basis fitted to the model's K/V
// (PCA, an 8-point Hadamard inside each band of 8 coefficients) and a per-group rate from
// {0,1,2,3,4} bits (1 bit: the E8 roots code of nq_e8_root.h; 2-4: the flat codec's E8 codes; the
// calibration allocates from {0,2,3,4}, src/transform/codec-distortion.ts ALLOCATION_RATES). Strong directions get more bits, weak ones fewer or none, and every vector still takes the
// same Σ rates = headDim / 8 * bits code bytes as the flat code: pages, layout and estimator are
// unchanged. The profile file (src/transform) supplies the arrays; the cache holds a copy.
//
// Encoding:  y = matrix · (x − mean); ρ² = Σ_b ‖y_b‖² / Σ_b 8 σ_b² over the coded bands (the vector's
// energy over its calibrated expectation), stored as the vector's FP16 scale; band b is the E8 code
// at rates[b] bits of y_b / (ρ · bandScale[b]), bandScale[b] = scaleFactor(rates[b]) · σ_b.
// Decoding:  x̂ = mean + matrixᵀ · (ρ · bandScale ⊙ point); a 0-bit band decodes to zero.
// Attention on codes: q·x̂ = q·mean + ρ · (bandScale ⊙ matrix·q) · point, so the query is transformed
// once per head and the constant q·mean is added to every coded key's logit.
#pragma once
#include <cstddef>
#include <cstdint>

namespace nq {

constexpr int kTransformRates[5] = {0, 1, 2, 3, 4};  // bits per element a band may take

struct HeadTransform {
  int headDim = 0;
  const float* mean = nullptr;       // [headDim]
  const float* matrix = nullptr;     // [headDim][headDim] row-major, orthonormal
  const float* bandRms = nullptr;    // [headDim / 8] σ_b, > 0
  const float* bandScale = nullptr;  // [headDim / 8] scaleFactor(rates[b]) · σ_b (0 for a 0-bit band)
  const uint8_t* rates = nullptr;    // [headDim / 8] each 0, 1, 2, 3 or 4
  // Byte offset of band b's code inside a vector's codes (Σ of the rates before it).
  const uint16_t* codeOffset = nullptr;  // [headDim / 8]
  // 8 × (the last coded band + 1): elements past it are always zero (trailing 0-bit bands).
  int activeDim = 0;
};

}  // namespace nq
