/**
 * The cache variants the harness compares: the FP16 baseline, every preset, quantization-only
 * specs (no eviction) and the eviction scorers at one preset's ratio, all on the native path (what
 * `withNexusQuant(await loadModel(dir))` runs); and comparison rows on the ORT-session wrapper's path:
 * presets as that wrapper runs them, and the scalar baselines. Variants whose path and resolved spec
 * are identical (K3V3 is `quant` and `S`; K2V2 is `high`; L is `balanced`; the preset's own scorer row
 * is the preset itself) are measured once and reported with `sameAs`, so no number is computed twice
 * or copied by hand.
 */
import { invalidArgument } from "../../src/errors.js";
import { DEFAULT_SPEC, PRESET_NAMES, SCORERS, getPreset, validateSpec, type SpecBits, type CompressionSpec, type ScorerName } from "../../src/format/index.js";
import type { PathName } from "./path.js";
import { parseScalarName, scalarBitsPerElement, scalarName, type ScalarSpec } from "./scalar-baselines.js";

export type VariantGroup = "baseline" | "preset" | "quant-only" | "scalar" | "scorer" | "sweep" | "ort" | "peer";

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
  /** A scalar baseline (KIVI, rotated uniform, TurboQuant-style) run by the harness instead of the cache. */
  scalar?: ScalarSpec;
  /** Which model path runs it: "native" (the default path users get) or "ort" (comparison rows). */
  path: PathName;
  /** The reconstruct scorer's re-read depth, when not the default (withNexusQuant's rereadLayers). */
  rereadLayers?: "all";
  /** Coded with the model's calibrated transform profile (docs/transform.md); native path only. */
  calibrated?: true;
}

export const BASELINE = "none";
/** The FP16 baseline of the ORT path, the reference of its comparison rows. */
export const ORT_BASELINE = "none (ORT)";
/** The row name of a preset run through the ORT-session wrapper. */
export const ortRowName = (preset: string) => `${preset} (ORT wrapper)`;
/** The row name of a llama.cpp KV cache type; its f16 row is that path's FP16 reference. */
export const peerRowName = (kv: string) => `llama.cpp ${kv}`;
export const PEER_BASELINE = peerRowName("f16");
/** llama.cpp's quantized KV cache types compared (bench/peer/llama-cpp.ts PEER_KV_TYPES; f16 is the reference). */
export const PEER_KV_COMPARED: readonly string[] = ["q8_0", "q4_0", "q8_0/q4_0"];

/** K<keyBits>V<valueBits> with no eviction. */
export const QUANT_ONLY_NAMES: readonly string[] = ["K2V2", "K3V2", "K3V3", "K4V4"];

/**
 * The scalar baselines at the lattice codes' bit widths (scalar-baselines.ts): KIVI 2/4-bit (group 64,
 * FP16 scale + zero), Hadamard-rotated uniform 2/4-bit, TurboQuant-style 2/3-bit (same bits as K?V?).
 */
export const SCALAR_BASELINE_NAMES: readonly string[] = ["KIVI-2", "KIVI-4", "Had-2", "Had-4", "Turbo-2", "Turbo-3"];

/**
 * The scorers of the comparison, on the native path (which gives observed the model's queries and
 * runs reconstruct's re-read). "accumulated" (H2O) is left out: it sums the attention of every query,
 * so it favours old tokens, and none of the literature we follow recommends it over the others.
 */
export const COMPARED_SCORERS: readonly ScorerName[] = ["keynorm", "key-key", "observed", "random", "reconstruct"];

/** Eviction fractions of the sweep (at the sweep preset's bits and scorer): where retrieval breaks. */
export const EVICTION_SWEEP: readonly number[] = [0, 0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9];

export interface VariantPlanOptions {
  presets?: readonly string[];
  quantOnly?: readonly string[];
  scorers?: readonly ScorerName[];
  /** The preset whose eviction fraction (and so ratio) the scorers are compared at. Default "balanced". */
  scorerPreset?: string;
  /** Scalar baselines by name (SCALAR_BASELINE_NAMES' form). Default none. */
  scalar?: readonly string[];
  /** Eviction fractions swept at `sweepPreset`'s bits and scorer. Default none. */
  sweep?: readonly number[];
  /** Default "balanced". */
  sweepPreset?: string;
  /** Presets also run through the ORT-session wrapper (comparison rows). Default none. */
  ortPresets?: readonly string[];
  /** llama.cpp KV cache types (q8_0, q4_0, q8_0/q4_0) run through node-llama-cpp. Default none. */
  peers?: readonly string[];
  /** Preset or quantization-only rows also run with the calibrated transform profile. Default none. */
  calibrated?: readonly string[];
}

