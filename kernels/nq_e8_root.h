// The 1-bit band code of a calibrated transform (issue 26, nq_transform.h): the E8 lattice's 240
// minimal vectors (norm² 2: 112 of the form (±1, ±1, 0⁶), 128 of the form (±½)⁸ with an even number
// of minus signs) and the origin, 241 of one byte's values. Nearest point in closed form: the best
// root maximizes u·r, from the two largest |u_i| (first kind) or from all signs with the parity
// fixed at the smallest |u_i| (second kind); the origin wins when that inner product is ≤ 1
// (‖u − r‖² = ‖u‖² − 2u·r + 2). On Gaussian bands with the scale factor of nq_scale.h (1.65) it
// reaches NMSE 0.321 per group (bench/transform/rate1-scale.py), where spending the same bits as 2
// on half the bands and 0 on the rest gives 0.545 on equal bands.
//
// Host and device (the CPU transform codec, transform.cu, the attention kernels); the same float
// operations in the same order on both, so codes are identical.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define NQ_ROOT_HD __host__ __device__ __forceinline__
#else
#define NQ_ROOT_HD inline
#endif

namespace nq::e8 {

constexpr uint32_t kRootCodes = 241;  // 0: origin; 1..112: (±1, ±1, 0⁶); 113..240: (±½)⁸

// Index of the pair (i, j), i < j < 8, in lexicographic order (0..27).
NQ_ROOT_HD uint32_t rootPairIndex(int i, int j) { return static_cast<uint32_t>(i * (15 - i) / 2 + (j - i - 1)); }

// Nearest of the 241 points to u (ties: the first kind, then the lower index).
NQ_ROOT_HD uint32_t encodeRoot(const float u[8]) {
  float a[8];
  for (int k = 0; k < 8; ++k) a[k] = u[k] < 0.0f ? -u[k] : u[k];
  // First kind: the two largest |u_k| (first index on ties).
  int i1 = 0;
  for (int k = 1; k < 8; ++k)
    if (a[k] > a[i1]) i1 = k;
  int i2 = i1 == 0 ? 1 : 0;
  for (int k = 0; k < 8; ++k)
    if (k != i1 && a[k] > a[i2]) i2 = k;
  const float s1 = a[i1] + a[i2];
  // Second kind: every sign matched, then, with an odd number of minus signs, the smallest |u_k| flipped.
  int negatives = 0, smallest = 0;
  for (int k = 0; k < 8; ++k) {
    negatives += u[k] < 0.0f ? 1 : 0;
    if (a[k] < a[smallest]) smallest = k;
  }
  float s2 = 0.5f * (((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])));
  if (negatives % 2 != 0) s2 = s2 - a[smallest];
  const float best = s1 >= s2 ? s1 : s2;
  if (!(best > 1.0f)) return 0;  // the origin is at least as close
  if (s1 >= s2) {
    const int i = i1 < i2 ? i1 : i2, j = i1 < i2 ? i2 : i1;
    return 1 + rootPairIndex(i, j) * 4 + (u[i] < 0.0f ? 2u : 0u) + (u[j] < 0.0f ? 1u : 0u);
  }
  uint32_t bits = 0;
  for (int k = 0; k < 7; ++k) {
    bool neg = u[k] < 0.0f;
    if (negatives % 2 != 0 && k == smallest) neg = !neg;
    bits |= (neg ? 1u : 0u) << k;
  }
  return 113 + bits;  // the eighth sign follows from the parity
}

// The point of a code (codebook units). Values 241..255 are not codes; they decode to the origin.
NQ_ROOT_HD void decodeRoot(uint32_t code, float p[8]) {
  for (int k = 0; k < 8; ++k) p[k] = 0.0f;
  if (code == 0 || code >= kRootCodes) return;
  if (code <= 112) {
    const uint32_t c = code - 1, pair = c / 4;
    int i = 0;
    while (pair >= rootPairIndex(i + 1, i + 2) && i < 6) ++i;  // rows of the pair triangle
    const int j = static_cast<int>(pair - rootPairIndex(i, i + 1)) + i + 1;
    p[i] = (c & 2u) ? -1.0f : 1.0f;
    p[j] = (c & 1u) ? -1.0f : 1.0f;
    return;
  }
  const uint32_t bits = code - 113;
  int negatives = 0;
  for (int k = 0; k < 7; ++k) {
    const bool neg = (bits >> k) & 1u;
    negatives += neg ? 1 : 0;
    p[k] = neg ? -0.5f : 0.5f;
  }
  p[7] = negatives % 2 != 0 ? -0.5f : 0.5f;
}

}  // namespace nq::e8
