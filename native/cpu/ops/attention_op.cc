// cpuAttention: the fused attention of attention.h behind the AttentionLaunch struct, reading the
// pages (codes, scales, positions) and the FP16 residual window of each sequence as the CUDA kernel
// does (kernels/attention.cu).
#include <algorithm>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "cpu/attention.h"
#include "cpu/codec.h"
#include "cpu/isa.h"
#include "cache/nq_error.h"
#include "cpu/ops/cpu_ops.h"
#include "cpu/parallel.h"
#include "cpu/rope.h"
#include "cpu/transform_codec.h"
#include "cache/scratch.h"

namespace nq::ops {
namespace {

// The compressed slots of one sequence, read page by page: lattice points + FP16 scales, rotated
// domain. With un-RoPE'd storage the keys are decoded to the original domain and RoPE is re-applied
// at each key's position (it needs the position, which the rotated domain cannot fold in).
// Slots [begin, end) of the sequence's compressed slots (all of them unless a reconstruction pass
// restricts attention to the sinks and the recent slots).
class CodesSource : public KvSource {
 public:
  CodesSource(const AttentionLaunch& a, const SeqKV& s, const RopeTable& rope, size_t begin, size_t end)
      : a_(a), pages_(s.pages), begin_(begin), n_(end - begin), P_(static_cast<size_t>(a.pageTokens)), d_(static_cast<size_t>(a.headDim)),
        rope_(rope) {
    keysRotated = !rope_.active();
    valuesRotated = true;
    slotOffset = begin;
    kcb_ = format::codeBytesPerVector(d_, a.keyBits);
    vcb_ = format::codeBytesPerVector(d_, a.valueBits);
  }
  size_t tokens() const override { return n_; }
  size_t blockLimit(size_t t) const override { return P_ - (begin_ + t) % P_; }
  size_t keyLength(size_t head) const override { return activeDim(a_.keyTransforms, head); }
  size_t valueLength(size_t head) const override { return activeDim(a_.valueTransforms, head); }
  size_t granularity() const override { return P_; }
  void read(const AttentionOps& ops, size_t head, size_t t, size_t n, const BlockBuffers& buf, KvBlock& out) const override {
    t += begin_;
    const uint8_t* page = pages_[t / P_];
    const size_t slot = head * P_ + t % P_;
    const uint16_t* ks = reinterpret_cast<const uint16_t*>(page + a_.keyScalesOff) + slot;
    const uint16_t* vs = reinterpret_cast<const uint16_t*>(page + a_.valueScalesOff) + slot;
    if (a_.storesPositions) {
      out.positions = reinterpret_cast<const int32_t*>(page + a_.positionsOff) + slot;
    } else {
      for (size_t i = 0; i < n; ++i) buf.positions[i] = static_cast<int32_t>(t + i);
      out.positions = buf.positions;
    }
    if (rope_.active()) {
      const CodecParams p{static_cast<int>(d_), a_.keyBits, a_.rotate, a_.seed};
      if (decodeF32(p, page + a_.keyCodesOff + slot * kcb_, ks, 0, n, buf.keys) != Status::Ok) throw NqError("NATIVE_ERROR", "decode failed");
      for (size_t i = 0; i < n; ++i) rope_.apply(buf.keys + i * d_, out.positions[i], false);
      out.keyScales = nullptr;
    } else {
      points(ops, a_.keyTransforms, head, a_.keyBits, page + a_.keyCodesOff + slot * kcb_, kcb_, n, buf.keys);
      ops.halfToFloat(ks, n, buf.keyScales);
      out.keyScales = buf.keyScales;
    }
    points(ops, a_.valueTransforms, head, a_.valueBits, page + a_.valueCodesOff + slot * vcb_, vcb_, n, buf.values);
    ops.halfToFloat(vs, n, buf.valueScales);
    out.keys = buf.keys;
    out.values = buf.values;
    out.valueScales = buf.valueScales;
  }

 private:
  static size_t activeDim(const HeadTransform* transforms, size_t head) {
    const HeadTransform* t = transforms ? &transforms[head] : nullptr;
    return t && t->matrix ? static_cast<size_t>(t->activeDim) : 0;
  }

