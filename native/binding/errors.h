// One way to turn a failure into a JS exception: an Error whose `code` is one of the TypeScript
// NexusQuantErrorCode values, so the TS layer can rethrow it as a NexusQuantError unchanged.
#pragma once
#include <napi.h>
#include <string>

namespace nq {

[[noreturn]] inline void throwJs(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  throw err;
}

inline Napi::Error makeJsError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

}  // namespace nq
