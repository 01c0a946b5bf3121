export { backendInfo, resolveBackend, type BackendInfo, type BackendName, type BackendRequest, type CpuIsa, type CudaDevice } from "./backend.js";
export { memoryStats, measureMemory, setHostMemoryLimit, hostMemoryLimit, type MemoryStats, type MemorySpaceStats, type MemoryMeasurement, type MemoryCategory } from "./memory.js";
export { quantize, quantizeSync, dequantize, dequantizeSync, type QuantizedTensor, type QuantizeOptions, type DequantizeOptions } from "./codec.js";
export { CompressedKVCache, type CompressedKVCacheOptions, type CacheStats, type CompressOptions, type AttentionOptions, type DenseLayer } from "./cache.js";
export { syntheticKV, type SyntheticKVOptions } from "./synthetic.js";
export { floatToHalfBits, halfBitsToFloat, floatsToHalfBits, halfBitsToFloats } from "./half.js";
