// The E8 codec under a calibrated transform (nq_transform.h) on the GPU: the device copy of a
// profile's tables, and encode / decode of head vectors, which launchEncode / launchDecode run when
// CodecArgs::transform has a matrix. Bit-exact with native/cpu/transform_codec.cc: the same header
// functions, the same order of float and double operations (the matrix product's eight partial sums,
// the energy in double), and no FMA contraction (--fmad=false, nq_cuda_common.cuh).
//
// One block per vector at a time (grid-stride over vectors): the vector in shared memory, a thread
// per output row of the d×d product, a thread per 8-element band for the lattice codes.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "nq_cuda_common.cuh"
#include "nq_scale.h"

namespace nq::cuda {

CudaStatus DeviceTransforms::upload(const uint8_t* hostBase, size_t bytes, const HeadTransform* entries, size_t count, StreamHandle stream) {
  if (!hostBase || bytes == 0 || !entries || count == 0) return CudaStatus::fail(CudaCode::InvalidArgument, "transform upload: empty tables");
  DeviceBuffer tables, devEntries;
  NQ_CUDA_TRY(tables.allocate(bytes, MemCategory::Transform), "");
  NQ_CUDA_TRY(copyToDevice(tables.data(), hostBase, bytes, stream), "");
  const uint8_t* devBase = tables.as<const uint8_t>();
  bool inside = true;
  // A host array pointer -> the same bytes in the device copy.
  auto move = [&](const auto* p) {
    using T = std::remove_cv_t<std::remove_pointer_t<decltype(p)>>;
    if (!p) return static_cast<const T*>(nullptr);
    const uint8_t* b = reinterpret_cast<const uint8_t*>(p);
    if (b < hostBase || b >= hostBase + bytes) inside = false;
    return reinterpret_cast<const T*>(devBase + (b - hostBase));
  };
  std::vector<HeadTransform> host(entries, entries + count);
  for (HeadTransform& t : host) {
    if (!t.matrix) continue;  // flat: nothing on the device
    t.mean = move(t.mean);
    t.matrix = move(t.matrix);
    t.bandRms = move(t.bandRms);
    t.bandScale = move(t.bandScale);
    t.rates = move(t.rates);
    t.codeOffset = move(t.codeOffset);
  }
  if (!inside) return CudaStatus::fail(CudaCode::InvalidArgument, "transform upload: an entry's arrays lie outside the tables' bytes");
  NQ_CUDA_TRY(devEntries.allocate(count * sizeof(HeadTransform), MemCategory::Transform), "");
  NQ_CUDA_TRY(copyToDevice(devEntries.data(), host.data(), count * sizeof(HeadTransform), stream), "");
  NQ_CUDA_TRY(synchronize(stream), "");  // `host` and the caller's tables may go once this returns
  tables_ = std::move(tables);
  entries_ = std::move(devEntries);
  host_ = std::move(host);
  return CudaStatus::success();
}

namespace {

constexpr int kThreads = 128;

__device__ inline float clampTo(float v, float bound) {
  v = v < bound ? v : bound;
  return v > -bound ? v : -bound;
}

struct TransformEncodeParams {
  HeadTransform t;  // arrays in device memory
  int groups, codeBytes;
  const void* input;
  bool inputF16;
  long long vectors;
  uint8_t* codes;
  uint16_t* scales;
  const CodebookTables* tables;
};

__global__ void __launch_bounds__(kThreads) transformEncodeKernel(TransformEncodeParams p) {
  __shared__ e8::EncodeTables sT;
  __shared__ uint16_t sAbs[e8::kAbsEntries];
  __shared__ uint16_t sScale;
  __shared__ uint32_t sZero[5];  // the code of the zero group per rate (a zero-scale vector); 1 bit: the origin, 0
  extern __shared__ float smem[];
  const int d = p.t.headDim;
  float* x = smem;      // [d] x − mean
  float* y = smem + d;  // [d] matrix · x
  {
    const uint32_t* src = reinterpret_cast<const uint32_t*>(&p.tables->encode);
    uint32_t* dst = reinterpret_cast<uint32_t*>(&sT);
    for (int i = threadIdx.x; i < static_cast<int>(sizeof(e8::EncodeTables) / 4); i += blockDim.x) dst[i] = src[i];
    for (int i = threadIdx.x; i < e8::kAbsEntries; i += blockDim.x) sAbs[i] = p.tables->absTable[i];
  }
  __syncthreads();
  if (threadIdx.x >= 2 && threadIdx.x <= 4) {
    const float zero[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    sZero[threadIdx.x] = e8::encodeGroup(zero, static_cast<int>(threadIdx.x), sT, sAbs);
  }
  if (threadIdx.x <= 1) sZero[threadIdx.x] = 0;
  for (long long v = blockIdx.x; v < p.vectors; v += gridDim.x) {
    for (int i = threadIdx.x; i < d; i += blockDim.x) x[i] = clampTo(loadElement(p.input, p.inputF16, v * d + i), kInputClamp) - p.t.mean[i];
    __syncthreads();
    // y = matrix · x with the CPU's eight partial sums per row (transform_codec.cc applyMatrix).
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
      const float* row = p.t.matrix + static_cast<size_t>(i) * d;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int j = 0; j < d; j += 8)
#pragma unroll
        for (int k = 0; k < 8; ++k) acc[k] = __fadd_rn(acc[k], __fmul_rn(row[j + k], x[j + k]));
      y[i] = __fadd_rn(__fadd_rn(__fadd_rn(acc[0], acc[1]), __fadd_rn(acc[2], acc[3])), __fadd_rn(__fadd_rn(acc[4], acc[5]), __fadd_rn(acc[6], acc[7])));
    }
    __syncthreads();
    if (threadIdx.x == 0) {  // ρ: the vector's energy over its calibrated expectation, in double as the CPU
      double expected = 0, energy = 0;  // expected: Σ 8 σ_b² over the coded bands
      for (int b = 0; b < p.groups; ++b)
        if (p.t.rates[b] > 0) expected = __dadd_rn(expected, __dmul_rn(__dmul_rn(8.0, static_cast<double>(p.t.bandRms[b])), static_cast<double>(p.t.bandRms[b])));
      for (int b = 0; b < p.groups; ++b)
        if (p.t.rates[b] > 0)
          for (int i = 0; i < 8; ++i) energy = __dadd_rn(energy, __dmul_rn(static_cast<double>(y[8 * b + i]), static_cast<double>(y[8 * b + i])));
      const double rho = expected > 0 ? __dsqrt_rn(__ddiv_rn(energy, expected)) : 0.0;
      const uint16_t sc = rho >= 65504.0 ? kMaxFiniteHalf : floatToHalf(__double2float_rn(rho));
      sScale = sc;
      p.scales[v] = sc;
    }
    __syncthreads();
    const float r = halfToFloat(sScale);
    for (int b = threadIdx.x; b < p.groups; b += blockDim.x) {
      const int bits = p.t.rates[b];
      if (bits == 0) continue;
      uint8_t* c = p.codes + v * p.codeBytes + p.t.codeOffset[b];
      if (r == 0.0f) {
        storeCode(c, bits, sZero[bits]);
        continue;
      }
      const float inv = __fdiv_rn(1.0f, __fmul_rn(r, p.t.bandScale[b]));
      float u[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) u[i] = clampTo(__fmul_rn(y[8 * b + i], inv), kGroupClamp);
      storeCode(c, bits, bits == 1 ? e8::encodeRoot(u) : e8::encodeGroup(u, bits, sT, sAbs));
    }
    __syncthreads();  // x and y are rewritten for the next vector
  }
}

struct TransformDecodeParams {
  HeadTransform t;
  int groups, codeBytes;
  const uint8_t* codes;
  const uint16_t* scales;
  long long vectors;
  void* out;
  bool outF16;
  const CodebookTables* tables;
};

__global__ void __launch_bounds__(kThreads) transformDecodeKernel(TransformDecodeParams p) {
  __shared__ uint16_t sAbs[e8::kAbsEntries];
  __shared__ float sFine2[256][8];
  extern __shared__ float smem[];
  const int d = p.t.headDim;
  float* c = smem;  // [d] ρ · bandScale ⊙ lattice points, transformed domain
  for (int i = threadIdx.x; i < e8::kAbsEntries; i += blockDim.x) sAbs[i] = p.tables->absTable[i];
  for (int i = threadIdx.x; i < 256 * 8; i += blockDim.x) sFine2[i / 8][i % 8] = p.tables->fine2[i / 8][i % 8];
  __syncthreads();
  for (long long v = blockIdx.x; v < p.vectors; v += gridDim.x) {
    const float rho = halfToFloat(p.scales[v]);
    for (int b = threadIdx.x; b < p.groups; b += blockDim.x) {
      float* o = c + 8 * b;
      const int bits = p.t.rates[b];
      if (bits == 0 || rho == 0.0f) {
#pragma unroll
        for (int i = 0; i < 8; ++i) o[i] = 0.0f;
        continue;
      }
      float pt[8];
      bandPointRate(loadCode(p.codes + v * p.codeBytes + p.t.codeOffset[b], bits), bits, sAbs, sFine2, pt);
      const float s = __fmul_rn(rho, p.t.bandScale[b]);
#pragma unroll
      for (int i = 0; i < 8; ++i) o[i] = __fmul_rn(pt[i], s);
    }
    __syncthreads();
    // out = matrixᵀ · c + mean, rows in the CPU's order (transform_codec.cc applyTranspose, weight 1).
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
      float acc = __fmul_rn(p.t.mean[j], 1.0f);
      for (int i = 0; i < d; ++i) {
        const float ci = c[i];
        if (ci == 0.0f) continue;
        acc = __fadd_rn(acc, __fmul_rn(p.t.matrix[static_cast<size_t>(i) * d + j], ci));
      }
      const long long at = v * d + j;
      if (p.outF16) static_cast<uint16_t*>(p.out)[at] = floatToHalf(acc);
      else static_cast<float*>(p.out)[at] = __fadd_rn(acc, 0.0f);  // -0 -> +0, as the CPU
    }
    __syncthreads();
  }
}

