// Nearest-codeword search for the E8 codebooks of nq_e8.h, shared by host C++ and CUDA.
// 2 bits: nq_e8_search2.h (exact). 3/4 bits, here: the nearest point F of the fine coset
// E8/m + 1/4 (one E8 decode). If its coarse cell is in the 2-bit codebook, F is the nearest
// codeword of the whole codebook (exact). Otherwise the group overloads the ball (13-24% of
// Gaussian groups at the tuned scales); the encoder then starts from the best of a few valid
// candidates and descends over fine-lattice neighbours. That search is not exhaustive:
// docs/format.md measures it against an exact search (93% / 90% of overloaded groups get the true
// nearest codeword at 3 / 4 bits; about +1.0% / +1.7% NMSE overall).
#pragma once
#include <cmath>
#include <cstdint>

#include "nq_e8.h"
#include "nq_e8_search2.h"

namespace nq::e8 {

constexpr int kRoots = 240;
constexpr int kDescentSteps = 12;   // overload refinement: moves at most
constexpr int kDescentChecks = 24;  // overload refinement: candidate neighbours per move at most
constexpr int kRadialStarts = 4;    // overload refinement: starts f y, f = 1 - 2^j / 16 (j < 4)

// Host copy of finePoint(k, 2) for the 256 3-bit fine indices (device code computes them).
struct Fine2Table {
  float v[256][8];
};
inline const Fine2Table& hostFine2Table() {
  static const Fine2Table t = [] {
    Fine2Table x;
    for (uint32_t k = 0; k < 256; ++k) finePoint(k, 2, x.v[k]);
    return x;
  }();
  return t;
}

// Host copy of finePoint(k, 4) for the 65,536 4-bit fine indices in units of 1/8 (exact: E8/4 has
// coordinates in (1/8)Z and |v| <= 1). 512 KiB, built on first use; a lookup is ~10x faster than
// the nearest-point computation.
struct Fine4Table {
  int8_t v[65536][8];
};
inline const Fine4Table& hostFine4Table() {
  static Fine4Table t;  // static storage (.bss), filled once
  static const bool filled = [] {
    for (uint32_t k = 0; k < 65536; ++k) {
      float v[8];
      finePoint(k, 4, v);
      for (int i = 0; i < 8; ++i) t.v[k][i] = static_cast<int8_t>(v[i] * 8.0f);
    }
    return true;
  }();
  (void)filled;
  return t;
}

// finePoint, from the host table when m = 2.
NQ_HD void finePointT(uint32_t k, int m, float v[8]) {
#if defined(__CUDA_ARCH__)
  finePoint(k, m, v);
#else
  if (m == 2) {
    const float* t = hostFine2Table().v[k & 0xFFu];
    for (int i = 0; i < 8; ++i) v[i] = t[i];
  } else {
    const int8_t* t = hostFine4Table().v[k & 0xFFFFu];
    for (int i = 0; i < 8; ++i) v[i] = 0.125f * static_cast<float>(t[i]);
  }
#endif
}

// Minimal vector j (0..239) of E8: j < 112: (+-1, +-1) on coordinates (a, b), a < b, in
// lexicographic order of (a, b), signs from bits 0 and 1 of j; j >= 112: (+-1/2)^8 with sign mask
// s = 2h | parity(h), h = j - 112 (the even-weight masks in increasing order).
NQ_HD void e8Root(int j, float r[8]) {
  for (int i = 0; i < 8; ++i) r[i] = 0.0f;
  if (j < 112) {
    int pair = j >> 2, a = 0;
    while (pair >= 7 - a) {
      pair -= 7 - a;
      ++a;
    }
    const int b = a + 1 + pair;
    r[a] = (j & 1) ? -1.0f : 1.0f;
    r[b] = (j & 2) ? -1.0f : 1.0f;
  } else {
    const uint32_t h = static_cast<uint32_t>(j - 112);
    const uint32_t s = (h << 1) | (static_cast<uint32_t>(popcount32(h)) & 1u);
    for (int i = 0; i < 8; ++i) r[i] = ((s >> i) & 1u) ? -0.5f : 0.5f;
  }
}

// gain[j] = r . root_j for all 240 minimal vectors, in e8Root order.
NQ_HD void rootGains(const float r[8], float gain[kRoots]) {
  int j = 0;
  for (int a = 0; a < 8; ++a)
    for (int b = a + 1; b < 8; ++b) {
      gain[j++] = r[a] + r[b];
      gain[j++] = -r[a] + r[b];
      gain[j++] = r[a] - r[b];
      gain[j++] = -r[a] - r[b];
    }
  float lo[16], hi[16], total = 0.0f;
  for (int m = 0; m < 16; ++m) {
    float sl = 0.0f, sh = 0.0f;
    for (int i = 0; i < 4; ++i) {
      if ((m >> i) & 1) {
        sl += r[i];
        sh += r[4 + i];
      }
    }
    lo[m] = sl;
    hi[m] = sh;
  }
  for (int i = 0; i < 8; ++i) total += r[i];
  for (uint32_t h = 0; h < 128; ++h) {
    const uint32_t s = (h << 1) | (static_cast<uint32_t>(popcount32(h)) & 1u);
    gain[j++] = 0.5f * total - (lo[s & 15u] + hi[s >> 4]);
  }
}

// The 16-bit code of a point p of E8 + 1/4 (exact dyadic coordinates), or false when p is not in
// the 2-bit codebook.
NQ_HD bool coarseCodeOf(const float p[8], const EncodeTables& T, uint32_t* code) {
  const float q0 = p[0] - 0.25f;
  const uint32_t tb = (q0 - floorf(q0) == 0.5f) ? 0u : 1u;  // p - 1/4 half-integer -> shift +1/4
  const float shift = tb ? -0.25f : 0.25f;
  int number = 0;
  int p3 = 1;
  uint32_t neg = 0;
  for (int i = 0; i < 8; ++i) {
    const float h = p[i] - shift;
    const float c = fabsf(h) - 0.5f;
    if (!(c <= 2.0f)) return false;
    number += static_cast<int>(c) * p3;
    p3 *= 3;
    neg |= (h < 0.0f ? 1u : 0u) << i;
  }
  const uint32_t idx = T.lookup[number];
  if (idx == kNoPattern) return false;
  *code = idx | ((neg & 0x7Fu) << 8) | (tb << 15);
  return true;
}

// Nearest point of the fine coset E8/m + 1/4 to y, as a full code if its coarse cell is in the
// 2-bit codebook. Writes the fine point to F.
NQ_HD bool fineCandidate(const float y[8], int m, const EncodeTables& T, uint32_t* code, float F[8]) {
  const float fm = static_cast<float>(m), inv = 1.0f / fm;
  float w[8], lam[8], v[8], p[8];
  for (int i = 0; i < 8; ++i) w[i] = fm * (y[i] - 0.25f);
  nearestE8(w, lam);
  const uint32_t k = fineIndexOf(lam, m);
  finePointT(k, m, v);
  for (int i = 0; i < 8; ++i) {
    F[i] = lam[i] * inv + 0.25f;
    p[i] = F[i] - v[i];
  }
  uint32_t coarse;
  if (!coarseCodeOf(p, T, &coarse)) return false;
  *code = coarse | (k << 16);
  return true;
}

NQ_HD float squaredDistance8(const float a[8], const float b[8]) {
  float d = 0.0f;
  for (int i = 0; i < 8; ++i) {
    const float e = a[i] - b[i];
    d += e * e;
  }
  return d;
}

// Coarse code of a fine point F (of E8/m + 1/4), or false when its coarse cell is outside the ball.
NQ_HD bool codeOfFinePoint(const float F[8], int m, const EncodeTables& T, uint32_t* code) {
  const float fm = static_cast<float>(m);
  float lam[8], v[8], p[8];
  for (int i = 0; i < 8; ++i) lam[i] = fm * (F[i] - 0.25f);
  const uint32_t k = fineIndexOf(lam, m);
  finePointT(k, m, v);
  for (int i = 0; i < 8; ++i) p[i] = F[i] - v[i];
  uint32_t coarse;
  if (!coarseCodeOf(p, T, &coarse)) return false;
  *code = coarse | (k << 16);
  return true;
}

// Code of a 3- or 4-bit group. `overloaded` (optional) reports whether the fallback ran.
NQ_HD uint32_t encodeGroupNested(const float y[8], int bits, const EncodeTables& T, const uint16_t* absTable,
                                 bool* overloaded = nullptr) {
  const int m = fineModulus(bits);
  uint32_t code;
  float F[8];
  if (fineCandidate(y, m, T, &code, F)) {
    if (overloaded) *overloaded = false;
    return code;
  }
  if (overloaded) *overloaded = true;
  // Overload. Start from the best valid candidate among the nearest 2-bit point p0 (fine index 0),
  // the nearest fine points to f y (f = 15/16, 7/8, 3/4, 1/2) and to (p0 + y) / 2; then descend:
  // move to the first valid one of the (up to 24) fine-lattice neighbours F + r/m (r one of the 240
  // minimal vectors of E8) that reduce the distance most, until none is valid (at most 12 moves).
  float p0[8];
  const uint32_t c0 = encodePoint2(y, T);
  decodePoint2(c0, absTable, p0);
  uint32_t bestCode = c0;
  float best = squaredDistance8(y, p0), bestF[8];
  for (int i = 0; i < 8; ++i) bestF[i] = p0[i];
  for (int j = 0; j <= kRadialStarts; ++j) {
    // radial shrinks f y, f = 15/16, 7/8, 3/4, 1/2; then the midpoint of p0 and y
    const float f = j < kRadialStarts ? 1.0f - static_cast<float>(1 << j) * 0.0625f : 0.5f;
    float yc[8];
    for (int i = 0; i < 8; ++i) yc[i] = j < kRadialStarts ? f * y[i] : p0[i] + f * (y[i] - p0[i]);
    if (fineCandidate(yc, m, T, &code, F)) {
      const float d = squaredDistance8(y, F);
      if (d < best) {
        best = d;
        bestCode = code;
        for (int i = 0; i < 8; ++i) bestF[i] = F[i];
      }
    }
  }
  const float inv = 1.0f / static_cast<float>(m);
  const float threshold = inv;  // moving by r/m helps iff (y - F) . r > |r|^2 / (2m) = 1/m
  for (int step = 0; step < kDescentSteps; ++step) {
    float r[8], gain[kRoots];
    for (int i = 0; i < 8; ++i) r[i] = y[i] - bestF[i];
    rootGains(r, gain);
    // improving moves, best first (insertion into a short sorted list)
    float cg[kDescentChecks];
    int cj[kDescentChecks];
    int nc = 0;
    for (int j = 0; j < kRoots; ++j) {
      const float g = gain[j];
      if (!(g > threshold) || (nc == kDescentChecks && g <= cg[nc - 1])) continue;
      int pos = nc < kDescentChecks ? nc++ : nc - 1;
      while (pos > 0 && cg[pos - 1] < g) {
        cg[pos] = cg[pos - 1];
        cj[pos] = cj[pos - 1];
        --pos;
      }
      cg[pos] = g;
      cj[pos] = j;
    }
    bool moved = false;
    for (int c = 0; c < nc && !moved; ++c) {
      float Fn[8], root[8];
      e8Root(cj[c], root);
      for (int i = 0; i < 8; ++i) Fn[i] = bestF[i] + root[i] * inv;
      if (codeOfFinePoint(Fn, m, T, &code)) {
        moved = true;
        bestCode = code;
        best = squaredDistance8(y, Fn);
        for (int i = 0; i < 8; ++i) bestF[i] = Fn[i];
      }
    }
    if (!moved) break;
  }
  return bestCode;
}

// Code of one group at any supported rate.
NQ_HD uint32_t encodeGroup(const float y[8], int bits, const EncodeTables& T, const uint16_t* absTable) {
  return bits == 2 ? encodePoint2(y, T) : encodeGroupNested(y, bits, T, absTable);
}

}  // namespace nq::e8
