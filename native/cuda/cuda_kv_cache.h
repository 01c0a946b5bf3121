// CompressedKVCache on the GPU: pages, residual window and accumulated mass in device memory (the
// accounting allocator's Device counters), driven by the same compress policy as the CPU cache
// (cache/compress_policy.h) with the CUDA launchers of kernels/nq_cuda_api.h as its ops. Serialize
// is the seam's writer (cache/serialized_cache.h) reading device memory, so both backends write the
// same bytes. Nothing here includes native/cpu/: both backends plug into native/cache/ as peers.
//
// Status: compiled and wired, never run on a GPU (see docs/cuda.md). Not supported on it: keys
// stored without RoPE (keyStorage "unrope"), head_dim above the CUDA attention kernel's 256, the
// reconstruct scorer. A calibrated transform (profile) is copied to the device per cache.
#pragma once
#include <memory>

#include "cache/compressed_cache.h"

namespace nq {

// A CUDA cache with these options. Throws BACKEND_UNAVAILABLE in a build without CUDA or on a machine
// without a usable device, UNSUPPORTED for options the CUDA kernels do not handle.
std::unique_ptr<CompressedCache> makeCudaCache(const CacheOptions& options);

}  // namespace nq
