// The avx512 level of the attention inner loops (compile flags: CMakeLists.txt, NQ_ISA_FLAGS_AVX512).
#if defined(NQ_HAVE_X86_KERNELS)
#define NQ_OPS_NS ops_avx512
#define NQ_LANES 16
#include "cpu/attention_ops.inc"

const nq::AttentionOps* nq::attentionOpsAvx512() { return &ops_avx512::kOps; }
#else
#include "cpu/attention_ops.h"
const nq::AttentionOps* nq::attentionOpsAvx512() { return nullptr; }
#endif
