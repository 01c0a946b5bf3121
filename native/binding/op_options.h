// Reading the options objects of the op entry points (cpu* in cpu_ops_binding.cc, cuda* in
// cuda_binding.cc) into the shared Params structs of kernels/nq_ops_params.h: one reader for both
// backends, so a parity test hands both the same object. src/runtime/op-args.ts validates first;
// these read what it built.
#pragma once
#include <napi.h>

#include <memory>
#include <string>

#include "binding/errors.h"
#include "binding/transform_binding.h"
#include "nq_ops_params.h"
#include "nq_scale.h"

namespace nq::opargs {

template <typename T>
T* dataOf(Napi::Value v) {
  return v.As<Napi::TypedArrayOf<T>>().Data();
}
template <typename T>
T* optionalData(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsTypedArray() ? v.As<Napi::TypedArrayOf<T>>().Data() : nullptr;
}
inline int intOf(Napi::Object o, const char* key, int fallback = 0) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : fallback;
}
inline double numOf(Napi::Object o, const char* key, double fallback = 0) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}
inline bool boolOf(Napi::Object o, const char* key, bool fallback = false) {
  Napi::Value v = o.Get(key);
  return v.IsBoolean() ? v.As<Napi::Boolean>().Value() : fallback;
}

// (headDim, bits, rotate, seed) at info[at..at+3]; the scale factor is the codec's (nq_scale.h).
inline ops::CodecArgs codecArgs(const Napi::CallbackInfo& info, size_t at) {
  ops::CodecArgs c;
  c.headDim = info[at].As<Napi::Number>().Int32Value();
  c.bits = info[at + 1].As<Napi::Number>().Int32Value();
  c.rotate = info[at + 2].As<Napi::Boolean>().Value();
  c.seed = info[at + 3].As<Napi::Number>().Uint32Value();
  c.scaleFactor = scaleFactor(c.bits);
  return c;
}

// { scorer: 0|1|2, kvHeads, tokens, headDim, keys, queries?, queryHeads, window, pool }
inline ops::ScoreLaunch scoreLaunch(Napi::Env env, Napi::Object o, const char* fn) {
  ops::ScoreLaunch s;
  s.scorer = static_cast<format::Scorer>(intOf(o, "scorer"));
  s.kvHeads = intOf(o, "kvHeads");
  s.tokens = intOf(o, "tokens");
  s.headDim = intOf(o, "headDim");
  s.queryHeads = intOf(o, "queryHeads", s.kvHeads);
  s.window = intOf(o, "window", format::kDefaultScorerWindow);
  s.pool = intOf(o, "pool", format::kDefaultPoolKernel);
  s.keys = optionalData<float>(o, "keys");
  s.queries = optionalData<float>(o, "queries");
  if (!s.keys || (s.scorer == format::Scorer::Observed && !s.queries)) throwJs(env, "INVALID_ARGUMENT", std::string(fn) + ": missing keys or queries");
  return s;
}

// { kvHeads, tokens, target, sinkTokens, recentWindow, scores, positions }
inline ops::SelectLaunch selectLaunch(Napi::Env env, Napi::Object o, const char* fn) {
  ops::SelectLaunch s;
  s.kvHeads = intOf(o, "kvHeads");
  s.tokens = intOf(o, "tokens");
  s.target = intOf(o, "target");
  s.sinkTokens = intOf(o, "sinkTokens");
  s.recentWindow = intOf(o, "recentWindow");
  s.scores = optionalData<float>(o, "scores");
  s.positions = optionalData<int32_t>(o, "positions");
  if (!s.scores || !s.positions) throwJs(env, "INVALID_ARGUMENT", std::string(fn) + ": missing scores or positions");
  return s;
}

