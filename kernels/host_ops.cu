// Host-array wrappers around the launchers: copy typed arrays in, run, copy results out. They back
// the binding's cuda* functions (parity tests, benchmarks' correctness checks); the GPU cache will
// call the launchers directly on device-resident pages instead.
#include <algorithm>
#include <cstring>
#include <vector>

#include "nq_cuda_common.cuh"
#include "nq_format.h"
#include "nq_page_pack.h"

namespace nq::cuda {
namespace {

CudaStatus upload(DeviceBuffer& buf, const void* src, size_t bytes, StreamHandle stream) {
  NQ_CUDA_TRY(buf.allocate(std::max<size_t>(bytes, 1), MemCategory::Scratch), "");
  if (src) return copyToDevice(buf.data(), src, bytes, stream);
  return CudaStatus::success();
}

// An output buffer with sentinel bytes on both sides and a poison fill, so a kernel that writes out
// of bounds or skips an element is caught on every call (checkGuards after the kernel).
constexpr size_t kGuardBytes = 256;
constexpr uint8_t kSentinel = 0x5A;

class GuardedOutput {
 public:
  CudaStatus allocate(size_t bytes, int poisonByte, StreamHandle stream) {
    bytes_ = bytes;
    NQ_CUDA_TRY(buf_.allocate(bytes + 2 * kGuardBytes, MemCategory::Scratch), "");
    NQ_CUDA_TRY(fillDevice(buf_.data(), kSentinel, kGuardBytes, stream), "");
    NQ_CUDA_TRY(fillDevice(data(), poisonByte, bytes, stream), "");
    return fillDevice(static_cast<uint8_t*>(data()) + bytes, kSentinel, kGuardBytes, stream);
  }
  void* data() const { return static_cast<uint8_t*>(buf_.data()) + kGuardBytes; }
  template <typename T>
  T* as() const { return static_cast<T*>(data()); }
  CudaStatus checkGuards(const char* what, StreamHandle stream) const {
    uint8_t guards[2 * kGuardBytes];
    NQ_CUDA_TRY(copyToHost(guards, buf_.data(), kGuardBytes, stream), "");
    NQ_CUDA_TRY(copyToHost(guards + kGuardBytes, static_cast<uint8_t*>(data()) + bytes_, kGuardBytes, stream), "");
    for (size_t i = 0; i < 2 * kGuardBytes; ++i)
      if (guards[i] != kSentinel)
        return CudaStatus::fail(CudaCode::CudaError, std::string(what) + " wrote outside its output buffer (sentinel byte " + std::to_string(i) + " changed)");
    return CudaStatus::success();
  }
  CudaStatus download(void* dst, const char* what, StreamHandle stream) const {
    NQ_CUDA_TRY(checkGuards(what, stream), "");
    return copyToHost(dst, data(), bytes_, stream);
  }

