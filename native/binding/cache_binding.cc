// NativeCache: the JS handle of a CompressedCache (the CPU KvCache, or the CUDA cache when asked
// for: cuda/cuda_kv_cache.h). TypeScript (src/runtime/cache.ts) validates arguments;
// this layer converts typed arrays (refusing integers it cannot represent and lengths that do not
// match), runs the work (compress also as async work off the event loop), and turns every C++
// exception into a JS error with a `code`. Each cache charges its bytes to its own MemoryBudget
// (optional memoryLimitBytes) and reports them to V8 as external memory, so that a cache dropped
// without dispose() is collected as soon as its native size warrants, not when the JS heap fills.
#include <cmath>
#include <memory>
#include <string>

#include "binding/args.h"
#include "binding/errors.h"
#include "binding/register.h"
#include "binding/transform_binding.h"
#include "cpu/dense_attention.h"
#include "cpu/kv_cache.h"
#include "cuda/cuda_kv_cache.h"
#include "cpu/codec.h"
#include "cache/nq_error.h"
#include "memory/allocator.h"

namespace nq {
namespace {

size_t argSize(const Napi::CallbackInfo& info, size_t i, const char* what, int64_t max = kMaxSafeInteger) { return readSize(info[i], what, max); }

template <typename T>
T typedArray(const Napi::Value& v, napi_typedarray_type type, const char* what, const char* expected) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throwJs(v.Env(), "INVALID_ARGUMENT", std::string("Expected a ") + expected + " for " + what + " but received " + describeJs(v));
  return v.As<T>();
}

class NativeCache : public Napi::ObjectWrap<NativeCache> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "NativeCache",
                       {InstanceMethod<&NativeCache::append>("append"), InstanceMethod<&NativeCache::compress>("compress"),
                        InstanceMethod<&NativeCache::compressAsync>("compressAsync"), InstanceMethod<&NativeCache::attention>("attention"),
                        InstanceMethod<&NativeCache::reconstructionAttention>("reconstructionAttention"),
                        InstanceMethod<&NativeCache::shareScores>("shareScores"),
                        InstanceMethod<&NativeCache::materialize>("materialize"), InstanceMethod<&NativeCache::counts>("counts"),
                        InstanceMethod<&NativeCache::bytes>("bytes"), InstanceMethod<&NativeCache::serialize>("serialize"),
                        InstanceMethod<&NativeCache::dispose>("dispose"), InstanceMethod<&NativeCache::heldBytes>("heldBytes"),
                        InstanceMethod<&NativeCache::options>("options"), StaticMethod<&NativeCache::deserialize>("deserialize")});
  }

  // What deserialize() hands the constructor through an External: the loaded cache and the budget
  // its bytes were charged to.
  struct Loaded {
    std::unique_ptr<CompressedCache> cache;
    std::shared_ptr<MemoryBudget> budget;
  };

  explicit NativeCache(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeCache>(info) {
    Napi::Env env = info.Env();
    if (info[0].IsExternal()) {  // from deserialize()
      Loaded* loaded = info[0].As<Napi::External<Loaded>>().Data();
      budget_ = std::move(loaded->budget);
      cache_ = std::move(loaded->cache);
      reportExternal(env);
      return;
    }
    if (!info[0].IsObject()) throwJs(env, "INVALID_ARGUMENT", "Expected a cache options object");
    Napi::Object o = info[0].As<Napi::Object>();
    auto integer = [&](const char* k, int64_t min, int64_t max) { return readInteger(o.Get(k), k, min, max); };
    CacheOptions c;
    c.batch = static_cast<size_t>(integer("batch", 1, format::kMaxStores));
    c.layers = static_cast<size_t>(integer("layers", 1, format::kMaxStores));
    if (c.batch * c.layers > static_cast<size_t>(format::kMaxStores))
      throwJs(env, "INVALID_ARGUMENT", "batch × layers must be at most " + std::to_string(format::kMaxStores));
    c.kvHeads = static_cast<size_t>(integer("kvHeads", 1, format::kMaxHeads));
    c.headDim = static_cast<size_t>(integer("headDim", 8, kMaxHeadDim));
    // 1 bit per element exists only under a calibrated transform (checked below, with the transform).
    c.spec = format::Spec{static_cast<int>(integer("keyBits", 1, 4)),
                          static_cast<int>(integer("valueBits", 1, 4)),
                          readFinite(o.Get("evictFraction"), "evictFraction"),
                          static_cast<int>(integer("sinkTokens", 0, format::kMaxWindowTokens)),
                          static_cast<int>(integer("recentWindow", 0, format::kMaxWindowTokens)),
                          static_cast<int>(integer("residualWindow", 0, format::kMaxResidualWindow)),
                          static_cast<int>(integer("pageTokens", 8, format::kMaxPageTokens))};
    if (!(c.spec.evictFraction >= 0 && c.spec.evictFraction < 1)) throwJs(env, "INVALID_ARGUMENT", "evictFraction must be in [0, 1)");
    auto bitsOk = [&](int bits) { return bits == 1 ? c.headDim >= 16 && c.headDim % 8 == 0 : codecSupports(static_cast<int>(c.headDim), bits); };
    if (c.spec.pageTokens % 8 != 0 || !bitsOk(c.spec.keyBits) || !bitsOk(c.spec.valueBits))
      throwJs(env, "UNSUPPORTED", "pageTokens must be a multiple of 8 and headDim/bits a size the codec supports");
    c.scorer = static_cast<Scorer>(integer("scorer", 0, format::kScorerCount - 1));
    c.seed = static_cast<uint32_t>(integer("seed", 0, 0xFFFFFFFFll));
    c.scorerWindow = static_cast<size_t>(integer("scorerWindow", 1, format::kMaxPositions));
    c.poolKernel = static_cast<size_t>(integer("poolKernel", 1, format::kMaxPositions));
    c.queryHeads = static_cast<size_t>(integer("queryHeads", 1, format::kMaxQueryHeads));
    if (c.queryHeads % c.kvHeads != 0) throwJs(env, "INVALID_ARGUMENT", "queryHeads must be a multiple of kvHeads");
    c.ropeTheta = readFinite(o.Get("ropeTheta"), "ropeTheta");
    if (!(c.ropeTheta == 0 || (c.ropeTheta > 1 && c.ropeTheta < 1e12)) || (c.ropeTheta > 0 && c.headDim % 2 != 0))
      throwJs(env, "INVALID_ARGUMENT", "ropeTheta must be 0 (keys stored as they come) or in (1, 1e12) with an even headDim");
    c.budgetTokens = static_cast<size_t>(integer("budgetTokens", 0, format::kMaxPositions));
    const Napi::Value limit = o.Get("memoryLimitBytes");
    budget_ = std::make_shared<MemoryBudget>(limit.IsUndefined() ? 0 : static_cast<uint64_t>(readInteger(limit, "memoryLimitBytes", 0, kMaxSafeInteger)));
    // "cpu" (the default) or "cuda": TypeScript resolves "auto" before this point.
    const Napi::Value backend = o.Get("backend");
    const std::string backendName = backend.IsUndefined() ? "cpu" : backend.IsString() ? backend.As<Napi::String>().Utf8Value() : "";
    if (backendName != "cpu" && backendName != "cuda")
      throwJs(env, "INVALID_ARGUMENT", "Expected \"cpu\" or \"cuda\" for backend but received " + describeJs(backend));
    c.transform = readTransform(env, o.Get("transform"), c);
    if ((c.spec.keyBits == 1 || c.spec.valueBits == 1) && !c.transform)
      throwJs(env, "UNSUPPORTED", "a 1-bit code needs a calibrated transform (options.profile): the flat code has 2, 3 or 4 bits");
    guarded(env, [&] {
      BudgetScope scope(budget_.get());
      if (backendName == "cuda") cache_ = makeCudaCache(c);
      else cache_ = std::make_unique<KvCache>(c);
    });
    reportExternal(env);
  }

  ~NativeCache() override {
    cache_.reset();
    reportExternal(Env());
  }

 private:
  // options.transform: a NativeTransform built for this cache's shape and bits (shared with other
  // caches); undefined: none.
  static std::shared_ptr<const TransformTables> readTransform(Napi::Env env, const Napi::Value v, const CacheOptions& c) {
    if (v.IsUndefined() || v.IsNull()) return nullptr;
    std::shared_ptr<const TransformTables> t = transformTablesOf(env, v);
    if (t->layers() != c.layers || t->kvHeads() != c.kvHeads || t->headDim() != c.headDim || t->keyBits() != c.spec.keyBits || t->valueBits() != c.spec.valueBits)
      throwJs(env, "INVALID_ARGUMENT", "transform: built for another shape or bits than this cache's");
    return t;
  }

  CompressedCache& cache(Napi::Env env) {
    if (!cache_) throwJs(env, "DISPOSED", "this CompressedKVCache has been disposed");
    if (busy_) throwJs(env, "BUSY", "this CompressedKVCache is busy with an async compress(); await it first");
    return *cache_;
  }

  // Runs f on the JS thread with this cache's budget charged, errors typed, and V8 told the new size.
  template <typename F>
  auto run(Napi::Env env, F&& f) -> decltype(f()) {
    struct Report {
      NativeCache* self;
      Napi::Env env;
      ~Report() { self->reportExternal(env); }
    } report{this, env};
    BudgetScope scope(budget_.get());
    return guarded(env, std::forward<F>(f));
  }

  // Tells V8 how many native bytes this object holds, as a difference from what it was told last.
  // The C call, not Napi::MemoryManagement: this also runs in destructors, where nothing may throw.
  void reportExternal(napi_env env) noexcept {
    const int64_t now = cache_ && budget_ ? static_cast<int64_t>(budget_->live()) : 0;
    int64_t total = 0;
    if (now != reported_ && napi_adjust_external_memory(env, now - reported_, &total) == napi_ok) reported_ = now;
  }

  Napi::Value append(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CompressedCache& c = cache(env);
    const size_t seq = argSize(info, 0, "sequence"), layer = argSize(info, 1, "layer"), tokens = argSize(info, 4, "tokens");
    const auto& o = c.options();
    if (seq >= o.batch || layer >= o.layers) throwJs(env, "INVALID_ARGUMENT", "sequence or layer out of range");
    const bool f32 = info[2].IsTypedArray() && info[2].As<Napi::TypedArray>().TypedArrayType() == napi_float32_array;
    Napi::TypedArray k = f32 ? Napi::TypedArray(typedArray<Napi::Float32Array>(info[2], napi_float32_array, "keys", "Float32Array"))
                             : Napi::TypedArray(typedArray<Napi::Uint16Array>(info[2], napi_uint16_array, "keys", "Float32Array or Uint16Array"));
    Napi::TypedArray v = f32 ? Napi::TypedArray(typedArray<Napi::Float32Array>(info[3], napi_float32_array, "values", "Float32Array"))
                             : Napi::TypedArray(typedArray<Napi::Uint16Array>(info[3], napi_uint16_array, "values", "Uint16Array"));
    if (tokens > static_cast<size_t>(kMaxSafeInteger) / (o.kvHeads * o.headDim) || k.ElementLength() != o.kvHeads * tokens * o.headDim ||
        v.ElementLength() != k.ElementLength())
      throwJs(env, "INVALID_ARGUMENT", "keys and values must both hold kvHeads × tokens × headDim elements");
    // Positions are int32: refuse the append that would take this store past them.
    if (tokens > static_cast<size_t>(format::kMaxPositions) - c.appended(seq, layer))
      throwJs(env, "INVALID_ARGUMENT", "this append would take the sequence past " + std::to_string(format::kMaxPositions) +
                                           " tokens, the most that int32 positions address; start a new cache");
    run(env, [&] {
      if (f32) c.append(seq, layer, k.As<Napi::Float32Array>().Data(), v.As<Napi::Float32Array>().Data(), tokens);
      else c.appendF16(seq, layer, k.As<Napi::Uint16Array>().Data(), v.As<Napi::Uint16Array>().Data(), tokens);
    });
    return env.Undefined();
  }

  // Observation queries per layer are copied, so async work never touches JS memory.
  struct CompressArgs {
    size_t seq = 0, queryHeads = 0, window = 0;
    long layer = -1;  // -1: every layer
    std::vector<std::vector<float>> observed;
  };
  static CompressArgs compressArgs(const Napi::CallbackInfo& info, const CacheOptions& o) {
    Napi::Env env = info.Env();
    CompressArgs a;
    a.seq = argSize(info, 0, "sequence");
    a.layer = static_cast<long>(readInteger(info[1], "layer", -1, static_cast<int64_t>(o.layers) - 1));
    if (a.seq >= o.batch) throwJs(env, "INVALID_ARGUMENT", "sequence out of range");
    if (info.Length() > 2 && info[2].IsArray()) {
      Napi::Array arr = info[2].As<Napi::Array>();
      a.queryHeads = argSize(info, 3, "queryHeads");
      a.window = argSize(info, 4, "window");
      if (a.queryHeads != o.queryHeads || a.window > static_cast<size_t>(format::kMaxPositions))
        throwJs(env, "INVALID_ARGUMENT", "observed queries must be laid out [queryHeads, window, headDim] with the cache's queryHeads");
      if (arr.Length() > o.layers) throwJs(env, "INVALID_ARGUMENT", "more observed-query entries than layers");
      a.observed.resize(arr.Length());
      for (uint32_t i = 0; i < arr.Length(); ++i) {
        Napi::Value e = arr.Get(i);
        if (e.IsNull() || e.IsUndefined()) continue;
        Napi::Float32Array f = typedArray<Napi::Float32Array>(e, napi_float32_array, "observed queries", "Float32Array");
        if (f.ElementLength() != a.queryHeads * a.window * o.headDim)
          throwJs(env, "INVALID_ARGUMENT", "observed queries of layer " + std::to_string(i) + " must hold queryHeads × window × headDim elements");
        for (size_t j = 0; j < f.ElementLength(); ++j)
          if (!std::isfinite(f[j])) throwJs(env, "INVALID_DATA", "observed queries of layer " + std::to_string(i) + " hold a non-finite value");
        a.observed[i].assign(f.Data(), f.Data() + f.ElementLength());
      }
    }
    return a;
  }
  static void runCompress(CompressedCache& c, const CompressArgs& a) {
    std::vector<const float*> ptrs(a.observed.size());
    for (size_t i = 0; i < ptrs.size(); ++i) ptrs[i] = a.observed[i].empty() ? nullptr : a.observed[i].data();
    c.compress(a.seq, a.layer, a.observed.empty() ? nullptr : &ptrs, a.queryHeads, a.window);
  }

  Napi::Value compress(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CompressedCache& c = cache(env);
    CompressArgs a = compressArgs(info, c.options());
    run(env, [&] { runCompress(c, a); });
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
      BudgetScope scope(owner_->budget_.get());
      failure_ = catchAll([&] { runCompress(*owner_->cache_, args_); });
    }
    void OnOK() override {
      owner_->busy_ = false;
      owner_->reportExternal(Env());
      if (failure_) deferred_.Reject(makeJsError(Env(), failure_.code, failure_.message).Value());
      else deferred_.Resolve(Env().Undefined());
    }
    void OnError(const Napi::Error& e) override {
      owner_->busy_ = false;
      owner_->reportExternal(Env());
      deferred_.Reject(makeJsError(Env(), "NATIVE_ERROR", e.Message()).Value());
    }

   private:
    NativeCache* owner_;
    CompressArgs args_;
    Napi::Promise::Deferred deferred_;
    Napi::ObjectReference ref_;
    NativeFailure failure_;
  };

  Napi::Value compressAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CompressedCache& c = cache(env);
    auto* worker = new CompressWorker(env, this, compressArgs(info, c.options()));
    busy_ = true;
    Napi::Promise p = worker->promise();
    worker->Queue();
    return p;
  }

  // The arguments every attention call shares: (seq, layer, queries, queryHeads, nq, positions, scale).
  struct AttentionArgs {
    size_t seq = 0, layer = 0, qHeads = 0, nq = 0;
    Napi::Float32Array q;
    const int32_t* qpos = nullptr;
    float scale = 0;
  };
  AttentionArgs attentionArgs(const Napi::CallbackInfo& info, const CacheOptions& o) {
    Napi::Env env = info.Env();
    AttentionArgs a;
    a.seq = argSize(info, 0, "sequence");
    a.layer = argSize(info, 1, "layer");
    if (a.seq >= o.batch || a.layer >= o.layers) throwJs(env, "INVALID_ARGUMENT", "sequence or layer out of range");
    a.q = typedArray<Napi::Float32Array>(info[2], napi_float32_array, "queries", "Float32Array");
    a.qHeads = argSize(info, 3, "queryHeads", format::kMaxQueryHeads);
    a.nq = argSize(info, 4, "query count", format::kMaxPositions);
    if (a.qHeads == 0 || a.qHeads % o.kvHeads != 0 || a.q.ElementLength() != a.qHeads * a.nq * o.headDim)
      throwJs(env, "INVALID_ARGUMENT", "queries must be laid out [queryHeads, nq, headDim] with queryHeads a multiple of kvHeads");
    if (info[5].IsTypedArray()) {
      Napi::Int32Array p = typedArray<Napi::Int32Array>(info[5], napi_int32_array, "positions", "Int32Array");
      if (p.ElementLength() != a.nq) throwJs(env, "INVALID_ARGUMENT", "positions must hold one entry per query");
      a.qpos = p.Data();
    }
    // The kernel works in float: a scale beyond float's range (1e300) would turn every logit into
    // +-Inf and the output into NaN.
    const double scale64 = readFinite(info[6], "scale");
    a.scale = static_cast<float>(scale64);
    if (!std::isfinite(a.scale) || (a.scale == 0 && scale64 != 0))
      throwJs(env, "INVALID_ARGUMENT", "Expected a scale within float32 range for attention but received " + describeJs(info[6]));
    return a;
  }
  static void checkFiniteOutput(Napi::Env env, const Napi::Float32Array& out) {
    for (size_t i = 0; i < out.ElementLength(); ++i)
      if (!std::isfinite(out[i]))
        throwJs(env, "INVALID_DATA", "attention produced a non-finite output (the logits overflowed float32: scale × q·k is too large); "
                                     "lower the scale or check the queries");
  }

  Napi::Value attention(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CompressedCache& c = cache(env);
    const AttentionArgs a = attentionArgs(info, c.options());
    Napi::Float32Array out = Napi::Float32Array::New(env, a.q.ElementLength());
    run(env, [&] { c.attention(a.seq, a.layer, a.q.Data(), a.qHeads, a.nq, a.qpos, a.scale, out.Data()); });
    checkFiniteOutput(env, out);
    return out;
  }

  // reconstructionAttention(seq, layer, queries, queryHeads, nq, positions, scale, extraKeys,
  // extraValues, recentSlots): the Reconstruct scorer's re-read pass (compressed_cache.h).
  Napi::Value reconstructionAttention(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CompressedCache& c = cache(env);
    const auto& o = c.options();
    const AttentionArgs a = attentionArgs(info, o);
    if (!a.qpos) throwJs(env, "INVALID_ARGUMENT", "a reconstruction pass needs the queries' positions");
    Napi::Float32Array k = typedArray<Napi::Float32Array>(info[7], napi_float32_array, "extraKeys", "Float32Array");
    Napi::Float32Array v = typedArray<Napi::Float32Array>(info[8], napi_float32_array, "extraValues", "Float32Array");
    const size_t extra = o.kvHeads * a.nq * o.headDim;
    if (k.ElementLength() != extra || v.ElementLength() != extra)
      throwJs(env, "INVALID_ARGUMENT", "the re-read's keys and values must be laid out [kvHeads, nq, headDim]");
    const size_t recent = argSize(info, 9, "recentSlots", format::kMaxPositions);
    Napi::Float32Array out = Napi::Float32Array::New(env, a.q.ElementLength());
    run(env, [&] { c.reconstructionAttention(a.seq, a.layer, a.q.Data(), a.qHeads, a.nq, a.qpos, a.scale, k.Data(), v.Data(), recent, out.Data()); });
    checkFiniteOutput(env, out);
    return out;
  }

  // shareScores(seq, sourceLayers): after a reconstruction pass through the first sourceLayers layers.
  Napi::Value shareScores(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CompressedCache& c = cache(env);
    const size_t seq = argSize(info, 0, "sequence"), layers = argSize(info, 1, "sourceLayers", format::kMaxStores);
    run(env, [&] { c.shareScores(seq, layers); });
    return env.Undefined();
  }

  // materialize(seq, layer, f16) -> { tokens, keys, values, positions }, decoded straight into JS memory.
  Napi::Value materialize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CompressedCache& c = cache(env);
    const size_t seq = argSize(info, 0, "sequence"), layer = argSize(info, 1, "layer");
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
    run(env, [&] { c.materializeInto(seq, layer, f16, kp, vp, p.Data()); });
    Napi::Object r = Napi::Object::New(env);
    r.Set("tokens", static_cast<double>(n));
    r.Set("keys", k);
    r.Set("values", v);
    r.Set("positions", p);
    return r;
  }

  // options() -> the options the cache was created with, in the shape the constructor takes (scorer
  // as its id): how a deserialized cache tells TypeScript what it holds.
  Napi::Value options(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const CacheOptions& o = cache(env).options();
    Napi::Object r = Napi::Object::New(env);
    auto set = [&](const char* k, double v) { r.Set(k, v); };
    set("batch", static_cast<double>(o.batch));
    set("layers", static_cast<double>(o.layers));
    set("kvHeads", static_cast<double>(o.kvHeads));
    set("headDim", static_cast<double>(o.headDim));
    set("keyBits", o.spec.keyBits);
    set("valueBits", o.spec.valueBits);
    set("evictFraction", o.spec.evictFraction);
    set("sinkTokens", o.spec.sinkTokens);
    set("recentWindow", o.spec.recentWindow);
    set("residualWindow", o.spec.residualWindow);
    set("pageTokens", o.spec.pageTokens);
    set("scorer", static_cast<double>(o.scorer));
    set("seed", o.seed);
    set("scorerWindow", static_cast<double>(o.scorerWindow));
    set("poolKernel", static_cast<double>(o.poolKernel));
    set("queryHeads", static_cast<double>(o.queryHeads));
    set("budgetTokens", static_cast<double>(o.budgetTokens));
    set("ropeTheta", o.ropeTheta);
    r.Set("transform", o.transform != nullptr);
    return r;
  }

  // counts(seq, layer) -> { tokens, appended, compressedTokens, compressed }
  Napi::Value counts(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CompressedCache& c = cache(env);
    const size_t seq = argSize(info, 0, "sequence"), layer = argSize(info, 1, "layer");
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
    r.Set("scores", static_cast<double>(b.scores));
    r.Set("scratch", static_cast<double>(b.scratch));
    r.Set("transform", static_cast<double>(b.transform));
    r.Set("total", static_cast<double>(b.total()));
    return r;
  }

  // heldBytes() -> { live, limit, reported }: bytes charged to this cache's budget, its limit
  // (0: none) and what V8 was last told.
  Napi::Value heldBytes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("live", static_cast<double>(budget_ ? budget_->live() : 0));
    r.Set("limit", static_cast<double>(budget_ ? budget_->limit() : 0));
    r.Set("reported", static_cast<double>(reported_));
    return r;
  }

  Napi::Value serialize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CompressedCache& c = cache(env);
    std::vector<uint8_t> bytes = guarded(env, [&] { return c.serialize(); });
    Napi::Uint8Array out = Napi::Uint8Array::New(env, bytes.size());
    std::copy(bytes.begin(), bytes.end(), out.Data());
    return out;
  }

  // deserialize(buf, memoryLimitBytes?, transform?) -> NativeCache; `transform` a NativeTransform
  // (a cache coded under one loads only with the tables of the id it recorded).
  static Napi::Value deserialize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Uint8Array buf = typedArray<Napi::Uint8Array>(info[0], napi_uint8_array, "buffer", "Uint8Array");
    Loaded loaded;
    const uint64_t limit = info.Length() > 1 && !info[1].IsUndefined() ? static_cast<uint64_t>(readInteger(info[1], "memoryLimitBytes", 0, kMaxSafeInteger)) : 0;
    std::shared_ptr<const TransformTables> transform = info.Length() > 2 && !info[2].IsUndefined() ? transformTablesOf(env, info[2]) : nullptr;
    loaded.budget = std::make_shared<MemoryBudget>(limit);
    guarded(env, [&] {
      BudgetScope scope(loaded.budget.get());
      loaded.cache = std::make_unique<KvCache>(KvCache::deserialize(buf.Data(), buf.ByteLength(), std::move(transform)));
    });
    return addonData(env).nativeCache.New({Napi::External<Loaded>::New(env, &loaded)});
  }

  Napi::Value dispose(const Napi::CallbackInfo& info) {
    if (busy_) throwJs(info.Env(), "BUSY", "cannot dispose while an async compress() is running; await it first");
    cache_.reset();
    reportExternal(info.Env());
    return info.Env().Undefined();
  }

  // Declared before cache_: the cache's buffers return their bytes to the budget when it is destroyed.
  std::shared_ptr<MemoryBudget> budget_;
  std::unique_ptr<CompressedCache> cache_;
  int64_t reported_ = 0;  // bytes V8 was told this object holds
  bool busy_ = false;
};

