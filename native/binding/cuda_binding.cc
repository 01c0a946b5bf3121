// cuda*: the CUDA backend's building blocks on typed arrays (copied in, results copied out), for the
// parity suite (test/ops/cuda.ts validates every argument), bench/gpu and the GPU cache's tests.
// This file converts, runs, and turns a failed CudaStatus into a JS error with a `code` (and
// `details`: requested/free bytes for OUT_OF_MEMORY). In a CPU-only build registerCuda registers
// only cudaSupport (plain constants), so that not a single CUDA symbol is referenced.
#include "binding/register.h"
#include "nq_cuda_support.h"

namespace nq {
namespace {

// The support list, in every build: arguments are checked against the same ceilings everywhere.
Napi::Value cudaSupport(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
  r.Set("maxCodecHeadDim", cuda::kCudaMaxHeadDim);
  r.Set("maxAttentionHeadDim", cuda::kCudaMaxAttentionHeadDim);
  Napi::Array bits = Napi::Array::New(env);
  for (uint32_t i = 0; i < 3; ++i) bits.Set(i, static_cast<int>(i + 2));
  r.Set("bits", bits);
  r.Set("scorers", Napi::String::New(env, "keynorm,key-key,observed"));
  return r;
}

}  // namespace
}  // namespace nq

#if defined(NQ_WITH_CUDA)
#include <mutex>
#include <string>
#include <vector>

#include "binding/cuda_status.h"
#include "binding/errors.h"
#include "binding/op_options.h"
#include "memory/allocator.h"
#include "nq_cuda_api.h"

namespace nq {

[[noreturn]] void throwCudaStatus(Napi::Env env, const cuda::CudaStatus& st) {
  Napi::Error err = makeJsError(env, st.errorCode(), "CUDA backend: " + st.message);
  Napi::Object details = Napi::Object::New(env);
  if (st.code == cuda::CudaCode::OutOfMemory) {
    details.Set("requestedBytes", static_cast<double>(st.requestedBytes));
    details.Set("freeBytes", static_cast<double>(st.freeBytes));
  }
  if (st.badIndex >= 0) details.Set("badVector", static_cast<double>(st.badIndex));
  err.Set("details", details);
  throw err;
}

void requireCudaDevice(Napi::Env env) {
  static std::once_flag once;
  static bool available = false;
  static std::string reason;
  std::call_once(once, [] {
    std::vector<cuda::DeviceInfo> devices;
    available = cuda::probeDevices(devices, reason);
  });
  if (!available) throwJs(env, "BACKEND_UNAVAILABLE", "CUDA is not available: " + reason);
}

namespace {

using cuda::CudaCode;
using cuda::CudaStatus;
using opargs::boolOf;
using opargs::dataOf;
using opargs::intOf;
using opargs::numOf;
using opargs::optionalData;

void check(Napi::Env env, const CudaStatus& st) {
  if (!st.ok()) throwCudaStatus(env, st);
}

// The tables of an op's transform in device memory, for the duration of one call.
cuda::DeviceTransforms uploadTransform(Napi::Env env, const opargs::OpTransform& t) {
  cuda::DeviceTransforms d;
  if (t.tables) check(env, d.upload(t.tables->data(), t.tables->bytes(), t.tables->heads(0, 0), t.tables->entryCount(), nullptr));
  return d;
}

// cudaEncode(data, headDim, bits, rotate, seed, transform?, entry?) -> { codes, scales }
Napi::Value cudaEncode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireCudaDevice(env);
  Napi::TypedArray input = info[0].As<Napi::TypedArray>();
  cuda::CodecArgs c = opargs::codecArgs(info, 1);
  const opargs::OpTransform t = opargs::codecTransform(env, info, 5, c, "cudaEncode");
  const cuda::DeviceTransforms dt = uploadTransform(env, t);
  if (t.tables) c.transform = dt.host(t.first);
  const bool f16 = input.TypedArrayType() == napi_uint16_array;
  const size_t vectors = input.ElementLength() / static_cast<size_t>(c.headDim);
  const void* data = f16 ? static_cast<const void*>(dataOf<uint16_t>(input)) : static_cast<const void*>(dataOf<float>(input));
  Napi::Uint8Array codes = Napi::Uint8Array::New(env, vectors * (c.headDim / 8) * c.bits);
  Napi::Uint16Array scales = Napi::Uint16Array::New(env, vectors);
  check(env, cuda::hostEncode(c, data, f16, vectors, codes.Data(), scales.Data()));
  Napi::Object r = Napi::Object::New(env);
  r.Set("codes", codes);
  r.Set("scales", scales);
  return r;
}

// cudaDecode(codes, scales, headDim, bits, rotate, seed, out, unrotate, transform?, entry?) -> out
Napi::Value cudaDecode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireCudaDevice(env);
  cuda::CodecArgs c = opargs::codecArgs(info, 2);
  const opargs::OpTransform t = opargs::codecTransform(env, info, 8, c, "cudaDecode");
  const cuda::DeviceTransforms dt = uploadTransform(env, t);
  if (t.tables) c.transform = dt.host(t.first);
  Napi::Uint16Array scales = info[1].As<Napi::Uint16Array>();
  Napi::TypedArray out = info[6].As<Napi::TypedArray>();
  const bool f16 = out.TypedArrayType() == napi_uint16_array;
  const bool unrotate = info.Length() > 7 && info[7].IsBoolean() ? info[7].As<Napi::Boolean>().Value() : true;
  void* o = f16 ? static_cast<void*>(dataOf<uint16_t>(out)) : static_cast<void*>(dataOf<float>(out));
  check(env, cuda::hostDecode(c, dataOf<uint8_t>(info[0]), scales.Data(), scales.ElementLength(), o, f16, unrotate));
  return out;
}

