#include "binding/transform_binding.h"

#include <string>

#include "binding/args.h"
#include "binding/errors.h"
#include "binding/register.h"
#include "cache/nq_error.h"
#include "nq_format.h"

namespace nq {
namespace {

class NativeTransform : public Napi::ObjectWrap<NativeTransform> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "NativeTransform", {InstanceMethod<&NativeTransform::bytes>("bytes")});
  }

  // new NativeTransform({ layers, kvHeads, headDim, keyBits, valueBits, mean, matrix, bandRms, rates,
  // calibrated, id }): the arrays in [layers][2][kvHeads] order (src/transform/cache-arrays.ts), copied;
  // id (32 bytes) identifies them in serialized caches.
  explicit NativeTransform(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTransform>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throwJs(env, "INVALID_ARGUMENT", "Expected a transform options object");
    const Napi::Object o = info[0].As<Napi::Object>();
    TransformArrays t;
    t.layers = static_cast<size_t>(readInteger(o.Get("layers"), "layers", 1, format::kMaxStores));
    t.kvHeads = static_cast<size_t>(readInteger(o.Get("kvHeads"), "kvHeads", 1, format::kMaxHeads));
    t.headDim = static_cast<size_t>(readInteger(o.Get("headDim"), "headDim", 8, format::kMaxHeadDim));
    const int keyBits = static_cast<int>(readInteger(o.Get("keyBits"), "keyBits", 1, 4));
    const int valueBits = static_cast<int>(readInteger(o.Get("valueBits"), "valueBits", 1, 4));
    if (t.headDim % 8 != 0) throwJs(env, "INVALID_ARGUMENT", "headDim must be a multiple of 8");
    const size_t n = t.layers * 2 * t.kvHeads, d = t.headDim, g = d / 8;
    if (n > static_cast<size_t>(format::kMaxStores) * 2) throwJs(env, "INVALID_ARGUMENT", "too many transforms");
    auto array = [&](const char* key, napi_typedarray_type type, size_t length) -> const void* {
      const Napi::Value a = o.Get(key);
      if (!a.IsTypedArray() || a.As<Napi::TypedArray>().TypedArrayType() != type || a.As<Napi::TypedArray>().ElementLength() != length)
        throwJs(env, "INVALID_ARGUMENT", std::string("transform.") + key + " must be a " + (type == napi_float32_array ? "Float32Array" : "Uint8Array") +
                                             " of " + std::to_string(length) + " elements for these layers, kvHeads and headDim");
      const Napi::TypedArray ta = a.As<Napi::TypedArray>();
      return static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    };
    t.mean = static_cast<const float*>(array("mean", napi_float32_array, n * d));
    t.matrix = static_cast<const float*>(array("matrix", napi_float32_array, n * d * d));
    t.bandRms = static_cast<const float*>(array("bandRms", napi_float32_array, n * g));
    t.rates = static_cast<const uint8_t*>(array("rates", napi_uint8_array, n * g));
    t.calibrated = static_cast<const uint8_t*>(array("calibrated", napi_uint8_array, n));
    t.id = static_cast<const uint8_t*>(array("id", napi_uint8_array, kTransformIdBytes));
    guarded(env, [&] { tables_ = std::make_shared<const TransformTables>(t, keyBits, valueBits); });
    Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(tables_->bytes()));
  }

  // The C call, not Napi::MemoryManagement: a finalizer must not throw.
  void Finalize(Napi::Env env) override {
    int64_t total = 0;
    if (tables_) napi_adjust_external_memory(env, -static_cast<int64_t>(tables_->bytes()), &total);
  }

  const std::shared_ptr<const TransformTables>& tables() const { return tables_; }

 private:
  Napi::Value bytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(tables_->bytes())); }

  std::shared_ptr<const TransformTables> tables_;
};

}  // namespace

std::shared_ptr<const TransformTables> transformTablesOf(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(addonData(env).nativeTransform.Value()))
    throwJs(env, "INVALID_ARGUMENT", "transform must be a NativeTransform (src/runtime/transform-tables.ts)");
  return NativeTransform::Unwrap(v.As<Napi::Object>())->tables();
}

void registerTransform(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = NativeTransform::define(env);
  addonData(env).nativeTransform = Napi::Persistent(cls);
  exports.Set("NativeTransform", cls);
}

}  // namespace nq
