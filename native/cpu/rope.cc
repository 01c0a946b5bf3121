#include "cpu/rope.h"

#include <cmath>

namespace nq {

RopeTable::RopeTable(double theta, size_t headDim) {
  if (theta <= 0) return;
  for (size_t i = 0; i < headDim / 2; ++i) invFreq_.push_back(std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(headDim)));
}

void RopeTable::apply(float* row, int64_t position, bool inverse) const {
  const size_t half = invFreq_.size();
  const double p = inverse ? -static_cast<double>(position) : static_cast<double>(position);
  for (size_t i = 0; i < half; ++i) {
    const double angle = p * invFreq_[i];
    const double c = std::cos(angle), sn = std::sin(angle);
    const double a = row[i], b = row[i + half];
    row[i] = static_cast<float>(a * c - b * sn);
    row[i + half] = static_cast<float>(b * c + a * sn);
  }
}

}  // namespace nq
