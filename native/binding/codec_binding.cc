// quantize / dequantize for standalone tensors. The tensor's bytes (header + scales + codes) are one
// allocation from the accounting allocator (category "tensor"), handed to JS as an external
// ArrayBuffer whose finalizer returns them; so measureMemory() sees a QuantizedTensor's real bytes.
// Large inputs run as async work, split over the CPU threads with parallelFor. Async work never reads
// or writes JS memory from the worker thread: a caller may transfer or detach its buffers while the
// work runs (postMessage with a transfer list, structuredClone with `transfer`), which frees them.
// So inputs are copied into allocator memory before queuing and outputs are copied back on the JS
// thread once the work is done (a reference would not help: a transfer detaches the buffer anyway).
#include <atomic>
#include <vector>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "binding/args.h"
#include "binding/codec_params.h"
#include "binding/errors.h"
#include "binding/register.h"
#include "cpu/codec.h"
#include "cpu/parallel.h"
#include "memory/allocator.h"
#include "nq_format.h"

namespace nq {
namespace {

using TensorHeader = format::QuantizedTensorHeader;

struct QuantizeJob {
  CodecParams params{};
  bool f16 = false;
  const void* input = nullptr;  // JS memory (sync) or inputCopy's bytes (async)
  std::shared_ptr<HostBuffer> inputCopy;
  size_t vectors = 0;
  uint8_t* tensor = nullptr;  // header + scales + codes
  size_t tensorBytes = 0;
  EncodeResult result{Status::Ok, 0};

