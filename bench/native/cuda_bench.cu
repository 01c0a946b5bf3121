// Kernel timings for bench/gpu: CUDA events around every repetition, inputs rotating over several
// buffer sets (sized by the caller to exceed L2), random data from a hash (never zeros), and the
// copy-bandwidth kernel that the encode/decode/attention numbers are compared against, measured in
// the same process.
#include <algorithm>
#include <vector>

#include "cuda_bench.h"
#include "nq_cuda_common.cuh"
#include "nq_format.h"
#include "nq_page_pack.h"

namespace nq::cuda {
namespace {

__device__ __forceinline__ uint32_t mix(uint32_t z) {
  z = (z ^ (z >> 16)) * 0x85EBCA6Bu;
  z = (z ^ (z >> 13)) * 0xC2B2AE35u;
  return z ^ (z >> 16);
}

// Random bytes, or FP16 values in (-2, 2) when `halves` (so sums stay finite), or FP16 scales in
// [0.5, 1) when `scales`.
__global__ void fillRandomKernel(uint8_t* p, size_t bytes, uint32_t seed, int mode) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < bytes / 2; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint32_t r = mix(static_cast<uint32_t>(i) * 0x9E3779B9u + seed);
    uint16_t v;
    if (mode == 1) v = static_cast<uint16_t>((r & 0x83FFu) | 0x3800u);        // +-[0.5, 1) * 2^(0|1)
    else if (mode == 2) v = static_cast<uint16_t>((r & 0x03FFu) | 0x3800u);   // [0.5, 1)
    else v = static_cast<uint16_t>(r);
    reinterpret_cast<uint16_t*>(p)[i] = v;
  }
}

CudaStatus fillRandom(void* p, size_t bytes, uint32_t seed, int mode) {
  const int grid = std::max(1, std::min(ceilDiv(static_cast<long long>(bytes / 2), 256), smCount() * 8));
  fillRandomKernel<<<grid, 256>>>(static_cast<uint8_t*>(p), bytes, seed, mode);
  return checkLaunch("fillRandomKernel");
}

__global__ void copyKernel(const uint4* __restrict__ src, uint4* __restrict__ dst, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) dst[i] = src[i];
}

