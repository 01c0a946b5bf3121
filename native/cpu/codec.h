// CPU reference of the E8 codec: head vectors <-> packed lattice codes + one FP16 scale each.
// The oracle for the CUDA kernels (same codebook header, same byte layout; docs/format.md).
//
// Plain functions over an index range [begin, end) of vectors, so callers can split work across
// threads; they never throw and never abort: problems come back as a Status.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../../kernels/nq_e8_encode.h"
#include "../../kernels/nq_format.h"
#include "../../kernels/nq_half.h"
#include "../../kernels/nq_scale.h"  // scaleFactor(bits): the scale is scaleFactor(bits) * RMS of the rotated vector

namespace nq {

enum class Status { Ok, InvalidArgument, NonFinite };

struct CodecParams {
  int headDim;    // a multiple of 8, 8..kMaxHeadDim
  int bits;       // 2, 3 or 4 bits per element
  bool rotate;    // sign flip + Hadamard before quantizing (recorded in the tensor header)
  uint32_t seed;  // seed of the sign flip (ignored when rotate is false)
};

struct EncodeResult {
  Status status;
  size_t badVector;  // with NonFinite: index of the first vector holding NaN or Inf
};

constexpr int kMaxHeadDim = format::kMaxHeadDim;

// The support list: which (headDim, bits) the codec handles.
bool codecSupports(int headDim, int bits);

// Bytes of codes per vector: headDim / 8 * bits.
size_t codeBytesPerVector(const CodecParams& p);

// Encodes vectors [begin, end) of `in` (row-major, headDim values per vector). Vector i writes
// codes[i * codeBytesPerVector ...] and scales[i] (FP16 bits). Every vector of the range is checked
// for NaN/Inf before anything is written: on NonFinite nothing is written.
EncodeResult encodeF32(const CodecParams& p, const float* in, size_t begin, size_t end, uint8_t* codes, uint16_t* scales);
EncodeResult encodeF16(const CodecParams& p, const uint16_t* in, size_t begin, size_t end, uint8_t* codes, uint16_t* scales);

// Decodes vectors [begin, end) into `out` (headDim values per vector, same indexing as encode).
// A zero scale decodes to +0 exactly. Returns InvalidArgument only for unsupported params.
Status decodeF32(const CodecParams& p, const uint8_t* codes, const uint16_t* scales, size_t begin, size_t end, float* out);
Status decodeF16(const CodecParams& p, const uint8_t* codes, const uint16_t* scales, size_t begin, size_t end, uint16_t* out);

// ---- the rotated domain, for attention on codes ----------------------------------------------------
// rotateVector: v -> H D v (in place, the transform the encoder applies); unrotateVector inverts it.
// No-ops when p.rotate is false. Dot products are preserved: q . x = rotate(q) . rotate(x).
Status rotateVector(const CodecParams& p, float* v);
Status unrotateVector(const CodecParams& p, float* v);

// One vector's codes (codeBytesPerVector bytes) -> scale * lattice points, still rotated.
Status decodeRotated(const CodecParams& p, const uint8_t* vectorCodes, uint16_t scale, float* out);

// rotate(q) . rotate(x_hat) for one encoded vector, i.e. q . x_hat; qRot = rotateVector(q).
float dotRotated(const CodecParams& p, const float* qRot, const uint8_t* vectorCodes, uint16_t scale);

// scores[i - begin] = dotRotated(qRot, vector i) for vectors [begin, end) of a codes/scales array
// (attention logits against encoded keys, before the 1/sqrt(d) factor).
Status dotRotatedRange(const CodecParams& p, const float* qRot, const uint8_t* codes, const uint16_t* scales,
                       size_t begin, size_t end, float* scores);

// The lattice point (codebook units) of one 8-element group's code of `bits` bytes at `code`.
void groupPointOf(const uint8_t* code, int bits, float point[8]);

// The encoder's search tables (built once, thread-safe); the CUDA host code uploads these bytes.
const e8::EncodeTables& e8EncodeTables();

}  // namespace nq
