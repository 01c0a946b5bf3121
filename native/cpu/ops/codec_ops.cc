// cpuEncode / cpuDecode: the CPU codec (codec.h) behind the EncodeLaunch / DecodeLaunch structs.
#include <string>

#include "cpu/codec.h"
#include "cpu/transform_codec.h"
#include "cache/nq_error.h"
#include "cpu/ops/cpu_ops.h"
#include "cache/scratch.h"
#include "nq_half.h"

namespace nq::ops {
namespace {

CodecParams codecParams(const CodecArgs& c, const char* op) {
  if (!codecSupports(c.headDim, c.bits))
    throw NqError("UNSUPPORTED", std::string(op) + ": head_dim " + std::to_string(c.headDim) + " with " + std::to_string(c.bits) +
                                     " bits is not supported by the CPU codec");
  // The CPU codec has its scale factor built in: a launch asking for another one would silently get
  // different codes than the CUDA kernel it is compared with.
  if (c.scaleFactor != scaleFactor(c.bits))
    throw NqError("INVALID_ARGUMENT", std::string(op) + ": scaleFactor must be the codec's " + std::to_string(scaleFactor(c.bits)) + " for " +
                                          std::to_string(c.bits) + " bits (use codecArgs())");
  return CodecParams{c.headDim, c.bits, c.rotate, c.seed};
}

// A transform with a matrix; its rates must fill exactly the flat code's bytes (the page layout).
bool calibrated(const CodecArgs& c) {
  if (!c.transform || !c.transform->matrix) return false;
  if (c.transform->headDim != c.headDim || transformCodeBytes(*c.transform) != static_cast<size_t>(c.headDim / 8 * c.bits))
    throw NqError("INVALID_ARGUMENT", "codec: the transform's head_dim or rates do not match the code (" + std::to_string(c.bits) + " bits)");
  return true;
}

}  // namespace

CodecArgs codecArgs(int headDim, int bits, bool rotate, uint32_t seed) {
  CodecArgs c;
  c.headDim = headDim;
  c.bits = bits;
  c.rotate = rotate;
  c.seed = seed;
  c.scaleFactor = scaleFactor(bits);
  return c;
}

void cpuEncode(const EncodeLaunch& a) {
  if (calibrated(a.codec)) {  // its own checks: the flat codec's support list (no 1 bit) does not apply
    if (a.vectors == 0) return;
    if (!a.input || !a.codes || !a.scales) throw NqError("INVALID_ARGUMENT", "encode: null pointer");
    // FP16 input is widened first, as the CPU store widens its residual rows (and the CUDA kernel its input).
    const float* in = static_cast<const float*>(a.input);
    Scratch<float> widened(a.inputF16 ? a.vectors * static_cast<size_t>(a.codec.headDim) : 0);
    if (a.inputF16) {
      for (size_t i = 0; i < widened.size(); ++i) widened[i] = halfToFloat(static_cast<const uint16_t*>(a.input)[i]);
      in = widened.data();
    }
    const EncodeResult r = encodeTransformed(*a.codec.transform, in, a.vectors, a.codes, a.scales);
    if (r.status == Status::NonFinite) throw NqError("INVALID_DATA", "non-finite value in KV row " + std::to_string(r.badVector));
    return;
  }
  const CodecParams p = codecParams(a.codec, "encode");
  if (a.vectors == 0) return;
  if (!a.input || !a.codes || !a.scales) throw NqError("INVALID_ARGUMENT", "encode: null pointer");
  const EncodeResult r = a.inputF16 ? encodeF16(p, static_cast<const uint16_t*>(a.input), 0, a.vectors, a.codes, a.scales)
                                    : encodeF32(p, static_cast<const float*>(a.input), 0, a.vectors, a.codes, a.scales);
  if (r.status == Status::NonFinite) throw NqError("INVALID_DATA", "non-finite value in KV row " + std::to_string(r.badVector));
  if (r.status != Status::Ok) throw NqError("NATIVE_ERROR", "encode failed");
}

void cpuDecode(const DecodeLaunch& a) {
  if (calibrated(a.codec)) {
    if (a.vectors == 0) return;
    if (!a.codes || !a.scales || !a.out) throw NqError("INVALID_ARGUMENT", "decode: null pointer");
    if (!a.unrotate) throw NqError("INVALID_ARGUMENT", "decode: a calibrated transform decodes to the original domain only");
    if (a.outF16) decodeTransformedF16(*a.codec.transform, a.codes, a.scales, a.vectors, static_cast<uint16_t*>(a.out));
    else decodeTransformed(*a.codec.transform, a.codes, a.scales, a.vectors, static_cast<float*>(a.out));
    return;
  }
  CodecParams p = codecParams(a.codec, "decode");
  if (a.vectors == 0) return;
  if (!a.codes || !a.scales || !a.out) throw NqError("INVALID_ARGUMENT", "decode: null pointer");
  p.rotate = p.rotate && a.unrotate;  // without the inverse rotation: scale * lattice point, rotated domain
  const Status s = a.outF16 ? decodeF16(p, a.codes, a.scales, 0, a.vectors, static_cast<uint16_t*>(a.out))
                            : decodeF32(p, a.codes, a.scales, 0, a.vectors, static_cast<float*>(a.out));
  if (s != Status::Ok) throw NqError("NATIVE_ERROR", "decode failed");
}

}  // namespace nq::ops
