// Host-callable entry points of the CUDA backend. Only compiled and referenced when NQ_WITH_CUDA is
// defined: a CPU-only build must not mention a single CUDA symbol (a missing one would kill the
// process at its first call, not at load).
//
// This header is plain C++ (no cuda_runtime.h): the addon's host sources include it, the kernels/
// static library implements it. Every function reports failure through a CudaStatus and never
// throws or aborts; native/binding/cuda_binding.cc turns a failed status into a JS error.
#pragma once
#if defined(NQ_WITH_CUDA)
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "nq_cuda_support.h"
#include "nq_format.h"
#include "nq_memory.h"
#include "nq_ops_params.h"

namespace nq::cuda {

struct DeviceInfo {
  std::string name;
  uint64_t totalMemoryBytes = 0;
  int major = 0;
  int minor = 0;
};

// Lists CUDA devices. Returns false and sets `reason` when CUDA cannot be used (no driver, no
// device, a driver older than the runtime); never throws.
bool probeDevices(std::vector<DeviceInfo>& devices, std::string& reason);

// cudaMemGetInfo on `device`, after running a one-block kernel there, so that the context is
// initialised and the kernel path is known to work. Returns false and sets `error` on failure.
bool deviceMemoryInfo(int device, uint64_t& freeBytes, uint64_t& totalBytes, std::string& error);

// CUDA runtime version compiled in (e.g. 13000) and the driver's (0 when there is none).
int runtimeVersion();
int driverVersion();

// ---- status ----------------------------------------------------------------------------------------

enum class CudaCode { Ok = 0, OutOfMemory, InvalidArgument, Unsupported, InvalidData, CudaError };

struct CudaStatus {
  CudaCode code = CudaCode::Ok;
  std::string message;
  uint64_t requestedBytes = 0;  // OutOfMemory: what was asked for
  uint64_t freeBytes = 0;       // OutOfMemory: cudaMemGetInfo free bytes at the time
  int64_t badIndex = -1;        // InvalidData: first offending vector
  bool ok() const { return code == CudaCode::Ok; }
  // The NexusQuantErrorCode a failure becomes in JS.
  const char* errorCode() const {
    switch (code) {
      case CudaCode::OutOfMemory: return "OUT_OF_MEMORY";
      case CudaCode::InvalidArgument: return "INVALID_ARGUMENT";
      case CudaCode::Unsupported: return "UNSUPPORTED";
      case CudaCode::InvalidData: return "INVALID_DATA";
      default: return "NATIVE_ERROR";
    }
  }
  static CudaStatus success() { return {}; }
  static CudaStatus fail(CudaCode c, std::string m) {
    CudaStatus s;
    s.code = c;
    s.message = std::move(m);
    return s;
  }
};

// The Params structs live in nq_ops_params.h (one definition, shared with the CPU ops).
using ops::AttentionLaunch;
using ops::CodecArgs;
using ops::CompactLaunch;
using ops::DecodeLaunch;
using ops::EncodeLaunch;
using ops::HostAttentionArgs;
using ops::HostSequence;
using ops::ScoreLaunch;
using ops::SelectLaunch;
using ops::SeqKV;
using ops::StreamHandle;
CudaStatus createStream(StreamHandle* stream);
void destroyStream(StreamHandle stream);
CudaStatus synchronize(StreamHandle stream);

// ---- device memory with exact accounting (device_alloc.cu) ---------------------------------------
// Every device byte nexusquant holds comes from here and is counted (countDeviceBytes, nq_memory.h) under
// the categories of `split` (which must sum to `bytes`). A failed cudaMalloc returns OutOfMemory
// with the requested and the free bytes; nothing is counted then.
CudaStatus deviceAllocate(size_t bytes, const CategoryBytes& split, void** ptr);
void deviceRelease(void* ptr, const CategoryBytes& split);

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  ~DeviceBuffer() { reset(); }
  CudaStatus allocate(size_t bytes, const CategoryBytes& split);
  CudaStatus allocate(size_t bytes, MemCategory c) { return allocate(bytes, oneCategory(c, bytes)); }
  void reset();
  void* data() const { return ptr_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t size() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  CategoryBytes split_{};
};

// One cudaMalloc carved into pieces, for caches whose thousands of pages would otherwise each pay the
// driver's allocation granularity. Carved bytes are counted by the category of the carve; the
// uncarved rest of the capacity is counted as Scratch, so the Device counters always equal what
// cudaMalloc handed out. Carves are aligned to `kArenaAlign` bytes.
constexpr size_t kArenaAlign = 16;
class DeviceArena {
 public:
  DeviceArena() = default;
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;
  ~DeviceArena() { reset(); }
  CudaStatus reserve(size_t capacityBytes);
  // Returns nullptr when the arena is full (the caller reports OutOfMemory with remaining()).
  void* carve(size_t bytes, MemCategory c);
  void reset();
  size_t capacity() const { return capacity_; }
  size_t used() const { return used_; }
  size_t remaining() const { return capacity_ - used_; }
  const CategoryBytes& carved() const { return carved_; }

