// Split-K decode attention (flash-decoding): the pieces shared by attention.cu (on lattice codes,
// paged) and the dense FP16 reference. One block = one split of the tokens x one KV head x up to
// kHeadsPerPass query heads of its GQA group x one query; four warps walk the split's tokens, a
// token per TPT lanes (TPT = headDim/8 rounded up to a power of two, one 8-element group per lane).
// Each TPT-lane subgroup keeps its own online-softmax state (max, sum, accumulator) in log2 units;
// states merge across subgroups (shuffles), warps (shared memory) and finally splits (reduce kernel).
#pragma once
#include <cfloat>

#include "nq_cuda_common.cuh"

namespace nq::cuda::attn {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kHeadsPerPass = 4;
constexpr float kLog2e = 1.4426950408889634f;

enum class Source { Codes, Residual, Dense };

struct Params {
  int batch, kvHeads, queryHeads, group, headDim, groups, nq;
  int keyBits, valueBits, pageTokens, kcBytes, vcBytes;
  bool storesPositions;
  unsigned long long offKC, offVC, offKS, offVS, offPos;
  const SeqKV* seqs;
  // dense reference
  const uint16_t* denseK;
  const uint16_t* denseV;
  const int* lengths;
  int maxTokens;
  // queries, already multiplied by scale * log2(e): plain (residual/dense) and rotated (codes)
  float* qPlain;
  float* qRot;
  const int* qpos;  // [batch][nq]; null: dense (position = length - 1)
  int chunk;
  int codeSplits, resSplits, splits;  // split s < codeSplits: codes; then residual splits
  float* partM;
  float* partL;
  float* partAcc;
  float* finalM;
  float* finalL;
  float* out;
  bool rotate;
  uint32_t seed;
  const CodebookTables* tables;
  // Calibrated transforms (device [kvHeads] each; null: every head flat). qRot then holds, for a
  // calibrated head, bandScale ⊙ (matrix · q) and qBias the row's q·mean, both times scale·log2(e).
  const HeadTransform* keyT;
  const HeadTransform* valueT;
  float* qBias;  // [rows]
};

__device__ __forceinline__ float warpXor(float v, int off) { return __shfl_xor_sync(0xFFFFFFFFu, v, off); }

// exp2(a - b) that is 0 when a is -inf (an empty state), never NaN.
__device__ __forceinline__ float rescale(float a, float b) { return a == -INFINITY ? 0.0f : exp2f(a - b); }

template <int KB>
__device__ __forceinline__ uint32_t loadCodeT(const uint8_t* c) {
  if constexpr (KB == 2) return *reinterpret_cast<const uint16_t*>(c);
  else if constexpr (KB == 4) return *reinterpret_cast<const uint32_t*>(c);
  else return static_cast<uint32_t>(c[0]) | (static_cast<uint32_t>(c[1]) << 8) | (static_cast<uint32_t>(c[2]) << 16);
}

// Lattice point (codebook units) of one group, through the shared header; the 3-bit fine points
// come from a shared-memory copy of the table e8::finePoint built.
template <int B>
__device__ __forceinline__ void groupPoint(uint32_t code, const uint16_t* sAbs, const float (*sFine2)[8], float p[8]) {
  e8::decodePoint2(code & 0xFFFFu, sAbs, p);
  if constexpr (B == 3) {
    const float* f = sFine2[(code >> 16) & 0xFFu];
#pragma unroll
    for (int i = 0; i < 8; ++i) p[i] += f[i];
  } else if constexpr (B == 4) {
    float v[8];
    e8::finePoint(code >> 16, 4, v);
#pragma unroll
    for (int i = 0; i < 8; ++i) p[i] += v[i];
  }
}

// Rate and byte offset of band `g` of head `t`'s codes: its calibrated rate, or the flat code's.
__device__ __forceinline__ void bandRate(const HeadTransform& t, int g, int bits, int& rate, int& offset) {
  rate = t.matrix ? t.rates[g] : bits;
  offset = t.matrix ? t.codeOffset[g] : g * bits;
}

__device__ __forceinline__ void loadHalf8(const uint16_t* src, float x[8]) {
  const uint4 w = *reinterpret_cast<const uint4*>(src);
  const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    x[2 * i] = halfToFloat(static_cast<uint16_t>(u[i] & 0xFFFFu));
    x[2 * i + 1] = halfToFloat(static_cast<uint16_t>(u[i] >> 16));
  }
}

