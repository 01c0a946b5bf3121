/**
 * The two paths the harness measures a cache variant through, behind one interface:
 *
 * - "native" (the default, what `withNexusQuant(await loadModel(dir))` runs): the decoder as ONNX
 *   segments without attention, attention computed by the addon on the compressed cache, each prompt
 *   prefilled in chunks and compressed chunk by chunk — so every variant runs its own prefill, and the
 *   scorers that need the model's queries (observed, reconstruct) get them;
 * - "ort" (comparison rows): the whole-model ONNX graph through the ORT-session wrapper's step loop,
 *   one FP16 prefill shared by every variant, then compressed as one prompt chunk (engine.ts); the
 *   scalar baselines live only here.
 */
import { buildDecoderSegments } from "../../src/model/segment-builder.js";
import type { LlamaConfig, LlamaModel } from "../../src/model/index.js";
import { resolveOptions } from "../../src/integrations/options.js";
import { NativeStepEngine, SEGMENT_SESSION_OPTIONS, type OrtRuntimeLike } from "../../src/integrations/native-model.js";
import type { CompressionSpec } from "../../src/format/index.js";
import type { BackendName } from "../../src/runtime/index.js";
import type { KvStats } from "../../src/integrations/conversation-cache.js";
import type { ScalarSpec } from "./scalar-baselines.js";
import type { TransformProfile } from "../../src/transform/profile.js";

export type PathName = "native" | "ort" | "llama.cpp";

/** How one variant holds the cache. `preset: "none"` is the FP16 baseline. */
export interface CacheSetup {
  preset: string;
  spec?: Partial<CompressionSpec>;
  compressEvery: number;
  seed?: number;
  /** A scalar baseline (scalar-baselines.ts) instead of a CompressedKVCache (ORT path only); `preset` is then ignored. */
  scalar?: ScalarSpec;
  /** Native path, scorer reconstruct: the re-read's depth (withNexusQuant's rereadLayers; default "half"). */
  rereadLayers?: number | "half" | "all";
  /** Native path: code with the path's calibrated transform profile. */
  calibrated?: boolean;
}

export interface RunStats {
  /** "none" for the dense baseline, "harness" for the scalar baselines (TypeScript, bits counted), "llama.cpp" for the peer. */
  backend: BackendName | "none" | "harness" | "llama.cpp";
  tokens: number;
  heldTokens: number;
  baselineBytes: number;
  bytes: number;
  /** baselineBytes / bytes, from the cache's accounting allocator (1 for the dense baseline). */
  ratio: number;
  compressions: number;
  /** True when the observed scorer got the model's queries at every compression. */
  observedQueries: boolean;
}

/** One conversation of one variant, after its prompt. */
export interface KvRun {
  /** Feeds one token at the next true position (a decode step); returns the logits that predict the token after it. */
  step(token: number): Promise<Float32Array>;
  /** Feeds a turn of several tokens at once (a later turn's prompt, compressed as a prompt chunk); returns the last position's logits. */
  feed(tokens: readonly number[]): Promise<Float32Array>;
  stats(): RunStats;
  dispose(): void;
}

/** A conversation started on a prompt: the run, the logits of the prompt's last position, and the prefill's time. */
export interface Started {
  run: KvRun;
  logits: Float32Array;
  /** Seconds of this variant's prefill (the ORT path shares one prefill: its time, counted once per prompt). */
  prefillSeconds: number;
}

export interface QualityPath {
  readonly name: PathName;
  readonly config: LlamaConfig;
  /** One line for the report: how the observed scorer gets its queries on this path. */
  readonly observedNote: string;
  /** A conversation over `prompt` (from position 0) with the variant's cache. */
  start(prompt: readonly number[], setup: CacheSetup): Promise<Started>;
  dispose(): Promise<void>;
}

/** A run's stats from a conversation's KvStats (`backend` overrides where no cache holds the K/V, e.g. the scalar baselines). */
export function runStats(s: KvStats, observedQueries: boolean, backend?: RunStats["backend"]): RunStats {
  return {
    backend: backend ?? s.backend,
    tokens: s.tokens,
    heldTokens: s.heldTokens,
    baselineBytes: s.baselineKvBytes,
    bytes: s.compressedKvBytes,
    ratio: s.ratio,
    compressions: s.compressions,
    observedQueries,
  };
}

