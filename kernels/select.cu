// Eviction on the GPU: which tokens each KV head keeps (selectKernel) and the compaction of the kept
// slots into new pages (compactKernel). The selection is the CPU cache's exactly
// (native/cpu/ops/eviction_ops.cc cpuSelect): sinks and the recent window are protected; the other
// tokens compete on (score descending, index ascending), found with a radix select over 64-bit keys
// (orderable score << 32 | ~index), so there are no ties and the kept set is deterministic.
#include <algorithm>

#include "nq_cuda_common.cuh"

namespace nq::cuda {
namespace {

constexpr int kSelectThreads = 1024;

__device__ __forceinline__ uint64_t selectKey(float score, int t) {
  uint32_t u = floatBits(score + 0.0f);  // -0 -> +0: the CPU compares them equal
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<uint64_t>(u) << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(t));
}

// Block-wide exclusive prefix sum of one flag per thread; returns the block total in *total.
__device__ int blockExclusiveScan(int flag, int* total) {
  __shared__ int warpSums[kSelectThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const unsigned ballot = __ballot_sync(0xFFFFFFFFu, flag);
  const int inWarp = __popc(ballot & ((1u << lane) - 1u));
  if (lane == 0) warpSums[warp] = __popc(ballot);
  __syncthreads();
  if (threadIdx.x == 0) {
    int run = 0;
    for (int w = 0; w < kSelectThreads / 32; ++w) {
      const int c = warpSums[w];
      warpSums[w] = run;
      run += c;
    }
    *total = run;
  }
  __syncthreads();
  const int r = warpSums[warp] + inWarp;
  __syncthreads();
  return r;
}

__global__ void __launch_bounds__(kSelectThreads) selectKernel(SelectLaunch a) {
  __shared__ unsigned hist[256];
  __shared__ int sCount, sTotal;
  __shared__ uint64_t sPrefix;
  __shared__ int sRemaining;
  const int h = blockIdx.x, T = a.tokens;
  const float* sc = a.scores + static_cast<size_t>(h) * T;
  const int32_t* pos = a.positions + static_cast<size_t>(h) * T;
  const int recentStart = T > a.recentWindow ? T - a.recentWindow : 0;
  auto isProtected = [&](int t) { return pos[t] < a.sinkTokens || t >= recentStart; };

  if (threadIdx.x == 0) sCount = 0;
  __syncthreads();
  int local = 0;
  for (int t = threadIdx.x; t < T; t += blockDim.x) local += isProtected(t) ? 1 : 0;
  atomicAdd(&sCount, local);
  __syncthreads();
  const int protectedCount = sCount;
  const int want = a.target > protectedCount ? a.target - protectedCount : 0;

  // Radix select of the want-th largest candidate key, most significant byte first.
  uint64_t threshold = ~0ull;  // with want == 0 no candidate qualifies
  if (want > 0) {
    if (threadIdx.x == 0) {
      sPrefix = 0;
      sRemaining = want;
    }
    for (int shift = 56; shift >= 0; shift -= 8) {
      for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
      __syncthreads();
      const uint64_t prefix = sPrefix;
      const uint64_t highMask = shift == 56 ? 0ull : (~0ull << (shift + 8));
      for (int t = threadIdx.x; t < T; t += blockDim.x) {
        if (isProtected(t)) continue;
        const uint64_t k = selectKey(sc[t], t);
        if ((k & highMask) == prefix) atomicAdd(&hist[(k >> shift) & 0xFFu], 1u);
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        int remaining = sRemaining;
        int digit = 255;
        for (; digit > 0; --digit) {
          if (static_cast<int>(hist[digit]) >= remaining) break;
          remaining -= static_cast<int>(hist[digit]);
        }
        sPrefix = prefix | (static_cast<uint64_t>(digit) << shift);
        sRemaining = remaining;
      }
      __syncthreads();
    }
    threshold = sPrefix;
  }

  // Ordered write-out of the kept indices.
  int written = 0;
  for (int base = 0; base < T; base += blockDim.x) {
    const int t = base + threadIdx.x;
    int flag = 0;
    if (t < T) {
      if (isProtected(t)) flag = 1;
      else if (want > 0 && selectKey(sc[t], t) >= threshold) flag = 1;
    }
    const int at = blockExclusiveScan(flag, &sTotal);
    const int total = sTotal;
    // When the protected tokens alone exceed the target, the earliest ones are kept.
    if (flag && written + at < a.target) a.kept[static_cast<size_t>(h) * a.target + written + at] = static_cast<uint32_t>(t);
    written += total;
    __syncthreads();
  }
}

// One warp per (new slot, head): copy the codes, scales and position of its source slot.
__global__ void compactKernel(CompactLaunch a) {
  const int h = blockIdx.y;
  const int t = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (t >= a.target) return;
  const int lane = threadIdx.x % 32;
  const int P = a.pageTokens;
  const uint32_t src = a.kept[static_cast<size_t>(h) * a.target + t];
  uint8_t* dst = a.newPages[t / P];
  const size_t dj = static_cast<size_t>(h) * P + t % P;
  const uint8_t *kc, *vc;
  uint16_t ks, vs;
  if (static_cast<int>(src) < a.oldCompressed) {
    const uint8_t* sp = a.oldPages[src / P];
    const size_t sj = static_cast<size_t>(h) * P + src % P;
    kc = sp + a.keyCodesOff + sj * a.keyCodeBytes;
    vc = sp + a.valueCodesOff + sj * a.valueCodeBytes;
    ks = reinterpret_cast<const uint16_t*>(sp + a.keyScalesOff)[sj];
    vs = reinterpret_cast<const uint16_t*>(sp + a.valueScalesOff)[sj];
  } else {
    const size_t r = static_cast<size_t>(h) * a.residualRows + (src - a.oldCompressed);
    kc = a.resKeyCodes + r * a.keyCodeBytes;
    vc = a.resValueCodes + r * a.valueCodeBytes;
    ks = a.resKeyScales[r];
    vs = a.resValueScales[r];
  }
  for (int i = lane; i < a.keyCodeBytes; i += 32) dst[a.keyCodesOff + dj * a.keyCodeBytes + i] = kc[i];
  for (int i = lane; i < a.valueCodeBytes; i += 32) dst[a.valueCodesOff + dj * a.valueCodeBytes + i] = vc[i];
  if (lane == 0) {
    reinterpret_cast<uint16_t*>(dst + a.keyScalesOff)[dj] = ks;
    reinterpret_cast<uint16_t*>(dst + a.valueScalesOff)[dj] = vs;
    if (a.storesPositions)
      reinterpret_cast<int32_t*>(dst + a.positionsOff)[dj] = a.positions[static_cast<size_t>(h) * (a.oldCompressed + a.residualRows) + src];
  }
}

}  // namespace

CudaStatus launchSelect(const SelectLaunch& a) {
  if (a.kvHeads <= 0 || a.target < 0 || a.target > a.tokens) return CudaStatus::fail(CudaCode::InvalidArgument, "select: bad target");
  if (a.target == 0 || a.tokens == 0) return CudaStatus::success();
  if (!a.scores || !a.positions || !a.kept) return CudaStatus::fail(CudaCode::InvalidArgument, "select: null pointer");
  selectKernel<<<a.kvHeads, kSelectThreads, 0, asStream(a.stream)>>>(a);
  return checkLaunch("selectKernel");
}

CudaStatus launchCompact(const CompactLaunch& a) {
  if (a.target == 0) return CudaStatus::success();
  if (!a.kept || !a.newPages) return CudaStatus::fail(CudaCode::InvalidArgument, "compact: null pointer");
  compactKernel<<<dim3(ceilDiv(a.target, 8), a.kvHeads), 256, 0, asStream(a.stream)>>>(a);
  return checkLaunch("compactKernel");
}

}  // namespace nq::cuda
