// Each binding file registers its functions on the module's exports; addon.cc only calls these.
#pragma once
#include <napi.h>

namespace nq {

// State the addon keeps per JS environment (main thread and each worker_thread load the addon
// separately): set once in addon.cc with Env::SetInstanceData, freed with the environment. Never a
// static: a static JS reference created by one environment is invalid in every other.
struct AddonData {
  Napi::FunctionReference nativeCache;  // the NativeCache class, for deserialize()
  Napi::FunctionReference nativeTransform;  // the NativeTransform class, to recognize its instances
};
inline AddonData& addonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

void registerBackend(Napi::Env env, Napi::Object exports);
void registerMemory(Napi::Env env, Napi::Object exports);
void registerFormat(Napi::Env env, Napi::Object exports);
void registerCache(Napi::Env env, Napi::Object exports);
void registerTransform(Napi::Env env, Napi::Object exports);
void registerAttention(Napi::Env env, Napi::Object exports);
void registerCodec(Napi::Env env, Napi::Object exports);
void registerCpuOps(Napi::Env env, Napi::Object exports);
void registerCuda(Napi::Env env, Napi::Object exports);  // only cudaSupport in a CPU-only build
// The lab's functions (bench/native/lab_binding.cc), compiled only with NEXUSQUANT_LAB=ON.
void registerLab(Napi::Env env, Napi::Object exports);
}  // namespace nq
