// The smallest useful CUDA code path: list devices and read free/total memory after a trivial
// kernel has run. It proves, from day one, that the addon's CUDA build links and loads without a
// driver, and it is what measureMemory() uses for the cudaMemGetInfo side of a measurement.
#include "nq_cuda_api.h"

#include <cuda_runtime.h>

#include <string>

namespace nq::cuda {
namespace {

__global__ void touchKernel(int* flag) {
  if (threadIdx.x == 0 && blockIdx.x == 0) *flag = 1;
}

std::string describe(cudaError_t err, const char* what) {
  return std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
}

}  // namespace

int runtimeVersion() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

int driverVersion() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) return 0;
  return v;
}

bool probeDevices(std::vector<DeviceInfo>& devices, std::string& reason) {
  devices.clear();
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    if (err == cudaErrorInsufficientDriver) {
      reason = driverVersion() == 0 ? "no NVIDIA driver is installed (CUDA runtime reports: " + describe(err, "cudaGetDeviceCount") + ")"
                                    : "the NVIDIA driver is older than the CUDA runtime the addon was built with: " + describe(err, "cudaGetDeviceCount");
    } else if (err == cudaErrorNoDevice) {
      reason = "no CUDA-capable GPU was found";
    } else {
      reason = describe(err, "cudaGetDeviceCount");
    }
    return false;
  }
  if (count == 0) {
    reason = "no CUDA-capable GPU was found";
    return false;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    err = cudaGetDeviceProperties(&prop, i);
    if (err != cudaSuccess) {
      reason = describe(err, "cudaGetDeviceProperties");
      return false;
    }
    DeviceInfo d;
    d.name = prop.name;
    d.totalMemoryBytes = prop.totalGlobalMem;
    d.major = prop.major;
    d.minor = prop.minor;
    devices.push_back(d);
  }
  return true;
}

bool deviceMemoryInfo(int device, uint64_t& freeBytes, uint64_t& totalBytes, std::string& error) {
  cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) {
    error = describe(err, "cudaSetDevice");
    return false;
  }
  int* flag = nullptr;
  err = cudaMalloc(&flag, sizeof(int));
  if (err != cudaSuccess) {
    error = describe(err, "cudaMalloc");
    return false;
  }
  touchKernel<<<1, 32>>>(flag);
  err = cudaGetLastError();
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  cudaFree(flag);
  if (err != cudaSuccess) {
    error = describe(err, "probe kernel");
    return false;
  }
  size_t f = 0, t = 0;
  err = cudaMemGetInfo(&f, &t);
  if (err != cudaSuccess) {
    error = describe(err, "cudaMemGetInfo");
    return false;
  }
  freeBytes = f;
  totalBytes = t;
  return true;
}

}  // namespace nq::cuda
