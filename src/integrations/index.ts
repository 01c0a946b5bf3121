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
export { DecodeHandle } from "./decode-handle.js";
export {
  ConventionStepEngine,
  absorbPresent,
  logitsToFloat32,
  padTokenRows,
  pastFeeds,
  planStep,
  stepFeeds,
  stepResult,
  toTokenRows,
  zeroTimings,
  type ConventionStepEngineOptions,
  type PaddedTokens,
  type RunDecoder,
  type StepEngine,
  type StepPlan,
  type TensorFactory,
  type TokenRows,
} from "./step-adapter.js";
export { inspectConvention, type ModelConvention, type SessionMetadataLike } from "./convention.js";
export { createKvState, emptyKvStats, type KvStats, type KvDtype, type KvArray, type KvLayout, type KvState, type KvStateOptions, type CompressExtras, type PastKv, type PresentKv } from "./kv-state.js";
export { createSampler, argmax, type SamplingOptions, type TokenSampler } from "./sampling.js";
export { klDivergence, FidelityMeter, type FidelitySummary } from "./fidelity.js";