// cudaAttention({ kvHeads, queryHeads, headDim, nq, keyBits, valueBits, pageTokens, seed, scale,
//   splitTokens, storesPositions, sequences: [{ compressed, keyCodes, keyScales, valueCodes,
//   valueScales, positions?, residual, residualKeys?, residualValues?, firstResidualPos, queries,
//   queryPositions, out, accumulated? }] }) -> undefined (writes each sequence's out/accumulated)
Napi::Value cudaAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireCudaDevice(env);
  cuda::HostAttentionArgs a = opargs::attentionArgs(env, info[0].As<Napi::Object>(), "cudaAttention");
  const opargs::OpTransform t = opargs::attentionTransform(env, info[0].As<Napi::Object>(), a, "cudaAttention");
  const cuda::DeviceTransforms dt = uploadTransform(env, t);
  if (t.tables) {
    a.keyTransforms = dt.device(t.first);
    a.valueTransforms = dt.device(t.first + a.kvHeads);
  }
  check(env, cuda::hostAttention(a));
  return env.Undefined();
}

// cudaDenseAttention({ batch, kvHeads, queryHeads, headDim, maxTokens, scale, splitTokens, keys,
//   values, lengths, queries, out }) -> out
Napi::Value cudaDenseAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireCudaDevice(env);
  Napi::Object o = info[0].As<Napi::Object>();
  cuda::HostDenseAttentionArgs a;
  a.batch = intOf(o, "batch");
  a.kvHeads = intOf(o, "kvHeads");
  a.queryHeads = intOf(o, "queryHeads");
  a.headDim = intOf(o, "headDim");
  a.maxTokens = intOf(o, "maxTokens");
  a.scale = static_cast<float>(numOf(o, "scale"));
  a.splitTokens = intOf(o, "splitTokens");
  a.keys = optionalData<uint16_t>(o, "keys");
  a.values = optionalData<uint16_t>(o, "values");
  a.lengths = optionalData<int32_t>(o, "lengths");
  a.queries = optionalData<float>(o, "queries");
  a.out = optionalData<float>(o, "out");
  if (!a.keys || !a.values || !a.lengths || !a.queries || !a.out) throwJs(env, "INVALID_ARGUMENT", "cudaDenseAttention: missing array");
  check(env, cuda::hostDenseAttention(a));
  return o.Get("out");
}

// cudaScore({ scorer: 0|1|2, kvHeads, tokens, headDim, keys, queries?, queryHeads, window, pool }) -> Float32Array
Napi::Value cudaScore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireCudaDevice(env);
  const cuda::ScoreLaunch s = opargs::scoreLaunch(env, info[0].As<Napi::Object>(), "cudaScore");
  Napi::Float32Array scores = Napi::Float32Array::New(env, static_cast<size_t>(s.kvHeads) * s.tokens);
  check(env, cuda::hostScore(s, s.keys, s.queries, scores.Data()));
  return scores;
}

// cudaSelect({ kvHeads, tokens, target, sinkTokens, recentWindow, scores, positions }) -> Uint32Array
Napi::Value cudaSelect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireCudaDevice(env);
  const cuda::SelectLaunch s = opargs::selectLaunch(env, info[0].As<Napi::Object>(), "cudaSelect");
  Napi::Uint32Array kept = Napi::Uint32Array::New(env, static_cast<size_t>(s.kvHeads) * s.target);
  check(env, cuda::hostSelect(s, s.scores, s.positions, kept.Data()));
  return kept;
}

