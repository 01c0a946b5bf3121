#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/parallel.h"
#include "cache/scratch.h"
#include "nq_half.h"

namespace nq {

const AttentionOps& attentionOps(Isa isa, size_t headDim) {
  // The vector loops step through a row by whole registers: AVX-512 (16 floats) is used only when
  // head_dim is a multiple of 16, else AVX2 (8 floats; every head_dim the format allows is a multiple
  // of 8). ASan caught 16-float loads past the end of a head_dim-8 query.
  if (isa == Isa::Avx512 && headDim % 16 != 0) isa = Isa::Avx2;
  if (isa == Isa::Avx2 && headDim % 8 != 0) isa = Isa::Scalar;
  const AttentionOps* ops = isa == Isa::Avx512 ? attentionOpsAvx512() : isa == Isa::Avx2 ? attentionOpsAvx2() : nullptr;
  return ops ? *ops : *attentionOpsScalar();
}

void DenseSource::read(const AttentionOps& ops, size_t head, size_t t, size_t n, const BlockBuffers& buf, KvBlock& out) const {
  const size_t at = (head * n_ + t) * d_;
  if (f16_) {
    ops.halfToFloat(static_cast<const uint16_t*>(k_) + at, n * d_, buf.keys);
    ops.halfToFloat(static_cast<const uint16_t*>(v_) + at, n * d_, buf.values);
    out.keys = buf.keys;
    out.values = buf.values;
  } else {
    out.keys = static_cast<const float*>(k_) + at;
    out.values = static_cast<const float*>(v_) + at;
  }
  for (size_t i = 0; i < n; ++i) buf.positions[i] = static_cast<int32_t>(t + i);
  out.positions = buf.positions;
}

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Job {
  size_t head, source, begin, end;
};

// Partial softmax state of one job: per query r, running max m, sum l and weighted values acc.
struct PartialView {
  float* m;
  float* l;
  float* acc;
};

class Runner {
 public:
  Runner(const AttentionOps& ops, const AttentionProblem& p, const std::vector<const KvSource*>& sources)
      : ops_(ops), p_(p), src_(sources), R_(p.group * p.nq), d_(p.d) {
    minQpos_ = std::numeric_limits<int32_t>::max();
    maxQpos_ = std::numeric_limits<int32_t>::min();
    if (p.qpos)
      for (size_t j = 0; j < p.nq; ++j) {
        minQpos_ = std::min(minQpos_, p.qpos[j]);
        maxQpos_ = std::max(maxQpos_, p.qpos[j]);
      }
  }

  // Splits every (head, source) into token ranges so that about 2 jobs per thread exist (batch 1
  // with few KV heads still fills every core), none shorter than a few blocks.
  std::vector<Job> plan(int threads) const {
    std::vector<Job> jobs;
    const size_t wanted = std::max<size_t>(1, (2 * static_cast<size_t>(threads) + p_.kvHeads - 1) / p_.kvHeads);
    for (size_t h = 0; h < p_.kvHeads; ++h)
      for (size_t s = 0; s < src_.size(); ++s) {
        const size_t n = src_[s]->tokens(), g = std::max<size_t>(1, src_[s]->granularity());
        if (n == 0) continue;
        const size_t minLen = std::max<size_t>(g, 8 * kAttentionBlock);
        size_t pieces = std::min(wanted, std::max<size_t>(1, n / minLen));
        size_t len = (n + pieces - 1) / pieces;
        len = (len + g - 1) / g * g;
        for (size_t b = 0; b < n; b += len) jobs.push_back({h, s, b, std::min(n, b + len)});
      }
    return jobs;
  }

