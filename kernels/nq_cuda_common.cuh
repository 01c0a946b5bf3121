// Shared by the .cu files of the CUDA backend: error conversion, launch geometry, the codebook
// tables in device memory, code loads, and the Hadamard rotation in shared memory.
//
// Bit-exact parity with the CPU codec rests on three things: the same header functions
// (nq_e8.h, nq_e8_encode.h, nq_half.h), the same order of float operations (the Hadamard butterflies
// below and the scale sum in encode.cu mirror native/cpu/hadamard.cc and codec.cc), and no fused
// multiply-add contraction: the kernels are built with --fmad=false (CMakeLists.txt), and the hot
// loops that do not need CPU parity (attention, scoring) call fmaf() explicitly.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "nq_cuda_api.h"
#include "nq_e8.h"
#include "nq_e8_encode.h"
#include "nq_e8_root.h"
#include "nq_half.h"

namespace nq::cuda {

inline std::string cudaMessage(cudaError_t err, const char* what) {
  return std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
}

inline CudaStatus fromCuda(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return CudaStatus::success();
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  return CudaStatus::fail(CudaCode::CudaError, cudaMessage(err, what));
}

// Checks the launch itself (bad configuration, missing kernel image for this GPU).
inline CudaStatus checkLaunch(const char* kernel) { return fromCuda(cudaGetLastError(), kernel); }

#define NQ_CUDA_TRY(expr, what)                            \
  do {                                                     \
    const ::nq::cuda::CudaStatus nq_st_ = (expr);          \
    if (!nq_st_.ok()) return nq_st_;                       \
  } while (0)

#define NQ_CUDA_CALL(call) NQ_CUDA_TRY(::nq::cuda::fromCuda((call), #call), #call)

inline cudaStream_t asStream(StreamHandle s) { return static_cast<cudaStream_t>(s); }

inline int ceilDiv(long long a, long long b) { return static_cast<int>((a + b - 1) / b); }

// SM count of the current device (cached per process; the backend uses one device).
int smCount();

// ---- codebook tables ------------------------------------------------------------------------------
// The encoder's search tables (built on the host by the shared header's buildEncodeTables) and the
// absolute table, in global memory; kernels copy them to shared memory once per block.
struct CodebookTables {
  e8::EncodeTables encode;
  uint16_t absTable[e8::kAbsEntries];
  float fine2[256][8];  // 3-bit fine points v(k), m = 2 (e8::finePoint)
};
// Device copy, uploaded on first use (thread-safe). Returns nullptr and sets `st` on failure.
const CodebookTables* deviceTables(CudaStatus& st);

// ---- the codec under a calibrated transform (transform.cu) ----------------------------------------
// launchEncode / launchDecode hand a launch whose CodecArgs::transform has a matrix to these.
CudaStatus launchEncodeTransformed(const EncodeLaunch& a);
CudaStatus launchDecodeTransformed(const DecodeLaunch& a);
inline bool calibrated(const CodecArgs& c) { return c.transform != nullptr && c.transform->matrix != nullptr; }

// ---- code words -------------------------------------------------------------------------------------
// A group's code is `bits` little-endian bytes (nq_e8.h).
__device__ __forceinline__ uint32_t loadCode(const uint8_t* c, int bits) {
  uint32_t w = 0;
  for (int j = 0; j < bits; ++j) w |= static_cast<uint32_t>(c[j]) << (8 * j);
  return w;
}
__device__ __forceinline__ void storeCode(uint8_t* c, int bits, uint32_t w) {
  for (int j = 0; j < bits; ++j) c[j] = static_cast<uint8_t>(w >> (8 * j));
}

// Element i of an FP16 (bits) or f32 input array.
__device__ __forceinline__ float loadElement(const void* in, bool f16, long long i) {
  return f16 ? halfToFloat(static_cast<const uint16_t*>(in)[i]) : static_cast<const float*>(in)[i];
}

// The lattice point (codebook units) of one group's code at a rate known only at run time: a
// calibrated transform's band at 1 (the roots code, nq_e8_root.h), 2, 3 or 4 bits. sFine2: a shared
// copy of CodebookTables::fine2. The points are exact dyadic rationals, so any order of the adds
// gives the CPU's point (transform_codec.cc, attention_ops.inc).
__device__ __forceinline__ void bandPointRate(uint32_t code, int rate, const uint16_t* sAbs, const float (*sFine2)[8], float p[8]) {
  if (rate == 1) {
    e8::decodeRoot(code, p);
    return;
  }
  e8::decodePoint2(code & 0xFFFFu, sAbs, p);
  if (rate == 3) {
    const float* f = sFine2[(code >> 16) & 0xFFu];
#pragma unroll
    for (int i = 0; i < 8; ++i) p[i] = __fadd_rn(p[i], f[i]);
  } else if (rate == 4) {
    float v[8];
    e8::finePoint(code >> 16, 4, v);
#pragma unroll
    for (int i = 0; i < 8; ++i) p[i] = __fadd_rn(p[i], v[i]);
  }
}

// ---- Hadamard rotation on vectors held in shared memory ---------------------------------------
// v: `count` vectors of headDim floats, row-major. The butterflies run stage by stride 1, 2, 4, ...
// inside each power-of-two block of e8::hadamardBlocks, each as (a + b, a - b) with a the lower
// index, then every element is scaled by 1/sqrt(block size): the exact operation sequence of
// native/cpu/hadamard.cc, so results are bit-identical. All threads of the block must call.
__device__ inline void blockOf(int i, int headDim, int& off, int& size) {
  // Blocks are the set bits of headDim, largest first.
  off = 0;
  for (int b = 30; b >= 0; --b) {
    const int s = 1 << b;
    if (!(headDim & s)) continue;
    if (i < off + s) {
      size = s;
      return;
    }
    off += s;
  }
  size = 0;
}

__device__ inline void hadamardShared(float* v, int count, int headDim) {
  const int total = count * headDim;
  const int half = total / 2;
  for (int h = 1; h < headDim; h <<= 1) {
    // Pair p (of total/2) -> (vector, index within its block's butterfly at stride h).
    for (int p = threadIdx.x; p < half; p += blockDim.x) {
      const int vec = p / (headDim / 2);
      int r = p % (headDim / 2);
      // Walk the blocks: block of size s contributes s/2 pairs.
      int off = 0, size = 0;
      for (int b = 30; b >= 0; --b) {
        const int s = 1 << b;
        if (!(headDim & s)) continue;
        if (r < s / 2) {
          size = s;
          break;
        }
        r -= s / 2;
        off += s;
      }
      if (h >= size) continue;  // this block has no stage of stride h
      const int i = off + (r / h) * (2 * h) + (r % h);
      float* x = v + vec * headDim;
      const float a = x[i], b = x[i + h];
      x[i] = __fadd_rn(a, b);
      x[i + h] = __fsub_rn(a, b);
    }
    __syncthreads();
  }
  for (int i = threadIdx.x; i < total; i += blockDim.x) {
    int off, size;
    blockOf(i % headDim, headDim, off, size);
    const float norm = __fdiv_rn(1.0f, __fsqrt_rn(static_cast<float>(size)));
    v[i] = __fmul_rn(v[i], norm);
  }
  __syncthreads();
}

}  // namespace nq::cuda
