// The avx2 level of the attention inner loops (compile flags: CMakeLists.txt, NQ_ISA_FLAGS_AVX2).
#if defined(NQ_HAVE_X86_KERNELS)
#define NQ_OPS_NS ops_avx2
#define NQ_LANES 8
#include "cpu/attention_ops.inc"

const nq::AttentionOps* nq::attentionOpsAvx2() { return &ops_avx2::kOps; }
#else
#include "cpu/attention_ops.h"
const nq::AttentionOps* nq::attentionOpsAvx2() { return nullptr; }
#endif
