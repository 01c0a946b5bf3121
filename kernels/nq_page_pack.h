// Packing plain [kvHeads][tokens] code arrays into cache pages (nq_format.h layout, header
// included): how the host-array attention entry points of both backends (cpuAttentionOnArrays,
// cuda::hostAttention) build the pages a cache would hold, so that they compare the same bytes; and
// the AttentionLaunch for such pages. Host code only.
#pragma once
#include <algorithm>
#include <cstring>

#include "nq_format.h"
#include "nq_ops_params.h"

namespace nq::ops {

// The page layout of nq_format.h for these rates (storesPositions is all the layout reads of the
// eviction fraction).
inline format::Spec layoutSpec(int keyBits, int valueBits, int pageTokens, bool storesPositions) {
  return format::Spec{keyBits, valueBits, storesPositions ? 0.5 : 0.0, 0, 0, 0, pageTokens};
}

// An AttentionLaunch for pages of this spec: shapes, rates, rotation and the page offsets filled in;
// sequences, queries and outputs are the caller's. Used by the cache and by both host-array paths.
inline AttentionLaunch pagedAttentionLaunch(int kvHeads, int queryHeads, int headDim, int queriesPerSeq, const format::Spec& spec, uint32_t seed,
                                            float scale) {
  const format::PageOffsets off = format::pageOffsets(static_cast<size_t>(kvHeads), static_cast<size_t>(headDim), spec);
  AttentionLaunch L;
  L.kvHeads = kvHeads;
  L.queryHeads = queryHeads;
  L.headDim = headDim;
  L.queriesPerSeq = queriesPerSeq;
  L.keyBits = spec.keyBits;
  L.valueBits = spec.valueBits;
  L.pageTokens = spec.pageTokens;
  L.storesPositions = format::storesPositions(spec);
  L.rotate = true;  // the cache always encodes with the rotation
  L.seed = seed;
  L.scale = scale;
  L.keyCodesOff = off.keyCodes;
  L.valueCodesOff = off.valueCodes;
  L.keyScalesOff = off.keyScales;
  L.valueScalesOff = off.valueScales;
  L.positionsOff = off.positions;
  return L;
}

// Writes page `pageIndex` of sequence `seqIndex` into `page` (pageBytes of the layout, zero-filled here).
inline void packSequencePage(const HostAttentionArgs& a, const HostSequence& s, size_t seqIndex, size_t pageIndex, uint8_t* page) {
  const size_t H = static_cast<size_t>(a.kvHeads), d = static_cast<size_t>(a.headDim), P = static_cast<size_t>(a.pageTokens);
  const format::Spec spec = layoutSpec(a.keyBits, a.valueBits, a.pageTokens, a.storesPositions);
  const format::PageOffsets off = format::pageOffsets(H, d, spec);
  const size_t kc = format::codeBytesPerVector(d, a.keyBits), vc = format::codeBytesPerVector(d, a.valueBits);
  const size_t n = static_cast<size_t>(s.compressed);
  std::memset(page, 0, format::pageBytes(H, d, spec));
  const format::PageHeader header{static_cast<uint32_t>(std::min(P, n - pageIndex * P)), 0u, static_cast<uint32_t>(seqIndex),
                                  static_cast<uint32_t>(pageIndex)};
  std::memcpy(page, &header, sizeof header);
  for (size_t h = 0; h < H; ++h)
    for (size_t j = 0; j < P && pageIndex * P + j < n; ++j) {
      const size_t t = pageIndex * P + j, slot = h * P + j, src = h * n + t;
      std::memcpy(page + off.keyCodes + slot * kc, s.keyCodes + src * kc, kc);
      std::memcpy(page + off.valueCodes + slot * vc, s.valueCodes + src * vc, vc);
      std::memcpy(page + off.keyScales + slot * 2, s.keyScales + src, 2);
      std::memcpy(page + off.valueScales + slot * 2, s.valueScales + src, 2);
      if (a.storesPositions) std::memcpy(page + off.positions + slot * 4, s.positions + src, 4);
    }
}

}  // namespace nq::ops