// One split of one (sequence, KV head, head pass, query). SRC picks where K/V live; KB/VB are the
// code rates (ignored for FP16 sources). TR: codes under calibrated transforms, each lane's band at
// its own rate (p.keyT / p.valueT), KB/VB unused.
template <int TPT, Source SRC, int KB, int VB, bool TR = false>
__global__ void __launch_bounds__(kThreads) splitKernel(Params p) {
  constexpr int TOK = 32 / TPT;  // tokens per warp step
  constexpr bool kFine = KB == 3 || VB == 3 || TR;
  __shared__ uint16_t sAbs[e8::kAbsEntries];
  __shared__ float sFine2[kFine ? 256 : 1][8];
  __shared__ float sM[kWarps][kHeadsPerPass], sL[kWarps][kHeadsPerPass];
  extern __shared__ float sAcc[];  // [kWarps][kHeadsPerPass][headDim]

  const int passes = (p.group + kHeadsPerPass - 1) / kHeadsPerPass;
  const int h = blockIdx.y / passes, pass = blockIdx.y % passes;
  const int b = blockIdx.z / p.nq, j = blockIdx.z % p.nq;
  const int headsHere = min(kHeadsPerPass, p.group - pass * kHeadsPerPass);
  const int qh0 = h * p.group + pass * kHeadsPerPass;
  const int split = SRC == Source::Residual ? p.codeSplits + blockIdx.x : blockIdx.x;

  if constexpr (SRC == Source::Codes) {
    for (int i = threadIdx.x; i < e8::kAbsEntries; i += blockDim.x) sAbs[i] = p.tables->absTable[i];
    if constexpr (kFine)
      for (int i = threadIdx.x; i < 256 * 8; i += blockDim.x) sFine2[i / 8][i % 8] = p.tables->fine2[i / 8][i % 8];
    __syncthreads();
  }

  // Token range of this split and the query's position.
  int n, qp, posOffset = 0;
  const uint8_t* const* pages = nullptr;
  const uint16_t* kBase = nullptr;
  const uint16_t* vBase = nullptr;
  if constexpr (SRC == Source::Codes) {
    const SeqKV& s = p.seqs[b];
    n = s.compressed;
    pages = s.pages;
    qp = p.qpos[b * p.nq + j];
  } else if constexpr (SRC == Source::Residual) {
    const SeqKV& s = p.seqs[b];
    n = s.residualCount;
    posOffset = s.firstResidualPos;
    kBase = s.residual + static_cast<size_t>(h) * s.residualCap * p.headDim;
    vBase = s.residual + static_cast<size_t>(p.kvHeads + h) * s.residualCap * p.headDim;
    qp = p.qpos[b * p.nq + j];
  } else {
    n = p.lengths[b];
    kBase = p.denseK + (static_cast<size_t>(b) * p.kvHeads + h) * p.maxTokens * p.headDim;
    vBase = p.denseV + (static_cast<size_t>(b) * p.kvHeads + h) * p.maxTokens * p.headDim;
    qp = n - 1;
  }
  const int t0 = static_cast<int>(blockIdx.x) * p.chunk, t1 = min(n, t0 + p.chunk);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int sub = lane / TPT, gl = lane % TPT;
  const bool laneActive = gl < p.groups;

  // This lane's band of the keys and values: rate and byte offset (the flat code's unless TR).
  int kRate = KB, kOff = gl * KB, vRate = VB, vOff = gl * VB;
  float bias[kHeadsPerPass] = {};
  if constexpr (TR) {
    if (laneActive) {
      bandRate(p.keyT[h], gl, p.keyBits, kRate, kOff);
      bandRate(p.valueT[h], gl, p.valueBits, vRate, vOff);
    }
#pragma unroll
    for (int hp = 0; hp < kHeadsPerPass; ++hp)
      if (hp < headsHere) bias[hp] = p.qBias[(static_cast<size_t>(b) * p.queryHeads + qh0 + hp) * p.nq + j];
  }

  float q[kHeadsPerPass][8], acc[kHeadsPerPass][8], m[kHeadsPerPass], l[kHeadsPerPass];
  const float* qsrc = SRC == Source::Codes ? p.qRot : p.qPlain;
#pragma unroll
  for (int hp = 0; hp < kHeadsPerPass; ++hp) {
    m[hp] = -INFINITY;
    l[hp] = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      acc[hp][i] = 0.0f;
      q[hp][i] = (hp < headsHere && laneActive)
                     ? qsrc[((static_cast<size_t>(b) * p.queryHeads + qh0 + hp) * p.nq + j) * p.headDim + 8 * gl + i]
                     : 0.0f;
    }
  }

  const int P = p.pageTokens;
  for (int base = t0 + warp * TOK; base < t1; base += kWarps * TOK) {
    const int t = base + sub;
    const bool valid = t < t1;
    int pos = t + posOffset;
    float kx[8], ks = 1.0f;
    const uint8_t* page = nullptr;
    int slot = 0;
    if (valid) {
      if constexpr (SRC == Source::Codes) {
        page = pages[t / P];
        slot = h * P + t % P;
        if (p.storesPositions) pos = reinterpret_cast<const int32_t*>(page + p.offPos)[slot];
        ks = halfToFloat(reinterpret_cast<const uint16_t*>(page + p.offKS)[slot]);
      }
    }
    const bool visible = valid && pos <= qp;
    if (visible && laneActive && (!TR || kRate > 0)) {
      if constexpr (SRC == Source::Codes && TR)
        bandPointRate(loadCode(page + p.offKC + static_cast<size_t>(slot) * p.kcBytes + kOff, kRate), kRate, sAbs, sFine2, kx);
      else if constexpr (SRC == Source::Codes)
        groupPoint<KB>(loadCodeT<KB>(page + p.offKC + static_cast<size_t>(slot) * p.kcBytes + kOff), sAbs, sFine2, kx);
      else loadHalf8(kBase + static_cast<size_t>(t) * p.headDim + 8 * gl, kx);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) kx[i] = 0.0f;
    }
    float logit[kHeadsPerPass];
