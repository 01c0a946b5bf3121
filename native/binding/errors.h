// One way to turn a failure into a JS exception: an Error whose `code` is one of the TypeScript
// NexusQuantErrorCode values, so the TS layer can rethrow it as a NexusQuantError unchanged.
// Every C++ exception stops at the binding boundary (guarded / catchAll): an exception escaping
// into N-API would abort the process.
#pragma once
#include <napi.h>

#include <exception>
#include <new>
#include <string>

#include "cache/nq_error.h"

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

// A failure caught off the JS thread (async work), turned into a JS error later on the JS thread.
struct NativeFailure {
  const char* code = nullptr;  // nullptr: no failure
  std::string message;
  explicit operator bool() const { return code != nullptr; }
};

// Runs f and returns what it threw as a code + message; works on any thread (no N-API inside).
template <typename F>
NativeFailure catchAll(F&& f) noexcept {
  try {
    f();
    return {};
  } catch (const NqError& e) {
    return {e.code, e.what()};
  } catch (const std::bad_alloc&) {
    return {"OUT_OF_MEMORY", "out of host memory (a native allocation failed)"};
  } catch (const std::exception& e) {
    return {"NATIVE_ERROR", std::string("unexpected native failure: ") + e.what()};
  } catch (...) {
    return {"NATIVE_ERROR", "unexpected native failure (a non-standard C++ exception)"};
  }
}

// Runs f on the JS thread, turning every C++ exception into a typed JS error. JS errors that f
// throws itself (Napi::Error) pass through unchanged.
template <typename F>
auto guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const NqError& e) {
    throw makeJsError(env, e.code, e.what());
  } catch (const std::bad_alloc&) {
    throw makeJsError(env, "OUT_OF_MEMORY", "out of host memory (a native allocation failed)");
  } catch (const std::exception& e) {
    throw makeJsError(env, "NATIVE_ERROR", std::string("unexpected native failure: ") + e.what());
  } catch (...) {
    throw makeJsError(env, "NATIVE_ERROR", "unexpected native failure (a non-standard C++ exception)");
  }
}

}  // namespace nq
