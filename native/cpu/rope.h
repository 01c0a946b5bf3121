// RoPE (rotate-half convention over the whole head) at a token position: what a cache with
// un-RoPE'd key storage removes before quantizing and re-applies as keys are read back. Computed in
// double so that removing and re-applying cancel to float rounding.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace nq {

class RopeTable {
 public:
  RopeTable() = default;
  RopeTable(double theta, size_t headDim);
  bool active() const { return !invFreq_.empty(); }
  // Rotates one row of headDim floats by `position` (inverse: by -position).
  void apply(float* row, int64_t position, bool inverse) const;

 private:
  std::vector<double> invFreq_;
};

}  // namespace nq
