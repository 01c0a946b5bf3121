// NativeCache: the JS handle of a KvCache. TypeScript (src/runtime/cache.ts) validates arguments;
// this layer converts typed arrays, runs the work (compress also as async work off the event loop),
// and turns NqError into JS errors with a `code`.
#include <memory>
#include <string>

#include "binding/errors.h"
#include "binding/register.h"
#include "cpu/dense_attention.h"
#include "cpu/kv_cache.h"
#include "cpu/nq_error.h"

namespace nq {
namespace {

template <typename F>
auto guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const NqError& e) {
    throw makeJsError(env, e.code, e.what());
  } catch (const std::bad_alloc&) {
    throw makeJsError(env, "OUT_OF_MEMORY", "out of host memory");
  }
}

size_t argSize(const Napi::CallbackInfo& info, size_t i) { return static_cast<size_t>(info[i].As<Napi::Number>().Int64Value()); }

class NativeCache : public Napi::ObjectWrap<NativeCache> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "NativeCache",
                       {InstanceMethod<&NativeCache::append>("append"), InstanceMethod<&NativeCache::compress>("compress"),
                        InstanceMethod<&NativeCache::compressAsync>("compressAsync"), InstanceMethod<&NativeCache::attention>("attention"),
                        InstanceMethod<&NativeCache::materialize>("materialize"), InstanceMethod<&NativeCache::counts>("counts"),
                        InstanceMethod<&NativeCache::bytes>("bytes"), InstanceMethod<&NativeCache::serialize>("serialize"),
                        InstanceMethod<&NativeCache::dispose>("dispose"), StaticMethod<&NativeCache::deserialize>("deserialize")});
  }

  explicit NativeCache(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeCache>(info) {
    Napi::Env env = info.Env();
    if (info[0].IsExternal()) {  // from deserialize()
      cache_.reset(info[0].As<Napi::External<KvCache>>().Data());
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    auto num = [&](const char* k) { return o.Get(k).As<Napi::Number>(); };
    CacheOptions c;
    c.batch = num("batch").Uint32Value();
    c.layers = num("layers").Uint32Value();
    c.kvHeads = num("kvHeads").Uint32Value();
    c.headDim = num("headDim").Uint32Value();
    c.spec = format::Spec{num("keyBits").Int32Value(), num("valueBits").Int32Value(), num("evictFraction").DoubleValue(),
                          num("sinkTokens").Int32Value(), num("recentWindow").Int32Value(), num("residualWindow").Int32Value(),
                          num("pageTokens").Int32Value()};
    c.scorer = static_cast<Scorer>(num("scorer").Int32Value());
    c.seed = num("seed").Uint32Value();
    c.scorerWindow = num("scorerWindow").Uint32Value();
    c.poolKernel = num("poolKernel").Uint32Value();
    c.queryHeads = num("queryHeads").Uint32Value();
    c.ropeTheta = num("ropeTheta").DoubleValue();
    c.budgetTokens = static_cast<size_t>(num("budgetTokens").Int64Value());
    guarded(env, [&] { cache_ = std::make_unique<KvCache>(c); });
  }

  static Napi::FunctionReference* constructor;

 private:
  KvCache& cache(Napi::Env env) {
    if (!cache_) throwJs(env, "DISPOSED", "this CompressedKVCache has been disposed");
    if (busy_) throwJs(env, "INVALID_ARGUMENT", "this CompressedKVCache is busy with an async compress(); await it first");
    return *cache_;
  }

  Napi::Value append(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    KvCache& c = cache(env);
    const size_t seq = argSize(info, 0), layer = argSize(info, 1), tokens = argSize(info, 4);
    Napi::TypedArray k = info[2].As<Napi::TypedArray>(), v = info[3].As<Napi::TypedArray>();
    guarded(env, [&] {
      if (k.TypedArrayType() == napi_float32_array)
        c.append(seq, layer, k.As<Napi::Float32Array>().Data(), v.As<Napi::Float32Array>().Data(), tokens);
      else
        c.appendF16(seq, layer, k.As<Napi::Uint16Array>().Data(), v.As<Napi::Uint16Array>().Data(), tokens);
    });
    return env.Undefined();
  }

  // Observation queries per layer are copied, so async work never touches JS memory.
  struct CompressArgs {
    size_t seq = 0, queryHeads = 0, window = 0;
    long layer = -1;  // -1: every layer
    std::vector<std::vector<float>> observed;
  };
  static CompressArgs compressArgs(const Napi::CallbackInfo& info) {
    CompressArgs a;
    a.seq = argSize(info, 0);
    a.layer = static_cast<long>(info[1].As<Napi::Number>().Int64Value());
    if (info.Length() > 2 && info[2].IsArray()) {
      Napi::Array arr = info[2].As<Napi::Array>();
      a.observed.resize(arr.Length());
      for (uint32_t i = 0; i < arr.Length(); ++i) {
        Napi::Value e = arr.Get(i);
        if (e.IsTypedArray()) {
          Napi::Float32Array f = e.As<Napi::Float32Array>();
          a.observed[i].assign(f.Data(), f.Data() + f.ElementLength());
        }
      }
      a.queryHeads = argSize(info, 3);
      a.window = argSize(info, 4);
    }
    return a;
  }
  static void runCompress(KvCache& c, const CompressArgs& a) {
    std::vector<const float*> ptrs(a.observed.size());
    for (size_t i = 0; i < ptrs.size(); ++i) ptrs[i] = a.observed[i].empty() ? nullptr : a.observed[i].data();
    c.compress(a.seq, a.layer, a.observed.empty() ? nullptr : &ptrs, a.queryHeads, a.window);
  }

  Napi::Value compress(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    KvCache& c = cache(env);
    CompressArgs a = compressArgs(info);
    guarded(env, [&] { runCompress(c, a); });
    return env.Undefined();
  }

  class CompressWorker : public Napi::AsyncWorker {
   public:
    CompressWorker(Napi::Env env, NativeCache* owner, CompressArgs args)
        : Napi::AsyncWorker(env), owner_(owner), args_(std::move(args)), deferred_(Napi::Promise::Deferred::New(env)) {
      ref_ = Napi::Persistent(owner->Value());  // keep the cache alive while the work runs
    }
    Napi::Promise promise() { return deferred_.Promise(); }
    void Execute() override {
      try {
        runCompress(*owner_->cache_, args_);
      } catch (const NqError& e) {
        code_ = e.code;
        SetError(e.what());
      } catch (const std::bad_alloc&) {
        code_ = "OUT_OF_MEMORY";
        SetError("out of host memory");
      }
    }
    void OnOK() override {
      owner_->busy_ = false;
      deferred_.Resolve(Env().Undefined());
    }
    void OnError(const Napi::Error& e) override {
      owner_->busy_ = false;
      deferred_.Reject(makeJsError(Env(), code_, e.Message()).Value());
    }

   private:
    NativeCache* owner_;
    CompressArgs args_;
    Napi::Promise::Deferred deferred_;
    Napi::ObjectReference ref_;
    const char* code_ = "NATIVE_ERROR";
  };

  Napi::Value compressAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    cache(env);
    auto* worker = new CompressWorker(env, this, compressArgs(info));
    busy_ = true;
    Napi::Promise p = worker->promise();
    worker->Queue();
    return p;
  }

  Napi::Value attention(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    KvCache& c = cache(env);
    const size_t seq = argSize(info, 0), layer = argSize(info, 1);
    Napi::Float32Array q = info[2].As<Napi::Float32Array>();
    const size_t qHeads = argSize(info, 3), nq = argSize(info, 4);
    const int32_t* qpos = info[5].IsTypedArray() ? info[5].As<Napi::Int32Array>().Data() : nullptr;
    const float scale = info[6].As<Napi::Number>().FloatValue();
    Napi::Float32Array out = Napi::Float32Array::New(env, q.ElementLength());
    guarded(env, [&] { c.attention(seq, layer, q.Data(), qHeads, nq, qpos, scale, out.Data()); });
    return out;
  }

  // materialize(seq, layer, f16) -> { tokens, keys, values, positions }, decoded straight into JS memory.
  Napi::Value materialize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    KvCache& c = cache(env);
    const size_t seq = argSize(info, 0), layer = argSize(info, 1);
    const bool f16 = info.Length() > 2 && info[2].ToBoolean().Value();
    const auto& o = c.options();
    if (seq >= o.batch || layer >= o.layers) throwJs(env, "INVALID_ARGUMENT", "sequence or layer out of range");
    const size_t n = c.tokens(seq, layer), elems = o.kvHeads * n * o.headDim;
    Napi::TypedArray k, v;
    void *kp, *vp;
    if (f16) {
      auto kk = Napi::Uint16Array::New(env, elems), vv = Napi::Uint16Array::New(env, elems);
      kp = kk.Data();
      vp = vv.Data();
      k = kk;
      v = vv;
    } else {
      auto kk = Napi::Float32Array::New(env, elems), vv = Napi::Float32Array::New(env, elems);
      kp = kk.Data();
      vp = vv.Data();
      k = kk;
      v = vv;
    }
    auto p = Napi::Int32Array::New(env, o.kvHeads * n);
    guarded(env, [&] { c.materializeInto(seq, layer, f16, kp, vp, p.Data()); });
    Napi::Object r = Napi::Object::New(env);
    r.Set("tokens", static_cast<double>(n));
    r.Set("keys", k);
    r.Set("values", v);
    r.Set("positions", p);
    return r;
  }

  // counts(seq, layer) -> { tokens, appended, compressedTokens, compressed }
  Napi::Value counts(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    KvCache& c = cache(env);
    const size_t seq = argSize(info, 0), layer = argSize(info, 1);
    const auto& o = c.options();
    if (seq >= o.batch || layer >= o.layers) throwJs(env, "INVALID_ARGUMENT", "sequence or layer out of range");
    Napi::Object r = Napi::Object::New(env);
    r.Set("tokens", static_cast<double>(c.tokens(seq, layer)));
    r.Set("appended", static_cast<double>(c.appended(seq, layer)));
    r.Set("compressedTokens", static_cast<double>(c.compressedTokens(seq, layer)));
    r.Set("compressed", c.compressed(seq));
    return r;
  }

  Napi::Value bytes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const CacheComponentBytes b = cache(env).bytes();
    Napi::Object r = Napi::Object::New(env);
    r.Set("codes", static_cast<double>(b.codes));
    r.Set("scales", static_cast<double>(b.scales));
    r.Set("positions", static_cast<double>(b.positions));
    r.Set("residual", static_cast<double>(b.residual));
    r.Set("headers", static_cast<double>(b.headers));
    r.Set("scratch", static_cast<double>(b.scratch));
    r.Set("total", static_cast<double>(b.total()));
    return r;
  }

  Napi::Value serialize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<uint8_t> bytes = guarded(env, [&] { return cache(env).serialize(); });
    Napi::Uint8Array out = Napi::Uint8Array::New(env, bytes.size());
    std::copy(bytes.begin(), bytes.end(), out.Data());
    return out;
  }

  static Napi::Value deserialize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Uint8Array buf = info[0].As<Napi::Uint8Array>();
    auto* c = guarded(env, [&] { return new KvCache(KvCache::deserialize(buf.Data(), buf.ByteLength())); });
    return constructor->New({Napi::External<KvCache>::New(env, c)});
  }

  Napi::Value dispose(const Napi::CallbackInfo& info) {
    if (busy_) throwJs(info.Env(), "INVALID_ARGUMENT", "cannot dispose while an async compress() is running; await it first");
    cache_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<KvCache> cache_;
  bool busy_ = false;
};

