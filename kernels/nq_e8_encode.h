// Nearest-codeword search for the E8 codebooks of nq_e8.h, shared by host C++ and CUDA.
//
// 2 bits (exact): for each shift t, z = y - t/4, u = |z|. For an absolute pattern a the best signs
// are sign(z), except that when the parity of sign(z) is wrong one sign must flip, at a cost of
// 4 min_i a_i u_i; so dist^2 = |z|^2 - 2 sum a_i u_i + |a|^2 (+ 4 min_i a_i u_i). Over a whole
// permutation orbit of a the optimum assigns the sorted a to the sorted u (rearrangement), and the
// flip lands on the smallest u with a = 1/2 (an exchange argument: moving a larger a onto the
// flipped coordinate never helps), so one sort of u scores all 227 patterns of the 7 whole orbits at
// once; the 29 patterns of the partial norm-12 orbit are scored one by one. Exact, no pruning.
//
// 3/4 bits: the nearest point F of the fine coset E8/m + 1/4 (one E8 decode). If its coarse cell is
// in the 2-bit codebook, F is the nearest codeword of the whole codebook (exact). Otherwise the
// group overloads the ball and the encoder takes the best of a few valid candidates (the 2-bit
// point, and fine points on the segment from it towards y); docs/format.md measures this against
// an exact search.
#pragma once
#include <cmath>
#include <cstdint>

#include "nq_e8.h"

