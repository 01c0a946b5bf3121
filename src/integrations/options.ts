import { NexusQuantError } from "../errors.js";
import { DEFAULT_PRESET, PRESET_NAMES, SCORERS, getPreset, specWithOverrides, unknownPresetError, type CompressionSpec, type Preset, type ScorerName } from "../format/index.js";
import { checkBoolean, checkInt, checkObject, checkOneOf, checkOptionKeys, checkSeed, checkTokenIds } from "../validate.js";
import type { BackendRequest } from "../runtime/index.js";
import { sameSpec, type SavedConversation } from "./conversation-state.js";
import { validateProfileOnce, type TransformProfile } from "../transform/profile.js";

/** Options of `withNexusQuant(model, options)`. */
export interface NexusQuantOptions {
  /**
   * A preset name (`nexusquant presets`), default "balanced"; "none" wraps without compressing, so the
   * wrapped model returns exactly the logits of the unwrapped one (a baseline to compare against).
   */
  preset?: string;
  /**
   * Where the compressed cache lives: "auto" (default), "cpu" or "cuda". What "auto" means is decided in
   * one place, `backendInfo().auto`: today the CPU, even with a GPU (docs/cache.md, "Backend").
   */
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
   * Native path only, scorer "reconstruct": how many of the model's layers the re-read runs through,
   * or "all". A re-read that stops early costs less (its queries come from those layers; the layers
   * it does not reach evict by the highest score those layers give a token). Default "half": the
   * first ceil(layers / 2), which on the reference model kept the recall and the KL of a full re-read
   * at about half its cost (bench/results/eviction-study.md, bench/results/quality.md).
   */
  rereadLayers?: number | "half" | "all";
  /**
   * The most bytes the conversation's KV cache may hold (its accounting allocator refuses more with
   * OUT_OF_MEMORY). The native path also refuses a prompt up front, before its prefill, when the
   * cache it would need cannot fit this limit, the process-wide setHostMemoryLimit or the system's
   * available memory, naming the bytes it needs. Default: no per-conversation limit.
   */
  memoryLimitBytes?: number;
  /**
   * A saved conversation (`await lm.saveState()`, from this process or another) to resume: the handle
   * starts holding it, and `generate(ids, { continue: true })` goes on as the handle that saved it
   * would have. The preset, spec, compressEvery, prefillChunk and rereadLayers come from the state;
   * giving one that differs is an INVALID_ARGUMENT error. The loaded checkpoint (or session) must be
   * the model that saved it (MODEL_MISMATCH otherwise). Format and stores: docs/state.md.
   */
  state?: Uint8Array;
  /**
   * Token id(s) where `generate()` stops a row by default (a call's own `eos` still wins; `[]` turns
   * stopping off). Default: a loaded checkpoint's end-of-text ids (generation_config.json, else
   * config.json); for an ONNX session, none, since a session carries no config: pass
   * `await readEosTokenIds(dir)` (`nexusquant/model`). Not for transformers.js models, whose own
   * generate() already stops at their generation_config's eos_token_id.
   */
  eos?: number | readonly number[];
  /**
   * The calibrated transform profile (docs/transform.md): each head's K/V coded in a basis fitted to
   * the model, more bits where the energy is, at the same bytes. "auto" (default): a loaded
   * checkpoint uses `nexusquant-profile.bin` from its directory when `nexusquant calibrate DIR` wrote
   * one (a profile of another model there is PROFILE_MISMATCH), anything else codes without one.
   * A profile object (`readProfile(path)`) is used as given; false never uses one.
   */
  profile?: TransformProfile | "auto" | false;
}

/**
 * The validated form every integration works from: every default applied, the preset looked up and
 * the spec validated here, once, on the way from withNexusQuant to the allocator.
 */
export interface ResolvedOptions {
  /** The preset name as given, for stats ("none" for no compression, whatever its case). */
  preset: string;
  /**
   * The final compression spec: the preset's, with options.spec and options.scorer applied, validated.
   * null for preset "none": the conversation is never compressed (FP16 K/V, no eviction).
   */
  spec: Readonly<CompressionSpec> | null;
  backend: BackendRequest;
  compressEvery: number;
  seed: number | undefined;
  denseMirror: boolean;
  ort: unknown;
  padTokenId: number;
  prefillChunk: number;
  rereadLayers: number | "half" | "all";
  /** 0: no per-conversation limit. */
  memoryLimitBytes: number;
  /** options.eos as a list, or undefined when not given (the wrapper's own default applies). */
  eos: readonly number[] | undefined;
  /** A validated profile, "auto" (the wrapper looks next to a loaded checkpoint) or false. */
  profile: TransformProfile | "auto" | false;
}

export const DEFAULT_COMPRESS_EVERY = 64;
export const DEFAULT_PREFILL_CHUNK = 256;

/** The preset name that wraps a model without compressing (a baseline for comparisons). */
export const NO_COMPRESSION = "none";

/** Every key of NexusQuantOptions: others are refused with the closest name (strict options). */
const OPTION_KEYS: readonly (keyof NexusQuantOptions)[] = ["preset", "backend", "compressEvery", "scorer", "spec", "seed", "denseMirror", "ort", "padTokenId", "prefillChunk", "rereadLayers", "memoryLimitBytes", "state", "eos", "profile"];

