export { withNexusQuant, type WrappedModel } from "./with-nexusquant.js";
export { resolveOptions, DEFAULT_COMPRESS_EVERY, type NexusQuantOptions, type ResolvedOptions } from "./options.js";
export {
  NexusQuantSession,
  isOrtSession,
  type GenerateOptions,
  type GenerateResult,
  type OrtModuleLike,
  type OrtSessionLike,
  type OrtTensorLike,
  type StepResult,
  type StepTimings,
} from "./ort-session.js";
export { TransformersJsHandle, isTransformersJsModel, type TransformersJsModelLike } from "./transformers-js.js";
export { inspectConvention, type ModelConvention, type SessionMetadataLike } from "./convention.js";
export type { KvStats, KvDtype } from "./kv-state.js";
export type { SamplingOptions } from "./sampling.js";
// Internal (demo and lab import the modules directly): createSampler/argmax (sampling.ts),
// klDivergence/FidelityMeter (fidelity.ts).
