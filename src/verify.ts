// Above both the estimator (model names, config.json) and the runtime (the cache it measures): the
// runtime layer imports neither model nor estimator.
import { NexusQuantError, invalidArgument } from "./errors.js";
import { FORMAT_LIMITS, compressedLayout, getPreset, transformTableBytes, type LayoutBytes } from "./format/index.js";
import { validateProfileOnce, type TransformProfile } from "./transform/profile.js";
import { ARCHITECTURES, architectureFromHfConfig, type Architecture } from "./estimator/index.js";
import { availableMemory } from "./runtime/available-memory.js";
import { CompressedKVCache } from "./runtime/cache.js";
import { backendInfo, resolveBackend, type BackendName, type BackendRequest } from "./runtime/backend.js";
import { measureMemory } from "./runtime/memory.js";
import { syntheticKV } from "./runtime/synthetic.js";
import { checkInt, checkObject, checkOptionKeys, checkSeed } from "./validate.js";
import { largestFittingContext, verifyChunkTokens, verifyWorkingSet } from "./runtime/working-set.js";

export interface VerifyOptions {
  /** A registry id (see `nexusquant models`) or an Architecture; or pass `config`. */
  model?: string | Architecture;
  /** A Hugging Face config.json object. */
  config?: Record<string, unknown>;
  context: number;
  preset: string;
  batch?: number;
  backend?: BackendRequest;
  /** User KV per layer: keys/values [kvHeads, context, headDim]; otherwise synthetic KV (see synthetic.ts). */
  kv?: (layer: number, sequence: number) => { keys: Float32Array | Uint16Array; values: Float32Array | Uint16Array };
  seed?: number;
  /** Called after each layer is filled and compressed. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Bytes the run may use at its peak (the cache plus the working set of the layer being compressed).
   * Default: what the machine has available (MemAvailable and the cgroup's memory.max). A run that
   * needs more is refused at once with OUT_OF_MEMORY, before anything is allocated.
   */
  memoryLimitBytes?: number;
  /**
   * A calibrated transform profile (docs/transform.md) for this model's shape: the cache codes with it
   * and the estimate counts its tables (compressedLayout(…, { transform: true })). Checked against the
   * shape (PROFILE_MISMATCH); a registry id or config has no checkpoint fingerprint to check.
   */
  profile?: TransformProfile;
}

const VERIFY_OPTION_KEYS: readonly (keyof VerifyOptions)[] = [
  "model", "config", "context", "preset", "batch", "backend", "kv", "seed", "onProgress", "memoryLimitBytes", "profile",
];

export interface VerifyResult {
  backend: BackendName;
  model: string;
  shape: { layers: number; kvHeads: number; headDim: number; context: number; batch: number };
  preset: string;
  /** FP16 bytes of the same cache: 2 · layers · kvHeads · context · headDim · 2 · batch (analytic). */
  baselineBytes: number;
  /** compressedLayout's total: the layout code the allocator also uses. */
  estimatedBytes: number;
  /** Accounting-allocator bytes the compressed cache holds, measured after compression. */
  measuredBytes: number;
  measuredRatio: number;
  estimatedRatio: number;
  /** Per component, estimated vs measured. */
  components: { estimated: LayoutBytes; measured: LayoutBytes & { scratch: number } };
  /** measuredBytes === estimatedBytes */
  exact: boolean;
  /** cudaMemGetInfo delta, on a GPU backend. */
  cudaMemGetInfoDelta?: number;
  /** Process RSS delta (informational, noisy). */
  rssDelta: number;
  seconds: number;
  /** Peak bytes the run was expected to need (layout + working set), checked before it started. */
  plannedPeakBytes: number;
  /** The part of plannedPeakBytes the accounting allocator holds (the rest is the JS input chunks). */
  plannedNativePeakBytes: number;
  /** Things the config parser flagged (e.g. a misspelt key): see Architecture.warnings. */
  warnings?: string[];
  /** Whether the cache coded with a calibrated transform profile (its tables are in both totals). */
  transform: boolean;
}