/** The row name of a variant coded with the calibrated transform profile. */
export const calibratedRowName = (name: string) => `${name} (calibrated)`;

/** K<bits>V<bits> with no eviction; `calibrated` rows may also take 1 bit (a transform profile's budget). */
export function parseQuantOnly(name: string, calibrated = false): Partial<CompressionSpec> {
  const m = (calibrated ? /^K([1234])V([1234])$/ : /^K([234])V([234])$/).exec(name);
  if (m === null) throw invalidArgument("quant-only variant", calibrated ? "K<1-4>V<1-4> such as K2V1" : "K<2|3|4>V<2|3|4> such as K2V2", name);
  return { keyBits: Number(m[1]) as SpecBits, valueBits: Number(m[2]) as SpecBits, evictFraction: 0 };
}

export function planVariants(options: VariantPlanOptions = {}): Variant[] {
  const presets = options.presets ?? PRESET_NAMES;
  const quantOnly = options.quantOnly ?? QUANT_ONLY_NAMES;
  const scorers = options.scorers ?? COMPARED_SCORERS;
  const scorerPreset = options.scorerPreset ?? "balanced";
  const scalar = (options.scalar ?? []).map(parseScalarName);
  const sweepPreset = getPreset(options.sweepPreset ?? "balanced");
  for (const f of options.sweep ?? []) if (!(typeof f === "number" && f >= 0 && f < 1)) throw invalidArgument("sweep", "eviction fractions in [0, 1)", f);
  for (const s of scorers) if (!SCORERS.includes(s)) throw invalidArgument("scorers", `names from ${SCORERS.join(", ")}`, s);

  const ortPresets = (options.ortPresets ?? []).map((p) => getPreset(p).name);
  const native = "native" as const;
  const specs: Omit<Variant, "resolved" | "sameAs">[] = [
    { name: BASELINE, group: "baseline", preset: BASELINE, spec: {}, path: native },
    ...presets.map((p) => ({ name: getPreset(p).name, group: "preset" as const, preset: p, spec: {}, path: native })),
    ...quantOnly.map((q) => ({ name: q, group: "quant-only" as const, preset: "quant", spec: parseQuantOnly(q), path: native })),
    ...(scorers.length === 0 ? [] : scorers.map((s) => ({ name: `${getPreset(scorerPreset).name}/${s}`, group: "scorer" as const, preset: scorerPreset, spec: { scorer: s }, path: native }))),
    // The reconstruct scorer's re-read through every layer (the default stops at half of them).
    ...(scorers.includes("reconstruct") ? [{ name: `${getPreset(scorerPreset).name}/reconstruct-all-layers`, group: "scorer" as const, preset: scorerPreset, spec: { scorer: "reconstruct" as const }, path: native, rereadLayers: "all" as const }] : []),
    ...(options.sweep ?? []).map((f) => ({
      name: sweepName(sweepPreset.spec, f),
      group: "sweep" as const,
      preset: sweepPreset.name,
      spec: { evictFraction: f },
      path: native,
    })),
    // The ORT path's comparison rows: its own FP16 reference first, then presets as the wrapper runs them.
    ...(ortPresets.length + scalar.length > 0 ? [{ name: ORT_BASELINE, group: "ort" as const, preset: BASELINE, spec: {}, path: "ort" as const }] : []),
    ...ortPresets.map((p) => ({ name: ortRowName(p), group: "ort" as const, preset: p, spec: {}, path: "ort" as const })),
  ];
  // Rows re-run with the calibrated profile, right after the preset and quant-only rows they repeat.
  for (const name of options.calibrated ?? []) {
    // "K3V1" (no eviction), "balanced", or "balanced@K3V1" (a preset at other bits).
    const [base, bits] = name.split("@") as [string, string | undefined];
    const quant = /^K[1234]V[1234]$/.test(base);
    const preset = quant ? "quant" : getPreset(base).name;
    const { keyBits, valueBits } = bits === undefined ? {} : parseQuantOnly(bits, true);
    const spec = quant ? parseQuantOnly(base, true) : bits === undefined ? {} : { keyBits, valueBits };
    const rowName = quant ? base : bits === undefined ? preset : `${preset}@${bits}`;
    const row = { name: calibratedRowName(rowName), group: (quant ? "quant-only" : "preset") as VariantGroup, preset, spec, path: native, calibrated: true as const };
    specs.splice(specs.findIndex((v) => v.group !== "baseline" && v.group !== "preset" && v.group !== "quant-only") >>> 0, 0, row);
  }
  for (const kv of options.peers ?? []) if (!PEER_KV_COMPARED.includes(kv)) throw invalidArgument("peers", PEER_KV_COMPARED.join(", "), kv);
  const byKey = new Map<string, string>();
  const seen = new Set<string>();
  const variants: Variant[] = [];
  for (const v of specs) {
    if (seen.has(v.name)) continue; // a preset listed twice
    seen.add(v.name);
    const resolved = v.preset === BASELINE ? null : validateSpec({ ...DEFAULT_SPEC, ...getPreset(v.preset).spec, ...v.spec });
    const key = `${v.path}:${v.rereadLayers ?? ""}:${v.calibrated ? "calibrated" : ""}:${resolved === null ? BASELINE : JSON.stringify(resolved)}`;
    const sameAs = byKey.get(key) ?? null;
    if (sameAs === null) byKey.set(key, v.name);
    variants.push({ ...v, resolved, sameAs });
  }
  // llama.cpp's rows (its own path, after its f16 reference): no CompressionSpec either.
  if ((options.peers ?? []).length > 0) {
    for (const kv of ["f16", ...options.peers!]) {
      const name = peerRowName(kv);
      if (seen.has(name)) continue;
      seen.add(name);
      variants.push({ name, group: kv === "f16" ? "baseline" : "peer", preset: kv === "f16" ? BASELINE : kv, spec: {}, resolved: null, sameAs: null, path: "llama.cpp" });
    }
  }
  // Scalar baselines last (ORT path): they have no CompressionSpec, so nothing is shared with them.
  for (const spec of scalar) {
    const name = scalarName(spec);
    if (seen.has(name)) continue;
    seen.add(name);
    variants.push({ name, group: "scalar", preset: BASELINE, spec: {}, resolved: null, sameAs: null, scalar: spec, path: "ort" });
  }
  return variants;
}