  // Lattice points of n rows: the flat code's, or per band under the head's calibrated transform.
  void points(const AttentionOps& ops, const HeadTransform* transforms, size_t head, int bits, const uint8_t* codes, size_t rowBytes, size_t n,
              float* out) const {
    const HeadTransform* t = transforms ? &transforms[head] : nullptr;
    if (t && t->matrix) ops.decodePointsRates(t->rates, t->codeOffset, d_, rowBytes, codes, n, out);
    else ops.decodePoints(bits, d_, codes, n, out);
  }

  const AttentionLaunch& a_;
  const uint8_t* const* pages_;
  size_t begin_, n_, P_, d_, kcb_ = 0, vcb_ = 0;
  const RopeTable& rope_;
};

// Rows [begin, end) of the FP16 residual window [2][H][cap][d], original domain, at consecutive
// positions from `first` (the position of row 0).
class ResidualSource : public KvSource {
 public:
  ResidualSource(const uint16_t* residual, size_t H, size_t cap, size_t begin, size_t end, size_t d, int64_t first)
      : res_(residual), H_(H), cap_(cap), n_(end - begin), d_(d), first_(first + static_cast<int64_t>(begin)) {
    res_ += begin * d;
  }
  size_t tokens() const override { return n_; }
  void read(const AttentionOps& ops, size_t head, size_t t, size_t n, const BlockBuffers& buf, KvBlock& out) const override {
    ops.halfToFloat(res_ + (head * cap_ + t) * d_, n * d_, buf.keys);
    ops.halfToFloat(res_ + ((H_ + head) * cap_ + t) * d_, n * d_, buf.values);
    for (size_t i = 0; i < n; ++i) buf.positions[i] = static_cast<int32_t>(first_ + static_cast<int64_t>(t + i));
    out.keys = buf.keys;
    out.values = buf.values;
    out.positions = buf.positions;
  }

 private:
  const uint16_t* res_;
  size_t H_, cap_, n_, d_;
  int64_t first_;
};

// A re-read's own keys and values [H][nq][d] f32 at the query positions: attended causally, never
// scored (they are not held).
class ExtraSource : public KvSource {
 public:
  ExtraSource(const float* keys, const float* values, size_t n, size_t d, const int32_t* positions)
      : k_(keys), v_(values), n_(n), d_(d), pos_(positions) {
    scored = false;
  }
  size_t tokens() const override { return k_ ? n_ : 0; }
  void read(const AttentionOps&, size_t head, size_t t, size_t n, const BlockBuffers&, KvBlock& out) const override {
    out.keys = k_ + (head * n_ + t) * d_;
    out.values = v_ + (head * n_ + t) * d_;
    out.positions = pos_ + t;
  }

