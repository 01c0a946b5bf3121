// backendInfo(): what this build can do on this machine. CUDA availability is probed once and cached:
// the answer cannot change while the process lives, and a probe without a driver is slow.
#include <mutex>
#include <string>
#include <vector>

#include "binding/errors.h"
#include "binding/register.h"
#include "cpu/isa.h"
#include "cpu/parallel.h"
#if defined(NQ_WITH_CUDA)
#include "nq_cuda_api.h"
#endif

namespace nq {
namespace {

Napi::Value backendInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
  Napi::Object cuda = Napi::Object::New(env);
  Napi::Array devices = Napi::Array::New(env);
#if defined(NQ_WITH_CUDA)
  static std::once_flag once;
  static std::vector<cuda::DeviceInfo> found;
  static std::string reason;
  static bool available = false;
  std::call_once(once, [] { available = cuda::probeDevices(found, reason); });
  cuda.Set("compiled", true);
  cuda.Set("available", available);
  if (!available) cuda.Set("reason", reason);
  cuda.Set("runtimeVersion", cuda::runtimeVersion());
  cuda.Set("driverVersion", cuda::driverVersion());
  for (size_t i = 0; i < found.size(); ++i) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", found[i].name);
    d.Set("totalMemoryBytes", static_cast<double>(found[i].totalMemoryBytes));
    d.Set("computeCapability", std::to_string(found[i].major) + "." + std::to_string(found[i].minor));
    devices.Set(static_cast<uint32_t>(i), d);
  }
#else
  cuda.Set("compiled", false);
  cuda.Set("available", false);
  cuda.Set("reason", "the addon was built without CUDA (nvcc was not found at build time, or NEXUSQUANT_CUDA=OFF)");
#endif
  cuda.Set("devices", devices);
  result.Set("cuda", cuda);
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("threads", poolThreads());
  cpu.Set("isa", isaName(activeIsa()));
  Napi::Array isas = Napi::Array::New(env);
  const std::vector<Isa> supported = supportedIsas();
  for (size_t i = 0; i < supported.size(); ++i) isas.Set(static_cast<uint32_t>(i), isaName(supported[i]));
  cpu.Set("isasSupported", isas);
  if (!isaNote().empty()) cpu.Set("isaNote", isaNote());
  result.Set("cpu", cpu);
  return result;
}

// cudaMemGetInfo after a probe kernel; throws BACKEND_UNAVAILABLE on builds or machines without CUDA.
Napi::Value deviceMemoryInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int device = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
#if defined(NQ_WITH_CUDA)
  uint64_t freeBytes = 0, totalBytes = 0;
  std::string error;
  if (!cuda::deviceMemoryInfo(device, freeBytes, totalBytes, error)) throwJs(env, "BACKEND_UNAVAILABLE", "CUDA memory query failed: " + error);
  Napi::Object r = Napi::Object::New(env);
  r.Set("freeBytes", static_cast<double>(freeBytes));
  r.Set("totalBytes", static_cast<double>(totalBytes));
  return r;
#else
  (void)device;
  throwJs(env, "BACKEND_UNAVAILABLE", "this build of the addon has no CUDA backend");
#endif
}

}  // namespace

void registerBackend(Napi::Env env, Napi::Object exports) {
  exports.Set("backendInfo", Napi::Function::New(env, backendInfo, "backendInfo"));
  exports.Set("deviceMemoryInfo", Napi::Function::New(env, deviceMemoryInfo, "deviceMemoryInfo"));
}

}  // namespace nq