// Times `run(rep)` `reps` times after `warmup` runs, one event pair per repetition.
template <typename F>
CudaStatus timeReps(int warmup, int reps, std::vector<float>& ms, F run) {
  for (int i = 0; i < warmup; ++i) NQ_CUDA_TRY(run(i), "");
  NQ_CUDA_CALL(cudaDeviceSynchronize());
  cudaEvent_t a, b;
  NQ_CUDA_CALL(cudaEventCreate(&a));
  if (cudaEventCreate(&b) != cudaSuccess) {
    cudaEventDestroy(a);
    return fromCuda(cudaGetLastError(), "cudaEventCreate");
  }
  CudaStatus st;
  ms.clear();
  for (int i = 0; i < reps && st.ok(); ++i) {
    cudaEventRecord(a);
    st = run(warmup + i);
    cudaEventRecord(b);
    if (st.ok()) st = fromCuda(cudaEventSynchronize(b), "cudaEventSynchronize");
    float t = 0.0f;
    if (st.ok()) st = fromCuda(cudaEventElapsedTime(&t, a, b), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return st;
}

}  // namespace

CudaStatus benchCopy(size_t bytes, int buffers, int warmup, int reps, BenchResult& r) {
  bytes = bytes / 16 * 16;
  std::vector<DeviceBuffer> src(buffers), dst(buffers);
  for (int i = 0; i < buffers; ++i) {
    NQ_CUDA_TRY(src[i].allocate(bytes, MemCategory::Scratch), "");
    NQ_CUDA_TRY(dst[i].allocate(bytes, MemCategory::Scratch), "");
    NQ_CUDA_TRY(fillRandom(src[i].data(), bytes, 17 + i, 0), "");
  }
  r.bytesRead = r.bytesWritten = bytes;
  const int grid = smCount() * 8;
  return timeReps(warmup, reps, r.ms, [&](int i) {
    const int k = i % buffers;
    copyKernel<<<grid, 512>>>(src[k].as<uint4>(), dst[k].as<uint4>(), bytes / 16);
    return checkLaunch("copyKernel");
  });
}

CudaStatus benchEncode(const CodecArgs& c, bool f16, size_t vectors, int buffers, int warmup, int reps, BenchResult& r) {
  const size_t inBytes = vectors * c.headDim * (f16 ? 2 : 4), cb = format::codeBytesPerVector(c.headDim, c.bits);
  std::vector<DeviceBuffer> in(buffers), codes(buffers), scales(buffers);
  for (int i = 0; i < buffers; ++i) {
    NQ_CUDA_TRY(in[i].allocate(inBytes, MemCategory::Scratch), "");
    NQ_CUDA_TRY(codes[i].allocate(vectors * cb, MemCategory::Scratch), "");
    NQ_CUDA_TRY(scales[i].allocate(vectors * 2, MemCategory::Scratch), "");
    // Mode 1 writes finite FP16 values; read as FP32 (f16 = false) the same bytes are finite floats
    // too (their exponent field is never all ones), just of another magnitude.
    NQ_CUDA_TRY(fillRandom(in[i].data(), inBytes, 101 + i, 1), "");
  }
  r.bytesRead = inBytes;
  r.bytesWritten = vectors * (cb + 2);
  return timeReps(warmup, reps, r.ms, [&](int i) {
    const int k = i % buffers;
    EncodeLaunch e;
    e.codec = c;
    e.input = in[k].data();
    e.inputF16 = f16;
    e.vectors = vectors;
    e.codes = codes[k].as<uint8_t>();
    e.scales = scales[k].as<uint16_t>();
    return launchEncode(e);
  });
}

CudaStatus benchDecode(const CodecArgs& c, bool f16, size_t vectors, int buffers, int warmup, int reps, BenchResult& r) {
  const size_t outBytes = vectors * c.headDim * (f16 ? 2 : 4), cb = format::codeBytesPerVector(c.headDim, c.bits);
  std::vector<DeviceBuffer> codes(buffers), scales(buffers), out(buffers);
  for (int i = 0; i < buffers; ++i) {
    NQ_CUDA_TRY(codes[i].allocate((vectors * cb + 1) / 2 * 2, MemCategory::Scratch), "");
    NQ_CUDA_TRY(scales[i].allocate(vectors * 2, MemCategory::Scratch), "");
    NQ_CUDA_TRY(out[i].allocate(outBytes, MemCategory::Scratch), "");
    NQ_CUDA_TRY(fillRandom(codes[i].data(), codes[i].size(), 202 + i, 0), "");
    NQ_CUDA_TRY(fillRandom(scales[i].data(), vectors * 2, 303 + i, 2), "");
  }
  r.bytesRead = vectors * (cb + 2);
  r.bytesWritten = outBytes;
  return timeReps(warmup, reps, r.ms, [&](int i) {
    const int k = i % buffers;
    DecodeLaunch d;
    d.codec = c;
    d.codes = codes[k].as<uint8_t>();
    d.scales = scales[k].as<uint16_t>();
    d.vectors = vectors;
    d.out = out[k].data();
    d.outF16 = f16;
    return launchDecode(d);
  });
}

CudaStatus benchAttention(const AttentionBenchShape& s, int warmup, int reps, BenchResult& r) {
  const size_t H = s.kvHeads, d = s.headDim, B = s.batch, T = s.tokens;
  int l2 = 0;
  {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev) != cudaSuccess) {
      cudaGetLastError();
      l2 = 50 << 20;
    }
  }
  const size_t qCount = B * s.queryHeads * d;
  DeviceBuffer dQ, dOut, dWs;
  NQ_CUDA_TRY(dQ.allocate(qCount * 4, MemCategory::Scratch), "");
  NQ_CUDA_TRY(dOut.allocate(qCount * 4, MemCategory::Scratch), "");
  {
    std::vector<float> q(qCount);
    uint32_t x = 12345;
    for (float& v : q) {
      x = x * 1664525u + 1013904223u;
      v = static_cast<float>(x >> 8) / static_cast<float>(1u << 24) * 2.0f - 1.0f;
    }
    NQ_CUDA_TRY(copyToDevice(dQ.data(), q.data(), qCount * 4), "");
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));

  if (s.fp16Reference) {
    const size_t kvBytes = B * H * T * d * 2;
    const int sets = static_cast<int>(std::clamp<size_t>((2 * static_cast<size_t>(l2)) / (2 * kvBytes) + 1, 1, 64));
    std::vector<DeviceBuffer> K(sets), V(sets);
    DeviceBuffer dLen;
    std::vector<int> lengths(B, static_cast<int>(T));
    NQ_CUDA_TRY(dLen.allocate(B * 4, MemCategory::Scratch), "");
    NQ_CUDA_TRY(copyToDevice(dLen.data(), lengths.data(), B * 4), "");
    for (int i = 0; i < sets; ++i) {
      NQ_CUDA_TRY(K[i].allocate(kvBytes, MemCategory::Scratch), "");
      NQ_CUDA_TRY(V[i].allocate(kvBytes, MemCategory::Scratch), "");
      NQ_CUDA_TRY(fillRandom(K[i].data(), kvBytes, 400 + i, 1), "");
      NQ_CUDA_TRY(fillRandom(V[i].data(), kvBytes, 500 + i, 1), "");
    }
    DenseAttentionLaunch L;
    L.batch = s.batch;
    L.kvHeads = s.kvHeads;
    L.queryHeads = s.queryHeads;
    L.headDim = s.headDim;
    L.maxTokens = s.tokens;
    L.scale = scale;
    L.lengths = dLen.as<int>();
    L.queries = dQ.as<float>();
    L.out = dOut.as<float>();
    L.splitTokens = s.splitTokens;
    L.workspaceBytes = denseAttentionWorkspaceBytes(L);
    NQ_CUDA_TRY(dWs.allocate(L.workspaceBytes, MemCategory::Scratch), "");
    L.workspace = dWs.data();
    r.bytesRead = 2 * kvBytes;
    r.bytesWritten = qCount * 4;
    return timeReps(warmup, reps, r.ms, [&](int i) {
      L.keys = K[i % sets].as<uint16_t>();
      L.values = V[i % sets].as<uint16_t>();
      return launchDenseAttention(L);
    });
  }

  const format::Spec spec{s.keyBits, s.valueBits, 0.0, 0, 0, 0, s.pageTokens};
  const format::PageOffsets off = format::pageOffsets(H, d, spec);
  const size_t pageBytes = format::pageBytes(H, d, spec), pages = (T + s.pageTokens - 1) / s.pageTokens;
  const size_t setBytes = B * pages * pageBytes;
  const int sets = static_cast<int>(std::clamp<size_t>((2 * static_cast<size_t>(l2)) / std::max<size_t>(setBytes, 1) + 1, 1, 64));
  const size_t resCap = std::max(s.residualTokens, 1);
  std::vector<DeviceBuffer> pageMem(sets), resMem(sets), pageTables(sets), seqTables(sets);
  for (int k = 0; k < sets; ++k) {
    NQ_CUDA_TRY(pageMem[k].allocate(setBytes, MemCategory::Codes), "");
    NQ_CUDA_TRY(fillRandom(pageMem[k].data(), setBytes, 600 + k, 0), "");
    NQ_CUDA_TRY(resMem[k].allocate(B * 2 * H * resCap * d * 2, MemCategory::Residual), "");
    NQ_CUDA_TRY(fillRandom(resMem[k].data(), resMem[k].size(), 700 + k, 1), "");
    std::vector<const uint8_t*> ptrs(B * pages);
    for (size_t i = 0; i < B * pages; ++i) ptrs[i] = pageMem[k].as<uint8_t>() + i * pageBytes;
    // Random bytes as scales could be Inf/NaN: overwrite every page's scale arrays with [0.5, 1).
    for (size_t i = 0; i < B * pages; ++i) NQ_CUDA_TRY(fillRandom(pageMem[k].as<uint8_t>() + i * pageBytes + off.keyScales, off.positions - off.keyScales, 800 + static_cast<uint32_t>(i), 2), "");
    NQ_CUDA_TRY(pageTables[k].allocate(ptrs.size() * sizeof(void*), MemCategory::Scratch), "");
    NQ_CUDA_TRY(copyToDevice(pageTables[k].data(), ptrs.data(), ptrs.size() * sizeof(void*)), "");
    std::vector<SeqKV> seqs(B);
    for (size_t b = 0; b < B; ++b) {
      seqs[b].pages = pageTables[k].as<const uint8_t*>() + b * pages;
      seqs[b].compressed = static_cast<int>(T);
      seqs[b].residual = resMem[k].as<uint16_t>() + b * 2 * H * resCap * d;
      seqs[b].residualCap = static_cast<int>(resCap);
      seqs[b].residualCount = s.residualTokens;
      seqs[b].firstResidualPos = static_cast<int>(T);
    }
    NQ_CUDA_TRY(seqTables[k].allocate(B * sizeof(SeqKV), MemCategory::Scratch), "");
    NQ_CUDA_TRY(copyToDevice(seqTables[k].data(), seqs.data(), B * sizeof(SeqKV)), "");
  }
  DeviceBuffer dPos;
  std::vector<int> qpos(B, static_cast<int>(T) + s.residualTokens);
  NQ_CUDA_TRY(dPos.allocate(B * 4, MemCategory::Scratch), "");
  NQ_CUDA_TRY(copyToDevice(dPos.data(), qpos.data(), B * 4), "");
  AttentionLaunch L = ops::pagedAttentionLaunch(s.kvHeads, s.queryHeads, s.headDim, 1, spec, 0, scale);
  L.batch = s.batch;
  L.maxCompressed = s.tokens;
  L.maxResidual = s.residualTokens;
  L.queries = dQ.as<float>();
  L.queryPositions = dPos.as<int>();
  L.out = dOut.as<float>();
  L.splitTokens = s.splitTokens;
  L.workspaceBytes = attentionWorkspaceBytes(L);
  NQ_CUDA_TRY(dWs.allocate(L.workspaceBytes, MemCategory::Scratch), "");
  L.workspace = dWs.data();
  // Bytes the kernel must read: codes + scales of every token, plus the residual rows.
  r.bytesRead = B * H * T * (format::codeBytesPerVector(d, s.keyBits) + format::codeBytesPerVector(d, s.valueBits) + 4) +
                B * 2 * H * s.residualTokens * d * 2;
  r.bytesWritten = qCount * 4;
  return timeReps(warmup, reps, r.ms, [&](int i) {
    L.seqs = seqTables[i % sets].as<SeqKV>();
    return launchAttention(L);
  });
}

}  // namespace nq::cuda