  void run() {
    uint16_t* scales = reinterpret_cast<uint16_t*>(tensor + sizeof(TensorHeader));
    uint8_t* codes = tensor + sizeof(TensorHeader) + vectors * 2;
    const size_t cb = codeBytesPerVector(params);
    // Check every vector first (cheap) so that a NaN anywhere leaves nothing half-written.
    std::atomic<size_t> bad{SIZE_MAX};
    parallelFor(vectors, kMinVectorsPerThread, [&](size_t b, size_t e) {
      const size_t d = static_cast<size_t>(params.headDim);
      for (size_t i = b * d; i < e * d; ++i) {
        const bool nonFinite = f16 ? halfIsNonFinite(static_cast<const uint16_t*>(input)[i]) : !std::isfinite(static_cast<const float*>(input)[i]);
        if (nonFinite) {
          size_t v = i / d, cur = bad.load();
          while (v < cur && !bad.compare_exchange_weak(cur, v)) {
          }
          return;
        }
      }
    });
    if (bad.load() != SIZE_MAX) {
      result = {Status::NonFinite, bad.load()};
      return;
    }
    parallelFor(vectors, kMinVectorsPerThread, [&](size_t b, size_t e) {
      // Pointers are offset to the chunk; the codec indexes from `begin` relative to them.
      const size_t d = static_cast<size_t>(params.headDim);
      EncodeResult r = f16 ? encodeF16(params, static_cast<const uint16_t*>(input) + b * d, 0, e - b, codes + b * cb, scales + b)
                           : encodeF32(params, static_cast<const float*>(input) + b * d, 0, e - b, codes + b * cb, scales + b);
      (void)r;  // finiteness was checked above
    });
    TensorHeader h{};
    std::memcpy(h.magic, format::kQuantizedTensorMagic, 4);
    h.version = format::kQuantizedTensorVersion;
    h.bits = static_cast<uint8_t>(params.bits);
    h.flags = params.rotate ? 1 : 0;
    h.headDim = static_cast<uint32_t>(params.headDim);
    h.seed = params.seed;
    h.vectors = vectors;
    std::memcpy(tensor, &h, sizeof h);
  }
};

// A copy of `bytes` of JS memory in allocator memory (category scratch), owned by async work.
std::shared_ptr<HostBuffer> copyForWorker(Napi::Env env, const void* data, size_t bytes, const char* what) {
  auto copy = std::make_shared<HostBuffer>();
  if (bytes > 0 && !copy->allocate(bytes, oneCategory(MemCategory::Scratch, bytes)))
    throwJs(env, "OUT_OF_MEMORY", "could not allocate " + std::to_string(bytes) + " bytes to copy " + what + " for async work: " +
                                      "the limit was " + allocationFailureReason());
  if (bytes > 0) std::memcpy(copy->data(), data, bytes);
  return copy;
}

Napi::TypedArray typedInput(const Napi::Value& v, const char* what, bool f16Allowed) {
  if (v.IsTypedArray()) {
    const napi_typedarray_type t = v.As<Napi::TypedArray>().TypedArrayType();
    if (t == napi_float32_array || (f16Allowed && t == napi_uint16_array)) return v.As<Napi::TypedArray>();
  }
  throwJs(v.Env(), "INVALID_ARGUMENT", std::string("Expected a Float32Array") + (f16Allowed ? " or a Uint16Array" : "") + " for " + what);
}

// Allocates the tensor through the accounting allocator and wraps it as an external ArrayBuffer.
Napi::ArrayBuffer allocateTensor(Napi::Env env, size_t bytes, uint8_t*& data) {
  const CategoryBytes split = oneCategory(MemCategory::Tensor, bytes);
  data = static_cast<uint8_t*>(hostAllocate(bytes, split));
  if (!data) throwJs(env, "OUT_OF_MEMORY", "could not allocate " + std::to_string(bytes) + " bytes for a quantized tensor: the limit was " +
                                              allocationFailureReason());
  return Napi::ArrayBuffer::New(env, data, bytes, [bytes](Napi::Env, void* p) { hostRelease(p, oneCategory(MemCategory::Tensor, bytes)); });
}

QuantizeJob prepareQuantize(const Napi::CallbackInfo& info, Napi::ArrayBuffer& buffer, bool async) {
  Napi::Env env = info.Env();
  Napi::TypedArray input = typedInput(info[0], "data", true);
  QuantizeJob job;
  job.params = readCodecParams(info, 1);
  if (!codecSupports(job.params.headDim, job.params.bits)) throwJs(env, "UNSUPPORTED", "headDim/bits not supported by the codec");
  if (input.ElementLength() % static_cast<size_t>(job.params.headDim) != 0) throwJs(env, "INVALID_ARGUMENT", "data.length must be a multiple of headDim");
  job.f16 = input.TypedArrayType() == napi_uint16_array;
  job.input = job.f16 ? static_cast<const void*>(input.As<Napi::Uint16Array>().Data()) : static_cast<const void*>(input.As<Napi::Float32Array>().Data());
  if (async) {
    job.inputCopy = copyForWorker(env, job.input, input.ByteLength(), "the input");
    job.input = job.inputCopy->data();
  }
  job.vectors = input.ElementLength() / static_cast<size_t>(job.params.headDim);
  job.tensorBytes = format::quantizedTensorBytes(job.vectors, job.params.headDim, job.params.bits);
  buffer = allocateTensor(env, job.tensorBytes, job.tensor);
  return job;
}

Napi::Value nonFiniteError(Napi::Env env, size_t vector) {
  return makeJsError(env, "INVALID_DATA", "the input holds NaN or Inf in vector " + std::to_string(vector) + "; nothing was quantized").Value();
}

Napi::Value quantizeSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::ArrayBuffer buffer;
  QuantizeJob job = prepareQuantize(info, buffer, false);
  job.run();
  if (job.result.status == Status::NonFinite) throw Napi::Error(env, nonFiniteError(env, job.result.badVector));
  return buffer;
}

class QuantizeWorker : public Napi::AsyncWorker {
 public:
  // `buffer` is the tensor's own (native) memory, which no one else holds until the promise resolves.
  QuantizeWorker(Napi::Env env, QuantizeJob job, Napi::ArrayBuffer buffer)
      : Napi::AsyncWorker(env), job_(std::move(job)), deferred_(Napi::Promise::Deferred::New(env)) {
    buffer_ = Napi::Persistent(buffer);
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override { failure_ = catchAll([&] { job_.run(); }); }
  void OnOK() override {
    job_.inputCopy.reset();
    if (failure_) deferred_.Reject(makeJsError(Env(), failure_.code, failure_.message).Value());
    else if (job_.result.status == Status::NonFinite) deferred_.Reject(nonFiniteError(Env(), job_.result.badVector));
    else deferred_.Resolve(buffer_.Value());
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(makeJsError(Env(), "NATIVE_ERROR", e.Message()).Value()); }

 private:
  QuantizeJob job_;
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
  NativeFailure failure_;
};

Napi::Value quantizeAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::ArrayBuffer buffer;
  QuantizeJob job = prepareQuantize(info, buffer, true);
  auto* w = new QuantizeWorker(env, std::move(job), buffer);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

struct DequantizeJob {
  CodecParams params{};
  const uint8_t* codes = nullptr;
  const uint16_t* scales = nullptr;
  size_t vectors = 0;
  bool f16 = false;
  void* out = nullptr;
  void run() const {
    const size_t d = static_cast<size_t>(params.headDim), cb = codeBytesPerVector(params);
    parallelFor(vectors, kMinVectorsPerThread, [&](size_t b, size_t e) {
      if (f16) decodeF16(params, codes + b * cb, scales + b, 0, e - b, static_cast<uint16_t*>(out) + b * d);
      else decodeF32(params, codes + b * cb, scales + b, 0, e - b, static_cast<float*>(out) + b * d);
    });
  }
};

// dequantize(codes, scales, headDim, bits, rotate, seed, out) -> out (Float32Array or Uint16Array)
DequantizeJob prepareDequantize(const Napi::CallbackInfo& info, Napi::TypedArray& out) {
  Napi::Env env = info.Env();
  DequantizeJob job;
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) throwJs(env, "INVALID_ARGUMENT", "Expected a Uint8Array for codes");
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array) throwJs(env, "INVALID_ARGUMENT", "Expected a Uint16Array for scales");
  Napi::Uint8Array codes = info[0].As<Napi::Uint8Array>();
  Napi::Uint16Array scales = info[1].As<Napi::Uint16Array>();
  job.codes = codes.Data();
  job.scales = scales.Data();
  job.vectors = scales.ElementLength();
  job.params = readCodecParams(info, 2);
  if (!codecSupports(job.params.headDim, job.params.bits)) throwJs(env, "UNSUPPORTED", "headDim/bits not supported by the codec");
  out = typedInput(info[6], "out", true);
  job.f16 = out.TypedArrayType() == napi_uint16_array;
  if (codes.ElementLength() != job.vectors * codeBytesPerVector(job.params) || out.ElementLength() != job.vectors * static_cast<size_t>(job.params.headDim))
    throwJs(env, "INVALID_ARGUMENT", "codes, scales and out lengths do not match the tensor's vectors, headDim and bits");
  job.out = job.f16 ? static_cast<void*>(out.As<Napi::Uint16Array>().Data()) : static_cast<void*>(out.As<Napi::Float32Array>().Data());
  return job;
}