Napi::FunctionReference* NativeCache::constructor = nullptr;

// denseAttentionF32(keys, values, kvHeads, n, d, q, qHeads, scale) -> Float32Array [qHeads][d]
Napi::Value denseAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array k = info[0].As<Napi::Float32Array>(), v = info[1].As<Napi::Float32Array>(), q = info[5].As<Napi::Float32Array>();
  const size_t kvHeads = argSize(info, 2), n = argSize(info, 3), d = argSize(info, 4), qHeads = argSize(info, 6);
  if (k.ElementLength() != kvHeads * n * d || v.ElementLength() != k.ElementLength() || q.ElementLength() != qHeads * d || qHeads % kvHeads != 0)
    throwJs(env, "INVALID_ARGUMENT", "denseAttentionF32: array lengths do not match the shape");
  Napi::Float32Array out = Napi::Float32Array::New(env, qHeads * d);
  denseAttentionF32(k.Data(), v.Data(), kvHeads, n, d, q.Data(), qHeads, info[7].As<Napi::Number>().FloatValue(), out.Data());
  return out;
}

}  // namespace

void registerCache(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = NativeCache::define(env);
  NativeCache::constructor = new Napi::FunctionReference(Napi::Persistent(cls));
  exports.Set("NativeCache", cls);
  exports.Set("denseAttentionF32", Napi::Function::New(env, denseAttention, "denseAttentionF32"));
}

}  // namespace nq
