// Fused encode: FP16/FP32 head vectors -> sign flip + Hadamard (shared memory) -> FP16 scale ->
// E8 lattice codes via the shared header (nq_e8_encode.h) -> packed codes + scales, in one pass
// over the input. Each block loads the codebook tables into shared memory once and then walks
// tiles of vectors (a grid of a few blocks per SM), so the tables cost one L2 read per block.
//
// Bit-exact with native/cpu/codec.cc encodeImpl: see nq_cuda_common.cuh for the rules.
#include <algorithm>

#include "nq_cuda_common.cuh"
#include "nq_scale.h"

namespace nq::cuda {
namespace {

constexpr int kEncodeThreads = 128;
constexpr int kTileFloats = 2048;  // vectors per tile = kTileFloats / headDim (at least 1)

struct EncodeParams {
  int headDim, bits, groups, codeBytes, tileVectors;
  bool rotate;
  uint32_t seed;
  float scaleFactor;
  const void* input;
  bool inputF16;
  long long vectors;
  uint8_t* codes;
  uint16_t* scales;
  const CodebookTables* tables;
};

__global__ void __launch_bounds__(kEncodeThreads) encodeKernel(EncodeParams p) {
  __shared__ e8::EncodeTables sT;
  __shared__ uint16_t sAbs[e8::kAbsEntries];
  extern __shared__ float smem[];
  float* tile = smem;                                  // [tileVectors][headDim]
  float* signs = tile + p.tileVectors * p.headDim;     // [headDim]
  uint16_t* sScale = reinterpret_cast<uint16_t*>(signs + p.headDim);  // [tileVectors]
  uint8_t* sCodes = reinterpret_cast<uint8_t*>(sScale) + ((p.tileVectors * 2 + 3) & ~3);  // [tileVectors][codeBytes], 4-aligned

  {
    const uint32_t* src = reinterpret_cast<const uint32_t*>(&p.tables->encode);
    uint32_t* dst = reinterpret_cast<uint32_t*>(&sT);
    for (int i = threadIdx.x; i < static_cast<int>(sizeof(e8::EncodeTables) / 4); i += blockDim.x) dst[i] = src[i];
    for (int i = threadIdx.x; i < e8::kAbsEntries; i += blockDim.x) sAbs[i] = p.tables->absTable[i];
    for (int i = threadIdx.x; i < p.headDim; i += blockDim.x) signs[i] = p.rotate ? e8::rotationSign(p.seed, static_cast<uint32_t>(i)) : 1.0f;
  }
  __syncthreads();

  const int d = p.headDim;
  const long long tiles = (p.vectors + p.tileVectors - 1) / p.tileVectors;
  for (long long t = blockIdx.x; t < tiles; t += gridDim.x) {
    const long long v0 = t * p.tileVectors;
    const int nv = static_cast<int>(min(static_cast<long long>(p.tileVectors), p.vectors - v0));
    const long long base = v0 * d;
    for (int e = threadIdx.x; e < nv * d; e += blockDim.x)
      tile[e] = fminf(fmaxf(loadElement(p.input, p.inputF16, base + e), -kInputClamp), kInputClamp) * signs[e % d];
    __syncthreads();
    if (p.rotate) hadamardShared(tile, nv, d);
    for (int v = threadIdx.x; v < nv; v += blockDim.x) {
      const uint16_t sc = chooseScale(tile + v * d, d, p.scaleFactor);
      sScale[v] = sc;
      p.scales[v0 + v] = sc;
    }
    __syncthreads();
    for (int gi = threadIdx.x; gi < nv * p.groups; gi += blockDim.x) {
      const int v = gi / p.groups, g = gi % p.groups;
      const float s = halfToFloat(sScale[v]);
      float y[8];
      if (s == 0.0f) {
#pragma unroll
        for (int i = 0; i < 8; ++i) y[i] = 0.0f;
      } else {
        const float inv = __fdiv_rn(1.0f, s);
#pragma unroll
        for (int i = 0; i < 8; ++i) y[i] = fminf(fmaxf(__fmul_rn(tile[v * d + 8 * g + i], inv), -kGroupClamp), kGroupClamp);
      }
      storeCode(sCodes + v * p.codeBytes + g * p.bits, p.bits, e8::encodeGroup(y, p.bits, sT, sAbs));
    }
    __syncthreads();
    // The tile's codes are one contiguous byte range of the output: write it coalesced.
    uint8_t* out = p.codes + v0 * p.codeBytes;
    const int n = nv * p.codeBytes;
    if ((reinterpret_cast<uintptr_t>(out) & 3) == 0 && (n & 3) == 0) {
      for (int i = threadIdx.x; i < n / 4; i += blockDim.x) reinterpret_cast<uint32_t*>(out)[i] = reinterpret_cast<const uint32_t*>(sCodes)[i];
    } else {
      for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = sCodes[i];
    }
    __syncthreads();
  }
}

__global__ void findNonFiniteKernel(const void* in, bool f16, long long elements, int headDim, unsigned long long* firstBad) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < elements; i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const bool bad = f16 ? halfIsNonFinite(static_cast<const uint16_t*>(in)[i])
                         : (floatBits(static_cast<const float*>(in)[i]) & 0x7F800000u) == 0x7F800000u;
    if (bad) atomicMin(firstBad, static_cast<unsigned long long>(i / headDim));
  }
}

}  // namespace

