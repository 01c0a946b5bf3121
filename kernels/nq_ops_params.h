// The Params structs of the cache's ops (encode, decode, attention, score, select, compact), one
// definition for both backends: the CUDA launchers (nq_cuda_api.h) take them with device pointers, the
// CPU twins (native/cpu/ops/cpu_ops.h) with host pointers, so a parity test or the compress policy
// fills one struct and runs either. Plain C++ without CUDA: a CPU-only build includes it too.
// `stream` is a cudaStream_t for the CUDA launchers and ignored by the CPU ops.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "nq_format.h"
#include "nq_transform.h"

namespace nq::ops {

// An opaque cudaStream_t (nullptr is the legacy default stream).
using StreamHandle = void*;

struct CodecArgs {
  int headDim = 128;
  int bits = 2;
  bool rotate = true;
  uint32_t seed = 0;
  float scaleFactor = 1.0f;  // nq::scaleFactor(bits) (nq_scale.h): the CPU op refuses any other value
  // A calibrated transform replaces the rotation (its rates sum to headDim / 8 * bits bytes); null or
  // one without a matrix: the flat code. The CPU ops read its arrays from host memory; the CUDA
  // launchers take a host struct whose arrays are device memory (cuda::DeviceTransforms::host).
  const HeadTransform* transform = nullptr;
};

// Vector i reads input[i * headDim ...] and writes codes[i * codeBytes ...], scales[i].
struct EncodeLaunch {
  CodecArgs codec;
  const void* input = nullptr;
  bool inputF16 = true;
  size_t vectors = 0;
  uint8_t* codes = nullptr;
  uint16_t* scales = nullptr;
  StreamHandle stream = nullptr;
};

struct DecodeLaunch {
  CodecArgs codec;
  const uint8_t* codes = nullptr;
  const uint16_t* scales = nullptr;
  size_t vectors = 0;
  void* out = nullptr;
  bool outF16 = false;
  bool unrotate = true;  // false: stay in the rotated domain (scale * lattice point)
  StreamHandle stream = nullptr;
};

// ---- attention on the paged cache ------------------------------------------------------------------

// One sequence's storage for one layer, as attention reads it.
struct SeqKV {
  const uint8_t* const* pages = nullptr;  // page pointers, layout of nq_format.h
  int compressed = 0;                     // slots used in the pages
  const uint16_t* residual = nullptr;     // FP16 [2][kvHeads][residualCap][headDim]; or dense K/V
  int residualCap = 0;
  int residualCount = 0;
  int firstResidualPos = 0;               // position of residual row 0
  float* accumulated = nullptr;           // optional: [kvHeads][accPitch] attention mass per slot
  uint16_t* maxScores = nullptr;          // optional (CPU): [kvHeads][accPitch] FP16 most attention per slot (captureMax)
  int accPitch = 0;
};

struct AttentionLaunch {
  int batch = 1, kvHeads = 1, queryHeads = 1, headDim = 128, queriesPerSeq = 1;
  int keyBits = 2, valueBits = 2, pageTokens = 64;
  bool storesPositions = false;
  bool rotate = true;  // codes were encoded with the rotation (the cache always rotates)
  uint32_t seed = 0;
  float scale = 0.0f;
  // > 0: page keys are stored with RoPE (rotate-half, this theta) removed, and RoPE is re-applied at
  // each key's position as it is read. CPU only: the CUDA kernel refuses it (Unsupported).
  double ropeTheta = 0;
  // Per KV head, the calibrated transforms of keys and values ([kvHeads] each; an entry without a
  // matrix is flat). Null: every head flat. Both or neither. Host memory for the CPU op; for CUDA a
  // device array of entries whose arrays are device memory (cuda::DeviceTransforms::device).
  const HeadTransform* keyTransforms = nullptr;
  const HeadTransform* valueTransforms = nullptr;
  size_t keyCodesOff = 0, valueCodesOff = 0, keyScalesOff = 0, valueScalesOff = 0, positionsOff = 0;
  const SeqKV* seqs = nullptr;       // [batch]
  int maxCompressed = 0, maxResidual = 0;  // maxima over the batch (CUDA grid sizing)
  const float* queries = nullptr;    // [batch][queryHeads][queriesPerSeq][headDim], un-rotated
  const int* queryPositions = nullptr;  // [batch][queriesPerSeq]; a query sees positions <= its own
  float* out = nullptr;              // [batch][queryHeads][queriesPerSeq][headDim]
  bool accumulate = false;           // add softmax mass into SeqKV::accumulated (H2O scorer)
  // Reconstruction pass (the Reconstruct scorer; CPU only, the CUDA kernel refuses it): raise each held
  // slot's SeqKV::maxScores entry to the largest softmax probability any query gives it.
  bool captureMax = false;
  // Transient rows attended after the held ones and never stored or scored (a re-read's own K/V):
  // [batch][kvHeads][queriesPerSeq][headDim] f32 at the query positions. Null: none.
  const float* extraKeys = nullptr;
  const float* extraValues = nullptr;
  // > 0: of the held slots, only the first `sinkSlots` and the last `recentSlots` of each head are
  // attended (a re-read of recent context: work bounded by it). 0: every held slot.
  int recentSlots = 0;
  int sinkSlots = 0;
  int splitTokens = 0;               // CUDA: tokens per split-K chunk (0: chosen from the SM count)
  void* workspace = nullptr;         // CUDA only
  size_t workspaceBytes = 0;
  StreamHandle stream = nullptr;
};

// ---- eviction ---------------------------------------------------------------------------------------

// Scores [kvHeads][tokens] from dense f32 keys [kvHeads][tokens][headDim] (un-rotated), as
// native/cpu/scoring.h: keynorm (-||k||), key-key (window proxy queries = last keys), observed
// (queries [queryHeads][window][headDim], GQA-summed, then max-pooled over `pool`). Accumulated and
// random scores are state of the store, not a function of the keys: no op computes them.
struct ScoreLaunch {
  format::Scorer scorer = format::Scorer::KeyKey;
  int kvHeads = 1, tokens = 0, headDim = 128;
  const float* keys = nullptr;
  const float* queries = nullptr;  // Observed only
  int queryHeads = 1;
  int window = format::kDefaultScorerWindow;
  int pool = format::kDefaultPoolKernel;
  float* scores = nullptr;
  void* workspace = nullptr;  // CUDA: scoreWorkspaceBytes
  size_t workspaceBytes = 0;
  StreamHandle stream = nullptr;
};

// Which tokens each head keeps: positions < sinkTokens and the last recentWindow tokens are
// protected, the rest compete on score (ties: earlier token wins), `target` kept per head, written
// ascending to kept[h * target ...].
struct SelectLaunch {
  int kvHeads = 1, tokens = 0, target = 0, sinkTokens = 0, recentWindow = 0;
  const float* scores = nullptr;     // [kvHeads][tokens]
  const int32_t* positions = nullptr;  // [kvHeads][tokens]
  uint32_t* kept = nullptr;          // [kvHeads][target]
  StreamHandle stream = nullptr;
};

// Compaction: new slot t of head h takes slot kept[h][t] of the old storage: an old page slot when
// < oldCompressed, else row (kept - oldCompressed) of the freshly encoded residual arrays.
struct CompactLaunch {
  int kvHeads = 1, target = 0, pageTokens = 64, keyCodeBytes = 0, valueCodeBytes = 0;
  size_t keyCodesOff = 0, valueCodesOff = 0, keyScalesOff = 0, valueScalesOff = 0, positionsOff = 0;
  bool storesPositions = true;
  const uint32_t* kept = nullptr;
  const uint8_t* const* oldPages = nullptr;
  int oldCompressed = 0;
  const uint8_t* resKeyCodes = nullptr;  // [kvHeads][residualRows][kc]
  const uint8_t* resValueCodes = nullptr;
  const uint16_t* resKeyScales = nullptr;  // [kvHeads][residualRows]
  const uint16_t* resValueScales = nullptr;
  int residualRows = 0;
  const int32_t* positions = nullptr;  // [kvHeads][oldCompressed + residualRows]: position of each source
  uint8_t* const* newPages = nullptr;
  StreamHandle stream = nullptr;
};

// ---- attention on host arrays (parity tests, the binding's cpuAttention / cudaAttention) ---------

// One sequence as plain arrays, [kvHeads][tokens] order; packSequencePage (nq_page_pack.h) lays the
// codes out in pages exactly as the cache does before either backend runs AttentionLaunch on them.
struct HostSequence {
  int compressed = 0;                     // tokens held as codes
  const uint8_t* keyCodes = nullptr;      // [kvHeads][compressed][headDim / 8 * keyBits]
  const uint16_t* keyScales = nullptr;    // [kvHeads][compressed]
  const uint8_t* valueCodes = nullptr;
  const uint16_t* valueScales = nullptr;
  const int32_t* positions = nullptr;     // [kvHeads][compressed]; with storesPositions only
  int residual = 0;                       // FP16 rows after the codes
  const uint16_t* residualKeys = nullptr;   // [kvHeads][residual][headDim]
  const uint16_t* residualValues = nullptr;
  int firstResidualPos = 0;
  const float* queries = nullptr;          // [queryHeads][nq][headDim], un-rotated
  const int32_t* queryPositions = nullptr; // [nq]
  float* out = nullptr;                    // [queryHeads][nq][headDim]
  float* accumulated = nullptr;            // optional in/out [kvHeads][compressed + residual]
};
struct HostAttentionArgs {
  int kvHeads = 1, queryHeads = 1, headDim = 128, nq = 1, keyBits = 2, valueBits = 2, pageTokens = 64;
  bool storesPositions = false;
  uint32_t seed = 0;
  float scale = 0.0f;
  int splitTokens = 0;  // CUDA only
  // Calibrated transforms of keys and values, [kvHeads] each, as AttentionLaunch's (host entries for
  // cpuAttentionOnArrays, the device array for cuda::hostAttention). Null: flat codes.
  const HeadTransform* keyTransforms = nullptr;
  const HeadTransform* valueTransforms = nullptr;
  std::vector<HostSequence> seqs;
};

}  // namespace nq::ops
