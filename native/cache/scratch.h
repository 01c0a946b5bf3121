// Transient buffers of the CPU backend, counted by the accounting allocator (category "scratch").
#pragma once
#include <cstddef>
#include <string>

#include "cache/nq_error.h"
#include "memory/allocator.h"

namespace nq {

template <typename T>
class Scratch {
 public:
  explicit Scratch(size_t n) : n_(n) {
    if (n == 0) return;
    if (!buf_.allocate(n * sizeof(T), oneCategory(MemCategory::Scratch, n * sizeof(T))))
      throw NqError("OUT_OF_MEMORY", "could not allocate " + std::to_string(n * sizeof(T)) + " bytes of scratch memory");
  }
  T* data() { return reinterpret_cast<T*>(buf_.data()); }
  T& operator[](size_t i) { return data()[i]; }
  size_t size() const { return n_; }

 private:
  HostBuffer buf_;
  size_t n_;
};

}  // namespace nq
