export { withNexusQuant, type WrappedModel } from "./with-nexusquant.js";
export { NativeModelSession, NativeStepEngine, type NativeModelOptions, type NativeStepTimings } from "./native-model.js";
export { resolveOptions, DEFAULT_COMPRESS_EVERY, DEFAULT_PREFILL_CHUNK, type NexusQuantOptions, type ResolvedOptions } from "./options.js";
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
export { calibrateModel, DEFAULT_CALIBRATION_TOKENS, MAX_CALIBRATION_WINDOW, type CalibrateModelOptions } from "./calibrate.js";
// The step adapter's functions (step-adapter.ts) are internal: the wrappers, the quality harness and
// the benchmarks import them by path. What a custom engine implements is public.
export type { StepEngine, TokenRows } from "./step-adapter.js";
export { inspectConvention, type ModelConvention, type SessionMetadataLike } from "./convention.js";
export type { KvDtype } from "./kv-state.js";
export {
  ConversationCache,
  type CompressExtras,
  type ConversationOptions,
  type ConversationShape,
  type ConversationSnapshot,
  type KvStats,
  type ScheduleSnapshot,
  type UncompressedStore,
} from "./conversation-cache.js";
export type { SamplingOptions } from "./sampling.js";
// Internal (demo and lab import the modules directly): createSampler/argmax (sampling.ts),
// klDivergence/FidelityMeter (fidelity.ts).
