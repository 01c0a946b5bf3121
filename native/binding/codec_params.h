// The codec arguments (headDim, bits, rotate, seed) at info[at..at+3] of the codec bindings, each
// checked against the CPU codec's range (quantize/dequantize here; the lab's codec benchmark too).
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>

#include "binding/args.h"
#include "cpu/codec.h"

namespace nq {

// Vectors per worker below which parallelFor keeps a codec call on fewer threads.
constexpr size_t kMinVectorsPerThread = 256;

inline CodecParams readCodecParams(const Napi::CallbackInfo& info, size_t at) {
  return CodecParams{static_cast<int>(readInteger(info[at], "headDim", 8, kMaxHeadDim)), static_cast<int>(readInteger(info[at + 1], "bits", 2, 4)),
                     readBool(info[at + 2], "rotate"), static_cast<uint32_t>(readInteger(info[at + 3], "seed", 0, 0xFFFFFFFFll))};
}

}  // namespace nq