// Device buffers and arenas for the memory verification: JS holds an External whose finalizer
// frees it (dispose() frees it earlier).
MemCategory categoryOf(Napi::Env env, const std::string& name) {
  for (int i = 0; i < kMemCategories; ++i)
    if (name == memCategoryName(static_cast<MemCategory>(i))) return static_cast<MemCategory>(i);
  throwJs(env, "INVALID_ARGUMENT", "unknown memory category " + name);
}

Napi::Value cudaBufferCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireCudaDevice(env);
  const size_t bytes = static_cast<size_t>(info[0].As<Napi::Number>().DoubleValue());
  const MemCategory c = categoryOf(env, info[1].As<Napi::String>().Utf8Value());
  auto* buf = new cuda::DeviceBuffer();
  CudaStatus st = buf->allocate(bytes, c);
  if (st.ok() && info.Length() > 2 && info[2].IsNumber()) st = cuda::fillDevice(buf->data(), info[2].As<Napi::Number>().Int32Value(), bytes);
  if (!st.ok()) {
    delete buf;
    throwCudaStatus(env, st);
  }
  return Napi::External<cuda::DeviceBuffer>::New(env, buf, [](Napi::Env, cuda::DeviceBuffer* b) { delete b; });
}

Napi::Value cudaBufferDispose(const Napi::CallbackInfo& info) {
  info[0].As<Napi::External<cuda::DeviceBuffer>>().Data()->reset();
  return info.Env().Undefined();
}

Napi::Value cudaArenaCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireCudaDevice(env);
  const size_t bytes = static_cast<size_t>(info[0].As<Napi::Number>().DoubleValue());
  auto* arena = new cuda::DeviceArena();
  CudaStatus st = arena->reserve(bytes);
  if (!st.ok()) {
    delete arena;
    throwCudaStatus(env, st);
  }
  return Napi::External<cuda::DeviceArena>::New(env, arena, [](Napi::Env, cuda::DeviceArena* a) { delete a; });
}

// cudaArenaCarve(arena, bytes, category, count = 1) -> bytes carved; OUT_OF_MEMORY when full
Napi::Value cudaArenaCarve(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::DeviceArena* arena = info[0].As<Napi::External<cuda::DeviceArena>>().Data();
  const size_t bytes = static_cast<size_t>(info[1].As<Napi::Number>().DoubleValue());
  const MemCategory c = categoryOf(env, info[2].As<Napi::String>().Utf8Value());
  const int64_t count = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int64Value() : 1;
  for (int64_t i = 0; i < count; ++i) {
    if (!arena->carve(bytes, c)) {
      CudaStatus st = CudaStatus::fail(CudaCode::OutOfMemory, "the device arena has " + std::to_string(arena->remaining()) + " bytes left; " +
                                                                  std::to_string(bytes) + " were requested");
      st.requestedBytes = bytes;
      st.freeBytes = arena->remaining();
      throwCudaStatus(env, st);
    }
  }
  return Napi::Number::New(env, static_cast<double>(bytes * count));
}

Napi::Value cudaArenaDispose(const Napi::CallbackInfo& info) {
  info[0].As<Napi::External<cuda::DeviceArena>>().Data()->reset();
  return info.Env().Undefined();
}

}  // namespace

void registerCuda(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaSupport", Napi::Function::New(env, cudaSupport, "cudaSupport"));
  exports.Set("cudaEncode", Napi::Function::New(env, cudaEncode, "cudaEncode"));
  exports.Set("cudaDecode", Napi::Function::New(env, cudaDecode, "cudaDecode"));
  exports.Set("cudaAttention", Napi::Function::New(env, cudaAttention, "cudaAttention"));
  exports.Set("cudaDenseAttention", Napi::Function::New(env, cudaDenseAttention, "cudaDenseAttention"));
  exports.Set("cudaScore", Napi::Function::New(env, cudaScore, "cudaScore"));
  exports.Set("cudaSelect", Napi::Function::New(env, cudaSelect, "cudaSelect"));
  exports.Set("cudaBufferCreate", Napi::Function::New(env, cudaBufferCreate, "cudaBufferCreate"));
  exports.Set("cudaBufferDispose", Napi::Function::New(env, cudaBufferDispose, "cudaBufferDispose"));
  exports.Set("cudaArenaCreate", Napi::Function::New(env, cudaArenaCreate, "cudaArenaCreate"));
  exports.Set("cudaArenaCarve", Napi::Function::New(env, cudaArenaCarve, "cudaArenaCarve"));
  exports.Set("cudaArenaDispose", Napi::Function::New(env, cudaArenaDispose, "cudaArenaDispose"));
}

}  // namespace nq

#else

namespace nq {
void registerCuda(Napi::Env env, Napi::Object exports) {  // CPU-only build: the support list only
  exports.Set("cudaSupport", Napi::Function::New(env, cudaSupport, "cudaSupport"));
}
}  // namespace nq

#endif
