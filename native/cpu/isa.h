// The one SIMD dispatch boundary of the CPU backend. Hot kernels (attention_ops_*.cc) are compiled
// once per instruction-set level with per-file flags; the rest of the addon, the encoder included,
// keeps the portable baseline flags (x86-64-v2) so its float arithmetic, and so its codes, stay
// identical on every machine and to the CUDA encoder.
//
// The level is chosen once, at first use, by cpuid (the best level this CPU and OS support), unless
// NEXUSQUANT_ISA=scalar|avx2|avx512 asks for one; a level the CPU cannot run falls back to the best
// one it can, and isaNote() says why.
#pragma once
#include <string>
#include <vector>

namespace nq {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const char* isaName(Isa isa);
bool isaSupported(Isa isa);             // compiled into this build and runnable on this CPU
std::vector<Isa> supportedIsas();
Isa activeIsa();                        // chosen once per process
const std::string& isaNote();           // empty, or why NEXUSQUANT_ISA was not honoured

}  // namespace nq