namespace nq::e8 {

constexpr int kMaxShapes = 8;
constexpr int kExtraSlots = 32;
constexpr int kPatternNumbers = 6561;  // 3^8: a pattern read as base-3 digits c_i
constexpr uint16_t kNoPattern = 0xFFFFu;

// Plain data (no pointers), so CUDA can copy it to constant memory as is (about 14 KiB).
struct EncodeTables {
  int numShapes;
  int numExtras;
  float shapeC[kMaxShapes][8];  // c values of a whole orbit, sorted descending (last is 0)
  float shapeNorm[kMaxShapes];  // |a|^2
  uint32_t shapeParity[kMaxShapes];
  float extraA[8][kExtraSlots];  // |coordinate| of each partial-orbit pattern, coordinate-major
  float extraNorm[kExtraSlots];  // |a|^2; padding slots hold a huge norm so they never win
  uint32_t extraParity[kExtraSlots];
  uint16_t extraIndex[kExtraSlots];
  uint16_t lookup[kPatternNumbers];  // sum c_i 3^i -> index in the absolute table, or kNoPattern
};

NQ_HD int pow3(int i) {
  int p = 1;
  for (int j = 0; j < i; ++j) p *= 3;
  return p;
}

// Sorts v descending, carrying indices (19-comparator network for 8 inputs).
NQ_HD void sort8Desc(float v[8], int idx[8]) {
#define NQ_CE(a, b)                 \
  if (v[a] < v[b]) {                \
    const float tv = v[a];          \
    v[a] = v[b];                    \
    v[b] = tv;                      \
    const int ti = idx[a];          \
    idx[a] = idx[b];                \
    idx[b] = ti;                    \
  }
  NQ_CE(0, 2) NQ_CE(1, 3) NQ_CE(4, 6) NQ_CE(5, 7)
  NQ_CE(0, 4) NQ_CE(1, 5) NQ_CE(2, 6) NQ_CE(3, 7)
  NQ_CE(0, 1) NQ_CE(2, 3) NQ_CE(4, 5) NQ_CE(6, 7)
  NQ_CE(2, 4) NQ_CE(3, 5)
  NQ_CE(1, 4) NQ_CE(3, 6)
  NQ_CE(1, 2) NQ_CE(3, 4) NQ_CE(5, 6)
#undef NQ_CE
}

// Nearest 2-bit codeword to y (codebook units). Writes the squared distance to *distOut if given.
NQ_HD uint32_t encodePoint2(const float y[8], const EncodeTables& T, float* distOut = nullptr) {
  float best = INFINITY;
  uint32_t bestCode = 0;
  for (uint32_t tb = 0; tb < 2; ++tb) {
    const float shift = tb ? -0.25f : 0.25f;
    float u[8], su[8];
    int si[8];
    uint32_t neg = 0;
    float zz = 0.0f, uSum = 0.0f;
    for (int i = 0; i < 8; ++i) {
      const float z = y[i] - shift;
      u[i] = fabsf(z);
      su[i] = u[i];
      si[i] = i;
      neg |= (z < 0.0f ? 1u : 0u) << i;
      zz += z * z;
      uSum += u[i];
    }
    const uint32_t negPar = static_cast<uint32_t>(popcount32(neg)) & 1u;
    sort8Desc(su, si);
    for (int s = 0; s < T.numShapes; ++s) {
      float dot = 0.5f * uSum;
      for (int k = 0; k < 8; ++k) dot += T.shapeC[s][k] * su[k];
      const bool flip = T.shapeParity[s] != negPar;
      const float d = zz - 2.0f * dot + T.shapeNorm[s] + (flip ? 2.0f * su[7] : 0.0f);
      if (d < best) {
        best = d;
        int number = 0;
        for (int k = 0; k < 8; ++k) number += static_cast<int>(T.shapeC[s][k]) * pow3(si[k]);
        const uint32_t n = flip ? (neg ^ (1u << si[7])) : neg;
        bestCode = T.lookup[number] | ((n & 0x7Fu) << 8) | (tb << 15);
      }
    }
    float dist[kExtraSlots], minAu[kExtraSlots];
    for (int e = 0; e < kExtraSlots; ++e) {
      dist[e] = 0.0f;
      minAu[e] = INFINITY;
    }
    for (int i = 0; i < 8; ++i) {
      for (int e = 0; e < kExtraSlots; ++e) {
        const float au = T.extraA[i][e] * u[i];
        dist[e] += au;
        minAu[e] = fminf(minAu[e], au);
      }
    }
    for (int e = 0; e < kExtraSlots; ++e) {
      dist[e] = zz - 2.0f * dist[e] + T.extraNorm[e] + (T.extraParity[e] != negPar ? 4.0f * minAu[e] : 0.0f);
    }
    int bestE = -1;
    for (int e = 0; e < T.numExtras; ++e) {
      if (dist[e] < best) {
        best = dist[e];
        bestE = e;
      }
    }
    if (bestE >= 0) {
      uint32_t n = neg;
      if (T.extraParity[bestE] != negPar) {
        int j = 0;
        float m = INFINITY;
        for (int i = 0; i < 8; ++i) {
          const float au = T.extraA[i][bestE] * u[i];
          if (au < m) {
            m = au;
            j = i;
          }
        }
        n ^= 1u << j;
      }
      bestCode = T.extraIndex[bestE] | ((n & 0x7Fu) << 8) | (tb << 15);
    }
  }
  if (distOut) *distOut = best;
  return bestCode;
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
  finePoint(k, m, v);
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
  // Overload: the best valid candidate among the nearest 2-bit point p0 (fine index 0, v = 0) and
  // the nearest fine points to p0 + f (y - p0) for f = 7/8 ... 1/8.
  float p0[8];
  const uint32_t c0 = encodePoint2(y, T);
  decodePoint2(c0, absTable, p0);
  uint32_t bestCode = c0;
  float best = squaredDistance8(y, p0);
  for (int j = 7; j >= 1; --j) {
    const float f = 0.125f * static_cast<float>(j);
    float yc[8];
    for (int i = 0; i < 8; ++i) yc[i] = p0[i] + f * (y[i] - p0[i]);
    if (fineCandidate(yc, m, T, &code, F)) {
      const float d = squaredDistance8(y, F);
      if (d < best) {
        best = d;
        bestCode = code;
      }
    }
  }
  return bestCode;
}

// Code of one group at any supported rate.
NQ_HD uint32_t encodeGroup(const float y[8], int bits, const EncodeTables& T, const uint16_t* absTable) {
  return bits == 2 ? encodePoint2(y, T) : encodeGroupNested(y, bits, T, absTable);
}

#if !defined(__CUDA_ARCH__)
// Builds the search tables from the absolute table (host only; copy the result to the device).
// Returns false if the table breaks an assumption of the search (cannot happen for kAbsTable).
inline bool buildEncodeTables(const uint16_t* absTable, EncodeTables& T) {
  T = EncodeTables{};
  for (int n = 0; n < kPatternNumbers; ++n) T.lookup[n] = kNoPattern;
  // Group patterns by sorted digits (their orbit); an orbit is "whole" if all permutations are present.
  int sortedKey[kAbsEntries];
  for (int e = 0; e < kAbsEntries; ++e) {
    int c[8], number = 0;
    for (int i = 0; i < 8; ++i) {
      c[i] = (absTable[e] >> (2 * i)) & 3;
      if (c[i] > 2) return false;
      number += c[i] * pow3(i);
    }
    if (T.lookup[number] != kNoPattern) return false;  // duplicate pattern
    T.lookup[number] = static_cast<uint16_t>(e);
    for (int i = 1; i < 8; ++i)  // insertion sort, descending
      for (int j = i; j > 0 && c[j] > c[j - 1]; --j) {
        const int t = c[j];
        c[j] = c[j - 1];
        c[j - 1] = t;
      }
    int key = 0;
    for (int i = 0; i < 8; ++i) key = key * 3 + c[i];
    sortedKey[e] = key;
  }
  static const int fact[9] = {1, 1, 2, 6, 24, 120, 720, 5040, 40320};
  bool done[kAbsEntries] = {};
  for (int e = 0; e < kAbsEntries; ++e) {
    if (done[e]) continue;
    int members[kAbsEntries], count = 0;
    for (int f = e; f < kAbsEntries; ++f)
      if (sortedKey[f] == sortedKey[e]) members[count++] = f;
    int c[8], mult[3] = {0, 0, 0};
    for (int i = 0, key = sortedKey[e]; i < 8; ++i) {
      c[7 - i] = key % 3;
      key /= 3;
    }
    for (int i = 0; i < 8; ++i) mult[c[i]]++;
    const int orbit = fact[8] / (fact[mult[0]] * fact[mult[1]] * fact[mult[2]]);
    float norm = 0.0f;
    uint32_t parity = 0;
    for (int i = 0; i < 8; ++i) {
      norm += (c[i] + 0.5f) * (c[i] + 0.5f);
      parity ^= static_cast<uint32_t>(c[i] & 1);
    }
    if (count == orbit && c[7] == 0) {
      if (T.numShapes == kMaxShapes) return false;
      const int s = T.numShapes++;
      for (int i = 0; i < 8; ++i) T.shapeC[s][i] = static_cast<float>(c[i]);
      T.shapeNorm[s] = norm;
      T.shapeParity[s] = parity;
    } else {
      for (int j = 0; j < count; ++j) {
        if (T.numExtras == kExtraSlots) return false;
        const int x = T.numExtras++;
        const uint32_t entry = absTable[members[j]];
        for (int i = 0; i < 8; ++i) T.extraA[i][x] = static_cast<float>((entry >> (2 * i)) & 3u) + 0.5f;
        T.extraNorm[x] = norm;
        T.extraParity[x] = parity;
        T.extraIndex[x] = static_cast<uint16_t>(members[j]);
      }
    }
    for (int j = 0; j < count; ++j) done[members[j]] = true;
  }
  for (int x = T.numExtras; x < kExtraSlots; ++x) {
    for (int i = 0; i < 8; ++i) T.extraA[i][x] = 0.0f;
    T.extraNorm[x] = 1e30f;
    T.extraParity[x] = 0;
    T.extraIndex[x] = 0;
  }
  return true;
}
#endif

}  // namespace nq::e8
