/**
 * The cache variants the harness compares: the FP16 baseline, every preset, quantization-only
 * specs (no eviction) and the eviction scorers at one preset's ratio. Variants whose resolved specs
 * are identical (K3V2 is `quant`; L is `balanced`; the key-key scorer row is the preset itself) are
 * measured once and reported with `sameAs`, so no number is computed twice or copied by hand.
 */
import { invalidArgument } from "../../src/errors.js";
import { DEFAULT_SPEC, PRESET_NAMES, SCORERS, getPreset, validateSpec, type CodeBits, type CompressionSpec, type ScorerName } from "../../src/format/index.js";

export type VariantGroup = "baseline" | "preset" | "quant-only" | "scorer";

export interface Variant {
  /** Row name: "none", a preset name, "K2V2", or "<preset>/<scorer>". */
  name: string;
  group: VariantGroup;
  /** Preset the cache starts from ("none" for the dense FP16 baseline). */
  preset: string;
  /** Overrides of the preset's spec. */
  spec: Partial<CompressionSpec>;
  /** The complete spec the cache runs (null for the baseline). */
  resolved: Readonly<CompressionSpec> | null;
  /** An earlier variant with the identical resolved spec whose measurement this row shares, or null. */
  sameAs: string | null;
}

export const BASELINE = "none";

/** K<keyBits>V<valueBits> with no eviction. */
export const QUANT_ONLY_NAMES: readonly string[] = ["K2V2", "K3V2", "K4V4"];

/** The scorers of the comparison (the list; "accumulated" needs attention weights the graph does not give). */
export const COMPARED_SCORERS: readonly ScorerName[] = ["keynorm", "key-key", "observed", "random"];

export interface VariantPlanOptions {
  presets?: readonly string[];
  quantOnly?: readonly string[];
  scorers?: readonly ScorerName[];
  /** The preset whose eviction fraction (and so ratio) the scorers are compared at. Default "balanced". */
  scorerPreset?: string;
}

export function parseQuantOnly(name: string): Partial<CompressionSpec> {
  const m = /^K([234])V([234])$/.exec(name);
  if (m === null) throw invalidArgument("quant-only variant", "K<2|3|4>V<2|3|4> such as K2V2", name);
  return { keyBits: Number(m[1]) as CodeBits, valueBits: Number(m[2]) as CodeBits, evictFraction: 0 };
}

export function planVariants(options: VariantPlanOptions = {}): Variant[] {
  const presets = options.presets ?? PRESET_NAMES;
  const quantOnly = options.quantOnly ?? QUANT_ONLY_NAMES;
  const scorers = options.scorers ?? COMPARED_SCORERS;
  const scorerPreset = options.scorerPreset ?? "balanced";
  for (const s of scorers) if (!SCORERS.includes(s)) throw invalidArgument("scorers", `names from ${SCORERS.join(", ")}`, s);

  const specs: Omit<Variant, "resolved" | "sameAs">[] = [
    { name: BASELINE, group: "baseline", preset: BASELINE, spec: {} },
    ...presets.map((p) => ({ name: getPreset(p).name, group: "preset" as const, preset: p, spec: {} })),
    ...quantOnly.map((q) => ({ name: q, group: "quant-only" as const, preset: "quant", spec: parseQuantOnly(q) })),
    ...(scorers.length === 0 ? [] : scorers.map((s) => ({ name: `${getPreset(scorerPreset).name}/${s}`, group: "scorer" as const, preset: scorerPreset, spec: { scorer: s } }))),
  ];
  const byKey = new Map<string, string>();
  const seen = new Set<string>();
  const variants: Variant[] = [];
  for (const v of specs) {
    if (seen.has(v.name)) continue; // a preset listed twice
    seen.add(v.name);
    const resolved = v.preset === BASELINE ? null : validateSpec({ ...DEFAULT_SPEC, ...getPreset(v.preset).spec, ...v.spec });
    const key = resolved === null ? BASELINE : JSON.stringify(resolved);
    const sameAs = byKey.get(key) ?? null;
    if (sameAs === null) byKey.set(key, v.name);
    variants.push({ ...v, resolved, sameAs });
  }
  return variants;
}

/** "K3V2, evict 60%, key-key" — what a row runs, for tables. */
export function describeSpec(spec: Readonly<CompressionSpec> | null): string {
  if (spec === null) return "FP16, nothing evicted";
  const evict = spec.evictFraction === 0 ? "no eviction" : `evict ${Math.round(spec.evictFraction * 100)}% (${spec.scorer})`;
  return `K${spec.keyBits}V${spec.valueBits}, ${evict}`;
}