bool codecSupported(int headDim, int bits) {
  return (bits == 2 || bits == 3 || bits == 4) && headDim >= 8 && headDim <= kCudaMaxHeadDim && headDim % 8 == 0;
}

CudaStatus launchEncode(const EncodeLaunch& a) {
  if (calibrated(a.codec)) return launchEncodeTransformed(a);
  if (!codecSupported(a.codec.headDim, a.codec.bits)) return CudaStatus::fail(CudaCode::Unsupported, "encode: headDim/bits not supported by the CUDA codec");
  if (a.vectors == 0) return CudaStatus::success();
  if (!a.input || !a.codes || !a.scales) return CudaStatus::fail(CudaCode::InvalidArgument, "encode: null device pointer");
  CudaStatus st;
  const CodebookTables* tables = deviceTables(st);
  if (!tables) return st;
  EncodeParams p{};
  p.headDim = a.codec.headDim;
  p.bits = a.codec.bits;
  p.groups = p.headDim / 8;
  p.codeBytes = p.groups * p.bits;
  p.tileVectors = std::max(1, kTileFloats / p.headDim);
  p.rotate = a.codec.rotate;
  p.seed = a.codec.seed;
  p.scaleFactor = a.codec.scaleFactor;
  p.input = a.input;
  p.inputF16 = a.inputF16;
  p.vectors = static_cast<long long>(a.vectors);
  p.codes = a.codes;
  p.scales = a.scales;
  p.tables = tables;
  const size_t smem = (static_cast<size_t>(p.tileVectors) * p.headDim + p.headDim) * sizeof(float) + ((p.tileVectors * 2 + 3) & ~3) +
                      static_cast<size_t>(p.tileVectors) * p.codeBytes + 16;
  const long long tiles = (p.vectors + p.tileVectors - 1) / p.tileVectors;
  const int grid = static_cast<int>(std::min<long long>(tiles, static_cast<long long>(smCount()) * 8));
  encodeKernel<<<grid, kEncodeThreads, smem, asStream(a.stream)>>>(p);
  return checkLaunch("encodeKernel");
}

CudaStatus launchFindNonFinite(const void* input, bool inputF16, size_t vectors, int headDim, unsigned long long* firstBad, StreamHandle stream) {
  NQ_CUDA_CALL(cudaMemsetAsync(firstBad, 0xFF, sizeof(unsigned long long), asStream(stream)));
  const long long elements = static_cast<long long>(vectors) * headDim;
  if (elements == 0) return CudaStatus::success();
  const int grid = static_cast<int>(std::min<long long>(ceilDiv(elements, 256), static_cast<long long>(smCount()) * 16));
  findNonFiniteKernel<<<grid, 256, 0, asStream(stream)>>>(input, inputF16, elements, headDim, firstBad);
  return checkLaunch("findNonFiniteKernel");
}

}  // namespace nq::cuda
