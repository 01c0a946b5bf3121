// The lab's native functions, built into the addon only with NEXUSQUANT_LAB=ON (bench/native/
// CMakeLists.txt; never in the published package or its prebuilt): codecBenchmark (E8 against the
// scalar baselines, `nexusquant bench codec` from a clone) and, in CUDA builds, cudaBench (kernel
// timings for bench/gpu). TypeScript: bench/native/lab-binding.ts.
#include <napi.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "baselines.h"
#include "binding/codec_params.h"
#include "binding/errors.h"
#include "cpu/codec.h"
#include "cpu/parallel.h"

#if defined(NQ_WITH_CUDA)
#include "binding/cuda_status.h"
#include "binding/op_options.h"
#include "cuda_bench.h"
#include "nq_scale.h"
#endif

namespace nq {
namespace {

// codecBenchmark(quantizer, data f32, headDim, bits, rotate, seed) -> { reconstruction, encodeSeconds, decodeSeconds }
// For the lab's `nexusquant bench codec`: E8 and the scalar baselines through the same threads and timing.
Napi::Value codecBenchmark(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string quantizer = info[0].As<Napi::String>().Utf8Value();
  Napi::Float32Array data = info[1].As<Napi::Float32Array>();
  const CodecParams p = readCodecParams(info, 2);
  if (!codecSupports(p.headDim, p.bits)) throwJs(env, "UNSUPPORTED", "headDim/bits not supported by the codec");
  if (quantizer != "e8" && quantizer != "uniform" && quantizer != "lloyd-max") throwJs(env, "INVALID_ARGUMENT", "quantizer must be e8, uniform or lloyd-max");
  const size_t d = static_cast<size_t>(p.headDim), vectors = data.ElementLength() / d, cb = codeBytesPerVector(p);
  std::vector<uint8_t> codes(vectors * cb);
  std::vector<uint16_t> scales(vectors);
  Napi::Float32Array out = Napi::Float32Array::New(env, vectors * d);
  const float* in = data.Data();
  float* o = out.Data();
  const ScalarQuantizer sq = quantizer == "uniform" ? ScalarQuantizer::Uniform : ScalarQuantizer::LloydMax;
  const bool e8 = quantizer == "e8";
  const auto t0 = std::chrono::steady_clock::now();
  parallelFor(vectors, kMinVectorsPerThread, [&](size_t b, size_t e) {
    if (e8) encodeF32(p, in + b * d, 0, e - b, codes.data() + b * cb, scales.data() + b);
    else scalarEncodeF32(sq, p, in + b * d, 0, e - b, codes.data() + b * cb, scales.data() + b);
  });
  const auto t1 = std::chrono::steady_clock::now();
  parallelFor(vectors, kMinVectorsPerThread, [&](size_t b, size_t e) {
    if (e8) decodeF32(p, codes.data() + b * cb, scales.data() + b, 0, e - b, o + b * d);
    else scalarDecodeF32(sq, p, codes.data() + b * cb, scales.data() + b, 0, e - b, o + b * d);
  });
  const auto t2 = std::chrono::steady_clock::now();
  Napi::Object r = Napi::Object::New(env);
  r.Set("reconstruction", out);
  r.Set("encodeSeconds", std::chrono::duration<double>(t1 - t0).count());
  r.Set("decodeSeconds", std::chrono::duration<double>(t2 - t1).count());
  return r;
}

#if defined(NQ_WITH_CUDA)
using opargs::boolOf;
using opargs::intOf;
using opargs::numOf;

void check(Napi::Env env, const cuda::CudaStatus& st) {
  if (!st.ok()) throwCudaStatus(env, st);
}

Napi::Value benchToJs(Napi::Env env, const cuda::BenchResult& r) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Array ms = Napi::Array::New(env, r.ms.size());
  for (uint32_t i = 0; i < r.ms.size(); ++i) ms.Set(i, r.ms[i]);
  o.Set("ms", ms);
  o.Set("bytesRead", static_cast<double>(r.bytesRead));
  o.Set("bytesWritten", static_cast<double>(r.bytesWritten));
  return o;
}

// cudaBench(kind, options): kind "copy" | "encode" | "decode" | "attention"; options per kind in bench/gpu/driver.mjs.
Napi::Value cudaBench(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireCudaDevice(env);
  const std::string kind = info[0].As<Napi::String>().Utf8Value();
  Napi::Object o = info[1].As<Napi::Object>();
  const int warmup = intOf(o, "warmup", 5), reps = intOf(o, "reps", 50), buffers = intOf(o, "buffers", 4);
  cuda::BenchResult r;
  if (kind == "copy") {
    check(env, cuda::benchCopy(static_cast<size_t>(numOf(o, "bytes")), buffers, warmup, reps, r));
  } else if (kind == "encode" || kind == "decode") {
    cuda::CodecArgs c;
    c.headDim = intOf(o, "headDim", 128);
    c.bits = intOf(o, "bits", 2);
    c.rotate = true;
    c.seed = static_cast<uint32_t>(numOf(o, "seed"));
    c.scaleFactor = scaleFactor(c.bits);
    const bool f16 = boolOf(o, "f16", true);
    const size_t vectors = static_cast<size_t>(numOf(o, "vectors"));
    check(env, kind == "encode" ? cuda::benchEncode(c, f16, vectors, buffers, warmup, reps, r) : cuda::benchDecode(c, f16, vectors, buffers, warmup, reps, r));
  } else if (kind == "attention") {
    cuda::AttentionBenchShape s;
    s.batch = intOf(o, "batch", 1);
    s.kvHeads = intOf(o, "kvHeads", 8);
    s.queryHeads = intOf(o, "queryHeads", 32);
    s.headDim = intOf(o, "headDim", 128);
    s.tokens = intOf(o, "tokens", 4096);
    s.keyBits = intOf(o, "keyBits", 2);
    s.valueBits = intOf(o, "valueBits", 2);
    s.pageTokens = intOf(o, "pageTokens", 64);
    s.residualTokens = intOf(o, "residualTokens", 0);
    s.fp16Reference = boolOf(o, "fp16Reference");
    s.splitTokens = intOf(o, "splitTokens");
    check(env, cuda::benchAttention(s, warmup, reps, r));
  } else {
    throwJs(env, "INVALID_ARGUMENT", "cudaBench: unknown kind " + kind);
  }
  return benchToJs(env, r);
}
#endif

}  // namespace

void registerLab(Napi::Env env, Napi::Object exports) {
  exports.Set("codecBenchmark", Napi::Function::New(env, codecBenchmark, "codecBenchmark"));
#if defined(NQ_WITH_CUDA)
  exports.Set("cudaBench", Napi::Function::New(env, cudaBench, "cudaBench"));
#endif
}

}  // namespace nq