function resolveArchitecture(options: VerifyOptions): Architecture {
  if (options.config !== undefined) return architectureFromHfConfig(options.config);
  if (typeof options.model === "object" && options.model !== null) return options.model;
  if (typeof options.model === "string") {
    const arch = ARCHITECTURES[options.model];
    if (!arch) throw new NexusQuantError("UNKNOWN_MODEL", `Unknown model ${JSON.stringify(options.model)}; run \`nexusquant models\` for the list.`);
    return arch;
  }
  throw invalidArgument("options.model", "a model id, an Architecture, or options.config", options.model);
}

/**
 * Builds a cache of the model's shape, fills it layer by layer (user KV or synthetic), compresses it
 * with the preset, and compares the bytes the allocator holds with the layout's estimate.
 */
export async function verifyCompression(options: VerifyOptions): Promise<VerifyResult> {
  checkObject("options", options, "a VerifyOptions object");
  checkOptionKeys("options", options, VERIFY_OPTION_KEYS);
  const arch = resolveArchitecture(options);
  if (arch.attention === "mla") {
    throw new NexusQuantError("UNSUPPORTED", `${arch.id} uses multi-head latent attention (one latent vector per token, not K and V); the compressed cache covers K/V caches only.`);
  }
  const context = checkInt("options.context", options.context, { min: 1, max: FORMAT_LIMITS.maxSequenceTokens, maxName: "positions are int32" });
  const batch = checkInt("options.batch", options.batch ?? 1, { min: 1, max: FORMAT_LIMITS.maxBatch, maxName: "FORMAT_LIMITS.maxBatch" });
  const seed = options.seed === undefined ? undefined : checkSeed("options.seed", options.seed);
  const limit = options.memoryLimitBytes === undefined ? undefined : checkInt("options.memoryLimitBytes", options.memoryLimitBytes, { min: 1 });
  if (options.onProgress !== undefined && typeof options.onProgress !== "function") throw invalidArgument("options.onProgress", "a function", options.onProgress);
  const preset = getPreset(options.preset);
  const { layers, kvHeads, headDim } = { layers: arch.layers, kvHeads: arch.kvHeads, headDim: arch.headDim };
  const shape = { layers, kvHeads, headDim, tokens: context, batch };
  if (options.profile !== undefined) validateProfileOnce(options.profile);
  // A structural copy: the shared tables are built once per profile object (transform-tables.ts), and
  // tables built before this run would be held outside the bytes it measures.
  const profile = options.profile === undefined ? undefined : { ...options.profile };
  const layout = compressedLayout(shape, preset.spec, { transform: profile !== undefined });
  // The backend decided once (backendInfo().auto for "auto"); the cache below gets the same answer.
  const backend = resolveBackend(options.backend ?? "auto");
  const planned = checkFits(shape, preset.spec, limit, backend, profile === undefined ? 0 : transformTableBytes(layers, kvHeads, headDim));
  const started = performance.now();
  const chunk = verifyChunkTokens(kvHeads, headDim, context); // ≤ 64 MB of f32 per append
  let cache: CompressedKVCache | undefined;
  const m = await measureMemory(async () => {
    cache = new CompressedKVCache({
      layers, kvHeads, headDim, batch, spec: preset.spec, backend, queryHeads: arch.attentionHeads, seed,
      ...(limit === undefined ? {} : { memoryLimitBytes: limit }),
      ...(profile === undefined ? {} : { profile }),
    });
    for (let layer = 0; layer < layers; layer++) {
      for (let seq = 0; seq < batch; seq++) {
        if (options.kv) {
          const { keys, values } = options.kv(layer, seq);
          cache.append(layer, keys, values, { sequence: seq });
        } else {
          for (let start = 0; start < context; start += chunk) {
            const n = Math.min(chunk, context - start);
            const { keys, values } = syntheticKV({ kvHeads, headDim, tokens: n, startPosition: start, seed: (seed ?? 1) + layer * 131 + seq });
            cache.append(layer, keys, values, { sequence: seq });
          }
        }
        // Compress as soon as a layer is filled, so the FP16 staging of one layer is the peak, not the whole cache.
        await cache.compress({ sequence: seq, layer });
      }
      options.onProgress?.(layer + 1, layers);
    }
    return cache.stats();
  });
  const stats = m.result;
  cache?.dispose();
  const measured = { codes: m.byCategory.codes, scales: m.byCategory.scales, positions: m.byCategory.positions, residual: m.byCategory.residual, headers: m.byCategory.headers, scores: m.byCategory.scores, scratch: m.byCategory.scratch, transform: m.byCategory.transform, total: m.delta };
  const result: VerifyResult = {
    backend: stats.backend,
    model: arch.id,
    shape: { layers, kvHeads, headDim, context, batch },
    preset: preset.name,
    baselineBytes: layout.baselineBytes,
    estimatedBytes: layout.bytes.total,
    measuredBytes: m.delta,
    measuredRatio: layout.baselineBytes / m.delta,
    estimatedRatio: layout.ratio,
    components: { estimated: layout.bytes, measured },
    exact: m.delta === layout.bytes.total,
    rssDelta: m.rssDelta,
    seconds: (performance.now() - started) / 1000,
    plannedPeakBytes: planned.totalBytes,
    plannedNativePeakBytes: planned.layoutBytes + planned.transientBytes,
    transform: profile !== undefined,
  };
  if (arch.warnings?.length) result.warnings = [...arch.warnings];
  if (m.cudaMemGetInfo) result.cudaMemGetInfoDelta = m.cudaMemGetInfo.delta;
  return result;
}

