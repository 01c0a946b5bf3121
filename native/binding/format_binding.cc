// Exposes the C++ layout mirror (kernels/nq_format.h) so a test can assert it agrees with
// src/format/layout.ts byte for byte.
#include <cstddef>
#include <cstring>
#include <string>

#include "binding/errors.h"
#include "binding/register.h"
#include "nq_format.h"
#include "nq_scale.h"

namespace nq {
namespace {

int intField(Napi::Object o, const char* key) { return o.Get(key).As<Napi::Number>().Int32Value(); }

// nativeLayout(spec, kvHeads, headDim, tokens, waiting = 0) -> { pageBytes, pages, offsets..., residualBytes, kept,
// pagingPays, residualSlots (of a store with `tokens` on pages and `waiting` more in its residual) }
Napi::Value nativeLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsObject()) throwJs(env, "INVALID_ARGUMENT", "nativeLayout(spec, kvHeads, headDim, tokens)");
  Napi::Object so = info[0].As<Napi::Object>();
  format::Spec s{intField(so, "keyBits"), intField(so, "valueBits"), so.Get("evictFraction").As<Napi::Number>().DoubleValue(),
                 intField(so, "sinkTokens"), intField(so, "recentWindow"), intField(so, "residualWindow"), intField(so, "pageTokens")};
  const size_t kvHeads = info[1].As<Napi::Number>().Uint32Value();
  const size_t headDim = info[2].As<Napi::Number>().Uint32Value();
  const size_t tokens = static_cast<size_t>(info[3].As<Napi::Number>().DoubleValue());
  const size_t kept = format::keptTokenCount(tokens, s);
  const auto off = format::pageOffsets(kvHeads, headDim, s);
  Napi::Object r = Napi::Object::New(env);
  r.Set("keptTokens", static_cast<double>(kept));
  r.Set("pages", static_cast<double>(format::pagesFor(kept, s)));
  r.Set("pageBytes", static_cast<double>(format::pageBytes(kvHeads, headDim, s)));
  r.Set("pageEnd", static_cast<double>(off.end));
  r.Set("residualBytes", static_cast<double>(format::residualBytes(kvHeads, headDim, s)));
  r.Set("residualCapacity", static_cast<double>(format::residualCapacity(tokens, s)));
  r.Set("pagingPays", format::pagingPays(kvHeads, headDim, s, tokens));
  const size_t waiting = info.Length() > 4 && info[4].IsNumber() ? static_cast<size_t>(info[4].As<Napi::Number>().DoubleValue()) : 0;
  r.Set("residualSlots", static_cast<double>(format::residualSlots(kvHeads, headDim, s, format::pagesFor(tokens, s), waiting, tokens + waiting)));
  r.Set("quantizedTensorBytesKey", static_cast<double>(format::quantizedTensorBytes(tokens, headDim, s.keyBits)));
  // Score bytes per held slot and head, for every scorer id (the spec's own scorer is a name on the TS side).
  Napi::Array scoreBytes = Napi::Array::New(env, format::kScorerCount);
  for (int id = 0; id < format::kScorerCount; ++id) scoreBytes.Set(id, static_cast<double>(format::scoreBytesPerSlot(s, static_cast<format::Scorer>(id))));
  r.Set("scoreBytesByScorer", scoreBytes);
  return r;
}

