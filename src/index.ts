// nexusquant: KV-cache compression for transformer LLMs (token eviction + E8-lattice codes) with
// memory measured on real allocations. See README.md and docs/.
export { NexusQuantError, type NexusQuantErrorCode } from "./errors.js";
export * from "./format/index.js";
export * from "./runtime/index.js";
export * from "./integrations/index.js";
export { loadModel, type LlamaModel } from "./model/index.js";
