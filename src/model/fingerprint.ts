/**
 * The fingerprint of a loaded checkpoint: what a saved conversation records so that it is never
 * resumed on another model. SHA-256 over the parsed config (every field that changes the math, keys
 * sorted) and every weight tensor: its name, dtype, shape and bytes, in name order. Two checkpoints
 * agree only if the model computes the same function from the same numbers; a conversion (F32 → F16)
 * or a fine-tune is another model.
 *
 * Hashing reads every weight byte once (about 0.7 GB/s for SHA-256 on the 2-core dev box: ~20 s
 * for an 8B-parameter FP16 checkpoint), so the result is kept per loaded model (per weights map) and
 * the work yields to the event loop between tensors.
 */
import { createHash } from "node:crypto";
import type { LlamaModel } from "./model-dir.js";

export interface ModelFingerprint {
  /** "sha256:<64 hex digits>" */
  id: string;
  /** What the hash covers, in words (said in errors and docs). */
  covers: string;
}

/** Bumped if what is hashed changes, so fingerprints of two definitions never compare equal. */
const FINGERPRINT_DOMAIN = "nexusquant-model-fingerprint-v1";
export const CHECKPOINT_FINGERPRINT_COVERS = "config.json (parsed) and every weight tensor's name, dtype, shape and bytes";

/** Per weights map, per config (as canonical JSON): the hash, computed once. */
const cache = new WeakMap<LlamaModel["weights"], Map<string, Promise<ModelFingerprint>>>();

/** The fingerprint of a loaded checkpoint, computed once per weights map and config. */
export function modelFingerprint(model: LlamaModel): Promise<ModelFingerprint> {
  let byConfig = cache.get(model.weights);
  if (byConfig === undefined) cache.set(model.weights, (byConfig = new Map()));
  const config = canonicalJson(model.config);
  let pending = byConfig.get(config);
  if (pending === undefined) {
    pending = hashCheckpoint(config, model.weights);
    byConfig.set(config, pending);
    pending.catch(() => byConfig.delete(config));
  }
  return pending;
}

/** A fingerprint of something else than a checkpoint (an ONNX session's interface), from a JSON-able description. */
export function descriptionFingerprint(description: unknown, covers: string): ModelFingerprint {
  return { id: `sha256:${createHash("sha256").update(`${FINGERPRINT_DOMAIN}\n`).update(canonicalJson(description)).digest("hex")}`, covers };
}

async function hashCheckpoint(configJson: string, weights: LlamaModel["weights"]): Promise<ModelFingerprint> {
  const hash = createHash("sha256");
  hash.update(`${FINGERPRINT_DOMAIN}\n`);
  hash.update(configJson);
  for (const name of [...weights.keys()].sort()) {
    const t = weights.get(name)!;
    hash.update(`\n${name}\0${t.dtype}\0${t.shape.join(",")}\0`);
    hash.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    // Big checkpoints take seconds: let other work run between tensors.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return { id: `sha256:${hash.digest("hex")}`, covers: CHECKPOINT_FINGERPRINT_COVERS };
}

/** JSON with object keys sorted at every level, so equal values hash equally. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}
