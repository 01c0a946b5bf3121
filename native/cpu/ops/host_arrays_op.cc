// cpuAttentionOnArrays: the CPU twin of cuda::hostAttention. Packs each sequence's plain code arrays
// into cache pages (nq_page_pack.h, the packing hostAttention uses) and its residual rows into the
// cache's [2][H][cap][d] window, then runs cpuAttention: the op-by-op oracle of the parity suite.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "cache/nq_error.h"
#include "cpu/ops/cpu_ops.h"
#include "cache/scratch.h"
#include "nq_page_pack.h"

namespace nq::ops {

void cpuAttentionOnArrays(const HostAttentionArgs& a) {
  const size_t B = a.seqs.size();
  if (B == 0) return;
  if (a.kvHeads <= 0 || a.headDim <= 0 || a.pageTokens <= 0 || a.nq <= 0) throw NqError("INVALID_ARGUMENT", "attention: bad shape");
  const size_t H = static_cast<size_t>(a.kvHeads), d = static_cast<size_t>(a.headDim);
  const format::Spec spec = layoutSpec(a.keyBits, a.valueBits, a.pageTokens, a.storesPositions);
  const size_t pageBytes = format::pageBytes(H, d, spec);

  // Every sequence's pages and residual window in one scratch block, as the cache would hold them.
  size_t totalPages = 0, residualElems = 0, accElems = 0;
  for (const HostSequence& s : a.seqs) {
    if (s.compressed < 0 || s.residual < 0) throw NqError("INVALID_ARGUMENT", "attention: negative token count");
    totalPages += format::pagesFor(static_cast<size_t>(s.compressed), spec);
    residualElems += 2 * H * static_cast<size_t>(s.residual) * d;
    accElems += H * static_cast<size_t>(s.compressed + s.residual);
  }
  Scratch<uint8_t> pages(totalPages * pageBytes);
  Scratch<uint16_t> residual(residualElems);
  std::vector<const uint8_t*> pagePtrs;
  std::vector<SeqKV> seqs(B);
  const bool accumulate = std::any_of(a.seqs.begin(), a.seqs.end(), [](const HostSequence& s) { return s.accumulated != nullptr; });
  // Sequences without an accumulated array still get one (zeros), as hostAttention gives them.
  Scratch<float> accZeros(accumulate ? accElems : 0);
  std::fill(accZeros.data(), accZeros.data() + accZeros.size(), 0.f);
  std::vector<size_t> pageStart(B);
  size_t resAt = 0, accAt = 0;
  for (size_t b = 0; b < B; ++b) {
    const HostSequence& s = a.seqs[b];
    const size_t n = static_cast<size_t>(s.compressed), r = static_cast<size_t>(s.residual);
    if (n > 0 && (!s.keyCodes || !s.keyScales || !s.valueCodes || !s.valueScales || (a.storesPositions && !s.positions)))
      throw NqError("INVALID_ARGUMENT", "attention: sequence " + std::to_string(b) + " lacks its codes");
    if (r > 0 && (!s.residualKeys || !s.residualValues)) throw NqError("INVALID_ARGUMENT", "attention: sequence " + std::to_string(b) + " lacks its residual");
    pageStart[b] = pagePtrs.size();
    for (size_t pg = 0; pg < format::pagesFor(n, spec); ++pg) {
      uint8_t* page = pages.data() + pagePtrs.size() * pageBytes;
      packSequencePage(a, s, b, pg, page);
      pagePtrs.push_back(page);
    }
    uint16_t* res = residual.data() + resAt;
    if (r > 0) {
      std::memcpy(res, s.residualKeys, H * r * d * 2);
      std::memcpy(res + H * r * d, s.residualValues, H * r * d * 2);
    }
    resAt += 2 * H * r * d;
    seqs[b].compressed = s.compressed;
    seqs[b].residual = res;
    seqs[b].residualCap = s.residual;
    seqs[b].residualCount = s.residual;
    seqs[b].firstResidualPos = s.firstResidualPos;
    if (accumulate) {
      seqs[b].accumulated = s.accumulated ? s.accumulated : accZeros.data() + accAt;
      seqs[b].accPitch = s.compressed + s.residual;
    }
    accAt += H * (n + r);
  }
  for (size_t b = 0; b < B; ++b) seqs[b].pages = pagePtrs.data() + pageStart[b];
  AttentionLaunch L = pagedAttentionLaunch(a.kvHeads, a.queryHeads, a.headDim, a.nq, spec, a.seed, a.scale);
  L.batch = 1;  // one sequence per call: queries and outputs are separate arrays per sequence
  L.accumulate = accumulate;
  if ((a.keyTransforms == nullptr) != (a.valueTransforms == nullptr))
    throw NqError("INVALID_ARGUMENT", "attention: key and value transforms go together (both or neither)");
  L.keyTransforms = a.keyTransforms;
  L.valueTransforms = a.valueTransforms;
  for (size_t b = 0; b < B; ++b) {
    const HostSequence& s = a.seqs[b];
    if (!s.queries || !s.queryPositions || !s.out) throw NqError("INVALID_ARGUMENT", "attention: sequence " + std::to_string(b) + " lacks queries or out");
    L.seqs = &seqs[b];
    L.maxCompressed = s.compressed;
    L.maxResidual = s.residual;
    L.queries = s.queries;
    L.queryPositions = s.queryPositions;
    L.out = s.out;
    cpuAttention(L);
  }
}

}  // namespace nq::ops
