import { NexusQuantError } from "../errors.js";
import { DEFAULT_SPEC, PRESET_NAMES, SCORERS, getPreset, unknownPresetError, validateSpec, type CompressionSpec, type ScorerName } from "../format/index.js";
import { checkBoolean, checkInt, checkObject, checkOneOf, checkOptionKeys, checkSeed } from "../validate.js";
import type { BackendRequest } from "../runtime/index.js";

/** Options of `withNexusQuant(model, options)`. */
export interface NexusQuantOptions {
  /**
   * A preset name (`nexusquant presets`), default "balanced"; "none" wraps without compressing, so the
   * wrapped model returns exactly the logits of the unwrapped one (a baseline to compare against).
   */
  preset?: string;
  /** Where the compressed cache lives: "auto" (CUDA when available, else CPU), "cpu" or "cuda". */
  backend?: BackendRequest;
  /**
   * Decode tokens between two compressions (default 64). Prompt chunks (more than one token) are
   * compressed as soon as they are in. In between, new tokens wait in the cache's FP16 residual window.
   */
  compressEvery?: number;
  /**
   * Token scorer used for eviction. "observed" needs attention queries, which an exported ONNX graph
   * does not output: the cache then falls back to "key-key" (see docs/integrations.md).
   */
  scorer?: ScorerName;
  /** Fine-grained overrides of the preset's spec (bits, eviction fraction, windows). */
  spec?: Partial<CompressionSpec>;
  /** Seed of the cache's Hadamard sign flips. */
  seed?: number;
  /**
   * Speed over memory: between compressions, feed the model's own `present` back as the next past
   * instead of materializing it from the cache every step (it is what the cache holds, new slots
   * rounded to FP16). The wrapper then also holds the dense past of the held tokens between steps,
   * reported as `denseKvBytes`. Default false: the cache is the only copy between steps.
   */
  denseMirror?: boolean;
  /**
   * ONNX Runtime sessions only: the `onnxruntime-node` module whose Tensor class builds the feeds.
   * Default: `import("onnxruntime-node")`. Pass it when your session comes from another copy.
   */
  ort?: unknown;
  /** ONNX Runtime sessions only: id fed at left-padding slots (masked out, so any valid id). Default 0. */
  padTokenId?: number;
  /**
   * Native path (a loaded checkpoint) only: prompt tokens per prefill chunk (default 256). Each chunk
   * attends to the compressed past plus itself, then is compressed, so the prefill peak is one chunk's.
   */
  prefillChunk?: number;
  /**
   * The most bytes the conversation's KV cache may hold (its accounting allocator refuses more with
   * OUT_OF_MEMORY). The native path also refuses a prompt up front, before its prefill, when the
   * cache it would need cannot fit this limit, the process-wide setHostMemoryLimit or the system's
   * available memory, naming the bytes it needs. Default: no per-conversation limit.
   */
  memoryLimitBytes?: number;
}

/** The validated form every integration works from. */
export interface ResolvedOptions {
  /** The preset name as given ("none" for pass-through). */
  preset: string;
  passThrough: boolean;
  backend: BackendRequest;
  compressEvery: number;
  spec: Partial<CompressionSpec>;
  seed: number | undefined;
  denseMirror: boolean;
  ort: unknown;
  padTokenId: number;
  prefillChunk: number;
  /** 0: no per-conversation limit. */
  memoryLimitBytes: number;
}

export const DEFAULT_COMPRESS_EVERY = 64;
export const DEFAULT_PREFILL_CHUNK = 256;

/** The preset name that wraps a model without compressing (a baseline for comparisons). */
const PASS_THROUGH = "none";

/** Every key of NexusQuantOptions: others are refused with the closest name (strict options). */
const OPTION_KEYS: readonly (keyof NexusQuantOptions)[] = ["preset", "backend", "compressEvery", "scorer", "spec", "seed", "denseMirror", "ort", "padTokenId", "prefillChunk", "memoryLimitBytes"];

export function resolveOptions(options: NexusQuantOptions = {}): ResolvedOptions {
  checkObject("options", options);
  checkOptionKeys("options", options, OPTION_KEYS);
  const given = options.preset ?? "balanced";
  // Preset names are case-insensitive, "none" (pass-through) included.
  const passThrough = typeof given === "string" && given.toLowerCase() === PASS_THROUGH;
  const preset = passThrough ? PASS_THROUGH : given;
  // Check now, not at the first step; the error lists "none" too, which only wrappers accept.
  if (!passThrough) {
    try {
      getPreset(preset);
    } catch (e) {
      throw e instanceof NexusQuantError && e.code === "UNKNOWN_PRESET" ? unknownPresetError(String(preset), [...PRESET_NAMES, PASS_THROUGH]) : e;
    }
  }
  const backend = checkOneOf("options.backend", options.backend ?? "auto", ["auto", "cpu", "cuda"] as const, '"auto", "cpu" or "cuda"');
  const compressEvery = checkInt("options.compressEvery", options.compressEvery ?? DEFAULT_COMPRESS_EVERY, { min: 1 });
  if (options.scorer !== undefined) checkOneOf("options.scorer", options.scorer, SCORERS, `one of ${SCORERS.join(", ")}`);
  if (options.spec !== undefined) checkObject("options.spec", options.spec, "a partial CompressionSpec object");
  if (options.denseMirror !== undefined) checkBoolean("options.denseMirror", options.denseMirror);
  if (options.seed !== undefined) checkSeed("options.seed", options.seed);
  const padTokenId = checkInt("options.padTokenId", options.padTokenId ?? 0, { min: 0 });
  const spec = { ...(options.spec ?? {}), ...(options.scorer !== undefined ? { scorer: options.scorer } : {}) };
  // The spec is checked now (misspelt keys, the format's limits), not at the first step.
  if (!passThrough) validateSpec({ ...DEFAULT_SPEC, ...getPreset(preset).spec, ...spec });
  const prefillChunk = checkInt("options.prefillChunk", options.prefillChunk ?? DEFAULT_PREFILL_CHUNK, { min: 1 });
  const memoryLimitBytes = checkInt("options.memoryLimitBytes", options.memoryLimitBytes ?? 0, { min: 0 });
  return {
    preset,
    passThrough,
    backend,
    compressEvery,
    spec,
    seed: options.seed,
    denseMirror: options.denseMirror === true,
    ort: options.ort,
    padTokenId,
    prefillChunk,
    memoryLimitBytes,
  };
}
