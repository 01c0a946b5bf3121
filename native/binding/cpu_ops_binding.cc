// cpu*: the CPU ops (native/cpu/ops/cpu_ops.h) on typed arrays, with the same arguments as the cuda*
// functions (op_options.h reads both): the oracle of the GPU parity suite, and a way to test each
// op of the cache on its own. src/runtime/ops.ts validates every argument first.
#include "binding/errors.h"
#include "binding/op_options.h"
#include "binding/register.h"
#include "cpu/ops/cpu_ops.h"

namespace nq {
namespace {

using opargs::dataOf;

// cpuEncode(data, headDim, bits, rotate, seed, transform?, entry?) -> { codes, scales }
Napi::Value cpuEncode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::TypedArray input = info[0].As<Napi::TypedArray>();
  ops::EncodeLaunch a;
  a.codec = opargs::codecArgs(info, 1);
  const opargs::OpTransform t = opargs::codecTransform(env, info, 5, a.codec, "cpuEncode");
  if (t.tables) a.codec.transform = t.tables->heads(0, 0) + t.first;
  a.inputF16 = input.TypedArrayType() == napi_uint16_array;
  a.vectors = input.ElementLength() / static_cast<size_t>(a.codec.headDim);
  a.input = a.inputF16 ? static_cast<const void*>(dataOf<uint16_t>(input)) : static_cast<const void*>(dataOf<float>(input));
  Napi::Uint8Array codes = Napi::Uint8Array::New(env, a.vectors * format::codeBytesPerVector(a.codec.headDim, a.codec.bits));
  Napi::Uint16Array scales = Napi::Uint16Array::New(env, a.vectors);
  a.codes = codes.Data();
  a.scales = scales.Data();
  guarded(env, [&] { ops::cpuEncode(a); });
  Napi::Object r = Napi::Object::New(env);
  r.Set("codes", codes);
  r.Set("scales", scales);
  return r;
}

// cpuDecode(codes, scales, headDim, bits, rotate, seed, out, unrotate, transform?, entry?) -> out
Napi::Value cpuDecode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ops::DecodeLaunch a;
  a.codec = opargs::codecArgs(info, 2);
  const opargs::OpTransform t = opargs::codecTransform(env, info, 8, a.codec, "cpuDecode");
  if (t.tables) a.codec.transform = t.tables->heads(0, 0) + t.first;
  Napi::Uint16Array scales = info[1].As<Napi::Uint16Array>();
  Napi::TypedArray out = info[6].As<Napi::TypedArray>();
  a.codes = dataOf<uint8_t>(info[0]);
  a.scales = scales.Data();
  a.vectors = scales.ElementLength();
  a.outF16 = out.TypedArrayType() == napi_uint16_array;
  a.unrotate = info.Length() > 7 && info[7].IsBoolean() ? info[7].As<Napi::Boolean>().Value() : true;
  a.out = a.outF16 ? static_cast<void*>(dataOf<uint16_t>(out)) : static_cast<void*>(dataOf<float>(out));
  guarded(env, [&] { ops::cpuDecode(a); });
  return out;
}

// cpuAttention(options as cudaAttention) -> undefined (writes each sequence's out/accumulated)
Napi::Value cpuAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ops::HostAttentionArgs a = opargs::attentionArgs(env, info[0].As<Napi::Object>(), "cpuAttention");
  const opargs::OpTransform t = opargs::attentionTransform(env, info[0].As<Napi::Object>(), a, "cpuAttention");
  if (t.tables) {
    a.keyTransforms = t.tables->heads(0, 0) + t.first;
    a.valueTransforms = a.keyTransforms + a.kvHeads;
  }
  guarded(env, [&] { ops::cpuAttentionOnArrays(a); });
  return env.Undefined();
}

// cpuScore(options as cudaScore) -> Float32Array [kvHeads][tokens]
Napi::Value cpuScore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ops::ScoreLaunch s = opargs::scoreLaunch(env, info[0].As<Napi::Object>(), "cpuScore");
  Napi::Float32Array scores = Napi::Float32Array::New(env, static_cast<size_t>(s.kvHeads) * static_cast<size_t>(s.tokens));
  s.scores = scores.Data();
  guarded(env, [&] { ops::cpuScore(s); });
  return scores;
}

// cpuSelect(options as cudaSelect) -> Uint32Array [kvHeads][target]
Napi::Value cpuSelect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ops::SelectLaunch s = opargs::selectLaunch(env, info[0].As<Napi::Object>(), "cpuSelect");
  Napi::Uint32Array kept = Napi::Uint32Array::New(env, static_cast<size_t>(s.kvHeads) * static_cast<size_t>(s.target));
  s.kept = kept.Data();
  guarded(env, [&] { ops::cpuSelect(s); });
  return kept;
}

}  // namespace

void registerCpuOps(Napi::Env env, Napi::Object exports) {
  exports.Set("cpuEncode", Napi::Function::New(env, cpuEncode, "cpuEncode"));
  exports.Set("cpuDecode", Napi::Function::New(env, cpuDecode, "cpuDecode"));
  exports.Set("cpuAttention", Napi::Function::New(env, cpuAttention, "cpuAttention"));
  exports.Set("cpuScore", Napi::Function::New(env, cpuScore, "cpuScore"));
  exports.Set("cpuSelect", Napi::Function::New(env, cpuSelect, "cpuSelect"));
}

}  // namespace nq