  // One pass over a job's rows. Without `state` (second pass, for slot scores) the final (M, L) of
  // each query turn logits into probabilities added to the accumulated row (or, with captureMax,
  // raising it to the largest); otherwise the partial state is updated online.
  void run(const Job& job, const PartialView* state, const float* finalM, const float* finalL, float* logits, const BlockBuffers& buf) const {
    const KvSource& s = *src_[job.source];
    const size_t h = job.head;
    if (!state && !s.scored) return;  // transient rows take part in the softmax but get no score
    const size_t keyLength = usedLength(s.keyLength(h)), valueLength = usedLength(s.valueLength(h));
    const float* q = (s.keysRotated ? p_.qRot : p_.q) + h * R_ * d_;
    if (state)
      for (size_t r = 0; r < R_; ++r) {
        state->m[r] = kNegInf;
        state->l[r] = 0.f;
      }
    if (state) std::fill(state->acc, state->acc + R_ * d_, 0.f);
    for (size_t t = job.begin; t < job.end;) {
      const size_t n = std::min({job.end - t, s.blockLimit(t), kAttentionBlock});
      KvBlock blk;
      s.read(ops_, h, t, n, buf, blk);
      int32_t lo = std::numeric_limits<int32_t>::max(), hi = std::numeric_limits<int32_t>::min();
      for (size_t i = 0; i < n; ++i) {
        lo = std::min(lo, blk.positions[i]);
        hi = std::max(hi, blk.positions[i]);
      }
      if (p_.qpos && lo > maxQpos_) {  // no query sees this block
        t += n;
        continue;
      }
      ops_.dots(q, R_, blk.keys, n, d_, keyLength, blk.keyScales, p_.scale, logits, kAttentionBlock);
      if (s.keysRotated && p_.keyBias)
        for (size_t r = 0; r < R_; ++r) {
          const float b = p_.keyBias[h * R_ + r];
          float* lr = logits + r * kAttentionBlock;
          for (size_t i = 0; i < n; ++i) lr[i] += b;
        }
      if (p_.qpos && hi > minQpos_)
        for (size_t r = 0; r < R_; ++r) {
          const int32_t qp = p_.qpos[r % p_.nq];
          float* lr = logits + r * kAttentionBlock;
          for (size_t i = 0; i < n; ++i)
            if (blk.positions[i] > qp) lr[i] = kNegInf;
        }
      if (!state) {
        float* acc = p_.accumulated ? p_.accumulated + h * p_.accumulatedStride + s.slotOffset + t : nullptr;
        uint16_t* maxed = p_.maxScores ? p_.maxScores + h * p_.accumulatedStride + s.slotOffset + t : nullptr;
        for (size_t r = 0; r < R_; ++r) {
          float* lr = logits + r * kAttentionBlock;
          if (finalL[h * R_ + r] == 0.f) continue;
          for (size_t i = 0; i < n; ++i) lr[i] -= finalM[h * R_ + r];
          ops_.expInPlace(lr, n);
          const float inv = 1.f / finalL[h * R_ + r];
          if (maxed) {
            // Non-negative FP16 bits order like their values: the max of the bits is the max score.
            for (size_t i = 0; i < n; ++i) maxed[i] = std::max(maxed[i], floatToHalf(lr[i] * inv));
          } else {
            for (size_t i = 0; i < n; ++i) acc[i] += lr[i] * inv;
          }
        }
        t += n;
        continue;
      }
      for (size_t r = 0; r < R_; ++r) {
        float* lr = logits + r * kAttentionBlock;
        float mb = kNegInf;
        for (size_t i = 0; i < n; ++i) mb = std::max(mb, lr[i]);
        if (mb == kNegInf) {
          std::fill(lr, lr + n, 0.f);
          continue;
        }
        if (mb > state->m[r]) {
          if (state->l[r] != 0.f) {
            const float f = std::exp(state->m[r] - mb);
            state->l[r] *= f;
            float* a = state->acc + r * d_;
            for (size_t i = 0; i < d_; ++i) a[i] *= f;
          }
          state->m[r] = mb;
        }
        for (size_t i = 0; i < n; ++i) lr[i] -= state->m[r];
        ops_.expInPlace(lr, n);
        float sum = 0.f;
        for (size_t i = 0; i < n; ++i) sum += lr[i];
        state->l[r] += sum;
        if (blk.valueScales)
          for (size_t i = 0; i < n; ++i) lr[i] *= blk.valueScales[i];
      }
      ops_.accumulate(logits, R_, kAttentionBlock, blk.values, n, d_, valueLength, state->acc);
      t += n;
    }
  }