// formatInfo() -> every constant of kernels/nq_format.h (and the scale factors of nq_scale.h), named
// as src/format names them, for test/format/native-agreement.test.ts to compare field by field.
Napi::Value formatInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto object = [&](std::initializer_list<std::pair<const char*, double>> fields) {
    Napi::Object o = Napi::Object::New(env);
    for (const auto& [k, v] : fields) o.Set(k, v);
    return o;
  };
  using format::PageHeader;
  using format::QuantizedTensorHeader;
  using format::SerializedCacheHeader;
  Napi::Object r = Napi::Object::New(env);
  r.Set("groupSize", static_cast<double>(format::kGroupSize));
  r.Set("scaleBytes", static_cast<double>(format::kScaleBytes));
  r.Set("positionBytes", static_cast<double>(format::kPositionBytes));
  r.Set("fp16Bytes", static_cast<double>(format::kFp16Bytes));
  r.Set("pageHeader", object({{"bytes", sizeof(PageHeader)},
                              {"slotsUsed", offsetof(PageHeader, slotsUsed)},
                              {"layer", offsetof(PageHeader, layer)},
                              {"sequence", offsetof(PageHeader, sequence)},
                              {"index", offsetof(PageHeader, index)}}));
  Napi::Object qt = object({{"bytes", sizeof(QuantizedTensorHeader)},
                            {"version", format::kQuantizedTensorVersion},
                            {"versionOffset", offsetof(QuantizedTensorHeader, version)},
                            {"bitsOffset", offsetof(QuantizedTensorHeader, bits)},
                            {"flagsOffset", offsetof(QuantizedTensorHeader, flags)},
                            {"headDimOffset", offsetof(QuantizedTensorHeader, headDim)},
                            {"seedOffset", offsetof(QuantizedTensorHeader, seed)},
                            {"vectorsOffset", offsetof(QuantizedTensorHeader, vectors)}});
  qt.Set("magic", std::string(format::kQuantizedTensorMagic, 4));
  r.Set("quantizedTensorHeader", qt);
  char serializedMagic[4];
  std::memcpy(serializedMagic, &format::kSerializedMagic, 4);
  Napi::Object sh = object({{"bytes", sizeof(SerializedCacheHeader)},
                            {"version", format::kSerializedVersion},
                            {"transformVersion", format::kSerializedVersionTransform},
                            {"layersOffset", offsetof(SerializedCacheHeader, layers)},
                            {"kvHeadsOffset", offsetof(SerializedCacheHeader, kvHeads)},
                            {"headDimOffset", offsetof(SerializedCacheHeader, headDim)},
                            {"keyBitsOffset", offsetof(SerializedCacheHeader, keyBits)},
                            {"valueBitsOffset", offsetof(SerializedCacheHeader, valueBits)}});
  sh.Set("magic", std::string(serializedMagic, 4));
  r.Set("serializedHeader", sh);
  Napi::Object scorers = Napi::Object::New(env);
  const std::pair<const char*, format::Scorer> ids[] = {{"keynorm", format::Scorer::KeyNorm},
                                                        {"key-key", format::Scorer::KeyKey},
                                                        {"observed", format::Scorer::Observed},
                                                        {"accumulated", format::Scorer::Accumulated},
                                                        {"random", format::Scorer::Random},
                                                        {"reconstruct", format::Scorer::Reconstruct}};
  static_assert(sizeof(ids) / sizeof(ids[0]) == format::kScorerCount, "every scorer is named");
  for (const auto& [name, id] : ids) scorers.Set(name, static_cast<double>(id));
  r.Set("scorerIds", scorers);
  r.Set("scorerDefaults", object({{"scorerWindow", format::kDefaultScorerWindow}, {"poolKernel", format::kDefaultPoolKernel}}));
  r.Set("scaleFactors", object({{"2", scaleFactor(2)}, {"3", scaleFactor(3)}, {"4", scaleFactor(4)}}));
  r.Set("limits", object({{"maxHeadDim", format::kMaxHeadDim},
                          {"maxHeads", static_cast<double>(format::kMaxHeads)},
                          {"maxSequenceTokens", static_cast<double>(format::kMaxPositions)},
                          {"maxAbsValue", halfToFloat(kMaxFiniteHalf)}}));
  // What native code itself accepts where TypeScript's FORMAT_LIMITS set a stricter policy (a page or
  // a residual window that large wastes memory long before it breaks anything): the agreement test
  // checks that every TS limit stays within these.
  r.Set("nativeBounds", object({{"maxPageTokens", static_cast<double>(format::kMaxPageTokens)},
                                {"maxResidualWindow", static_cast<double>(format::kMaxResidualWindow)},
                                {"maxWindowTokens", static_cast<double>(format::kMaxWindowTokens)},
                                {"maxQueryHeads", static_cast<double>(format::kMaxQueryHeads)},
                                {"maxStores", static_cast<double>(format::kMaxStores)}}));
  return r;
}

}  // namespace

void registerFormat(Napi::Env env, Napi::Object exports) {
  exports.Set("nativeLayout", Napi::Function::New(env, nativeLayout, "nativeLayout"));
  exports.Set("formatInfo", Napi::Function::New(env, formatInfo, "formatInfo"));
}

}  // namespace nq
