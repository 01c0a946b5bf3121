// Module entry: registers the functions of each binding file. No logic lives here.
#include <napi.h>

#include "binding/register.h"

namespace {
Napi::Object init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new nq::AddonData());  // deleted by N-API when this environment ends
  nq::registerBackend(env, exports);
  nq::registerMemory(env, exports);
  nq::registerFormat(env, exports);
  nq::registerCodec(env, exports);
  nq::registerCache(env, exports);
  nq::registerTransform(env, exports);
  nq::registerAttention(env, exports);
  nq::registerCpuOps(env, exports);
  nq::registerCuda(env, exports);
#if defined(NQ_WITH_LAB)
  nq::registerLab(env, exports);  // bench/native: lab builds only (NEXUSQUANT_LAB=ON)
#endif
  return exports;
}
}  // namespace

NODE_API_MODULE(nexusquant, init)