 private:
  DeviceBuffer buf_;
  size_t bytes_ = 0;
};

}  // namespace

CudaStatus hostEncode(const CodecArgs& c, const void* input, bool inputF16, size_t vectors, uint8_t* codes, uint16_t* scales, StreamHandle stream) {
  if (!calibrated(c) && !codecSupported(c.headDim, c.bits)) return CudaStatus::fail(CudaCode::Unsupported, "encode: headDim/bits not supported by the CUDA codec");
  if (vectors == 0) return CudaStatus::success();
  const size_t inBytes = vectors * c.headDim * (inputF16 ? 2 : 4);
  const size_t codeBytes = vectors * format::codeBytesPerVector(c.headDim, c.bits);
  DeviceBuffer in, bad;
  GuardedOutput outCodes, outScales;
  NQ_CUDA_TRY(upload(in, input, inBytes, stream), "");
  NQ_CUDA_TRY(outCodes.allocate(codeBytes, 0xFF, stream), "");
  NQ_CUDA_TRY(outScales.allocate(vectors * 2, 0xFF, stream), "");
  NQ_CUDA_TRY(upload(bad, nullptr, sizeof(unsigned long long), stream), "");
  // Like the CPU codec: a NaN/Inf anywhere means nothing is encoded.
  NQ_CUDA_TRY(launchFindNonFinite(in.data(), inputF16, vectors, c.headDim, bad.as<unsigned long long>(), stream), "");
  unsigned long long firstBad = 0;
  NQ_CUDA_TRY(copyToHost(&firstBad, bad.data(), sizeof firstBad, stream), "");
  if (firstBad != ~0ull) {
    CudaStatus st = CudaStatus::fail(CudaCode::InvalidData, "the input holds NaN or Inf in vector " + std::to_string(firstBad) + "; nothing was quantized");
    st.badIndex = static_cast<int64_t>(firstBad);
    return st;
  }
  EncodeLaunch e;
  e.codec = c;
  e.input = in.data();
  e.inputF16 = inputF16;
  e.vectors = vectors;
  e.codes = outCodes.as<uint8_t>();
  e.scales = outScales.as<uint16_t>();
  e.stream = stream;
  NQ_CUDA_TRY(launchEncode(e), "");
  NQ_CUDA_TRY(outCodes.download(codes, "encode (codes)", stream), "");
  return outScales.download(scales, "encode (scales)", stream);
}

CudaStatus hostDecode(const CodecArgs& c, const uint8_t* codes, const uint16_t* scales, size_t vectors, void* out, bool outF16, bool unrotate,
                      StreamHandle stream) {
  if (!calibrated(c) && !codecSupported(c.headDim, c.bits)) return CudaStatus::fail(CudaCode::Unsupported, "decode: headDim/bits not supported by the CUDA codec");
  if (vectors == 0) return CudaStatus::success();
  const size_t codeBytes = vectors * format::codeBytesPerVector(c.headDim, c.bits);
  const size_t outBytes = vectors * c.headDim * (outF16 ? 2 : 4);
  DeviceBuffer dCodes, dScales;
  GuardedOutput dOut;
  NQ_CUDA_TRY(upload(dCodes, codes, codeBytes, stream), "");
  NQ_CUDA_TRY(upload(dScales, scales, vectors * 2, stream), "");
  NQ_CUDA_TRY(dOut.allocate(outBytes, 0xFF, stream), "");  // NaN poison
  DecodeLaunch d;
  d.codec = c;
  d.codes = dCodes.as<uint8_t>();
  d.scales = dScales.as<uint16_t>();
  d.vectors = vectors;
  d.out = dOut.data();
  d.outF16 = outF16;
  d.unrotate = unrotate;
  d.stream = stream;
  NQ_CUDA_TRY(launchDecode(d), "");
  return dOut.download(out, "decode", stream);
}

CudaStatus hostAttention(const HostAttentionArgs& a, StreamHandle stream) {
  if (!(a.keyTransforms ? transformedAttentionSupported(a.headDim, a.keyBits, a.valueBits) : attentionSupported(a.headDim, a.keyBits, a.valueBits)))
    return CudaStatus::fail(CudaCode::Unsupported, "attention: headDim/bits not supported by the CUDA attention kernel");
  const int B = static_cast<int>(a.seqs.size());
  if (B == 0) return CudaStatus::success();
  const size_t H = a.kvHeads, d = a.headDim, P = a.pageTokens;
  const format::Spec spec = ops::layoutSpec(a.keyBits, a.valueBits, a.pageTokens, a.storesPositions);
  const size_t pageBytes = format::pageBytes(H, d, spec);

  // Pages of every sequence in one arena, as a GPU cache would hold them.
  size_t totalPages = 0, arenaBytes = 0;
  int maxCompressed = 0, maxResidual = 0;
  for (const HostSequence& s : a.seqs) {
    const size_t pages = (static_cast<size_t>(s.compressed) + P - 1) / P;
    totalPages += pages;
    arenaBytes += pages * ((pageBytes + kArenaAlign - 1) / kArenaAlign * kArenaAlign);
    arenaBytes += (2 * H * std::max(s.residual, 1) * d * 2 + kArenaAlign - 1) / kArenaAlign * kArenaAlign;
    maxCompressed = std::max(maxCompressed, s.compressed);
    maxResidual = std::max(maxResidual, s.residual);
  }
  DeviceArena arena;
  NQ_CUDA_TRY(arena.reserve(arenaBytes), "");
  std::vector<const uint8_t*> pagePtrs;
  pagePtrs.reserve(totalPages);
  std::vector<size_t> pageStart(B);
  std::vector<SeqKV> seqs(B);
  std::vector<uint8_t> page(pageBytes);
  for (int b = 0; b < B; ++b) {
    const HostSequence& s = a.seqs[b];
    pageStart[b] = pagePtrs.size();
    const size_t n = s.compressed, pages = (n + P - 1) / P;
    for (size_t pg = 0; pg < pages; ++pg) {
      ops::packSequencePage(a, s, static_cast<size_t>(b), pg, page.data());
      void* dst = arena.carve(pageBytes, MemCategory::Codes);
      if (!dst) return CudaStatus::fail(CudaCode::OutOfMemory, "attention: arena exhausted (internal sizing error)");
      NQ_CUDA_TRY(copyToDevice(dst, page.data(), pageBytes, stream), "");
      pagePtrs.push_back(static_cast<const uint8_t*>(dst));
    }
    const size_t cap = std::max(s.residual, 1);
    uint16_t* res = static_cast<uint16_t*>(arena.carve(2 * H * cap * d * 2, MemCategory::Residual));
    if (!res) return CudaStatus::fail(CudaCode::OutOfMemory, "attention: arena exhausted (internal sizing error)");
    if (s.residual > 0) {
      NQ_CUDA_TRY(copyToDevice(res, s.residualKeys, H * s.residual * d * 2, stream), "");
      NQ_CUDA_TRY(copyToDevice(res + H * cap * d, s.residualValues, H * s.residual * d * 2, stream), "");
    }
    seqs[b].compressed = s.compressed;
    seqs[b].residual = res;
    seqs[b].residualCap = static_cast<int>(cap);
    seqs[b].residualCount = s.residual;
    seqs[b].firstResidualPos = s.firstResidualPos;
  }
  DeviceBuffer dPages, dSeqs, dQ, dPos, dAcc, dWs;
  GuardedOutput dOut;
  NQ_CUDA_TRY(upload(dPages, pagePtrs.data(), pagePtrs.size() * sizeof(void*), stream), "");
  const bool accumulate = std::any_of(a.seqs.begin(), a.seqs.end(), [](const HostSequence& s) { return s.accumulated != nullptr; });
  size_t accOffset = 0;
  std::vector<size_t> accAt(B);
  for (int b = 0; b < B; ++b) {
    accAt[b] = accOffset;
    accOffset += H * (a.seqs[b].compressed + a.seqs[b].residual);
  }
  if (accumulate) {
    NQ_CUDA_TRY(upload(dAcc, nullptr, accOffset * 4, stream), "");
    for (int b = 0; b < B; ++b) {
      const HostSequence& s = a.seqs[b];
      const size_t cnt = H * (s.compressed + s.residual);
      if (s.accumulated) NQ_CUDA_TRY(copyToDevice(dAcc.as<float>() + accAt[b], s.accumulated, cnt * 4, stream), "");
      else NQ_CUDA_TRY(fillDevice(dAcc.as<float>() + accAt[b], 0, cnt * 4, stream), "");
    }
  }
  for (int b = 0; b < B; ++b) {
    seqs[b].pages = dPages.as<const uint8_t*>() + pageStart[b];
    if (accumulate) {
      seqs[b].accumulated = dAcc.as<float>() + accAt[b];
      seqs[b].accPitch = a.seqs[b].compressed + a.seqs[b].residual;
    }
  }
  NQ_CUDA_TRY(upload(dSeqs, seqs.data(), seqs.size() * sizeof(SeqKV), stream), "");
  const size_t qPer = static_cast<size_t>(a.queryHeads) * a.nq * d;
  std::vector<float> q(B * qPer);
  std::vector<int32_t> qpos(static_cast<size_t>(B) * a.nq);
  for (int b = 0; b < B; ++b) {
    std::memcpy(q.data() + b * qPer, a.seqs[b].queries, qPer * 4);
    std::memcpy(qpos.data() + static_cast<size_t>(b) * a.nq, a.seqs[b].queryPositions, a.nq * 4);
  }
  NQ_CUDA_TRY(upload(dQ, q.data(), q.size() * 4, stream), "");
  NQ_CUDA_TRY(upload(dPos, qpos.data(), qpos.size() * 4, stream), "");
  NQ_CUDA_TRY(dOut.allocate(q.size() * 4, 0xFF, stream), "");  // NaN poison: every element must be written

  AttentionLaunch L = ops::pagedAttentionLaunch(a.kvHeads, a.queryHeads, a.headDim, a.nq, spec, a.seed, a.scale);
  L.batch = B;
  L.seqs = dSeqs.as<SeqKV>();
  L.maxCompressed = maxCompressed;
  L.maxResidual = maxResidual;
  L.queries = dQ.as<float>();
  L.queryPositions = dPos.as<int>();
  L.out = dOut.as<float>();
  L.accumulate = accumulate;
  L.splitTokens = a.splitTokens;
  L.keyTransforms = a.keyTransforms;
  L.valueTransforms = a.valueTransforms;
  L.stream = stream;
  L.workspaceBytes = attentionWorkspaceBytes(L);
  NQ_CUDA_TRY(upload(dWs, nullptr, L.workspaceBytes, stream), "");
  L.workspace = dWs.data();
  NQ_CUDA_TRY(launchAttention(L), "");
  NQ_CUDA_TRY(synchronize(stream), "");
  NQ_CUDA_TRY(dOut.download(q.data(), "attention", stream), "");
  for (int b = 0; b < B; ++b) std::memcpy(a.seqs[b].out, q.data() + b * qPer, qPer * 4);
  if (accumulate)
    for (int b = 0; b < B; ++b)
      if (a.seqs[b].accumulated)
        NQ_CUDA_TRY(copyToHost(a.seqs[b].accumulated, dAcc.as<float>() + accAt[b], H * (a.seqs[b].compressed + a.seqs[b].residual) * 4, stream), "");
  return CudaStatus::success();
}

CudaStatus hostDenseAttention(const HostDenseAttentionArgs& a, StreamHandle stream) {
  const size_t kvBytes = static_cast<size_t>(a.batch) * a.kvHeads * a.maxTokens * a.headDim * 2;
  const size_t qCount = static_cast<size_t>(a.batch) * a.queryHeads * a.headDim;
  DeviceBuffer dK, dV, dLen, dQ, dWs;
  GuardedOutput dOut;
  NQ_CUDA_TRY(upload(dK, a.keys, kvBytes, stream), "");
  NQ_CUDA_TRY(upload(dV, a.values, kvBytes, stream), "");
  NQ_CUDA_TRY(upload(dLen, a.lengths, a.batch * 4, stream), "");
  NQ_CUDA_TRY(upload(dQ, a.queries, qCount * 4, stream), "");
  NQ_CUDA_TRY(dOut.allocate(qCount * 4, 0xFF, stream), "");
  DenseAttentionLaunch L;
  L.batch = a.batch;
  L.kvHeads = a.kvHeads;
  L.queryHeads = a.queryHeads;
  L.headDim = a.headDim;
  L.maxTokens = a.maxTokens;
  L.scale = a.scale;
  L.keys = dK.as<uint16_t>();
  L.values = dV.as<uint16_t>();
  L.lengths = dLen.as<int>();
  L.queries = dQ.as<float>();
  L.out = dOut.as<float>();
  L.splitTokens = a.splitTokens;
  L.stream = stream;
  L.workspaceBytes = denseAttentionWorkspaceBytes(L);
  NQ_CUDA_TRY(upload(dWs, nullptr, L.workspaceBytes, stream), "");
  L.workspace = dWs.data();
  NQ_CUDA_TRY(launchDenseAttention(L), "");
  return dOut.download(a.out, "dense attention", stream);
}

CudaStatus hostScore(const ScoreLaunch& shape, const float* keys, const float* queries, float* scores, StreamHandle stream) {
  ScoreLaunch s = shape;
  const size_t n = static_cast<size_t>(s.kvHeads) * s.tokens;
  if (n == 0) return CudaStatus::success();
  DeviceBuffer dK, dQ, dWs;
  GuardedOutput dS;
  NQ_CUDA_TRY(upload(dK, keys, n * s.headDim * 4, stream), "");
  if (s.scorer == CudaScorer::Observed) NQ_CUDA_TRY(upload(dQ, queries, static_cast<size_t>(s.queryHeads) * s.window * s.headDim * 4, stream), "");
  NQ_CUDA_TRY(dS.allocate(n * 4, 0xFF, stream), "");
  s.workspaceBytes = scoreWorkspaceBytes(s);
  NQ_CUDA_TRY(upload(dWs, nullptr, s.workspaceBytes, stream), "");
  s.keys = dK.as<float>();
  s.queries = dQ.as<float>();
  s.scores = dS.as<float>();
  s.workspace = dWs.data();
  s.stream = stream;
  NQ_CUDA_TRY(launchScore(s), "");
  return dS.download(scores, "score", stream);
}

CudaStatus hostSelect(const SelectLaunch& shape, const float* scores, const int32_t* positions, uint32_t* kept, StreamHandle stream) {
  SelectLaunch s = shape;
  const size_t n = static_cast<size_t>(s.kvHeads) * s.tokens, k = static_cast<size_t>(s.kvHeads) * s.target;
  if (k == 0) return CudaStatus::success();
  DeviceBuffer dS, dP;
  GuardedOutput dK;
  NQ_CUDA_TRY(upload(dS, scores, n * 4, stream), "");
  NQ_CUDA_TRY(upload(dP, positions, n * 4, stream), "");
  NQ_CUDA_TRY(dK.allocate(k * 4, 0xFF, stream), "");
  s.scores = dS.as<float>();
  s.positions = dP.as<int32_t>();
  s.kept = dK.as<uint32_t>();
  s.stream = stream;
  NQ_CUDA_TRY(launchSelect(s), "");
  return dK.download(kept, "select", stream);
}

}  // namespace nq::cuda
