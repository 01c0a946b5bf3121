// The exception coordinators (the cache) throw; the binding turns it into a JS error with `code`.
// Math functions (codec, scoring) never throw: they return a status.
#pragma once
#include <stdexcept>
#include <string>

namespace nq {

struct NqError : std::runtime_error {
  const char* code;  // a NexusQuantErrorCode string
  NqError(const char* c, const std::string& message) : std::runtime_error(message), code(c) {}
};

}  // namespace nq
