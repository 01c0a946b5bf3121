// IEEE-754 binary16 <-> binary32 conversion in portable bit arithmetic, round-to-nearest-even.
// Shared by the CPU codec and CUDA kernels so both round scales and FP16 data identically (the
// encoder quantizes with the FP16-rounded scale, so a decoder on either side lands on the same points).
// No intrinsics: x86-64-v2 has no F16C, and a bit-exact software path is what makes parity testable.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define NQ_HALF_HD __host__ __device__ __forceinline__
#else
#define NQ_HALF_HD inline
#endif

namespace nq {

NQ_HALF_HD uint32_t floatBits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

NQ_HALF_HD float bitsFloat(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// Round-to-nearest-even; overflow gives +-Inf, NaN gives a quiet NaN (0x7E00 | sign), subnormal
// halves are produced exactly. Branch-free (every case is computed and selected) so loops vectorize;
// codec_check compares it with the F16C instruction on all 2^32 inputs.
NQ_HALF_HD uint16_t floatToHalf(float f) {
  const uint32_t x = floatBits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t a = x & 0x7FFFFFFFu;
  // normal range: rebias the exponent and round the 13 dropped bits to nearest even (a carry into
  // the exponent is the correct result)
  const uint32_t normal = (a - 0x38000000u + 0x0FFFu + ((a >> 13) & 1u)) >> 13;
  // below 2^-14: adding 0.5f puts the half subnormal unit 2^-24 at the last mantissa bit, so the
  // float addition itself rounds to nearest even
  const uint32_t subnormal = floatBits(bitsFloat(a) + 0.5f) - 0x3F000000u;
  uint32_t h = a < 0x38800000u ? subnormal : normal;
  h = a >= 0x477FF000u ? 0x7C00u : h;  // rounds to >= 65520: Inf
  h = a > 0x7F800000u ? 0x7E00u : h;   // NaN
  return static_cast<uint16_t>(sign | h);
}

NQ_HALF_HD float halfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0x1Fu) return bitsFloat(sign | 0x7F800000u | (mant << 13));  // Inf / NaN
  if (exp != 0) return bitsFloat(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return bitsFloat(sign);
  // subnormal: mant * 2^-24, exact in float
  const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
  return sign ? -v : v;
}

// True when the FP16 bit pattern is Inf or NaN.
NQ_HALF_HD bool halfIsNonFinite(uint16_t h) { return (h & 0x7C00u) == 0x7C00u; }

}  // namespace nq
