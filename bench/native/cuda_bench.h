// Kernel timings for bench/gpu (lab only: built into the addon with NEXUSQUANT_LAB=ON, CUDA builds).
// The kernels' launchers are kernels/nq_cuda_api.h's; these only time them.
#pragma once
#if defined(NQ_WITH_CUDA)
#include <cstddef>
#include <vector>

#include "nq_cuda_api.h"

namespace nq::cuda {

// Timings in milliseconds (CUDA events around each repetition), for bench/gpu. Inputs rotate over
// `buffers` copies so that repetitions do not hit L2.
struct BenchResult {
  std::vector<float> ms;
  size_t bytesRead = 0, bytesWritten = 0;  // per repetition
};
CudaStatus benchCopy(size_t bytes, int buffers, int warmup, int reps, BenchResult& r);
CudaStatus benchEncode(const CodecArgs& c, bool f16, size_t vectors, int buffers, int warmup, int reps, BenchResult& r);
CudaStatus benchDecode(const CodecArgs& c, bool f16, size_t vectors, int buffers, int warmup, int reps, BenchResult& r);
// Decode attention, batch sequences of `tokens` compressed tokens (random codes), GQA shape given.
struct AttentionBenchShape {
  int batch = 1, kvHeads = 8, queryHeads = 32, headDim = 128, tokens = 4096, keyBits = 2, valueBits = 2, pageTokens = 64;
  int residualTokens = 0;  // FP16 residual rows per sequence
  bool fp16Reference = false;  // time the dense FP16 kernel on the same shape instead
  int splitTokens = 0;
};
CudaStatus benchAttention(const AttentionBenchShape& s, int warmup, int reps, BenchResult& r);

}  // namespace nq::cuda
#endif
