// Decode attention directly on the compressed cache (issue 6), and the dense FP16 reference.
//   1. prepareQueries: q * scale * log2(e), plain and rotated (sign flip + Hadamard) once per query;
//      under a calibrated transform (issue 26), a calibrated head's query goes into its transformed
//      domain instead (bandScale ⊙ matrix · q) with q·mean as the bias of every coded key's logit;
//   2. splitKernel (attention.cuh) over the code pages and, separately, over the FP16 residual window;
//   3. reduceKernel: merges the splits, un-rotates the code part once (or takes it back out of the
//      transformed domain: matrixᵀ · (bandScale ⊙ acc) + mean · its softmax weight), adds the residual;
//   4. accumulateKernel (optional, H2O scorer): adds each token's final softmax mass per KV head.
#include <algorithm>

#include "attention.cuh"

namespace nq::cuda {
namespace {

using attn::Params;
using attn::Source;

__global__ void prepareQueriesKernel(const float* q, int headDim, float factor, bool rotate, uint32_t seed, float* qPlain, float* qRot) {
  extern __shared__ float v[];
  const size_t row = blockIdx.x;
  for (int e = threadIdx.x; e < headDim; e += blockDim.x) {
    const float x = q[row * headDim + e];
    qPlain[row * headDim + e] = x * factor;
    v[e] = rotate ? x * e8::rotationSign(seed, static_cast<uint32_t>(e)) : x;
  }
  __syncthreads();
  if (rotate) hadamardShared(v, 1, headDim);
  for (int e = threadIdx.x; e < headDim; e += blockDim.x) qRot[row * headDim + e] = v[e] * factor;
}

// The KV head of query row `row` ([batch][queryHeads][nq] order).
__device__ inline int kvHeadOfRow(const Params& p, size_t row) { return static_cast<int>((row / p.nq) % p.queryHeads) / p.group; }

// prepareQueries under calibrated transforms: a calibrated head's rows into its transformed domain
// (qRot = bandScale ⊙ matrix · q, qBias = q·mean, both times `factor`), a flat head's as above.
__global__ void prepareTransformedQueriesKernel(const float* q, Params p, float factor) {
  extern __shared__ float v[];
  const size_t row = blockIdx.x;
  const int d = p.headDim;
  const HeadTransform& t = p.keyT[kvHeadOfRow(p, row)];
  for (int e = threadIdx.x; e < d; e += blockDim.x) {
    const float x = q[row * d + e];
    p.qPlain[row * d + e] = x * factor;
    v[e] = t.matrix ? x : x * e8::rotationSign(p.seed, static_cast<uint32_t>(e));
  }
  __syncthreads();
  if (!t.matrix) {
    hadamardShared(v, 1, d);
    for (int e = threadIdx.x; e < d; e += blockDim.x) p.qRot[row * d + e] = v[e] * factor;
    if (threadIdx.x == 0) p.qBias[row] = 0.0f;
    return;
  }
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    const float* m = t.matrix + static_cast<size_t>(i) * d;
    float y = 0.0f;
    for (int j = 0; j < d; ++j) y = fmaf(m[j], v[j], y);
    p.qRot[row * d + i] = y * t.bandScale[i / 8] * factor;
  }
  if (threadIdx.x == 0) {
    float b = 0.0f;
    for (int j = 0; j < d; ++j) b = fmaf(v[j], t.mean[j], b);
    p.qBias[row] = b * factor;
  }
}

__global__ void reduceKernel(Params p, int rowsPerSeqLen, bool rotateOut) {
  extern __shared__ float sm[];
  float* weight = sm;              // [splits]
  float* rot = sm + p.splits;      // [headDim]
  __shared__ float sMax, sSum;
  const size_t row = blockIdx.x;
  const size_t at0 = row * p.splits;
  if (threadIdx.x == 0) {
    float M = -INFINITY;
    for (int s = 0; s < p.splits; ++s) M = fmaxf(M, p.partM[at0 + s]);
    float L = 0.0f;
    for (int s = 0; s < p.splits; ++s) L += p.partL[at0 + s] * (M == -INFINITY ? 0.0f : attn::rescale(p.partM[at0 + s], M));
    sMax = M;
    sSum = L;
    p.finalM[row] = M;
    p.finalL[row] = L;
  }
  __syncthreads();
  const float M = sMax, L = sSum;
  const float invL = L > 0.0f ? 1.0f / L : 0.0f;
  for (int s = threadIdx.x; s < p.splits; s += blockDim.x) weight[s] = (M == -INFINITY ? 0.0f : attn::rescale(p.partM[at0 + s], M)) * invL;
  __syncthreads();
  for (int e = threadIdx.x; e < p.headDim; e += blockDim.x) {
    float a = 0.0f;
    for (int s = 0; s < p.codeSplits; ++s) a += p.partAcc[(at0 + s) * p.headDim + e] * weight[s];
    rot[e] = a;
  }
  __syncthreads();
  const HeadTransform* vt = p.valueT ? &p.valueT[kvHeadOfRow(p, row)] : nullptr;
  if (vt && vt->matrix) {  // out of the transformed domain: matrixᵀ · (bandScale ⊙ acc) + mean · weight
    __shared__ float sCodeWeight;
    if (threadIdx.x == 0) {
      float w = 0.0f;
      for (int s = 0; s < p.codeSplits; ++s) w += p.partL[at0 + s] * weight[s];
      sCodeWeight = w;
    }
    for (int e = threadIdx.x; e < p.headDim; e += blockDim.x) rot[e] *= vt->bandScale[e / 8];
    __syncthreads();
    for (int e = threadIdx.x; e < p.headDim; e += blockDim.x) {
      float plain = 0.0f;
      for (int s = p.codeSplits; s < p.splits; ++s) plain += p.partAcc[(at0 + s) * p.headDim + e] * weight[s];
      float x = vt->mean[e] * sCodeWeight;
      for (int i = 0; i < p.headDim; ++i) x = fmaf(vt->matrix[static_cast<size_t>(i) * p.headDim + e], rot[i], x);
      p.out[row * p.headDim + e] = x + plain;
    }
    return;
  }
  if (rotateOut) hadamardShared(rot, 1, p.headDim);
  for (int e = threadIdx.x; e < p.headDim; e += blockDim.x) {
    float plain = 0.0f;
    for (int s = p.codeSplits; s < p.splits; ++s) plain += p.partAcc[(at0 + s) * p.headDim + e] * weight[s];
    const float r = rotateOut ? rot[e] * e8::rotationSign(p.seed, static_cast<uint32_t>(e)) : rot[e];
    p.out[row * p.headDim + e] = r + plain;
  }
  (void)rowsPerSeqLen;
}

// One thread per (sequence, KV head, held token): its softmax mass summed over the group's query
// heads and the queries, added to SeqKV::accumulated (compressed slots first, then the residual).
// TR: keys under calibrated transforms (bands at their own rates, the row's q·mean added to coded logits).
template <int KB, bool TR = false>
__global__ void accumulateKernel(Params p) {
  __shared__ uint16_t sAbs[e8::kAbsEntries];
  __shared__ float sFine2[256][8];
  for (int i = threadIdx.x; i < e8::kAbsEntries; i += blockDim.x) sAbs[i] = p.tables->absTable[i];
  if (KB == 3 || TR)
    for (int i = threadIdx.x; i < 256 * 8; i += blockDim.x) sFine2[i / 8][i % 8] = p.tables->fine2[i / 8][i % 8];
  __syncthreads();
  const int b = blockIdx.z, h = blockIdx.y;
  const SeqKV& s = p.seqs[b];
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  const int nc = s.compressed, total = nc + s.residualCount;
  if (t >= total || s.accumulated == nullptr) return;
  const int P = p.pageTokens;
  int pos;
  float ks = 1.0f;
  const uint8_t* codes = nullptr;
  const uint16_t* row = nullptr;
  if (t < nc) {
    const uint8_t* page = s.pages[t / P];
    const int slot = h * P + t % P;
    pos = p.storesPositions ? reinterpret_cast<const int32_t*>(page + p.offPos)[slot] : t;
    ks = halfToFloat(reinterpret_cast<const uint16_t*>(page + p.offKS)[slot]);
    codes = page + p.offKC + static_cast<size_t>(slot) * p.kcBytes;
  } else {
    pos = s.firstResidualPos + (t - nc);
    row = s.residual + (static_cast<size_t>(h) * s.residualCap + (t - nc)) * p.headDim;
  }
  float mass = 0.0f;
  for (int g = 0; g < p.group; ++g) {
    const int qh = h * p.group + g;
    for (int j = 0; j < p.nq; ++j) {
      if (pos > p.qpos[b * p.nq + j]) continue;
      const size_t r = (static_cast<size_t>(b) * p.queryHeads + qh) * p.nq + j;
      const float L = p.finalL[r];
      if (!(L > 0.0f)) continue;
      const float* q = (codes ? p.qRot : p.qPlain) + r * p.headDim;
      float dot = 0.0f;
      for (int grp = 0; grp < p.groups; ++grp) {
        float x[8];
        if (codes && TR) {
          int rate, off;
          attn::bandRate(p.keyT[h], grp, p.keyBits, rate, off);
          if (rate == 0) continue;
          bandPointRate(loadCode(codes + off, rate), rate, sAbs, sFine2, x);
        } else if (codes) {
          attn::groupPoint<KB>(attn::loadCodeT<KB>(codes + grp * KB), sAbs, sFine2, x);
        } else {
          for (int i = 0; i < 8; ++i) x[i] = halfToFloat(row[8 * grp + i]);
        }
        for (int i = 0; i < 8; ++i) dot = fmaf(q[8 * grp + i], x[i], dot);
      }
      const float bias = codes && TR ? p.qBias[r] : 0.0f;
      mass += exp2f(dot * ks + bias - p.finalM[r]) / L;
    }
  }
  s.accumulated[static_cast<size_t>(h) * s.accPitch + t] += mass;
}

int lanesPerToken(int headDim) {
  const int groups = headDim / 8;
  return groups <= 8 ? 8 : (groups <= 16 ? 16 : 32);
}

struct Plan {
  int tpt, passes, chunk, codeSplits, resSplits, splits;
  size_t rows;
  size_t offPlain, offRot, offBias, offM, offL, offFM, offFL, offAcc, bytes;
};

size_t align256(size_t x) { return (x + 255) / 256 * 256; }

Plan makePlan(int batch, int nq, int kvHeads, int queryHeads, int headDim, int maxCompressed, int maxResidual, int splitTokens) {
  Plan pl{};
  const int group = queryHeads / kvHeads;
  pl.tpt = lanesPerToken(headDim);
  pl.passes = (group + attn::kHeadsPerPass - 1) / attn::kHeadsPerPass;
  if (splitTokens > 0) {
    pl.chunk = splitTokens;
  } else {
    // Enough blocks for about two waves over the SMs, but never chunks under 64 tokens.
    const long long blocksPerSplit = static_cast<long long>(batch) * nq * kvHeads * pl.passes;
    const long long wantSplits = std::max<long long>(1, (2LL * smCount() + blocksPerSplit - 1) / blocksPerSplit);
    const long long perSplit = (std::max(maxCompressed, 1) + wantSplits - 1) / wantSplits;
    pl.chunk = static_cast<int>(std::max<long long>(64, (perSplit + 31) / 32 * 32));
  }
  pl.codeSplits = std::max(1, ceilDiv(maxCompressed, pl.chunk));
  pl.resSplits = ceilDiv(maxResidual, pl.chunk);
  pl.splits = pl.codeSplits + pl.resSplits;
  pl.rows = static_cast<size_t>(batch) * queryHeads * nq;
  size_t off = 0;
  auto take = [&off](size_t bytes) {
    const size_t at = off;
    off += align256(bytes);
    return at;
  };
  pl.offPlain = take(pl.rows * headDim * 4);
  pl.offRot = take(pl.rows * headDim * 4);
  pl.offBias = take(pl.rows * 4);
  pl.offM = take(pl.rows * pl.splits * 4);
  pl.offL = take(pl.rows * pl.splits * 4);
  pl.offFM = take(pl.rows * 4);
  pl.offFL = take(pl.rows * 4);
  pl.offAcc = take(pl.rows * pl.splits * headDim * 4);
  pl.bytes = off;
  return pl;
}

void bindWorkspace(Params& p, const Plan& pl, void* ws) {
  uint8_t* w = static_cast<uint8_t*>(ws);
  p.qPlain = reinterpret_cast<float*>(w + pl.offPlain);
  p.qRot = reinterpret_cast<float*>(w + pl.offRot);
  p.qBias = reinterpret_cast<float*>(w + pl.offBias);
  p.partM = reinterpret_cast<float*>(w + pl.offM);
  p.partL = reinterpret_cast<float*>(w + pl.offL);
  p.finalM = reinterpret_cast<float*>(w + pl.offFM);
  p.finalL = reinterpret_cast<float*>(w + pl.offFL);
  p.partAcc = reinterpret_cast<float*>(w + pl.offAcc);
  p.chunk = pl.chunk;
  p.codeSplits = pl.codeSplits;
  p.resSplits = pl.resSplits;
  p.splits = pl.splits;
}

template <int TPT, Source SRC, int KB, int VB, bool TR = false>
CudaStatus launchSplit(const Params& p, int gridX, int kvHeads, int passes, int batchQueries, cudaStream_t stream) {
  if (gridX <= 0) return CudaStatus::success();
  const dim3 grid(gridX, kvHeads * passes, batchQueries);
  const size_t smem = static_cast<size_t>(attn::kWarps) * attn::kHeadsPerPass * p.headDim * sizeof(float);
  attn::splitKernel<TPT, SRC, KB, VB, TR><<<grid, attn::kThreads, smem, stream>>>(p);
  return checkLaunch("attention splitKernel");
}

template <int TPT, int KB>
CudaStatus dispatchValueBits(const Params& p, int vb, int gridX, int kvHeads, int passes, int bq, cudaStream_t st) {
  switch (vb) {
    case 2: return launchSplit<TPT, Source::Codes, KB, 2>(p, gridX, kvHeads, passes, bq, st);
    case 3: return launchSplit<TPT, Source::Codes, KB, 3>(p, gridX, kvHeads, passes, bq, st);
    default: return launchSplit<TPT, Source::Codes, KB, 4>(p, gridX, kvHeads, passes, bq, st);
  }
}

template <int TPT>
CudaStatus dispatchCodes(const Params& p, int gridX, int kvHeads, int passes, int bq, cudaStream_t st) {
  if (p.keyT) return launchSplit<TPT, Source::Codes, 0, 0, true>(p, gridX, kvHeads, passes, bq, st);  // rates per band
  switch (p.keyBits) {
    case 2: return dispatchValueBits<TPT, 2>(p, p.valueBits, gridX, kvHeads, passes, bq, st);
    case 3: return dispatchValueBits<TPT, 3>(p, p.valueBits, gridX, kvHeads, passes, bq, st);
    default: return dispatchValueBits<TPT, 4>(p, p.valueBits, gridX, kvHeads, passes, bq, st);
  }
}

template <Source SRC>
CudaStatus dispatchHalf(int tpt, const Params& p, int gridX, int kvHeads, int passes, int bq, cudaStream_t st) {
  switch (tpt) {
    case 8: return launchSplit<8, SRC, 2, 2>(p, gridX, kvHeads, passes, bq, st);
    case 16: return launchSplit<16, SRC, 2, 2>(p, gridX, kvHeads, passes, bq, st);
    default: return launchSplit<32, SRC, 2, 2>(p, gridX, kvHeads, passes, bq, st);
  }
}

CudaStatus launchReduce(const Params& p, size_t rows, bool rotateOut, cudaStream_t stream) {
  const size_t smem = (static_cast<size_t>(p.splits) + p.headDim) * sizeof(float);
  if (smem > 48 * 1024) return CudaStatus::fail(CudaCode::InvalidArgument, "attention: too many splits; raise splitTokens");
  reduceKernel<<<static_cast<unsigned>(rows), 128, smem, stream>>>(p, 0, rotateOut);
  return checkLaunch("attention reduceKernel");
}

}  // namespace

