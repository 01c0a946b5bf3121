// Decode: packed codes + FP16 scales -> FP16/FP32 head vectors (inverse rotation in shared memory).
// Bit-exact with native/cpu/codec.cc decodeImpl (the lattice points are exact dyadic rationals; the
// only roundings are scale * point and the Hadamard butterflies, done in the CPU's order).
#include <algorithm>

#include "nq_cuda_common.cuh"

namespace nq::cuda {
namespace {

constexpr int kDecodeThreads = 128;
constexpr int kTileFloats = 2048;

struct DecodeParams {
  int headDim, bits, groups, codeBytes, tileVectors;
  bool rotate, unrotate, outF16;
  uint32_t seed;
  const uint8_t* codes;
  const uint16_t* scales;
  long long vectors;
  void* out;
  const CodebookTables* tables;
};

__global__ void __launch_bounds__(kDecodeThreads) decodeKernel(DecodeParams p) {
  __shared__ uint16_t sAbs[e8::kAbsEntries];
  __shared__ float sFine2[256][8];
  extern __shared__ float smem[];
  float* tile = smem;                               // [tileVectors][headDim]
  float* signs = tile + p.tileVectors * p.headDim;  // [headDim]
  for (int i = threadIdx.x; i < e8::kAbsEntries; i += blockDim.x) sAbs[i] = p.tables->absTable[i];
  if (p.bits == 3)
    for (int i = threadIdx.x; i < 256 * 8; i += blockDim.x) sFine2[i / 8][i % 8] = p.tables->fine2[i / 8][i % 8];
  for (int i = threadIdx.x; i < p.headDim; i += blockDim.x) signs[i] = p.rotate ? e8::rotationSign(p.seed, static_cast<uint32_t>(i)) : 1.0f;
  __syncthreads();

  const int d = p.headDim;
  const bool inverse = p.rotate && p.unrotate;
  const long long tiles = (p.vectors + p.tileVectors - 1) / p.tileVectors;
  for (long long t = blockIdx.x; t < tiles; t += gridDim.x) {
    const long long v0 = t * p.tileVectors;
    const int nv = static_cast<int>(min(static_cast<long long>(p.tileVectors), p.vectors - v0));
    for (int gi = threadIdx.x; gi < nv * p.groups; gi += blockDim.x) {
      const int v = gi / p.groups, g = gi % p.groups;
      const float s = halfToFloat(p.scales[v0 + v]);
      float* o = tile + v * d + 8 * g;
      if (s == 0.0f) {
#pragma unroll
        for (int i = 0; i < 8; ++i) o[i] = 0.0f;
        continue;
      }
      const uint32_t code = loadCode(p.codes + (v0 + v) * p.codeBytes + g * p.bits, p.bits);
      float pt[8];
      if (p.bits == 3) {
        e8::decodePoint2(code & 0xFFFFu, sAbs, pt);
        const float* f = sFine2[(code >> 16) & 0xFFu];
#pragma unroll
        for (int i = 0; i < 8; ++i) pt[i] = __fadd_rn(pt[i], f[i]);
      } else {
        e8::decodeGroup(code, p.bits, sAbs, pt);
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) o[i] = __fmul_rn(s, pt[i]);
    }
    __syncthreads();
    if (inverse) hadamardShared(tile, nv, d);
    const long long base = v0 * d;
    for (int e = threadIdx.x; e < nv * d; e += blockDim.x) {
      // A zero scale decodes to +0 exactly (the CPU skips the rotation there; + 0 fixes -0 from a sign).
      const float x = __fadd_rn(inverse ? tile[e] * signs[e % d] : tile[e], 0.0f);
      if (p.outF16) static_cast<uint16_t*>(p.out)[base + e] = floatToHalf(x);
      else static_cast<float*>(p.out)[base + e] = x;
    }
    __syncthreads();
  }
}

// FP16 bits -> f32, one element per thread (grid-stride).
__global__ void halfToFloatKernel(const uint16_t* in, long long n, float* out) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n; i += static_cast<long long>(gridDim.x) * blockDim.x)
    out[i] = halfToFloat(in[i]);
}

}  // namespace

CudaStatus launchHalfToFloat(const uint16_t* in, size_t count, float* out, StreamHandle stream) {
  if (count == 0) return CudaStatus::success();
  if (!in || !out) return CudaStatus::fail(CudaCode::InvalidArgument, "halfToFloat: null device pointer");
  const int grid = static_cast<int>(std::min<long long>(ceilDiv(static_cast<long long>(count), 256), static_cast<long long>(smCount()) * 32));
  halfToFloatKernel<<<grid, 256, 0, asStream(stream)>>>(in, static_cast<long long>(count), out);
  return checkLaunch("halfToFloatKernel");
}

CudaStatus launchDecode(const DecodeLaunch& a) {
  if (calibrated(a.codec)) return launchDecodeTransformed(a);
  if (!codecSupported(a.codec.headDim, a.codec.bits)) return CudaStatus::fail(CudaCode::Unsupported, "decode: headDim/bits not supported by the CUDA codec");
  if (a.vectors == 0) return CudaStatus::success();
  if (!a.codes || !a.scales || !a.out) return CudaStatus::fail(CudaCode::InvalidArgument, "decode: null device pointer");
  CudaStatus st;
  const CodebookTables* tables = deviceTables(st);
  if (!tables) return st;
  DecodeParams p{};
  p.headDim = a.codec.headDim;
  p.bits = a.codec.bits;
  p.groups = p.headDim / 8;
  p.codeBytes = p.groups * p.bits;
  p.tileVectors = std::max(1, kTileFloats / p.headDim);
  p.rotate = a.codec.rotate;
  p.unrotate = a.unrotate;
  p.outF16 = a.outF16;
  p.seed = a.codec.seed;
  p.codes = a.codes;
  p.scales = a.scales;
  p.vectors = static_cast<long long>(a.vectors);
  p.out = a.out;
  p.tables = tables;
  const size_t smem = (static_cast<size_t>(p.tileVectors) * p.headDim + p.headDim) * sizeof(float);
  const long long tiles = (p.vectors + p.tileVectors - 1) / p.tileVectors;
  const int grid = static_cast<int>(std::min<long long>(tiles, static_cast<long long>(smCount()) * 8));
  decodeKernel<<<grid, kDecodeThreads, smem, asStream(a.stream)>>>(p);
  return checkLaunch("decodeKernel");
}

}  // namespace nq::cuda
