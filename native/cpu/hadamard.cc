#include "hadamard.h"

#include <cmath>

#include "../../kernels/nq_e8.h"

namespace nq {

void rotationSigns(uint32_t seed, int headDim, float* signs) {
  for (int i = 0; i < headDim; ++i) signs[i] = e8::rotationSign(seed, static_cast<uint32_t>(i));
}

namespace {

// Unnormalized 8-point Walsh-Hadamard butterflies on consecutive groups of 8 (the stages with
// stride 1, 2, 4, which do not vectorize across the vector the way the wider stages do).
inline void wht8Groups(float* v, int n) {
  for (int g = 0; g < n; g += 8) {
    float* x = v + g;
    const float a0 = x[0] + x[1], a1 = x[0] - x[1], a2 = x[2] + x[3], a3 = x[2] - x[3];
    const float a4 = x[4] + x[5], a5 = x[4] - x[5], a6 = x[6] + x[7], a7 = x[6] - x[7];
    const float b0 = a0 + a2, b2 = a0 - a2, b1 = a1 + a3, b3 = a1 - a3;
    const float b4 = a4 + a6, b6 = a4 - a6, b5 = a5 + a7, b7 = a5 - a7;
    x[0] = b0 + b4;
    x[4] = b0 - b4;
    x[1] = b1 + b5;
    x[5] = b1 - b5;
    x[2] = b2 + b6;
    x[6] = b2 - b6;
    x[3] = b3 + b7;
    x[7] = b3 - b7;
  }
}

inline void whtBlock(float* v, int n) {
  wht8Groups(v, n);
  for (int h = 8; h < n; h <<= 1) {
    for (int i = 0; i < n; i += 2 * h) {
      float* a = v + i;
      float* b = v + i + h;
      for (int j = 0; j < h; ++j) {
        const float x = a[j], y = b[j];
        a[j] = x + y;
        b[j] = x - y;
      }
    }
  }
  const float norm = 1.0f / std::sqrt(static_cast<float>(n));
  for (int j = 0; j < n; ++j) v[j] *= norm;
}

}  // namespace

void hadamardTransform(float* v, int headDim) {
  int sizes[32];
  const int blocks = e8::hadamardBlocks(headDim, sizes);
  for (int b = 0, off = 0; b < blocks; off += sizes[b], ++b) whtBlock(v + off, sizes[b]);
}

void rotateForward(float* v, int headDim, const float* signs) {
  if (signs) {
    for (int i = 0; i < headDim; ++i) v[i] *= signs[i];
  }
  hadamardTransform(v, headDim);
}

void rotateInverse(float* v, int headDim, const float* signs) {
  hadamardTransform(v, headDim);
  if (signs) {
    for (int i = 0; i < headDim; ++i) v[i] *= signs[i];
  }
}

}  // namespace nq