/**
 * Refuses, before any allocation, a run whose peak (layout + working set) exceeds the memory it may
 * use: the caller's limit and what the machine has (MemAvailable, cgroup memory.max). The error names
 * the bytes needed and the largest context that fits. Returns the planned peak by part.
 */
function checkFits(
  shape: { layers: number; kvHeads: number; headDim: number; tokens: number; batch: number },
  spec: Parameters<typeof verifyWorkingSet>[1],
  limit: number | undefined,
  backend: BackendName,
  tableBytes: number,
): ReturnType<typeof verifyWorkingSet> {
  const threads = backendInfo().cpu.threads;
  const base = verifyWorkingSet(shape, spec, threads);
  // A profile's tables are held beside the cache for the whole run.
  const need = { ...base, layoutBytes: base.layoutBytes + tableBytes, totalBytes: base.totalBytes + tableBytes };
  // The CUDA backend holds the cache on the device; its host side is staging only. Check the host
  // bound on the CPU backend, and a caller's explicit limit everywhere.
  const machine = backend === "cpu" ? availableMemory() : undefined;
  const candidates = [...(limit === undefined ? [] : [{ bytes: limit, source: "memoryLimitBytes" }]), ...(machine ? [machine] : [])];
  const bound = candidates.sort((a, b) => a.bytes - b.bytes)[0];
  if (bound === undefined || need.totalBytes <= bound.bytes) return need;
  const fits = largestFittingContext(shape, spec, threads, bound.bytes - tableBytes, shape.tokens);
  throw new NexusQuantError(
    "OUT_OF_MEMORY",
    `This run needs ${need.totalBytes} bytes at its peak (${need.layoutBytes} for the compressed cache + ${need.transientBytes} while a layer is ` +
      `staged in FP16 and compressed + ${need.inputBytes} of input chunks) but ${bound.bytes} bytes are available (${bound.source}). ` +
      (fits > 0 ? `The largest context that fits is ${fits} tokens` : "Not even one token fits") +
      ` at batch ${shape.batch}; lower the context or the batch${bound.source === "memoryLimitBytes" ? ", or raise the memory limit" : ""}.`,
    { neededBytes: need.totalBytes, layoutBytes: need.layoutBytes, transientBytes: need.transientBytes, inputBytes: need.inputBytes, availableBytes: bound.bytes, source: bound.source, largestContext: fits },
  );
}
