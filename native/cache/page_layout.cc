#include "cache/page_layout.h"

namespace nq {

PageLayout::PageLayout(size_t H, size_t d, const format::Spec& s, format::Scorer scorer)
    : kvHeads(H),
      headDim(d),
      pageTokens(static_cast<size_t>(s.pageTokens)),
      spec(s),
      offsets(format::pageOffsets(H, d, s)),
      pageBytes(format::pageBytes(H, d, s)),
      keyCodeBytes(format::codeBytesPerVector(d, s.keyBits)),
      valueCodeBytes(format::codeBytesPerVector(d, s.valueBits)),
      storesPositions(format::storesPositions(s)),
      scoreBytes(format::scoreBytesPerSlot(s, scorer)) {}

CategoryBytes PageLayout::split() const {
  CategoryBytes s{};
  s[static_cast<int>(MemCategory::Headers)] = format::kPageHeaderBytes;
  s[static_cast<int>(MemCategory::Codes)] = offsets.keyScales - offsets.keyCodes;
  s[static_cast<int>(MemCategory::Scales)] = offsets.positions - offsets.keyScales;
  s[static_cast<int>(MemCategory::Positions)] = offsets.end - offsets.positions;
  return s;
}

ops::CompactLaunch PageLayout::compactLaunch(size_t target) const {
  ops::CompactLaunch a;
  a.kvHeads = static_cast<int>(kvHeads);
  a.target = static_cast<int>(target);
  a.pageTokens = static_cast<int>(pageTokens);
  a.keyCodeBytes = static_cast<int>(keyCodeBytes);
  a.valueCodeBytes = static_cast<int>(valueCodeBytes);
  a.keyCodesOff = offsets.keyCodes;
  a.valueCodesOff = offsets.valueCodes;
  a.keyScalesOff = offsets.keyScales;
  a.valueScalesOff = offsets.valueScales;
  a.positionsOff = offsets.positions;
  a.storesPositions = storesPositions;
  return a;
}

}  // namespace nq
