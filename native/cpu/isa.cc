#include "cpu/isa.h"

#include <cstdlib>
#include <cstring>

namespace nq {

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

bool isaSupported(Isa isa) {
  if (isa == Isa::Scalar) return true;
#if defined(NQ_HAVE_X86_KERNELS) && (defined(__GNUC__) || defined(__clang__))
  // __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0).
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (isa == Isa::Avx2) return avx2;
  return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

std::vector<Isa> supportedIsas() {
  std::vector<Isa> r;
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
    if (isaSupported(i)) r.push_back(i);
  return r;
}

namespace {
struct Choice {
  Isa isa = Isa::Scalar;
  std::string note;
};

Choice choose() {
  Choice c;
  c.isa = supportedIsas().back();
  const char* env = std::getenv("NEXUSQUANT_ISA");
  if (!env || !*env) return c;
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    if (std::strcmp(env, isaName(i)) != 0) continue;
    if (isaSupported(i)) c.isa = i;
    else c.note = std::string("NEXUSQUANT_ISA=") + env + " is not supported by this CPU or build; using " + isaName(c.isa);
    return c;
  }
  c.note = std::string("NEXUSQUANT_ISA=") + env + " is not one of scalar, avx2, avx512; using " + isaName(c.isa);
  return c;
}

const Choice& choice() {
  static const Choice c = choose();
  return c;
}
}  // namespace

Isa activeIsa() { return choice().isa; }
const std::string& isaNote() { return choice().note; }

}  // namespace nq
