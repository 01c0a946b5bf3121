// nexusquant: KV-cache compression for transformer LLMs (token eviction + E8-lattice codes) with
// memory measured on real allocations. See README.md and docs/.
//
// The root export is the public contract of DESIGN.md, listed name by name so that nothing internal
// leaks in through `export *`. More of each layer: the subpaths nexusquant/estimator, /format,
// /runtime, /integrations and /model (package.json "exports"); README.md's API section lists them.

export { NexusQuantError, type NexusQuantErrorCode } from "./errors.js";

export {
  ARCHITECTURES,
  GPUS,
  architectureFromHfConfig,
  kvBytesPerToken,
  kvCacheForContext,
  maxContextForMemory,
  weightMemory,
  planCapacity,
  type Architecture,
  type Gpu,
  type Precision,
  type NumberFormat,
  type ByteAmount,
  type MemoryAmount,
  type CapacityOptions,
  type CapacityPlan,
} from "./estimator/index.js";

export { PRESETS, compressedLayout, type Preset, type CompressionSpec, type CodeBits, type ScorerName, type CacheShape, type CompressedLayout, type LayoutBytes } from "./format/index.js";

export {
  backendInfo,
  quantize,
  dequantize,
  CompressedKVCache,
  measureMemory,
  type BackendInfo,
  type BackendName,
  type CudaDevice,
  type QuantizedTensor,
  type QuantizeOptions,
  type DequantizeOptions,
  type CompressedKVCacheOptions,
  type CompressOptions,
  type CacheStats,
  type DenseLayer,
  type MemoryMeasurement,
  type MemoryCategory,
} from "./runtime/index.js";

export { verifyCompression, type VerifyOptions, type VerifyResult } from "./verify.js";

export { withNexusQuant, type NexusQuantOptions, type WrappedModel, type NexusQuantSession, type TransformersJsHandle, type KvStats } from "./integrations/index.js";