type Ort = typeof import("onnxruntime-node");
type SegmentSession = Awaited<ReturnType<Ort["InferenceSession"]["create"]>>;

/**
 * The native path: one set of segment sessions (the weights loaded once), one NativeStepEngine per
 * variant sharing them (the engine the product's handle drives), reset for every conversation.
 */
export class NativeQualityPath implements QualityPath {
  readonly name = "native" as const;
  readonly config: LlamaConfig;
  readonly observedNote = "native path: the observed scorer reads the model's last 32 queries of every layer as attention computes them";
  readonly #ort: OrtRuntimeLike;
  readonly #segments: SegmentSession[];
  readonly #engines = new Map<string, NativeStepEngine>();

  readonly #profile: TransformProfile | undefined;

  private constructor(config: LlamaConfig, ort: OrtRuntimeLike, segments: SegmentSession[], profile: TransformProfile | undefined) {
    this.config = config;
    this.#ort = ort;
    this.#segments = segments;
    this.#profile = profile;
  }

  /** `profile`: the calibrated transform profile the `calibrated` rows code with. */
  static async create(model: LlamaModel, ort: Ort, profile?: TransformProfile): Promise<NativeQualityPath> {
    const built = buildDecoderSegments({ config: model.config, weights: model.weights, logits: "last" });
    const sessions = [];
    for (const bytes of built.segments) sessions.push(await ort.InferenceSession.create(bytes, SEGMENT_SESSION_OPTIONS));
    return new NativeQualityPath(model.config, ort as unknown as OrtRuntimeLike, sessions, profile);
  }

  async start(prompt: readonly number[], setup: CacheSetup): Promise<Started> {
    if (setup.scalar !== undefined) throw new Error("scalar baselines run on the ORT path only");
    const engine = this.#engine(setup);
    engine.reset();
    const t0 = performance.now();
    const result = await engine.step([[...prompt]]);
    const prefillSeconds = (performance.now() - t0) / 1000;
    return { run: new NativeRun(engine), logits: result.last(0).slice(), prefillSeconds };
  }

  #engine(setup: CacheSetup): NativeStepEngine {
    const key = JSON.stringify([setup.preset, setup.spec ?? {}, setup.compressEvery, setup.seed ?? null, setup.rereadLayers ?? null, setup.calibrated === true]);
    if (setup.calibrated && this.#profile === undefined) throw new Error("a calibrated row needs the path's transform profile");
    let engine = this.#engines.get(key);
    if (engine === undefined) {
      const options = resolveOptions({
        preset: setup.preset,
        compressEvery: setup.compressEvery,
        ...(setup.spec !== undefined ? { spec: setup.spec } : {}),
        ...(setup.seed !== undefined ? { seed: setup.seed } : {}),
        ...(setup.rereadLayers !== undefined ? { rereadLayers: setup.rereadLayers } : {}),
        profile: setup.calibrated ? this.#profile! : false,
      });
      engine = new NativeStepEngine(this.config, options, this.#ort, this.#segments, "last");
      this.#engines.set(key, engine);
    }
    return engine;
  }

  async dispose(): Promise<void> {
    // The engines share the segments: free their caches, then release the sessions once.
    for (const e of this.#engines.values()) e.reset();
    this.#engines.clear();
    await Promise.all(this.#segments.map((s) => s.release()));
  }
}

class NativeRun implements KvRun {
  readonly #engine: NativeStepEngine;

  constructor(engine: NativeStepEngine) {
    this.#engine = engine;
  }

  async step(token: number): Promise<Float32Array> {
    return (await this.#engine.step([[token]])).last(0).slice();
  }

  async feed(tokens: readonly number[]): Promise<Float32Array> {
    return (await this.#engine.step([[...tokens]])).last(0).slice();
  }

  stats(): RunStats {
    return runStats(this.#engine.stats(), this.#engine.options.spec?.scorer === "observed");
  }

  dispose(): void {
    this.#engine.reset();
  }
}