bool attentionSupported(int headDim, int keyBits, int valueBits) {
  return codecSupported(headDim, keyBits) && codecSupported(headDim, valueBits) && headDim <= kCudaMaxAttentionHeadDim;
}

bool transformedAttentionSupported(int headDim, int keyBits, int valueBits) {
  return headDim >= 8 && headDim % 8 == 0 && headDim <= kCudaMaxAttentionHeadDim && keyBits >= 1 && keyBits <= 4 && valueBits >= 1 && valueBits <= 4;
}

size_t attentionWorkspaceBytes(const AttentionLaunch& a) {
  return makePlan(a.batch, a.queriesPerSeq, a.kvHeads, a.queryHeads, a.headDim, a.maxCompressed, a.maxResidual, a.splitTokens).bytes;
}

CudaStatus launchAttention(const AttentionLaunch& a) {
  const bool transformed = a.keyTransforms != nullptr;
  if (transformed != (a.valueTransforms != nullptr))
    return CudaStatus::fail(CudaCode::InvalidArgument, "attention: key and value transforms go together (both or neither)");
  if (!(transformed ? transformedAttentionSupported(a.headDim, a.keyBits, a.valueBits) : attentionSupported(a.headDim, a.keyBits, a.valueBits)))
    return CudaStatus::fail(CudaCode::Unsupported, "attention: headDim/bits not supported by the CUDA attention kernel (headDim <= 256)");
  if (a.kvHeads <= 0 || a.queryHeads % a.kvHeads != 0 || a.batch <= 0 || a.queriesPerSeq <= 0)
    return CudaStatus::fail(CudaCode::InvalidArgument, "attention: queryHeads must be a positive multiple of kvHeads");
  if (a.ropeTheta != 0) return CudaStatus::fail(CudaCode::Unsupported, "attention: keys stored without RoPE (keyStorage \"unrope\") are CPU only");
  if (a.captureMax || a.extraKeys || a.extraValues || a.recentSlots > 0)
    return CudaStatus::fail(CudaCode::Unsupported, "attention: the reconstruction pass (captureMax, extra rows, recent slots) is CPU only");
  if (!a.seqs || !a.queries || !a.queryPositions || !a.out) return CudaStatus::fail(CudaCode::InvalidArgument, "attention: null device pointer");
  const Plan pl = makePlan(a.batch, a.queriesPerSeq, a.kvHeads, a.queryHeads, a.headDim, a.maxCompressed, a.maxResidual, a.splitTokens);
  if (!a.workspace || a.workspaceBytes < pl.bytes) return CudaStatus::fail(CudaCode::InvalidArgument, "attention: workspace too small");
  CudaStatus st;
  const CodebookTables* tables = deviceTables(st);
  if (!tables) return st;
  Params p{};
  p.batch = a.batch;
  p.kvHeads = a.kvHeads;
  p.queryHeads = a.queryHeads;
  p.group = a.queryHeads / a.kvHeads;
  p.headDim = a.headDim;
  p.groups = a.headDim / 8;
  p.nq = a.queriesPerSeq;
  p.keyBits = a.keyBits;
  p.valueBits = a.valueBits;
  p.pageTokens = a.pageTokens;
  p.kcBytes = p.groups * a.keyBits;
  p.vcBytes = p.groups * a.valueBits;
  p.storesPositions = a.storesPositions;
  p.offKC = a.keyCodesOff;
  p.offVC = a.valueCodesOff;
  p.offKS = a.keyScalesOff;
  p.offVS = a.valueScalesOff;
  p.offPos = a.positionsOff;
  p.seqs = a.seqs;
  p.qpos = a.queryPositions;
  p.out = a.out;
  p.rotate = a.rotate;
  p.seed = a.seed;
  p.tables = tables;
  p.keyT = a.keyTransforms;
  p.valueT = a.valueTransforms;
  bindWorkspace(p, pl, a.workspace);
  const cudaStream_t stream = asStream(a.stream);
  if (transformed)
    prepareTransformedQueriesKernel<<<static_cast<unsigned>(pl.rows), 128, a.headDim * sizeof(float), stream>>>(a.queries, p, a.scale * attn::kLog2e);
  else
    prepareQueriesKernel<<<static_cast<unsigned>(pl.rows), 128, a.headDim * sizeof(float), stream>>>(
        a.queries, a.headDim, a.scale * attn::kLog2e, a.rotate, a.seed, p.qPlain, p.qRot);
  NQ_CUDA_TRY(checkLaunch("attention prepareQueriesKernel"), "");
  const int bq = a.batch * a.queriesPerSeq;
  switch (pl.tpt) {
    case 8: NQ_CUDA_TRY((dispatchCodes<8>(p, pl.codeSplits, a.kvHeads, pl.passes, bq, stream)), ""); break;
    case 16: NQ_CUDA_TRY((dispatchCodes<16>(p, pl.codeSplits, a.kvHeads, pl.passes, bq, stream)), ""); break;
    default: NQ_CUDA_TRY((dispatchCodes<32>(p, pl.codeSplits, a.kvHeads, pl.passes, bq, stream)), ""); break;
  }
  NQ_CUDA_TRY(dispatchHalf<Source::Residual>(pl.tpt, p, pl.resSplits, a.kvHeads, pl.passes, bq, stream), "");
  NQ_CUDA_TRY(launchReduce(p, pl.rows, a.rotate, stream), "");
  if (a.accumulate) {
    const dim3 grid(std::max(1, ceilDiv(a.maxCompressed + a.maxResidual, 128)), a.kvHeads, a.batch);
    if (transformed) accumulateKernel<0, true><<<grid, 128, 0, stream>>>(p);
    else switch (a.keyBits) {
      case 2: accumulateKernel<2><<<grid, 128, 0, stream>>>(p); break;
      case 3: accumulateKernel<3><<<grid, 128, 0, stream>>>(p); break;
      default: accumulateKernel<4><<<grid, 128, 0, stream>>>(p); break;
    }
    NQ_CUDA_TRY(checkLaunch("attention accumulateKernel"), "");
  }
  return CudaStatus::success();
}