// denseAttentionF32(keys, values, kvHeads, n, d, q, qHeads, scale) -> Float32Array [qHeads][d]
Napi::Value denseAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array k = info[0].As<Napi::Float32Array>(), v = info[1].As<Napi::Float32Array>(), q = info[5].As<Napi::Float32Array>();
  const size_t kvHeads = argSize(info, 2, "kvHeads"), n = argSize(info, 3, "tokens"), d = argSize(info, 4, "headDim"), qHeads = argSize(info, 6, "queryHeads");
  if (kvHeads == 0 || d == 0 || kvHeads > static_cast<size_t>(format::kMaxHeads) || d > static_cast<size_t>(kMaxHeadDim) || n > static_cast<size_t>(format::kMaxPositions))
    throwJs(env, "INVALID_ARGUMENT", "denseAttentionF32: shape out of range");
  if (k.ElementLength() != kvHeads * n * d || v.ElementLength() != k.ElementLength() || q.ElementLength() != qHeads * d || qHeads % kvHeads != 0)
    throwJs(env, "INVALID_ARGUMENT", "denseAttentionF32: array lengths do not match the shape");
  Napi::Float32Array out = Napi::Float32Array::New(env, qHeads * d);
  denseAttentionF32(k.Data(), v.Data(), kvHeads, n, d, q.Data(), qHeads, info[7].As<Napi::Number>().FloatValue(), out.Data());
  return out;
}

}  // namespace

void registerCache(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = NativeCache::define(env);
  addonData(env).nativeCache = Napi::Persistent(cls);
  exports.Set("NativeCache", cls);
  exports.Set("denseAttentionF32", Napi::Function::New(env, denseAttention, "denseAttentionF32"));
}

}  // namespace nq
