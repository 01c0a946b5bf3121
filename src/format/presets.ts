import { NexusQuantError } from "../errors.js";
import type { CompressionSpec } from "./spec.js";
import { DEFAULT_SPEC, isValidatedSpec, unknownPresetError, validateSpec } from "./spec.js";
import { asymptoticBytesPerTokenLayer, fp16BytesPerTokenLayer } from "./layout.js";

export interface Preset {
  name: string;
  description: string;
  spec: Readonly<CompressionSpec>;
}

function preset(name: string, description: string, spec: Partial<CompressionSpec>): Preset {
  return Object.freeze({ name, description, spec: validateSpec({ ...DEFAULT_SPEC, ...spec }) });
}

/**
 * Named compression specs. Ratios are never typed in: `presetRatio` computes them from the layout.
 * K3V2 = 3-bit keys, 2-bit values (keys carry the softmax logits and deserve the extra bit).
 *
 * Chosen by `nexusquant bench quality` on the trained reference model (bench/results/quality.md):
 * K3V3 for quant (K3V2 missed its ΔPPL ≤ 0.5%), and, for every preset that evicts, the reconstruct
 * scorer (KVzip-style: the tokens a re-read of the context attends to are the ones kept). Evicting by
 * key-key similarity before the question is known lost facts stated once in the prompt (recall 89% →
 * 19% at 20% evicted; 0% at 60% on the native path); scored by reconstruction, the native path
 * recalls 83% at 60% and 80% evicted against FP16's 89% (K2V2 without eviction: 78%, so what is left
 * is the 2-bit codes). Reconstruct needs the native path's re-read: the ORT wrappers cannot run it,
 * and there the cache scores key-key (docs/integrations.md says which path gets what).
 *
 * Re-chosen 2026-12-08 (issue 25) from an eviction sweep at K3V2 (bench/results/preset-sweep.md):
 * with reconstruction scoring, recall hardly depends on how much is evicted, but on the keys' bits,
 * so `high` and `balanced` spend the third key bit and evict more to keep their ratios: `high` K3V2
 * 55% (11.35× on the model, later-turn recall 89% = FP16's; was K2V2 35%: 9.35×, 81%), `balanced`
 * K3V2 70% (between the sweep's 67%: 15.48×, 89% and 72%: 18.24×, 86%; was K2V2 60%: 15.19×, 83%).
 * `max` stays K2V2 80% (30.39×, 83% ≥ 85% of FP16's).
 */
export const PRESETS: Readonly<Record<string, Preset>> = Object.freeze({
  quant: preset("quant", "K3V3 lattice codes, no eviction", { keyBits: 3, valueBits: 3, evictFraction: 0 }),
  high: preset("high", "K3V2, 55% evicted (reconstruct)", { keyBits: 3, valueBits: 2, evictFraction: 0.55, scorer: "reconstruct" }),
  asym: preset("asym", "K3V2, 60% evicted (reconstruct)", { keyBits: 3, valueBits: 2, evictFraction: 0.6, scorer: "reconstruct" }),
  balanced: preset("balanced", "K3V2, 70% evicted (reconstruct)", { keyBits: 3, valueBits: 2, evictFraction: 0.7, scorer: "reconstruct" }),
  max: preset("max", "K2V2, 80% evicted (reconstruct)", { keyBits: 2, valueBits: 2, evictFraction: 0.8, scorer: "reconstruct" }),
});

/**
 * The published tiers (≈5×, 10×, 17×, 33×). Each maps to a spec whose computed long-context ratio at
 * head_dim 128 meets the tier; a test asserts it.
 */
export const PRESET_ALIASES: Readonly<Record<string, { target: number; preset: Preset }>> = Object.freeze({
  S: { target: 5, preset: preset("S", "≈5× tier: K3V3, no eviction", { keyBits: 3, valueBits: 3, evictFraction: 0 }) },
  M: { target: 10, preset: preset("M", "≈10× tier: K3V2, 45% evicted (reconstruct)", { keyBits: 3, valueBits: 2, evictFraction: 0.45, scorer: "reconstruct" }) },
  L: { target: 17, preset: { ...PRESETS.balanced!, name: "L", description: "≈17× tier: same spec as balanced" } },
  XL: { target: 33, preset: { ...PRESETS.max!, name: "XL", description: "≈33× tier: same spec as max" } },
});

export const PRESET_NAMES: readonly string[] = [...Object.keys(PRESETS), ...Object.keys(PRESET_ALIASES)];

/**
 * The preset used when none is named: by withNexusQuant (options.preset), CompressedKVCache
 * (options.preset) and the CLI (`--preset`). One definition; each of them applies it once.
 */
export const DEFAULT_PRESET = "balanced";

export function isPresetName(name: unknown): name is string {
  return typeof name === "string" && (name in PRESETS || name in PRESET_ALIASES);
}

/** A preset by name (case-sensitive for aliases S/M/L/XL, lowercase for the rest). */
export function getPreset(name: string): Preset {
  if (typeof name !== "string") throw new NexusQuantError("UNKNOWN_PRESET", `Expected a preset name but received ${typeof name}`);
  const found = PRESETS[name] ?? PRESET_ALIASES[name]?.preset ?? PRESETS[name.toLowerCase()] ?? PRESET_ALIASES[name.toUpperCase()]?.preset;
  if (!found) throw unknownPresetError(name, PRESET_NAMES);
  return found;
}

/**
 * A preset's spec with overrides applied (fields of `overrides` win), validated once: the one way a
 * preset and options.spec are composed (withNexusQuant's resolveOptions, CompressedKVCache). Throws
 * INVALID_ARGUMENT naming the bad field; `overrides` must already be a plain object.
 */
export function specWithOverrides(base: Readonly<CompressionSpec>, overrides: Partial<CompressionSpec> | undefined): Readonly<CompressionSpec> {
  if (overrides === undefined || Object.keys(overrides).length === 0) return isValidatedSpec(base) ? base : validateSpec({ ...DEFAULT_SPEC, ...base });
  return validateSpec({ ...DEFAULT_SPEC, ...base, ...overrides });
}

/** Long-context compression ratio of a spec against FP16, for one KV head of the given headDim. */
export function specRatio(spec: CompressionSpec, headDim = 128, kvHeads = 8): number {
  return fp16BytesPerTokenLayer(kvHeads, headDim) / asymptoticBytesPerTokenLayer(kvHeads, headDim, spec);
}

export function presetRatio(name: string, headDim = 128, kvHeads = 8): number {
  return specRatio(getPreset(name).spec, headDim, kvHeads);
}
