import { NexusQuantError, invalidArgument } from "../errors.js";
import { PRESET_NAMES, SCORERS, getPreset, unknownPresetError, type CompressionSpec, type ScorerName } from "../format/index.js";
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
}

export const DEFAULT_COMPRESS_EVERY = 64;
export const DEFAULT_PREFILL_CHUNK = 256;

/** The preset name that wraps a model without compressing (a baseline for comparisons). */
const PASS_THROUGH = "none";

export function resolveOptions(options: NexusQuantOptions = {}): ResolvedOptions {
  if (options === null || typeof options !== "object") throw invalidArgument("options", "an options object", options);
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
  const backend = options.backend ?? "auto";
  if (backend !== "auto" && backend !== "cpu" && backend !== "cuda") throw invalidArgument("options.backend", '"auto", "cpu" or "cuda"', backend);
  const compressEvery = options.compressEvery ?? DEFAULT_COMPRESS_EVERY;
  if (!Number.isSafeInteger(compressEvery) || compressEvery < 1) throw invalidArgument("options.compressEvery", "a positive integer", compressEvery);
  if (options.scorer !== undefined && !SCORERS.includes(options.scorer)) {
    throw invalidArgument("options.scorer", `one of ${SCORERS.join(", ")}`, options.scorer);
  }
  if (options.spec !== undefined && (options.spec === null || typeof options.spec !== "object")) {
    throw invalidArgument("options.spec", "a partial CompressionSpec object", options.spec);
  }
  if (options.denseMirror !== undefined && typeof options.denseMirror !== "boolean") throw invalidArgument("options.denseMirror", "a boolean", options.denseMirror);
  const padTokenId = options.padTokenId ?? 0;
  if (!Number.isSafeInteger(padTokenId) || padTokenId < 0) throw invalidArgument("options.padTokenId", "a token id (integer >= 0)", padTokenId);
  const prefillChunk = options.prefillChunk ?? DEFAULT_PREFILL_CHUNK;
  if (!Number.isSafeInteger(prefillChunk) || prefillChunk < 1) throw invalidArgument("options.prefillChunk", "a positive integer", prefillChunk);
  return {
    preset,
    passThrough,
    backend,
    compressEvery,
    spec: { ...(options.spec ?? {}), ...(options.scorer !== undefined ? { scorer: options.scorer } : {}) },
    seed: options.seed,
    denseMirror: options.denseMirror === true,
    ort: options.ort,
    padTokenId,
    prefillChunk,
  };
}
