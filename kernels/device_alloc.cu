// Device memory with exact accounting, streams, copies, and the codebook tables in device memory.
// Every CUDA call is checked and comes back as a CudaStatus; nothing here throws or aborts.
#include <mutex>
#include <string>

#include "nq_cuda_common.cuh"

namespace nq::cuda {

int smCount() {
  static int count = 0;
  static std::once_flag once;
  std::call_once(once, [] {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();
      count = 108;  // an A100's count: only sizes grids, never correctness
    }
  });
  return count;
}

CudaStatus createStream(StreamHandle* stream) {
  cudaStream_t s = nullptr;
  NQ_CUDA_CALL(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  *stream = s;
  return CudaStatus::success();
}

void destroyStream(StreamHandle stream) {
  if (stream) cudaStreamDestroy(asStream(stream));
}

CudaStatus synchronize(StreamHandle stream) { return fromCuda(cudaStreamSynchronize(asStream(stream)), "cudaStreamSynchronize"); }

CudaStatus deviceAllocate(size_t bytes, const CategoryBytes& split, void** ptr) {
  *ptr = nullptr;
  if (bytes == 0) return CudaStatus::success();
  if (sumBytes(split) != bytes) return CudaStatus::fail(CudaCode::InvalidArgument, "deviceAllocate: category split does not sum to the requested bytes");
  const cudaError_t err = cudaMalloc(ptr, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    *ptr = nullptr;
    size_t freeB = 0, totalB = 0;
    if (cudaMemGetInfo(&freeB, &totalB) != cudaSuccess) cudaGetLastError();
    CudaStatus st = CudaStatus::fail(err == cudaErrorMemoryAllocation ? CudaCode::OutOfMemory : CudaCode::CudaError,
                                     "could not allocate " + std::to_string(bytes) + " bytes of GPU memory (" + std::to_string(freeB) +
                                         " bytes free on the device): " + cudaMessage(err, "cudaMalloc"));
    st.requestedBytes = bytes;
    st.freeBytes = freeB;
    return st;
  }
  countDeviceBytes(split, +1);
  return CudaStatus::success();
}

void deviceRelease(void* ptr, const CategoryBytes& split) {
  if (!ptr) return;
  // cudaFree only fails on a corrupted context; the bytes are gone from our books either way.
  if (cudaFree(ptr) != cudaSuccess) cudaGetLastError();
  countDeviceBytes(split, -1);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    split_ = o.split_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
    o.split_ = {};
  }
  return *this;
}

CudaStatus DeviceBuffer::allocate(size_t bytes, const CategoryBytes& split) {
  reset();
  void* p = nullptr;
  CudaStatus st = deviceAllocate(bytes, split, &p);
  if (!st.ok()) return st;
  ptr_ = p;
  bytes_ = bytes;
  split_ = split;
  return st;
}

void DeviceBuffer::reset() {
  if (ptr_) deviceRelease(ptr_, split_);
  ptr_ = nullptr;
  bytes_ = 0;
  split_ = {};
}

CudaStatus DeviceArena::reserve(size_t capacityBytes) {
  reset();
  NQ_CUDA_TRY(buffer_.allocate(capacityBytes, MemCategory::Scratch), "arena");
  capacity_ = capacityBytes;
  return CudaStatus::success();
}

void* DeviceArena::carve(size_t bytes, MemCategory c) {
  const size_t start = (used_ + kArenaAlign - 1) / kArenaAlign * kArenaAlign;
  if (start + bytes > capacity_ || buffer_.data() == nullptr) return nullptr;
  // Alignment padding stays counted as Scratch; the carve moves its bytes to category c.
  countDeviceBytes(oneCategory(MemCategory::Scratch, bytes), -1);
  countDeviceBytes(oneCategory(c, bytes), +1);
  carved_[static_cast<int>(c)] += bytes;
  used_ = start + bytes;
  return static_cast<uint8_t*>(buffer_.data()) + start;
}

void DeviceArena::reset() {
  // Give the carved bytes back to Scratch so that the buffer's own release balances the counters.
  for (int i = 0; i < kMemCategories; ++i) {
    if (carved_[i] == 0) continue;
    countDeviceBytes(oneCategory(static_cast<MemCategory>(i), carved_[i]), -1);
    countDeviceBytes(oneCategory(MemCategory::Scratch, carved_[i]), +1);
  }
  carved_ = {};
  buffer_.reset();
  capacity_ = used_ = 0;
}

CudaStatus copyToDevice(void* dst, const void* src, size_t bytes, StreamHandle stream) {
  if (bytes == 0) return CudaStatus::success();
  NQ_CUDA_CALL(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, asStream(stream)));
  return fromCuda(cudaStreamSynchronize(asStream(stream)), "copy to device");
}

CudaStatus copyToHost(void* dst, const void* src, size_t bytes, StreamHandle stream) {
  if (bytes == 0) return CudaStatus::success();
  NQ_CUDA_CALL(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, asStream(stream)));
  return fromCuda(cudaStreamSynchronize(asStream(stream)), "copy to host");
}

CudaStatus copyOnDevice(void* dst, const void* src, size_t bytes, StreamHandle stream) {
  if (bytes == 0) return CudaStatus::success();
  return fromCuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, asStream(stream)), "copy on device");
}

CudaStatus fillDevice(void* dst, int byteValue, size_t bytes, StreamHandle stream) {
  if (bytes == 0) return CudaStatus::success();
  return fromCuda(cudaMemsetAsync(dst, byteValue, bytes, asStream(stream)), "cudaMemsetAsync");
}

const CodebookTables* deviceTables(CudaStatus& st) {
  static std::mutex mu;
  static CodebookTables* dev = nullptr;
  std::lock_guard<std::mutex> lock(mu);
  if (dev) return dev;
  static CodebookTables host;
#if !defined(__CUDA_ARCH__)  // buildEncodeTables is host-only; nvcc's device pass still parses this body
  if (!e8::buildEncodeTables(e8::kAbsTable, host.encode)) {
    st = CudaStatus::fail(CudaCode::CudaError, "the E8 encode tables could not be built from kAbsTable");
    return nullptr;
  }
  for (int i = 0; i < e8::kAbsEntries; ++i) host.absTable[i] = e8::kAbsTable[i];
  for (uint32_t k = 0; k < 256; ++k) e8::finePoint(k, 2, host.fine2[k]);
#endif
  // Process-lifetime tables (about 23 KiB), counted as device scratch like every other byte.
  void* p = nullptr;
  st = deviceAllocate(sizeof(CodebookTables), oneCategory(MemCategory::Scratch, sizeof(CodebookTables)), &p);
  if (!st.ok()) return nullptr;
  const cudaError_t err = cudaMemcpy(p, &host, sizeof host, cudaMemcpyHostToDevice);
  if (err != cudaSuccess) {
    st = fromCuda(err, "upload of the E8 tables");
    deviceRelease(p, oneCategory(MemCategory::Scratch, sizeof(CodebookTables)));
    return nullptr;
  }
  dev = static_cast<CodebookTables*>(p);
  return dev;
}

}  // namespace nq::cuda
