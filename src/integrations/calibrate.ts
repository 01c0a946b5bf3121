/**
 * `calibrateModel`: the transform profile of a loaded checkpoint (docs/transform.md). Runs tokens
 * through the model on the native path with FP16 K/V (preset "none"), reads each layer's K and V back
 * as the cache holds them (keys after RoPE) and fits the per-(layer, KV head) transforms.
 */
import { invalidArgument } from "../errors.js";
import { modelFingerprint } from "../model/fingerprint.js";
import { isLlamaModel, type LlamaModel } from "../model/model-dir.js";
import { seededRandom } from "../shared/prng.js";
import { checkInt, checkObject, checkOptionKeys, checkSeed } from "../validate.js";
import { TransformCalibrator, DEFAULT_TRANSFORM_SEED } from "../transform/calibrator.js";
import { buildTransformProfile, type TransformProfile } from "../transform/profile.js";
import { withNexusQuant } from "./with-nexusquant.js";

export interface CalibrateModelOptions {
  /** Token ids to read, e.g. text through the model's tokenizer. Default: `tokens` uniformly random ids. */
  tokenIds?: readonly number[];
  /** How many random token ids to read when `tokenIds` is not given (default 4096). */
  tokens?: number;
  /** Seeds the random ids and the in-band sign flips (default 26). */
  seed?: number;
  /** What the tokens were, recorded in the profile (default "N random tokens" or "N given tokens"). */
  source?: string;
  /** Tokens per forward step (default 256). */
  chunk?: number;
  /**
   * Tokens per conversation (default: the model's max_position_embeddings, at most 4096). Keys are
   * fitted as the cache holds them, after RoPE, so the positions read should be those the model
   * serves: the tokens are read as windows from position 0, each a new conversation.
   */
  window?: number;
  /** Progress: "read" counts tokens through the model, "fit" counts fitted (layer, head, K|V) tensors. */
  onProgress?: (phase: "read" | "fit", done: number, total: number) => void;
  /** The onnxruntime-node module, when it is not resolvable from here (withNexusQuant's `ort`). */
  ort?: unknown;
}

export const DEFAULT_CALIBRATION_TOKENS = 4096;
const OPTION_KEYS: readonly (keyof CalibrateModelOptions)[] = ["tokenIds", "tokens", "seed", "source", "chunk", "window", "onProgress", "ort"];
/** The longest calibration window by default: positions past it rotate the keys' slowest RoPE pairs little. */
export const MAX_CALIBRATION_WINDOW = 4096;

/** Fits a transform profile for `model` (a loaded checkpoint: `await loadModel(dir)`). */
export async function calibrateModel(model: LlamaModel, options: CalibrateModelOptions = {}): Promise<TransformProfile> {
  if (!isLlamaModel(model)) throw invalidArgument("model", "a loaded checkpoint (await loadModel(dir) from nexusquant/model)", model);
  checkObject("options", options);
  checkOptionKeys("options", options, OPTION_KEYS);
  const { config } = model;
  const seed = checkSeed("options.seed", options.seed ?? DEFAULT_TRANSFORM_SEED);
  const chunk = checkInt("options.chunk", options.chunk ?? 256, { min: 1 });
  const window = checkInt("options.window", options.window ?? Math.min(config.maxPositionEmbeddings, MAX_CALIBRATION_WINDOW), { min: 1 });
  const ids = options.tokenIds !== undefined ? [...options.tokenIds] : randomIds(checkInt("options.tokens", options.tokens ?? DEFAULT_CALIBRATION_TOKENS, { min: 1, max: 1 << 20 }), config.vocabSize, seed);
  if (ids.some((id) => !Number.isInteger(id) || id < 0 || id >= config.vocabSize)) {
    throw invalidArgument("options.tokenIds", `token ids in [0, ${config.vocabSize})`, ids.find((id) => !Number.isInteger(id) || id < 0 || id >= config.vocabSize));
  }
  // The calibrator needs at least 2 · headDim vectors per tensor: say so before reading anything.
  const needed = 2 * config.headDim;
  if (ids.length < needed) throw invalidArgument(options.tokenIds ? "options.tokenIds" : "options.tokens", `at least ${needed} tokens (2 × head_dim) to fit a ${config.headDim}-dimensional basis`, ids.length);
  const calibrator = new TransformCalibrator({ layers: config.numLayers, kvHeads: config.numKvHeads, headDim: config.headDim, seed });
  await withNexusQuant(model, { preset: "none", prefillChunk: chunk, eos: [], ...(options.ort !== undefined ? { ort: options.ort } : {}) }, async (lm) => {
    for (let start = 0; start < ids.length; start += window) {
      const end = Math.min(ids.length, start + window);
      lm.reset(); // a new conversation: positions from 0
      for (let at = start; at < end; at += chunk) {
        await lm.step([ids.slice(at, Math.min(end, at + chunk))]);
        options.onProgress?.("read", Math.min(end, at + chunk), ids.length);
      }
      const cache = lm.cache!;
      for (let layer = 0; layer < config.numLayers; layer++) {
        const m = cache.materialize(layer);
        const per = m.tokens * config.headDim;
        for (let head = 0; head < config.numKvHeads; head++) {
          calibrator.add(layer, head, 0, m.keys.subarray(head * per, (head + 1) * per));
          calibrator.add(layer, head, 1, m.values.subarray(head * per, (head + 1) * per));
        }
      }
    }
  });
  const fitted = calibrator.finish({ onProgress: (done, total) => options.onProgress?.("fit", done, total) });
  const fingerprint = (await modelFingerprint(model)).id;
  const source = options.source ?? (options.tokenIds ? `${ids.length} given tokens` : `${ids.length} random tokens (seed ${seed})`);
  return buildTransformProfile(fitted, { fingerprint, source });
}

function randomIds(count: number, vocab: number, seed: number): number[] {
  const rand = seededRandom(seed);
  return Array.from({ length: count }, () => Math.min(vocab - 1, Math.floor(rand() * vocab)));
}