Napi::Value dequantizeSync(const Napi::CallbackInfo& info) {
  Napi::TypedArray out;
  prepareDequantize(info, out).run();
  return info[6];
}

// Works on copies: codes and scales copied in, the output decoded into allocator memory and copied
// into `out` on the JS thread (refused with a typed error when `out` was detached meanwhile).
class DequantizeWorker : public Napi::AsyncWorker {
 public:
  DequantizeWorker(Napi::Env env, DequantizeJob job, Napi::TypedArray out)
      : Napi::AsyncWorker(env), job_(job), deferred_(Napi::Promise::Deferred::New(env)), outBytes_(out.ByteLength()) {
    const size_t codeBytes = job_.vectors * codeBytesPerVector(job_.params), scaleBytes = job_.vectors * 2;
    input_ = std::make_shared<HostBuffer>();
    if (!input_->allocate(codeBytes + scaleBytes + outBytes_, oneCategory(MemCategory::Scratch, codeBytes + scaleBytes + outBytes_)) &&
        codeBytes + scaleBytes + outBytes_ > 0)
      throwJs(env, "OUT_OF_MEMORY", "could not allocate " + std::to_string(codeBytes + scaleBytes + outBytes_) +
                                        " bytes of working memory for dequantize(): the limit was " + allocationFailureReason());
    uint8_t* base = input_->data();
    if (codeBytes) std::memcpy(base, job_.codes, codeBytes);
    if (scaleBytes) std::memcpy(base + codeBytes, job_.scales, scaleBytes);
    job_.codes = base;
    job_.scales = reinterpret_cast<const uint16_t*>(base + codeBytes);  // codeBytes is even: bits x headDim/8 x vectors, headDim % 8 == 0
    job_.out = base + codeBytes + scaleBytes;
    out_ = Napi::Persistent(static_cast<Napi::Object>(out));
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override { failure_ = catchAll([&] { job_.run(); }); }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::TypedArray out = out_.Value().As<Napi::TypedArray>();
    if (failure_) deferred_.Reject(makeJsError(env, failure_.code, failure_.message).Value());
    else if (out.ByteLength() != outBytes_ || out.ArrayBuffer().IsDetached())
      deferred_.Reject(makeJsError(env, "INVALID_ARGUMENT", "the output array was transferred or detached while dequantize() ran; nothing was written").Value());
    else {
      if (outBytes_) std::memcpy(static_cast<uint8_t*>(out.ArrayBuffer().Data()) + out.ByteOffset(), job_.out, outBytes_);
      deferred_.Resolve(out);
    }
    input_.reset();
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(makeJsError(Env(), "NATIVE_ERROR", e.Message()).Value()); }