 private:
  DeviceBuffer buffer_;
  size_t capacity_ = 0, used_ = 0;
  CategoryBytes carved_{};
};

// ---- calibrated transforms in device memory (transform.cu) ----------------------------------------
// A profile's tables (native/cache/transform_tables.h) copied to the device in one allocation
// (category Transform): the host tables' bytes verbatim, and their HeadTransform entries with every
// array pointer moved into that copy. The codec launchers take one entry through
// CodecArgs::transform (a host struct whose arrays are device memory); attention reads [kvHeads]
// consecutive entries from the device array (AttentionLaunch::keyTransforms / valueTransforms). An
// entry without a matrix stays flat (the Hadamard code), as on the CPU.
class DeviceTransforms {
 public:
  // `entries[0, count)` must point into [hostBase, hostBase + bytes) (one TransformTables buffer).
  CudaStatus upload(const uint8_t* hostBase, size_t bytes, const HeadTransform* entries, size_t count, StreamHandle stream);
  const HeadTransform* host(size_t i) const { return i < host_.size() ? &host_[i] : nullptr; }
  const HeadTransform* device(size_t first) const { return entries_.as<const HeadTransform>() + first; }
  size_t count() const { return host_.size(); }
  // Device bytes held: the tables and the entry array.
  size_t bytes() const { return tables_.size() + entries_.size(); }

