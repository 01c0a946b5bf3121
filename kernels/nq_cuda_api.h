// Host-callable entry points of the CUDA backend. Only compiled and referenced when NQ_WITH_CUDA is
// defined: a CPU-only build must not mention a single CUDA symbol (a missing one would kill the
// process at its first call, not at load).
#pragma once
#if defined(NQ_WITH_CUDA)
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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

}  // namespace nq::cuda
#endif