export function resolveOptions(options: NexusQuantOptions = {}): ResolvedOptions {
  checkObject("options", options);
  checkOptionKeys("options", options, OPTION_KEYS);
  const given = options.preset ?? DEFAULT_PRESET;
  // Preset names are case-insensitive, "none" included.
  const none = typeof given === "string" && given.toLowerCase() === NO_COMPRESSION;
  const preset = none ? NO_COMPRESSION : given;
  // Looked up now, not at the first step; the error lists "none" too, which only wrappers accept.
  const base = none ? null : presetOf(preset);
  const backend = checkOneOf("options.backend", options.backend ?? "auto", ["auto", "cpu", "cuda"] as const, '"auto", "cpu" or "cuda"');
  const compressEvery = checkInt("options.compressEvery", options.compressEvery ?? DEFAULT_COMPRESS_EVERY, { min: 1 });
  if (options.scorer !== undefined) checkOneOf("options.scorer", options.scorer, SCORERS, `one of ${SCORERS.join(", ")}`);
  if (options.spec !== undefined) checkObject("options.spec", options.spec, "a partial CompressionSpec object");
  if (options.denseMirror !== undefined) checkBoolean("options.denseMirror", options.denseMirror);
  if (options.seed !== undefined) checkSeed("options.seed", options.seed);
  const padTokenId = checkInt("options.padTokenId", options.padTokenId ?? 0, { min: 0 });
  const overrides = { ...(options.spec ?? {}), ...(options.scorer !== undefined ? { scorer: options.scorer } : {}) };
  // The spec is checked now (misspelt keys, the format's limits), not at the first step. "none"
  // applies no spec, so its overrides are not checked.
  const spec = base === null ? null : specWithOverrides(base.spec, overrides);
  const prefillChunk = checkInt("options.prefillChunk", options.prefillChunk ?? DEFAULT_PREFILL_CHUNK, { min: 1 });
  const rereadLayers = options.rereadLayers === "half" || options.rereadLayers === "all" || options.rereadLayers === undefined
    ? (options.rereadLayers ?? "half")
    : checkInt("options.rereadLayers", options.rereadLayers, { min: 1 });
  const memoryLimitBytes = checkInt("options.memoryLimitBytes", options.memoryLimitBytes ?? 0, { min: 0 });
  const eos = options.eos === undefined ? undefined : checkTokenIds("options.eos", options.eos);
  const profile = options.profile ?? "auto";
  if (profile !== "auto" && profile !== false) validateProfileOnce(profile);
  return {
    preset,
    spec,
    backend,
    compressEvery,
    seed: options.seed,
    denseMirror: options.denseMirror === true,
    ort: options.ort,
    padTokenId,
    prefillChunk,
    rereadLayers,
    memoryLimitBytes,
    eos,
    profile,
  };
}

/**
 * The options of a handle that resumes `saved`: the preset, spec, compressEvery, prefillChunk and
 * rereadLayers are the state's; the caller's other options (backend, ort, denseMirror, padTokenId,
 * seed of later conversations) apply as usual. A preset, spec or scorer that makes another spec, or
 * another compressEvery, prefillChunk or rereadLayers, is refused: the next tokens would not be the
 * saved handle's.
 */
export function resolveOptionsForState(options: NexusQuantOptions, saved: Pick<SavedConversation, "conversation" | "prefillChunk" | "rereadLayers">): ResolvedOptions {
  checkObject("options", options);
  checkOptionKeys("options", options, OPTION_KEYS);
  const { preset, spec, scorer, compressEvery, prefillChunk, rereadLayers, state: _state, ...rest } = options;
  const s = saved.conversation;
  const conflict = (arg: string, given: unknown, theirs: unknown) =>
    new NexusQuantError(
      "INVALID_ARGUMENT",
      `options.${arg} ${JSON.stringify(given)} conflicts with the saved state's ${JSON.stringify(theirs)} (preset "${s.preset}", spec ${JSON.stringify(s.spec)}). A resumed conversation takes its preset, spec, compressEvery, prefillChunk and rereadLayers from the state: leave options.${arg} out.`,
      { arg: `options.${arg}`, state: theirs },
    );
  if (preset !== undefined || spec !== undefined || scorer !== undefined) {
    const asked = resolveOptions({ preset: preset ?? s.preset, ...(spec !== undefined ? { spec } : {}), ...(scorer !== undefined ? { scorer } : {}) });
    if (!sameSpec(asked.spec, s.spec)) {
      const arg = preset !== undefined ? "preset" : spec !== undefined ? "spec" : "scorer";
      throw conflict(arg, options[arg], arg === "preset" ? s.preset : s.spec);
    }
  }
  if (compressEvery !== undefined && compressEvery !== s.schedule.every) throw conflict("compressEvery", compressEvery, s.schedule.every);
  if (prefillChunk !== undefined && saved.prefillChunk !== undefined && prefillChunk !== saved.prefillChunk) throw conflict("prefillChunk", prefillChunk, saved.prefillChunk);
  if (rereadLayers !== undefined && saved.rereadLayers !== undefined && rereadLayers !== saved.rereadLayers) throw conflict("rereadLayers", rereadLayers, saved.rereadLayers);
  // "none" resolves nothing preset-specific: the spec is the state's (checked when it was decoded).
  const resolved = resolveOptions({
    ...rest,
    preset: NO_COMPRESSION,
    compressEvery: s.schedule.every,
    prefillChunk: saved.prefillChunk ?? prefillChunk ?? DEFAULT_PREFILL_CHUNK,
    ...((saved.rereadLayers ?? rereadLayers) !== undefined ? { rereadLayers: saved.rereadLayers ?? rereadLayers } : {}),
  });
  return { ...resolved, preset: s.preset, spec: s.spec };
}

/** getPreset, with "none" in the list of known names an unknown one gets. */
function presetOf(name: string): Preset {
  try {
    return getPreset(name);
  } catch (e) {
    throw e instanceof NexusQuantError && e.code === "UNKNOWN_PRESET" ? unknownPresetError(String(name), [...PRESET_NAMES, NO_COMPRESSION]) : e;
  }
}