// { kvHeads, queryHeads, headDim, nq, keyBits, valueBits, pageTokens, seed, scale, splitTokens,
//   storesPositions, sequences: [{ compressed, keyCodes, keyScales, valueCodes, valueScales,
//   positions?, residual, residualKeys?, residualValues?, firstResidualPos, queries, queryPositions,
//   out, accumulated? }] }
inline ops::HostAttentionArgs attentionArgs(Napi::Env env, Napi::Object o, const char* fn) {
  ops::HostAttentionArgs a;
  a.kvHeads = intOf(o, "kvHeads");
  a.queryHeads = intOf(o, "queryHeads");
  a.headDim = intOf(o, "headDim");
  a.nq = intOf(o, "nq", 1);
  a.keyBits = intOf(o, "keyBits");
  a.valueBits = intOf(o, "valueBits");
  a.pageTokens = intOf(o, "pageTokens", 64);
  a.seed = static_cast<uint32_t>(numOf(o, "seed"));
  a.scale = static_cast<float>(numOf(o, "scale"));
  a.splitTokens = intOf(o, "splitTokens");
  a.storesPositions = boolOf(o, "storesPositions");
  Napi::Array seqs = o.Get("sequences").As<Napi::Array>();
  for (uint32_t i = 0; i < seqs.Length(); ++i) {
    Napi::Object s = seqs.Get(i).As<Napi::Object>();
    ops::HostSequence h;
    h.compressed = intOf(s, "compressed");
    h.keyCodes = optionalData<uint8_t>(s, "keyCodes");
    h.keyScales = optionalData<uint16_t>(s, "keyScales");
    h.valueCodes = optionalData<uint8_t>(s, "valueCodes");
    h.valueScales = optionalData<uint16_t>(s, "valueScales");
    h.positions = optionalData<int32_t>(s, "positions");
    h.residual = intOf(s, "residual");
    h.residualKeys = optionalData<uint16_t>(s, "residualKeys");
    h.residualValues = optionalData<uint16_t>(s, "residualValues");
    h.firstResidualPos = intOf(s, "firstResidualPos");
    h.queries = optionalData<float>(s, "queries");
    h.queryPositions = optionalData<int32_t>(s, "queryPositions");
    h.out = optionalData<float>(s, "out");
    h.accumulated = optionalData<float>(s, "accumulated");
    if (!h.queries || !h.queryPositions || !h.out || (h.compressed > 0 && (!h.keyCodes || !h.keyScales || !h.valueCodes || !h.valueScales)) ||
        (h.residual > 0 && (!h.residualKeys || !h.residualValues)) || (a.storesPositions && h.compressed > 0 && !h.positions))
      throwJs(env, "INVALID_ARGUMENT", std::string(fn) + ": sequence " + std::to_string(i) + " lacks an array it needs");
    a.seqs.push_back(h);
  }
  return a;
}

// The calibrated transform of an op (issue 26): a NativeTransform's tables and which of their
// [layers][K|V][kvHeads] entries the op codes with. Codec ops name one entry (info[at] the tables or
// undefined, info[at + 1] the entry index); attention names a layer ({ transform, transformLayer }),
// whose key and value entries it reads. The caller keeps `tables` alive for the call.
struct OpTransform {
  std::shared_ptr<const TransformTables> tables;
  size_t first = 0;  // codec: the entry; attention: the layer's first key entry
};

inline OpTransform codecTransform(Napi::Env env, const Napi::CallbackInfo& info, size_t at, const ops::CodecArgs& c, const char* fn) {
  OpTransform t;
  if (info.Length() <= at || info[at].IsUndefined()) return t;
  t.tables = transformTablesOf(env, info[at]);
  const TransformTables& T = *t.tables;
  const double index = info.Length() > at + 1 && info[at + 1].IsNumber() ? info[at + 1].As<Napi::Number>().DoubleValue() : -1;
  if (!(index >= 0 && index < static_cast<double>(T.entryCount()) && index == static_cast<double>(static_cast<size_t>(index))))
    throwJs(env, "INVALID_ARGUMENT", std::string(fn) + ": transform entry must be an integer in [0, " + std::to_string(T.entryCount()) + ")");
  t.first = static_cast<size_t>(index);
  const size_t kv = (t.first / T.kvHeads()) % 2;
  if (static_cast<size_t>(c.headDim) != T.headDim() || c.bits != (kv == 0 ? T.keyBits() : T.valueBits()))
    throwJs(env, "INVALID_ARGUMENT", std::string(fn) + ": the transform was built for another head_dim or bits");
  return t;
}

inline OpTransform attentionTransform(Napi::Env env, Napi::Object o, const ops::HostAttentionArgs& a, const char* fn) {
  OpTransform t;
  Napi::Value v = o.Get("transform");
  if (v.IsUndefined()) return t;
  t.tables = transformTablesOf(env, v);
  const TransformTables& T = *t.tables;
  const int layer = intOf(o, "transformLayer", -1);
  if (layer < 0 || static_cast<size_t>(layer) >= T.layers()) throwJs(env, "INVALID_ARGUMENT", std::string(fn) + ": transformLayer out of range");
  if (static_cast<size_t>(a.headDim) != T.headDim() || static_cast<size_t>(a.kvHeads) != T.kvHeads() || a.keyBits != T.keyBits() || a.valueBits != T.valueBits())
    throwJs(env, "INVALID_ARGUMENT", std::string(fn) + ": the transform was built for another shape or bits");
  t.first = static_cast<size_t>(layer) * 2 * T.kvHeads();
  return t;
}

}  // namespace nq::opargs
