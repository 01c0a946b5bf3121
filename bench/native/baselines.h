// Scalar baselines for the codec benchmark (lab only: codec_check and the lab binding), at the same rate and with the same side information:
// the same rotation (sign flip + Hadamard), one FP16 scale per vector, `bits` bits per element
// (element i of a vector in bits i*bits .. i*bits+bits-1 of its little-endian code stream).
//   Uniform:  scale = absmax; 2^bits cells of width 2*scale/2^bits over [-scale, scale], midpoints.
//   LloydMax: scale = RMS; the Lloyd-Max (MSE-optimal) levels of N(0, 1), computed at startup.
#pragma once
#include <cstddef>
#include <cstdint>

#include "cpu/codec.h"

namespace nq {

enum class ScalarQuantizer { Uniform, LloydMax };

EncodeResult scalarEncodeF32(ScalarQuantizer q, const CodecParams& p, const float* in, size_t begin, size_t end,
                             uint8_t* codes, uint16_t* scales);
EncodeResult scalarEncodeF16(ScalarQuantizer q, const CodecParams& p, const uint16_t* in, size_t begin, size_t end,
                             uint8_t* codes, uint16_t* scales);
Status scalarDecodeF32(ScalarQuantizer q, const CodecParams& p, const uint8_t* codes, const uint16_t* scales,
                       size_t begin, size_t end, float* out);
Status scalarDecodeF16(ScalarQuantizer q, const CodecParams& p, const uint8_t* codes, const uint16_t* scales,
                       size_t begin, size_t end, uint16_t* out);

// The 2^bits Lloyd-Max levels for a unit Gaussian, ascending (bits 2..4).
const float* lloydMaxLevels(int bits);

}  // namespace nq
