// Eviction scores on the GPU, mirroring native/cpu/scoring.cc (float accumulation instead of the
// CPU's double softmax sums: scores agree to ~1e-6 relative, and selection ties are broken by token
// index on both sides). Keys are dense f32 [kvHeads][tokens][headDim] in the original domain (the
// cache decodes its codes into scratch first).
//   keynorm:  -||k||, one warp per token;
//   key-key / observed: softmaxStats (max and sum of each proxy query's logits, one block per query
//   row) then softmaxMass (one warp per key: the mass it receives, summed over the rows of its KV
//   head); observed then max-pools over `pool` neighbours.
#include <algorithm>
#include <cmath>

#include "nq_cuda_common.cuh"

namespace nq::cuda {
namespace {

struct MassParams {
  int kvHeads, tokens, headDim, window, group;  // group: query rows per KV head per window position
  bool keyKey;                                  // proxies are the last `window` keys of the head
  const float* keys;
  const float* queries;  // observed: [kvHeads * group][window][headDim]
  float scale;
  float* rowMax;  // [kvHeads * group][window]
  float* rowSum;
  float* out;     // [kvHeads][tokens]
};

__device__ __forceinline__ const float* queryRow(const MassParams& p, int h, int g, int j) {
  if (p.keyKey) return p.keys + (static_cast<size_t>(h) * p.tokens + (p.tokens - p.window + j)) * p.headDim;
  return p.queries + ((static_cast<size_t>(h) * p.group + g) * p.window + j) * p.headDim;
}

// Query j of the window sits at position tokens - window + j and sees keys up to it.
__device__ __forceinline__ int rowLimit(const MassParams& p, int j) {
  return p.tokens >= p.window ? p.tokens - p.window + j + 1 : min(p.tokens, j + 1);
}

__device__ __forceinline__ float warpDot(const float* a, const float* b, int n) {
  float s = 0.0f;
  for (int i = threadIdx.x % 32; i < n; i += 32) s = fmaf(a[i], b[i], s);
  for (int off = 16; off >= 1; off >>= 1) s += __shfl_xor_sync(0xFFFFFFFFu, s, off);
  return s;
}

__global__ void keyNormKernel(const float* keys, long long rows, int headDim, float* scores) {
  const long long r = (blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x) / 32;
  if (r >= rows) return;
  const float* k = keys + r * headDim;
  const float s = warpDot(k, k, headDim);
  if (threadIdx.x % 32 == 0) scores[r] = -sqrtf(s);
}

// grid: (window, kvHeads * group); 8 warps, a key per warp, online max/sum per warp then merged.
__global__ void softmaxStatsKernel(MassParams p) {
  __shared__ float sM[8], sS[8];
  const int j = blockIdx.x, row = blockIdx.y;
  const int h = row / p.group, g = row % p.group;
  const float* q = queryRow(p, h, g, j);
  const int limit = rowLimit(p, j);
  const int warp = threadIdx.x / 32;
  float m = -INFINITY, s = 0.0f;
  for (int i = warp; i < limit; i += 8) {
    const float l = warpDot(q, p.keys + (static_cast<size_t>(h) * p.tokens + i) * p.headDim, p.headDim) * p.scale;
    const float mNew = fmaxf(m, l);
    s = s * (m == -INFINITY ? 0.0f : expf(m - mNew)) + expf(l - mNew);
    m = mNew;
  }
  if (threadIdx.x % 32 == 0) {
    sM[warp] = m;
    sS[warp] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float M = -INFINITY, S = 0.0f;
    for (int w = 0; w < 8; ++w) M = fmaxf(M, sM[w]);
    for (int w = 0; w < 8; ++w) S += sM[w] == -INFINITY ? 0.0f : sS[w] * expf(sM[w] - M);
    p.rowMax[row * p.window + j] = M;
    p.rowSum[row * p.window + j] = S;
  }
}

// grid: (ceil(tokens / 8), kvHeads); a key per warp.
__global__ void softmaxMassKernel(MassParams p) {
  const int h = blockIdx.y;
  const int i = blockIdx.x * 8 + threadIdx.x / 32;
  if (i >= p.tokens) return;
  const float* k = p.keys + (static_cast<size_t>(h) * p.tokens + i) * p.headDim;
  float mass = 0.0f;
  for (int g = 0; g < p.group; ++g)
    for (int j = 0; j < p.window; ++j) {
      if (i >= rowLimit(p, j)) continue;
      const int row = h * p.group + g;
      const float l = warpDot(queryRow(p, h, g, j), k, p.headDim) * p.scale;
      mass += expf(l - p.rowMax[row * p.window + j]) / p.rowSum[row * p.window + j];
    }
  if (threadIdx.x % 32 == 0) p.out[static_cast<size_t>(h) * p.tokens + i] = mass;
}

__global__ void maxPoolKernel(const float* in, int kvHeads, int tokens, int pool, float* out) {
  const long long idx = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (idx >= static_cast<long long>(kvHeads) * tokens) return;
  const int h = static_cast<int>(idx / tokens), t = static_cast<int>(idx % tokens), half = pool / 2;
  const int lo = max(0, t - half), hi = min(tokens, t + half + 1);
  float m = -INFINITY;
  for (int x = lo; x < hi; ++x) m = fmaxf(m, in[static_cast<size_t>(h) * tokens + x]);
  out[idx] = m;
}

size_t alignUp(size_t x) { return (x + 255) / 256 * 256; }

int rowsOf(const ScoreLaunch& a) { return a.scorer == CudaScorer::Observed ? a.queryHeads : a.kvHeads; }
int windowOf(const ScoreLaunch& a) { return a.scorer == CudaScorer::KeyKey ? std::min(a.window, a.tokens) : a.window; }

}  // namespace

size_t scoreWorkspaceBytes(const ScoreLaunch& a) {
  if (a.scorer == CudaScorer::KeyNorm) return 0;
  const size_t stats = static_cast<size_t>(rowsOf(a)) * std::max(1, windowOf(a)) * sizeof(float);
  const size_t pooled = a.scorer == CudaScorer::Observed ? static_cast<size_t>(a.kvHeads) * a.tokens * sizeof(float) : 0;
  return 2 * alignUp(stats) + alignUp(pooled);
}

CudaStatus launchScore(const ScoreLaunch& a) {
  if (a.tokens == 0) return CudaStatus::success();
  if (!a.keys || !a.scores || a.headDim <= 0) return CudaStatus::fail(CudaCode::InvalidArgument, "score: null pointer or bad headDim");
  const cudaStream_t stream = asStream(a.stream);
  if (a.scorer == CudaScorer::KeyNorm) {
    const long long rows = static_cast<long long>(a.kvHeads) * a.tokens;
    keyNormKernel<<<ceilDiv(rows * 32, 256), 256, 0, stream>>>(a.keys, rows, a.headDim, a.scores);
    return checkLaunch("keyNormKernel");
  }
  if (a.scorer == CudaScorer::Observed && (!a.queries || a.queryHeads % a.kvHeads != 0))
    return CudaStatus::fail(CudaCode::InvalidArgument, "score: observed needs queries and queryHeads a multiple of kvHeads");
  if (!a.workspace || a.workspaceBytes < scoreWorkspaceBytes(a)) return CudaStatus::fail(CudaCode::InvalidArgument, "score: workspace too small");
  MassParams p{};
  p.kvHeads = a.kvHeads;
  p.tokens = a.tokens;
  p.headDim = a.headDim;
  p.window = windowOf(a);
  p.keyKey = a.scorer == CudaScorer::KeyKey;
  p.group = p.keyKey ? 1 : a.queryHeads / a.kvHeads;
  p.keys = a.keys;
  p.queries = a.queries;
  p.scale = 1.0f / std::sqrt(static_cast<float>(a.headDim));
  const size_t stats = alignUp(static_cast<size_t>(rowsOf(a)) * std::max(1, p.window) * sizeof(float));
  uint8_t* ws = static_cast<uint8_t*>(a.workspace);
  p.rowMax = reinterpret_cast<float*>(ws);
  p.rowSum = reinterpret_cast<float*>(ws + stats);
  float* raw = reinterpret_cast<float*>(ws + 2 * stats);
  p.out = p.keyKey ? a.scores : raw;
  if (p.window == 0) return fillDevice(a.scores, 0, static_cast<size_t>(a.kvHeads) * a.tokens * sizeof(float), a.stream);
  softmaxStatsKernel<<<dim3(p.window, a.kvHeads * p.group), 256, 0, stream>>>(p);
  NQ_CUDA_TRY(checkLaunch("softmaxStatsKernel"), "");
  softmaxMassKernel<<<dim3(ceilDiv(a.tokens, 8), a.kvHeads), 256, 0, stream>>>(p);
  NQ_CUDA_TRY(checkLaunch("softmaxMassKernel"), "");
  if (!p.keyKey) {
    const long long n = static_cast<long long>(a.kvHeads) * a.tokens;
    if (a.pool <= 1) return fromCuda(cudaMemcpyAsync(a.scores, raw, n * sizeof(float), cudaMemcpyDeviceToDevice, stream), "score copy");
    maxPoolKernel<<<ceilDiv(n, 256), 256, 0, stream>>>(raw, a.kvHeads, a.tokens, a.pool, a.scores);
    return checkLaunch("maxPoolKernel");
  }
  return CudaStatus::success();
}

}  // namespace nq::cuda
