// The page geometry of one cache, computed by kernels/nq_format.h: what a page holds where, for every
// backend's pages (CPU: cpu/paged_store.h; CUDA: cuda/cuda_cache_internal.h).
#pragma once
#include <cstddef>

#include "memory/allocator.h"
#include "nq_format.h"
#include "nq_ops_params.h"

namespace nq {

struct PageLayout {
  size_t kvHeads = 1, headDim = 0, pageTokens = 0;
  format::Spec spec{};
  format::PageOffsets offsets{};
  size_t pageBytes = 0, keyCodeBytes = 0, valueCodeBytes = 0;
  bool storesPositions = false;
  // Bytes of a held slot's score per head, kept beside the pages (format::scoreBytesPerSlot); 0: none.
  size_t scoreBytes = 0;
  PageLayout(size_t kvHeads, size_t headDim, const format::Spec& spec, format::Scorer scorer);
  // A page's bytes by memory category (header, codes, scales, positions), for the allocators.
  CategoryBytes split() const;
  // A CompactLaunch for these pages: shapes, code sizes, offsets; the arrays are the caller's.
  ops::CompactLaunch compactLaunch(size_t target) const;
};

}  // namespace nq
