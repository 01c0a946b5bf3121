// The encoder's per-vector scale and input clamps, shared by the CPU codec (native/cpu/codec.cc) and
// the CUDA encode kernel (kernels/encode.cu), so both choose bit-identical FP16 scales. The CUDA
// library is compiled with --fmad=false (CMakeLists.txt) and the host build targets x86-64-v2 (no
// FMA), so `a * b + c` rounds the same way on both sides.
#pragma once
#include <cstdint>

#include "nq_half.h"

#include <cmath>
#if defined(__CUDACC__)
#define NQ_SCALE_HD __host__ __device__ inline
#else
#define NQ_SCALE_HD inline
#endif

namespace nq {

// Finite inputs are clamped to +-2^100 before rotating (the Hadamard sums cannot overflow), and
// groups to +-1024 codebook units before the search (lattice rounding stays in int range).
constexpr float kInputClamp = 1.2676506e30f;  // 2^100
constexpr float kGroupClamp = 1024.0f;
constexpr uint16_t kMaxFiniteHalf = 0x7BFFu;  // 65504

// scale = scaleFactor(bits) * RMS of the rotated vector. Tuned for minimum NMSE on Gaussian d = 128
// vectors by `bench/native/build/codec_check tune 20000` (0.01 grid; docs/format.md).
constexpr float kScaleFactor2 = 0.95f;
constexpr float kScaleFactor3 = 1.05f;
constexpr float kScaleFactor4 = 1.15f;
// The 1-bit band code of a calibrated transform (nq_e8_root.h: 240 roots and the origin), whose
// points all have norm² 2: minimum NMSE on Gaussian bands at 1.65 (bench/transform/rate1-scale.py,
// 0.05 grid). No flat code has 1 bit.
constexpr float kScaleFactor1 = 1.65f;
NQ_SCALE_HD constexpr float scaleFactor(int bits) {
  return bits == 1 ? kScaleFactor1 : (bits == 2 ? kScaleFactor2 : (bits == 3 ? kScaleFactor3 : kScaleFactor4));
}

// FP16 scale of a rotated vector: factor * RMS, rounded to nearest even, saturated at 65504.
NQ_SCALE_HD uint16_t chooseScale(const float* v, int n, float factor) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += v[i + j] * v[i + j];
  float ss = 0.0f;
  for (int j = 0; j < 8; ++j) ss += acc[j];
  double rms;
#if defined(__CUDA_ARCH__)
  using ::isfinite;
  using ::sqrt;
#else
  using std::isfinite;
  using std::sqrt;
#endif
  if (isfinite(ss)) {
    rms = sqrt(static_cast<double>(ss) / n);
  } else {  // finite inputs whose squares overflow float
    double d = 0.0;
    for (int i = 0; i < n; ++i) d += static_cast<double>(v[i]) * v[i];
    rms = sqrt(d / n);
  }
  const double s = factor * rms;
  if (s >= 65504.0) return kMaxFiniteHalf;
  return floatToHalf(static_cast<float>(s));
}

}  // namespace nq
