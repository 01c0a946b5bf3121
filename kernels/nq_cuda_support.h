// What the CUDA kernels support, as plain constants outside NQ_WITH_CUDA: the binding reports them in
// every build (cudaSupport()), so that arguments are checked against the same ceilings on a machine
// without CUDA. codecSupported/attentionSupported (nq_cuda_api.h) apply them.
#pragma once

namespace nq::cuda {

// encode/decode: headDim a multiple of 8 in [8, kCudaMaxHeadDim] (one thread block per vector; below
// format::kMaxHeadDim), bits 2/3/4, FP16 or FP32. Attention on codes and the dense FP16 reference:
// headDim a multiple of 8 up to kCudaMaxAttentionHeadDim (the kernel's register tiles), any GQA group.
constexpr int kCudaMaxHeadDim = 1024;
constexpr int kCudaMaxAttentionHeadDim = 256;

}  // namespace nq::cuda
