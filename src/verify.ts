// Above both the estimator (model names, config.json) and the runtime (the cache it measures): the
// runtime layer imports neither model nor estimator.
import { NexusQuantError, invalidArgument } from "./errors.js";
import { compressedLayout, getPreset, type LayoutBytes } from "./format/index.js";
import { ARCHITECTURES, architectureFromHfConfig, type Architecture } from "./estimator/index.js";
import { CompressedKVCache } from "./runtime/cache.js";
import type { BackendName, BackendRequest } from "./runtime/backend.js";
import { measureMemory } from "./runtime/memory.js";
import { syntheticKV } from "./runtime/synthetic.js";
import { checkPositiveInt } from "./runtime/validate.js";

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
}

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
  const arch = resolveArchitecture(options);
  if (arch.attention === "mla") {
    throw new NexusQuantError("UNSUPPORTED", `${arch.id} uses multi-head latent attention (one latent vector per token, not K and V); the compressed cache covers K/V caches only.`);
  }
  const context = checkPositiveInt("options.context", options.context);
  const batch = checkPositiveInt("options.batch", options.batch ?? 1);
  const preset = getPreset(options.preset);
  const { layers, kvHeads, headDim } = { layers: arch.layers, kvHeads: arch.kvHeads, headDim: arch.headDim };
  const shape = { layers, kvHeads, headDim, tokens: context, batch };
  const layout = compressedLayout(shape, preset.spec);
  const started = performance.now();
  const chunk = Math.max(1, Math.min(context, Math.floor((64 << 20) / (kvHeads * headDim * 4)))); // ≤ 64 MB of f32 per append
  let cache: CompressedKVCache | undefined;
  const m = await measureMemory(async () => {
    cache = new CompressedKVCache({ layers, kvHeads, headDim, batch, preset: options.preset, backend: options.backend, queryHeads: arch.attentionHeads, seed: options.seed });
    for (let layer = 0; layer < layers; layer++) {
      for (let seq = 0; seq < batch; seq++) {
        if (options.kv) {
          const { keys, values } = options.kv(layer, seq);
          cache.append(layer, keys, values, { sequence: seq });
        } else {
          for (let start = 0; start < context; start += chunk) {
            const n = Math.min(chunk, context - start);
            const { keys, values } = syntheticKV({ kvHeads, headDim, tokens: n, startPosition: start, seed: (options.seed ?? 1) + layer * 131 + seq });
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
  const measured = { codes: m.byCategory.codes, scales: m.byCategory.scales, positions: m.byCategory.positions, residual: m.byCategory.residual, headers: m.byCategory.headers, scratch: m.byCategory.scratch, total: m.delta };
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
  };
  if (m.cudaMemGetInfo) result.cudaMemGetInfoDelta = m.cudaMemGetInfo.delta;
  return result;
}
