export { backendInfo, resolveBackend, type BackendInfo, type BackendName, type BackendRequest, type CudaDevice } from "./backend.js";
export { memoryStats, measureMemory, type MemoryStats, type MemorySpaceStats, type MemoryMeasurement, type MemoryCategory } from "./memory.js";
