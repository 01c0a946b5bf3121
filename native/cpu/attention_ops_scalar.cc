// The scalar level of the attention inner loops (compile flags: CMakeLists.txt, NQ_ISA_FLAGS_SCALAR).
#define NQ_OPS_NS ops_scalar
#define NQ_LANES 4
#include "cpu/attention_ops.inc"

const nq::AttentionOps* nq::attentionOpsScalar() { return &ops_scalar::kOps; }