size_t denseAttentionWorkspaceBytes(const DenseAttentionLaunch& a) {
  return makePlan(a.batch, 1, a.kvHeads, a.queryHeads, a.headDim, a.maxTokens, 0, a.splitTokens).bytes;
}

CudaStatus launchDenseAttention(const DenseAttentionLaunch& a) {
  if (a.headDim % 8 != 0 || a.headDim < 8 || a.headDim > kCudaMaxAttentionHeadDim)
    return CudaStatus::fail(CudaCode::Unsupported, "dense attention: headDim must be a multiple of 8 up to 256");
  if (a.kvHeads <= 0 || a.queryHeads % a.kvHeads != 0) return CudaStatus::fail(CudaCode::InvalidArgument, "dense attention: bad head counts");
  const Plan pl = makePlan(a.batch, 1, a.kvHeads, a.queryHeads, a.headDim, a.maxTokens, 0, a.splitTokens);
  if (!a.workspace || a.workspaceBytes < pl.bytes) return CudaStatus::fail(CudaCode::InvalidArgument, "dense attention: workspace too small");
  Params p{};
  p.batch = a.batch;
  p.kvHeads = a.kvHeads;
  p.queryHeads = a.queryHeads;
  p.group = a.queryHeads / a.kvHeads;
  p.headDim = a.headDim;
  p.groups = a.headDim / 8;
  p.nq = 1;
  p.denseK = a.keys;
  p.denseV = a.values;
  p.lengths = a.lengths;
  p.maxTokens = a.maxTokens;
  p.out = a.out;
  p.rotate = false;
  bindWorkspace(p, pl, a.workspace);
  const cudaStream_t stream = asStream(a.stream);
  prepareQueriesKernel<<<static_cast<unsigned>(pl.rows), 128, a.headDim * sizeof(float), stream>>>(
      a.queries, a.headDim, a.scale * attn::kLog2e, false, 0, p.qPlain, p.qRot);
  NQ_CUDA_TRY(checkLaunch("dense attention prepareQueriesKernel"), "");
  NQ_CUDA_TRY(dispatchHalf<Source::Dense>(pl.tpt, p, pl.codeSplits, a.kvHeads, pl.passes, a.batch, stream), "");
  return launchReduce(p, pl.rows, false, stream);
}

}  // namespace nq::cuda