  // A source's row prefix rounded up to 16 floats (every level's register width divides it), within d
  // (a multiple of the level's width): the ops loop whole registers. 0: the whole row.
  size_t usedLength(size_t len) const { return len == 0 ? d_ : std::min(d_, (len + 15) / 16 * 16); }

  const AttentionOps& ops_;
  const AttentionProblem& p_;
  const std::vector<const KvSource*>& src_;
  size_t R_, d_;
  int32_t minQpos_, maxQpos_;
};

struct ThreadBuffers {
  explicit ThreadBuffers(size_t d, size_t R)
      : keys(kAttentionBlock * d), values(kAttentionBlock * d), scales(2 * kAttentionBlock), positions(kAttentionBlock),
        logits(R * kAttentionBlock) {}
  BlockBuffers view() { return {keys.data(), values.data(), scales.data(), scales.data() + kAttentionBlock, positions.data()}; }
  Scratch<float> keys, values, scales;
  Scratch<int32_t> positions;
  Scratch<float> logits;
};

}  // namespace

void fusedAttention(const AttentionOps& ops, const AttentionProblem& p, const std::vector<const KvSource*>& sources) {
  const size_t R = p.group * p.nq, d = p.d, H = p.kvHeads;
  Runner runner(ops, p, sources);
  const std::vector<Job> jobs = runner.plan(cpuThreads());
  // Partial states: m, l, acc per (job, query).
  Scratch<float> states(jobs.size() * R * (d + 2));
  auto view = [&](size_t j) {
    float* base = states.data() + j * R * (d + 2);
    return PartialView{base, base + R, base + 2 * R};
  };
  parallelFor(jobs.size(), 1, [&](size_t b, size_t e) {
    ThreadBuffers tb(d, R);
    const BlockBuffers buf = tb.view();
    for (size_t j = b; j < e; ++j) {
      const PartialView v = view(j);
      runner.run(jobs[j], &v, nullptr, nullptr, tb.logits.data(), buf);
    }
  });
  // Combine the partial states of each head's jobs; rotated-domain values are un-rotated once.
  Scratch<float> finalM(H * R), finalL(H * R);
  parallelFor(H, 1, [&](size_t hb, size_t he) {
    Scratch<float> rot(d), orig(d);
    for (size_t h = hb; h < he; ++h)
      for (size_t r = 0; r < R; ++r) {
        float M = kNegInf;
        for (size_t j = 0; j < jobs.size(); ++j)
          if (jobs[j].head == h) M = std::max(M, view(j).m[r]);
        float L = 0.f, Lrot = 0.f;
        bool anyRot = false;
        std::fill(rot.data(), rot.data() + d, 0.f);
        std::fill(orig.data(), orig.data() + d, 0.f);
        if (M != kNegInf)
          for (size_t j = 0; j < jobs.size(); ++j) {
            if (jobs[j].head != h) continue;
            const PartialView v = view(j);
            if (v.l[r] == 0.f) continue;
            const float f = std::exp(v.m[r] - M);
            L += f * v.l[r];
            const bool isRot = sources[jobs[j].source]->valuesRotated;
            anyRot |= isRot;
            if (isRot) Lrot += f * v.l[r];
            float* dst = isRot ? rot.data() : orig.data();
            const float* a = v.acc + r * d;
            for (size_t i = 0; i < d; ++i) dst[i] += f * a[i];
          }
        finalM[h * R + r] = M;
        finalL[h * R + r] = L;
        float* o = p.out + (h * R + r) * d;  // r = g * nq + j matches [qHead][nq] order
        if (L == 0.f) {
          std::fill(o, o + d, 0.f);
          continue;
        }
        if (anyRot) p.unrotate(h, rot.data(), Lrot);
        const float inv = 1.f / L;
        for (size_t i = 0; i < d; ++i) o[i] = (rot[i] + orig[i]) * inv;
      }
  });
  if (!p.accumulated && !p.maxScores) return;
  parallelFor(jobs.size(), 1, [&](size_t b, size_t e) {
    ThreadBuffers tb(d, R);
    const BlockBuffers buf = tb.view();
    for (size_t j = b; j < e; ++j) runner.run(jobs[j], nullptr, finalM.data(), finalL.data(), tb.logits.data(), buf);
  });
}

}  // namespace nq