#pragma unroll
    for (int hp = 0; hp < kHeadsPerPass; ++hp) {
      float s = 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) s = fmaf(q[hp][i], kx[i], s);
#pragma unroll
      for (int off = TPT / 2; off >= 1; off >>= 1) s += warpXor(s, off);
      logit[hp] = visible ? s * ks + bias[hp] : -INFINITY;
    }
    if (!__any_sync(0xFFFFFFFFu, visible)) continue;
    float vx[8], vs = 1.0f;
    if (visible) {
      if constexpr (SRC == Source::Codes) {
        vs = halfToFloat(reinterpret_cast<const uint16_t*>(page + p.offVS)[slot]);
        if constexpr (TR) {
          if (laneActive && vRate > 0) bandPointRate(loadCode(page + p.offVC + static_cast<size_t>(slot) * p.vcBytes + vOff, vRate), vRate, sAbs, sFine2, vx);
          else
#pragma unroll
            for (int i = 0; i < 8; ++i) vx[i] = 0.0f;
        } else if (laneActive) {
          groupPoint<VB>(loadCodeT<VB>(page + p.offVC + static_cast<size_t>(slot) * p.vcBytes + vOff), sAbs, sFine2, vx);
        }
      } else if (laneActive) {
        loadHalf8(vBase + static_cast<size_t>(t) * p.headDim + 8 * gl, vx);
      }
    }
    if (!(visible && laneActive)) {
#pragma unroll
      for (int i = 0; i < 8; ++i) vx[i] = 0.0f;
    }
#pragma unroll
    for (int hp = 0; hp < kHeadsPerPass; ++hp) {
      if (logit[hp] == -INFINITY) continue;
      const float mNew = fmaxf(m[hp], logit[hp]);
      const float alpha = rescale(m[hp], mNew);
      const float pr = exp2f(logit[hp] - mNew);
      l[hp] = fmaf(l[hp], alpha, pr);
      const float w = pr * vs;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[hp][i] = fmaf(acc[hp][i], alpha, w * vx[i]);
      m[hp] = mNew;
    }
  }

  // Merge the TOK subgroups of the warp (lanes with the same group index differ by multiples of TPT).
#pragma unroll
  for (int off = TPT; off < 32; off <<= 1) {
#pragma unroll
    for (int hp = 0; hp < kHeadsPerPass; ++hp) {
      const float mo = warpXor(m[hp], off), lo = warpXor(l[hp], off);
      const float mNew = fmaxf(m[hp], mo);
      const float a = mNew == -INFINITY ? 0.0f : rescale(m[hp], mNew), c = mNew == -INFINITY ? 0.0f : rescale(mo, mNew);
      l[hp] = l[hp] * a + lo * c;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float ao = warpXor(acc[hp][i], off);
        acc[hp][i] = acc[hp][i] * a + ao * c;
      }
      m[hp] = mNew;
    }
  }
  if (lane < TPT) {
#pragma unroll
    for (int hp = 0; hp < kHeadsPerPass; ++hp) {
      if (lane == 0) {
        sM[warp][hp] = m[hp];
        sL[warp][hp] = l[hp];
      }
      if (laneActive)
#pragma unroll
        for (int i = 0; i < 8; ++i) sAcc[(warp * kHeadsPerPass + hp) * p.headDim + 8 * gl + i] = acc[hp][i];
    }
  }
  __syncthreads();
  // Merge the warps and write this split's partial state for each query head of the pass.
  for (int idx = threadIdx.x; idx < headsHere * p.headDim; idx += blockDim.x) {
    const int hp = idx / p.headDim, e = idx % p.headDim;
    float M = -INFINITY;
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, sM[w][hp]);
    float L = 0.0f, A = 0.0f;
    for (int w = 0; w < kWarps; ++w) {
      const float c = M == -INFINITY ? 0.0f : rescale(sM[w][hp], M);
      L += sL[w][hp] * c;
      A += sAcc[(w * kHeadsPerPass + hp) * p.headDim + e] * c;
    }
    const size_t row = (static_cast<size_t>(b) * p.queryHeads + qh0 + hp) * p.nq + j;
    const size_t at = row * p.splits + split;
    p.partAcc[at * p.headDim + e] = A;
    if (e == 0) {
      p.partM[at] = M;
      p.partL[at] = L;
    }
  }
}

}  // namespace nq::cuda::attn