 private:
  DequantizeJob job_;
  Napi::Promise::Deferred deferred_;
  size_t outBytes_;
  std::shared_ptr<HostBuffer> input_;
  Napi::ObjectReference out_;
  NativeFailure failure_;
};

Napi::Value dequantizeAsync(const Napi::CallbackInfo& info) {
  Napi::TypedArray out;
  DequantizeJob job = prepareDequantize(info, out);
  auto* w = new DequantizeWorker(info.Env(), job, out);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value codecInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
  Napi::Object factors = Napi::Object::New(env);
  for (int b = 2; b <= 4; ++b) factors.Set(std::to_string(b), scaleFactor(b));
  r.Set("scaleFactors", factors);
  r.Set("maxHeadDim", kMaxHeadDim);
  r.Set("supports", Napi::Function::New(env, [](const Napi::CallbackInfo& i) {
          auto small = [](const Napi::Value& v) {  // Int32Value() would wrap 2**32 + 128 to 128
            const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : 0;
            return d >= 0 && d <= 1 << 20 && std::trunc(d) == d ? static_cast<int>(d) : 0;
          };
          return Napi::Boolean::New(i.Env(), codecSupports(small(i[0]), small(i[1])));
        }));
  return r;
}

}  // namespace

void registerCodec(Napi::Env env, Napi::Object exports) {
  exports.Set("quantizeSync", Napi::Function::New(env, quantizeSync, "quantizeSync"));
  exports.Set("quantizeAsync", Napi::Function::New(env, quantizeAsync, "quantizeAsync"));
  exports.Set("dequantizeSync", Napi::Function::New(env, dequantizeSync, "dequantizeSync"));
  exports.Set("dequantizeAsync", Napi::Function::New(env, dequantizeAsync, "dequantizeAsync"));
  exports.Set("codecInfo", Napi::Function::New(env, codecInfo, "codecInfo"));
}

}  // namespace nq
