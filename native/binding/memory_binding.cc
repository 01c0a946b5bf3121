// memoryStats(): live bytes by category from the accounting allocator, for host and device.
#include "binding/args.h"
#include "binding/register.h"
#include "memory/allocator.h"

namespace nq {
namespace {

Napi::Object snapshotToJs(Napi::Env env, const MemorySnapshot& s) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Object byCategory = Napi::Object::New(env);
  for (int i = 0; i < kMemCategories; ++i) byCategory.Set(memCategoryName(static_cast<MemCategory>(i)), static_cast<double>(s.live[i]));
  o.Set("byCategory", byCategory);
  o.Set("totalBytes", static_cast<double>(s.totalLive));
  o.Set("peakBytes", static_cast<double>(s.peak));
  o.Set("allocations", static_cast<double>(s.allocations));
  return o;
}

Napi::Value memoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
  r.Set("host", snapshotToJs(env, counters(MemSpace::Host).snapshot()));
  r.Set("device", snapshotToJs(env, counters(MemSpace::Device).snapshot()));
  return r;
}

Napi::Value resetPeakMemory(const Napi::CallbackInfo& info) {
  counters(MemSpace::Host).resetPeak();
  counters(MemSpace::Device).resetPeak();
  return info.Env().Undefined();
}

Napi::Value hostAvailable(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(hostAvailableBytes()));
}

// setHostMemoryLimit(bytes): 0 removes the process-wide limit.
Napi::Value setHostLimit(const Napi::CallbackInfo& info) {
  setHostMemoryLimit(static_cast<uint64_t>(readInteger(info[0], "bytes", 0, kMaxSafeInteger)));
  return info.Env().Undefined();
}

Napi::Value hostLimit(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(hostMemoryLimit())); }

}  // namespace

void registerMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("memoryStats", Napi::Function::New(env, memoryStats, "memoryStats"));
  exports.Set("resetPeakMemory", Napi::Function::New(env, resetPeakMemory, "resetPeakMemory"));
  exports.Set("hostAvailableBytes", Napi::Function::New(env, hostAvailable, "hostAvailableBytes"));
  exports.Set("setHostMemoryLimit", Napi::Function::New(env, setHostLimit, "setHostMemoryLimit"));
  exports.Set("hostMemoryLimit", Napi::Function::New(env, hostLimit, "hostMemoryLimit"));
}

}  // namespace nq
