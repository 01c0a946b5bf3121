// The CUDA binding's two guards, shared with the lab's CUDA bindings (bench/native, NEXUSQUANT_LAB):
// a failed CudaStatus as a JS error with `code` and `details`, and BACKEND_UNAVAILABLE (with the
// probe's reason) before anything touches a GPU that is not there. CUDA builds only.
#pragma once
#if defined(NQ_WITH_CUDA)
#include <napi.h>

#include "nq_cuda_api.h"

namespace nq {

[[noreturn]] void throwCudaStatus(Napi::Env env, const cuda::CudaStatus& st);
void requireCudaDevice(Napi::Env env);

}  // namespace nq
#endif