int vectorGrid(long long vectors) { return static_cast<int>(std::min<long long>(vectors, static_cast<long long>(smCount()) * 8)); }

}  // namespace

namespace {

// The checks both launchers share: the transform's head_dim is the code's, within the kernels' limit,
// and the budget is 1 to 4 bits (each entry's rates were checked to fill it when the tables were built).
CudaStatus checkTransformCodec(const CodecArgs& c, const char* op) {
  const int d = c.transform->headDim;
  if (d != c.headDim || d % 8 != 0 || d > kCudaMaxHeadDim || c.bits < 1 || c.bits > 4)
    return CudaStatus::fail(CudaCode::InvalidArgument, std::string(op) + ": the transform's head_dim or the bits do not match the code");
  return CudaStatus::success();
}

int codeBytesOf(const CodecArgs& c) { return static_cast<int>(format::codeBytesPerVector(c.headDim, c.bits)); }

}  // namespace

CudaStatus launchEncodeTransformed(const EncodeLaunch& a) {
  const HeadTransform& t = *a.codec.transform;
  NQ_CUDA_TRY(checkTransformCodec(a.codec, "encode"), "");
  if (a.vectors == 0) return CudaStatus::success();
  if (!a.input || !a.codes || !a.scales) return CudaStatus::fail(CudaCode::InvalidArgument, "encode: null device pointer");
  CudaStatus st;
  const CodebookTables* tables = deviceTables(st);
  if (!tables) return st;
  TransformEncodeParams p{};
  p.t = t;
  p.groups = t.headDim / 8;
  p.codeBytes = codeBytesOf(a.codec);
  p.input = a.input;
  p.inputF16 = a.inputF16;
  p.vectors = static_cast<long long>(a.vectors);
  p.codes = a.codes;
  p.scales = a.scales;
  p.tables = tables;
  transformEncodeKernel<<<vectorGrid(p.vectors), kThreads, 2 * t.headDim * sizeof(float), asStream(a.stream)>>>(p);
  return checkLaunch("transformEncodeKernel");
}

CudaStatus launchDecodeTransformed(const DecodeLaunch& a) {
  const HeadTransform& t = *a.codec.transform;
  NQ_CUDA_TRY(checkTransformCodec(a.codec, "decode"), "");
  if (!a.unrotate) return CudaStatus::fail(CudaCode::InvalidArgument, "decode: a calibrated transform decodes to the original domain only");
  if (a.vectors == 0) return CudaStatus::success();
  if (!a.codes || !a.scales || !a.out) return CudaStatus::fail(CudaCode::InvalidArgument, "decode: null device pointer");
  CudaStatus st;
  const CodebookTables* tables = deviceTables(st);
  if (!tables) return st;
  TransformDecodeParams p{};
  p.t = t;
  p.groups = t.headDim / 8;
  p.codeBytes = codeBytesOf(a.codec);
  p.codes = a.codes;
  p.scales = a.scales;
  p.vectors = static_cast<long long>(a.vectors);
  p.out = a.out;
  p.outF16 = a.outF16;
  p.tables = tables;
  transformDecodeKernel<<<vectorGrid(p.vectors), kThreads, t.headDim * sizeof(float), asStream(a.stream)>>>(p);
  return checkLaunch("transformDecodeKernel");
}

}  // namespace nq::cuda
