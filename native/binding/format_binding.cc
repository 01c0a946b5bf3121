// Exposes the C++ layout mirror (kernels/nq_format.h) so a test can assert it agrees with
// src/format/layout.ts byte for byte.
#include "binding/errors.h"
#include "binding/register.h"
#include "nq_format.h"

namespace nq {
namespace {

int intField(Napi::Object o, const char* key) { return o.Get(key).As<Napi::Number>().Int32Value(); }

// nativeLayout(spec, kvHeads, headDim, keptTokens) -> { pageBytes, pages, offsets..., residualBytes, kept }
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
  r.Set("quantizedTensorBytesKey", static_cast<double>(format::quantizedTensorBytes(tokens, headDim, s.keyBits)));
  return r;
}

}  // namespace

void registerFormat(Napi::Env env, Napi::Object exports) {
  exports.Set("nativeLayout", Napi::Function::New(env, nativeLayout, "nativeLayout"));
}

}  // namespace nq