/** The row name of an eviction-sweep point: the preset's bits and scorer at fraction f. */
export function sweepName(spec: Pick<CompressionSpec, "keyBits" | "valueBits" | "scorer">, f: number): string {
  return `K${spec.keyBits}V${spec.valueBits}/evict-${Math.round(f * 100)}% (${spec.scorer})`;
}

/** The FP16 reference row of a variant's path (what its ΔPPL, KL and top-1 compare with). */
export function referenceOf(v: Pick<Variant, "path">): string {
  return v.path === "ort" ? ORT_BASELINE : v.path === "llama.cpp" ? PEER_BASELINE : BASELINE;
}

/**
 * "K3V2, evict 60%, key-key" — what a row runs, for tables. On the ORT wrapper (`ortPath`) nothing
 * re-reads the prompt, so a reconstruct cache scores with its key-key fallback: the row says so.
 */
export function describeSpec(spec: Readonly<CompressionSpec> | null, scalar?: ScalarSpec, headDim = 64, peerKv?: string, ortPath = false): string {
  if (peerKv !== undefined) return `llama.cpp KV cache ${peerKv === BASELINE ? "f16" : peerKv} (every token kept; node-llama-cpp 3.21.1)`;
  if (scalar !== undefined) {
    const what = {
      kivi: `KIVI ${scalar.bits}-bit: keys per channel, values per token, group ${scalar.group ?? 64}, FP16 scale + zero`,
      hadamard: `Hadamard-rotated uniform ${scalar.bits}-bit per vector, FP16 scale + zero`,
      turbo: `Hadamard-rotated Lloyd–Max ${scalar.bits}-bit per vector, FP16 norm`,
    }[scalar.kind];
    return `${what} (${scalarBitsPerElement(scalar, headDim).toFixed(2)} bits/element), no eviction`;
  }
  if (spec === null) return "FP16, nothing evicted";
  const scorer = ortPath && spec.scorer === "reconstruct" ? "reconstruct, scored by its key-key fallback: no re-read on this path" : spec.scorer;
  const evict = spec.evictFraction === 0 ? "no eviction" : `evict ${Math.round(spec.evictFraction * 100)}% (${scorer})`;
  return `K${spec.keyBits}V${spec.valueBits}, ${evict}`;
}
