// Reading JS numbers in the binding without silent truncation: Int32Value()/Uint32Value() wrap
// 2**32 to 0 and 2**31 to a negative number, which then reaches C++ as a size or a loop bound.
// TypeScript validates first (src/runtime/validate.ts); these checks are the native guard behind it,
// so a value the TS layer let through by mistake is an INVALID_ARGUMENT, never a wrapped integer.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdio>
#include <cstdint>
#include <string>

#include "binding/errors.h"

namespace nq {

// The largest integer a double holds exactly (Number.MAX_SAFE_INTEGER).
constexpr int64_t kMaxSafeInteger = (int64_t{1} << 53) - 1;

inline std::string describeJs(const Napi::Value& v) {
  if (v.IsNumber()) {
    const double d = v.As<Napi::Number>().DoubleValue();
    if (std::isnan(d)) return "NaN";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", d);
    return buf;
  }
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsString()) return "a string";
  if (v.IsBoolean()) return "a boolean";
  return "an object";
}

// An integer in [min, max], else INVALID_ARGUMENT naming `what`.
inline int64_t readInteger(const Napi::Value& v, const char* what, int64_t min, int64_t max) {
  if (v.IsNumber()) {
    const double d = v.As<Napi::Number>().DoubleValue();
    if (std::isfinite(d) && std::trunc(d) == d && d >= static_cast<double>(min) && d <= static_cast<double>(max)) return static_cast<int64_t>(d);
  }
  throwJs(v.Env(), "INVALID_ARGUMENT",
          std::string("Expected an integer in [") + std::to_string(min) + ", " + std::to_string(max) + "] for " + what + " but received " + describeJs(v));
}

inline size_t readSize(const Napi::Value& v, const char* what, int64_t max = kMaxSafeInteger) {
  return static_cast<size_t>(readInteger(v, what, 0, max));
}

inline double readFinite(const Napi::Value& v, const char* what) {
  if (v.IsNumber()) {
    const double d = v.As<Napi::Number>().DoubleValue();
    if (std::isfinite(d)) return d;
  }
  throwJs(v.Env(), "INVALID_ARGUMENT", std::string("Expected a finite number for ") + what + " but received " + describeJs(v));
}

inline bool readBool(const Napi::Value& v, const char* what) {
  if (!v.IsBoolean()) throwJs(v.Env(), "INVALID_ARGUMENT", std::string("Expected a boolean for ") + what + " but received " + describeJs(v));
  return v.As<Napi::Boolean>().Value();
}

}  // namespace nq
