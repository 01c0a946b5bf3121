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

// Round-to-nearest-even; overflow gives +-Inf, NaN stays NaN (quiet), subnormals are produced exactly.
NQ_HALF_HD uint16_t floatToHalf(float f) {
  const uint32_t x = floatBits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7FFFFFFFu;
  if (absx >= 0x7F800000u) {  // Inf or NaN
    return static_cast<uint16_t>(sign | 0x7C00u | (absx > 0x7F800000u ? 0x0200u : 0u));
  }
  if (absx >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds to >= 65520 -> Inf
  if (absx < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
    if (absx < 0x33000000u) return static_cast<uint16_t>(sign);  // < 2^-25 rounds to zero (tie at 2^-25 -> 0, even)
    const uint32_t exp = absx >> 23;
    const uint32_t mant = (absx & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126u - exp;  // 14..24 + ... -> value = mant * 2^(exp-150); half subnormal unit 2^-24
    // result = round(mant * 2^(exp - 150 + 24)) = round(mant >> (126 - exp))
    uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  // normal: rebias exponent (127 -> 15) and round the 13 dropped mantissa bits to nearest even
  uint32_t h = ((absx - 0x38000000u) >> 13);
  const uint32_t rem = absx & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // carry into the exponent is correct rounding
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
