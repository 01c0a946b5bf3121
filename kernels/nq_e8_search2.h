// Exact nearest-codeword search for the 2-bit E8 codebook of nq_e8.h, shared by host C++ and CUDA.
//
// For each shift t, z = y - t/4, u = |z|. For an absolute pattern a the best signs are sign(z),
// except that when the parity of sign(z) is wrong one sign must flip, at a cost of 4 min_i a_i u_i;
// so dist^2 = |z|^2 - 2 sum a_i u_i + |a|^2 (+ 4 min_i a_i u_i). Over a whole permutation orbit of
// a the optimum assigns the sorted a to the sorted u (rearrangement), and the flip lands on the
// smallest u with a = 1/2 (an exchange argument: moving a larger a onto the flipped coordinate
// never helps), so one sort of u scores all 227 patterns of the 7 whole orbits at once; the 29
// patterns of the partial norm-12 orbit are scored one by one. Exact, no pruning.
#pragma once
#include <cmath>
#include <cstdint>

#include "nq_e8.h"
#include "nq_half.h"

#if defined(__SSE2__) && !defined(__CUDACC__)
#include <emmintrin.h>
#endif

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

// Sorts 8 keys descending with a 19-comparator network; branch-free (min/max compile to cmov).
NQ_HD void sort8Desc(uint64_t k[8]) {
#define NQ_CE(a, b)                             \
  {                                             \
    const uint64_t hi = k[a] > k[b] ? k[a] : k[b]; \
    const uint64_t lo = k[a] > k[b] ? k[b] : k[a]; \
    k[a] = hi;                                  \
    k[b] = lo;                                  \
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
  // the winner, turned into a code at the end: shift bit, sign mask, and either a whole orbit
  // (shape + coordinate order) or a partial-orbit pattern
  uint32_t bestTb = 0, bestNeg = 0;
  int bestShape = -1, bestExtra = -1;
  int bestOrder[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  for (uint32_t tb = 0; tb < 2; ++tb) {
    const float shift = tb ? -0.25f : 0.25f;
    float u[8];
    uint64_t key[8];
    uint32_t neg = 0;
    float zz = 0.0f, uSum = 0.0f;
    for (int i = 0; i < 8; ++i) {
      const float z = y[i] - shift;
      u[i] = fabsf(z);
      neg |= (z < 0.0f ? 1u : 0u) << i;
      zz += z * z;
      uSum += u[i];
      // |z| bits order like the values (non-negative floats); ties broken by lower index first
      key[i] = (static_cast<uint64_t>(floatBits(u[i])) << 3) | static_cast<uint64_t>(7 - i);
    }
    const uint32_t negPar = static_cast<uint32_t>(popcount32(neg)) & 1u;
    sort8Desc(key);
    float su[8];
    for (int k = 0; k < 8; ++k) su[k] = bitsFloat(static_cast<uint32_t>(key[k] >> 3));
    bool improved = false;
    for (int s = 0; s < T.numShapes; ++s) {
      float dot = 0.5f * uSum;
      for (int k = 0; k < 8; ++k) dot += T.shapeC[s][k] * su[k];
      const bool flip = T.shapeParity[s] != negPar;
      const float d = zz - 2.0f * dot + T.shapeNorm[s] + (flip ? 2.0f * su[7] : 0.0f);
      if (d < best) {
        best = d;
        bestShape = s;
        bestExtra = -1;
        improved = true;
      }
    }
    if (improved) {
      bestTb = tb;
      bestNeg = neg;
      for (int k = 0; k < 8; ++k) bestOrder[k] = 7 - static_cast<int>(key[k] & 7u);
    }
    // partial-orbit patterns: dist = |z|^2 - 2 sum a_i u_i + |a|^2 (+ 4 min_i a_i u_i on a parity flip)
    float dist[kExtraSlots];
#if defined(__SSE2__) && !defined(__CUDACC__)
    {
      const __m128 zz4 = _mm_set1_ps(zz), two = _mm_set1_ps(2.0f), four = _mm_set1_ps(4.0f);
      const __m128i np = _mm_set1_epi32(static_cast<int>(negPar));
      for (int e = 0; e < kExtraSlots; e += 4) {
        __m128 acc = _mm_setzero_ps(), mn = _mm_set1_ps(INFINITY);
        for (int i = 0; i < 8; ++i) {
          const __m128 au = _mm_mul_ps(_mm_loadu_ps(&T.extraA[i][e]), _mm_set1_ps(u[i]));
          acc = _mm_add_ps(acc, au);
          mn = _mm_min_ps(au, mn);
        }
        const __m128i par = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&T.extraParity[e]));
        const __m128 same = _mm_castsi128_ps(_mm_cmpeq_epi32(par, np));
        const __m128 pen = _mm_andnot_ps(same, _mm_mul_ps(four, mn));
        const __m128 d = _mm_add_ps(_mm_add_ps(_mm_sub_ps(zz4, _mm_mul_ps(two, acc)), _mm_loadu_ps(&T.extraNorm[e])), pen);
        _mm_storeu_ps(&dist[e], d);
      }
    }
#else
    for (int e = 0; e < kExtraSlots; ++e) {
      float acc = 0.0f, mn = INFINITY;
      for (int i = 0; i < 8; ++i) {
        const float au = T.extraA[i][e] * u[i];
        acc += au;
        mn = au < mn ? au : mn;
      }
      dist[e] = zz - 2.0f * acc + T.extraNorm[e] + (T.extraParity[e] != negPar ? 4.0f * mn : 0.0f);
    }
#endif
    float bestHere = dist[0];
    int eHere = 0;
    for (int e = 1; e < T.numExtras; ++e) {
      if (dist[e] < bestHere) {
        bestHere = dist[e];
        eHere = e;
      }
    }
    if (T.numExtras > 0 && bestHere < best) {
      best = bestHere;
      bestExtra = eHere;
      bestShape = -1;
      bestTb = tb;
      bestNeg = neg;
    }
  }
  if (distOut) *distOut = best;
  if (bestShape < 0 && bestExtra < 0) return 0;  // non-finite input: any valid code
  // Redo the per-coordinate work of the winner: its |z| and the coordinate whose sign flips.
  const float shift = bestTb ? -0.25f : 0.25f;
  uint32_t idx, n = bestNeg;
  if (bestShape >= 0) {
    const int p3[8] = {1, 3, 9, 27, 81, 243, 729, 2187};
    int number = 0;
    for (int k = 0; k < 8; ++k) number += static_cast<int>(T.shapeC[bestShape][k]) * p3[bestOrder[k]];
    idx = T.lookup[number];
    if (T.shapeParity[bestShape] != (static_cast<uint32_t>(popcount32(n)) & 1u)) n ^= 1u << bestOrder[7];
  } else {
    idx = T.extraIndex[bestExtra];
    if (T.extraParity[bestExtra] != (static_cast<uint32_t>(popcount32(n)) & 1u)) {
      int j = 0;
      float m = INFINITY;
      for (int i = 0; i < 8; ++i) {
        const float au = T.extraA[i][bestExtra] * fabsf(y[i] - shift);
        if (au < m) {
          m = au;
          j = i;
        }
      }
      n ^= 1u << j;
    }
  }
  return idx | ((n & 0x7Fu) << 8) | (bestTb << 15);
}

// Builds the search tables from the absolute table (a host function; copy the result to the device).
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

}  // namespace nq::e8
