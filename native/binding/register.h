// Each binding file registers its functions on the module's exports; addon.cc only calls these.
#pragma once
#include <napi.h>

namespace nq {
void registerBackend(Napi::Env env, Napi::Object exports);
void registerMemory(Napi::Env env, Napi::Object exports);
void registerFormat(Napi::Env env, Napi::Object exports);
void registerCache(Napi::Env env, Napi::Object exports);
void registerAttention(Napi::Env env, Napi::Object exports);
void registerCodec(Napi::Env env, Napi::Object exports);
void registerCuda(Napi::Env env, Napi::Object exports);  // registers nothing in a CPU-only build
}  // namespace nq
