// denseAttention(): the dense baselines of `nexusquant bench attention`, run by the same fused kernel
// family and ISA level as attention on codes (so ratios compare storage formats, not loop quality).
#include <string>
#include <vector>

#include "binding/errors.h"
#include "binding/register.h"
#include "cpu/attention.h"
#include "cpu/isa.h"
#include "cache/nq_error.h"

namespace nq {
namespace {

// denseAttention(keys, values, kvHeads, n, d, q, qHeads, nq, scale) -> Float32Array [qHeads][nq][d].
// keys/values [kvHeads][n][d]: Float32Array (FP32) or Uint16Array (FP16 bits). Query j sits at
// position n - nq + j and sees rows 0..its position (causal).
Napi::Value denseAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 9 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[5].IsTypedArray())
    throwJs(env, "INVALID_ARGUMENT", "denseAttention(keys, values, kvHeads, n, d, q, qHeads, nq, scale): missing arguments");
  const Napi::TypedArray k = info[0].As<Napi::TypedArray>(), v = info[1].As<Napi::TypedArray>();
  const bool f16 = k.TypedArrayType() == napi_uint16_array;
  if (k.TypedArrayType() != v.TypedArrayType() || (!f16 && k.TypedArrayType() != napi_float32_array))
    throwJs(env, "INVALID_ARGUMENT", "denseAttention: keys and values must both be Float32Array or both Uint16Array (FP16)");
  Napi::Float32Array q = info[5].As<Napi::Float32Array>();
  auto size = [&](int i) {
    const double x = info[i].As<Napi::Number>().DoubleValue();
    if (!(x >= 0) || x > 1e12) throwJs(env, "INVALID_ARGUMENT", "denseAttention: argument " + std::to_string(i) + " must be a count");
    return static_cast<size_t>(x);
  };
  const size_t H = size(2), n = size(3), d = size(4), qHeads = size(6), nq = size(7);
  if (H == 0 || d == 0 || d % 16 != 0 || qHeads % H != 0 || nq == 0 || nq > n || k.ElementLength() != H * n * d ||
      v.ElementLength() != k.ElementLength() || q.ElementLength() != qHeads * nq * d)
    throwJs(env, "INVALID_ARGUMENT", "denseAttention: array lengths do not match the shape (d a multiple of 16, nq <= n)");
  Napi::Float32Array out = Napi::Float32Array::New(env, qHeads * nq * d);
  std::vector<int32_t> pos(nq);
  for (size_t j = 0; j < nq; ++j) pos[j] = static_cast<int32_t>(n - nq + j);
  DenseSource src(static_cast<uint8_t*>(k.ArrayBuffer().Data()) + k.ByteOffset(), static_cast<uint8_t*>(v.ArrayBuffer().Data()) + v.ByteOffset(),
                  f16, n, d);
  AttentionProblem p;
  p.kvHeads = H;
  p.group = qHeads / H;
  p.nq = nq;
  p.d = d;
  p.q = q.Data();
  p.qpos = pos.data();
  p.scale = info[8].As<Napi::Number>().FloatValue();
  p.out = out.Data();
  try {
    fusedAttention(attentionOps(activeIsa(), d), p, {&src});
  } catch (const NqError& e) {
    throwJs(env, e.code, e.what());
  }
  return out;
}

}  // namespace

void registerAttention(Napi::Env env, Napi::Object exports) {
  exports.Set("denseAttention", Napi::Function::New(env, denseAttention, "denseAttention"));
}

}  // namespace nq