 private:
  const float *k_, *v_;
  size_t n_, d_;
  const int32_t* pos_;
};

// The held slots a launch attends to, as at most two ranges: all of [0, total), or with recentSlots the
// first sinkSlots and the last recentSlots (merged when they meet).
std::vector<std::pair<size_t, size_t>> attendedRanges(const AttentionLaunch& a, size_t total) {
  if (a.recentSlots <= 0) return {{0, total}};
  const size_t sinks = std::min(total, static_cast<size_t>(std::max(a.sinkSlots, 0)));
  const size_t recentBegin = total > static_cast<size_t>(a.recentSlots) ? total - static_cast<size_t>(a.recentSlots) : 0;
  if (recentBegin <= sinks) return {{0, total}};
  std::vector<std::pair<size_t, size_t>> r;
  if (sinks > 0) r.push_back({0, sinks});
  r.push_back({recentBegin, total});
  return r;
}

}  // namespace

void cpuAttention(const AttentionLaunch& a) {
  if (a.kvHeads <= 0 || a.queryHeads <= 0 || a.queryHeads % a.kvHeads != 0 || a.batch <= 0 || a.queriesPerSeq < 0)
    throw NqError("INVALID_ARGUMENT", "query heads must be a positive multiple of the KV heads");
  if (a.queriesPerSeq == 0) return;
  if (!a.seqs || !a.queries || !a.queryPositions || !a.out) throw NqError("INVALID_ARGUMENT", "attention: null pointer");
  if (a.pageTokens <= 0 && std::any_of(a.seqs, a.seqs + a.batch, [](const SeqKV& s) { return s.compressed > 0; }))
    throw NqError("INVALID_ARGUMENT", "attention: pageTokens must be positive");
  const size_t H = static_cast<size_t>(a.kvHeads), QH = static_cast<size_t>(a.queryHeads), nq = static_cast<size_t>(a.queriesPerSeq);
  const size_t d = static_cast<size_t>(a.headDim);
  const CodecParams rotation{a.headDim, 2, a.rotate, a.seed};  // bits do not matter to the rotation
  const RopeTable rope(a.ropeTheta, d);
  const AttentionOps& kernels = attentionOps(activeIsa(), d);
  const size_t perSeq = QH * nq * d;
  if ((a.keyTransforms || a.valueTransforms) && rope.active())
    throw NqError("UNSUPPORTED", "attention: a calibrated transform with un-RoPE'd key storage is not supported");
  const size_t group = QH / H;
  auto transformOf = [](const HeadTransform* all, size_t head) -> const HeadTransform* {
    return all && all[head].matrix ? &all[head] : nullptr;
  };
  Scratch<float> qRot(perSeq), keyBias(a.keyTransforms ? QH * nq : 0);
  for (size_t b = 0; b < static_cast<size_t>(a.batch); ++b) {
    const SeqKV& s = a.seqs[b];
    const float* q = a.queries + b * perSeq;
    // One rotated copy of every query: keys and values of the codes live in the rotated domain (keys
    // and values share one rotation, so one rotated query serves every key). Under a calibrated key
    // transform the copy is in that head's transformed domain, and q·mean becomes the keys' bias.
    std::copy(q, q + perSeq, qRot.data());
    parallelFor(QH * nq, 64, [&](size_t lo, size_t hi) {
      for (size_t i = lo; i < hi; ++i) {
        const HeadTransform* t = transformOf(a.keyTransforms, i / nq / group);
        if (t) keyBias[i] = a.scale * transformQuery(*t, q + i * d, qRot.data() + i * d);
        else {
          rotateVector(rotation, qRot.data() + i * d);
          if (a.keyTransforms) keyBias[i] = 0.f;
        }
      }
    });
    // Sources: the compressed slots and the residual rows attended (split at the compressed count), then
    // any transient rows. std::deque keeps the sources' addresses stable while the list grows.
    const size_t nc = static_cast<size_t>(s.compressed), nr = static_cast<size_t>(s.residualCount);
    std::deque<CodesSource> codes;
    std::deque<ResidualSource> residual;
    std::vector<const KvSource*> sources;
    for (const auto& [lo, hi] : attendedRanges(a, nc + nr)) {
      if (lo < nc) sources.push_back(&codes.emplace_back(a, s, rope, lo, std::min(hi, nc)));
      if (hi > nc) {
        const size_t rlo = std::max(lo, nc) - nc, rhi = hi - nc;
        ResidualSource& r = residual.emplace_back(s.residual, H, static_cast<size_t>(s.residualCap), rlo, rhi, d, s.firstResidualPos);
        r.slotOffset = nc + rlo;
        sources.push_back(&r);
      }
    }
    const int32_t* qpos = a.queryPositions + b * nq;
    ExtraSource extra(a.extraKeys ? a.extraKeys + b * H * nq * d : nullptr, a.extraValues ? a.extraValues + b * H * nq * d : nullptr, nq, d, qpos);
    if (a.extraKeys && a.extraValues) sources.push_back(&extra);
    AttentionProblem p;
    p.kvHeads = H;
    p.group = QH / H;
    p.nq = nq;
    p.d = d;
    p.q = q;
    p.qRot = qRot.data();
    p.qpos = qpos;
    p.scale = a.scale;
    p.out = a.out + b * perSeq;
    p.keyBias = a.keyTransforms ? keyBias.data() : nullptr;
    p.unrotate = [&](size_t head, float* v, float weight) {
      if (const HeadTransform* t = transformOf(a.valueTransforms, head)) untransformAccumulated(*t, v, weight);
      else unrotateVector(rotation, v);
    };
    if (a.accumulate && s.accumulated) p.accumulated = s.accumulated;
    if (a.captureMax && s.maxScores) p.maxScores = s.maxScores;
    p.accumulatedStride = static_cast<size_t>(s.accPitch);
    fusedAttention(kernels, p, sources);
  }
}

}  // namespace nq::ops
