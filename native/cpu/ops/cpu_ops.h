// The CPU twins of the CUDA ops: the same Params structs (kernels/nq_ops_params.h) with host
// pointers, `stream` ignored. They are the oracle the GPU parity suite compares against and the ops
// the CPU cache store runs its compress policy with. Each wraps the existing math (codec.h,
// scoring.h, the fused attention of attention.h); none allocates more than its own scratch.
// Failures throw NqError (INVALID_ARGUMENT, INVALID_DATA, UNSUPPORTED); the binding turns it into a
// NexusQuantError.
#pragma once
#include "nq_ops_params.h"

namespace nq::ops {

// Codec over `vectors` contiguous head vectors (codec.h); encode refuses NaN/Inf (INVALID_DATA
// naming the first bad vector) before writing anything. Serial: callers split the work.
void cpuEncode(const EncodeLaunch& a);
void cpuDecode(const DecodeLaunch& a);

// Softmax attention of each sequence's queries on its pages (codes) and FP16 residual, the fused
// kernel of attention.h (work split over heads and tokens on the thread pool). `workspace` and
// `splitTokens` are CUDA's and ignored.
void cpuAttention(const AttentionLaunch& a);
// The twin of cuda::hostAttention: plain [kvHeads][tokens] arrays packed into pages as the cache lays
// them out (nq_page_pack.h), then cpuAttention per sequence. Writes each sequence's out (and adds into
// its accumulated, when given).
void cpuAttentionOnArrays(const HostAttentionArgs& a);

// Eviction: scores (KeyNorm, KeyKey, Observed), the kept slots per head, and the new pages.
void cpuScore(const ScoreLaunch& a);
void cpuSelect(const SelectLaunch& a);
// newPages must be allocated for `target` slots (headers written by the store); only the slots
// [0, target) of each head are written.
void cpuCompact(const CompactLaunch& a);

// The CodecArgs the CPU codec accepts for (headDim, bits): scaleFactor filled from nq_scale.h.
CodecArgs codecArgs(int headDim, int bits, bool rotate, uint32_t seed);

}  // namespace nq::ops