 private:
  DeviceBuffer tables_, entries_;
  std::vector<HeadTransform> host_;
};

CudaStatus copyToDevice(void* dst, const void* src, size_t bytes, StreamHandle stream = nullptr);
CudaStatus copyToHost(void* dst, const void* src, size_t bytes, StreamHandle stream = nullptr);
// Device -> device, queued on `stream` (not synchronized: later work on the stream sees it).
CudaStatus copyOnDevice(void* dst, const void* src, size_t bytes, StreamHandle stream = nullptr);
CudaStatus fillDevice(void* dst, int byteValue, size_t bytes, StreamHandle stream = nullptr);

// ---- codec (encode.cu, decode.cu) ------------------------------------------------------------------

// The support list (ceilings in nq_cuda_support.h; the TS API and the tests read them through
// cudaSupport()). Attention runs GQA groups in passes of 4 query heads.
bool codecSupported(int headDim, int bits);
bool attentionSupported(int headDim, int keyBits, int valueBits);
// Under calibrated transforms (bands at 0/2/3/4 bits in any mix): any budget of 1 to 4 bits per element.
bool transformedAttentionSupported(int headDim, int keyBits, int valueBits);

// Device pointers (EncodeLaunch, nq_ops_params.h).
CudaStatus launchEncode(const EncodeLaunch& a);

// Writes the smallest index of a vector holding NaN/Inf (or UINT64_MAX) to *firstBad (device).
CudaStatus launchFindNonFinite(const void* input, bool inputF16, size_t vectors, int headDim, unsigned long long* firstBad,
                               StreamHandle stream);

CudaStatus launchDecode(const DecodeLaunch& a);
// FP16 bits -> f32 on the device (the residual window's rows, for the scorers).
CudaStatus launchHalfToFloat(const uint16_t* in, size_t count, float* out, StreamHandle stream = nullptr);

// ---- decode attention on the paged cache (attention.cu) ------------------------------------------

size_t attentionWorkspaceBytes(const AttentionLaunch& a);
CudaStatus launchAttention(const AttentionLaunch& a);

// The FP16 reference: dense K/V [batch][kvHeads][maxTokens][headDim] (FP16), lengths[b] tokens of
// sequence b, positions = token index, one query per (sequence, query head) at position lengths[b]-1.
struct DenseAttentionLaunch {
  int batch = 1, kvHeads = 1, queryHeads = 1, headDim = 128, maxTokens = 0;
  float scale = 0.0f;
  const uint16_t* keys = nullptr;
  const uint16_t* values = nullptr;
  const int* lengths = nullptr;  // device [batch]
  const float* queries = nullptr;  // [batch][queryHeads][headDim]
  float* out = nullptr;
  int splitTokens = 0;
  void* workspace = nullptr;
  size_t workspaceBytes = 0;
  StreamHandle stream = nullptr;
};
size_t denseAttentionWorkspaceBytes(const DenseAttentionLaunch& a);
CudaStatus launchDenseAttention(const DenseAttentionLaunch& a);

// ---- eviction (scoring.cu, select.cu) -------------------------------------------------------------

using CudaScorer = format::Scorer;  // the CUDA scorers: KeyNorm, KeyKey, Observed
// ScoreLaunch, SelectLaunch and CompactLaunch (nq_ops_params.h) with device pointers.
size_t scoreWorkspaceBytes(const ScoreLaunch& a);
CudaStatus launchScore(const ScoreLaunch& a);

CudaStatus launchSelect(const SelectLaunch& a);

CudaStatus launchCompact(const CompactLaunch& a);

// ---- host-array operations (host_ops.cu) -------------------------------------------------------------
// A calibrated transform reaches them as it reaches the launchers: CodecArgs::transform a host struct
// with device arrays, HostAttentionArgs::keyTransforms/valueTransforms device arrays
// (DeviceTransforms; the binding uploads a NativeTransform's tables per call).
// For the binding and the parity tests: copy typed arrays in, run the kernels on `stream`, copy the
// results out. Device memory comes from the accounting allocator (category Scratch) and is released
// before returning.
CudaStatus hostEncode(const CodecArgs& c, const void* input, bool inputF16, size_t vectors, uint8_t* codes, uint16_t* scales,
                      StreamHandle stream = nullptr);
CudaStatus hostDecode(const CodecArgs& c, const uint8_t* codes, const uint16_t* scales, size_t vectors, void* out, bool outF16,
                      bool unrotate = true, StreamHandle stream = nullptr);

// HostAttentionArgs (nq_ops_params.h): lays the codes out in pages exactly as the cache does
// (packSequencePage, nq_page_pack.h), then runs launchAttention.
CudaStatus hostAttention(const HostAttentionArgs& a, StreamHandle stream = nullptr);

struct HostDenseAttentionArgs {
  int batch = 1, kvHeads = 1, queryHeads = 1, headDim = 128, maxTokens = 0;
  float scale = 0.0f;
  int splitTokens = 0;
  const uint16_t* keys = nullptr;  // [batch][kvHeads][maxTokens][headDim]
  const uint16_t* values = nullptr;
  const int32_t* lengths = nullptr;  // [batch]
  const float* queries = nullptr;    // [batch][queryHeads][headDim]
  float* out = nullptr;
};
CudaStatus hostDenseAttention(const HostDenseAttentionArgs& a, StreamHandle stream = nullptr);

// scores [kvHeads][tokens] from keys (and queries for Observed), as launchScore.
CudaStatus hostScore(const ScoreLaunch& shape, const float* keys, const float* queries, float* scores, StreamHandle stream = nullptr);
// kept [kvHeads][target] from scores and positions, as launchSelect.
CudaStatus hostSelect(const SelectLaunch& shape, const float* scores, const int32_t* positions, uint32_t* kept, StreamHandle stream = nullptr);

}  // namespace nq::cuda
#endif
