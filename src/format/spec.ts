import { NexusQuantError, invalidArgument } from "../errors.js";
import { checkFiniteNumber, checkInt, checkObject, checkOneOf, checkOptionKeys } from "../validate.js";
import { FORMAT_LIMITS } from "./limits.js";

/** Bits per element of a lattice code. Each 8-element group stores one code of `bits` bytes. */
export type CodeBits = 2 | 3 | 4;
export const CODE_BITS: readonly CodeBits[] = [2, 3, 4];
/**
 * Bits per element a spec may give keys or values: the codes' 2, 3 and 4, and 1, which only a cache
 * with a calibrated transform profile can hold (docs/transform.md: bands at 2+ bits, the rest at 0;
 * there is no flat 1-bit code). Code bytes per vector are headDim / 8 × bits either way.
 */
export type SpecBits = 1 | CodeBits;
export const SPEC_BITS: readonly SpecBits[] = [1, 2, 3, 4];

export type ScorerName = "keynorm" | "key-key" | "observed" | "accumulated" | "random" | "reconstruct";
export const SCORERS: readonly ScorerName[] = ["keynorm", "key-key", "observed", "accumulated", "random", "reconstruct"];
/**
 * Each scorer's id in native code: the cache binding, the CUDA scorer launch and the serialized
 * header (format::Scorer in kernels/nq_format.h; the agreement test compares them).
 */
export const SCORER_IDS: Readonly<Record<ScorerName, number>> = Object.freeze({ keynorm: 0, "key-key": 1, observed: 2, accumulated: 3, random: 4, reconstruct: 5 });

/**
 * The scorers' default shape, where a cache's options leave it out: `scorerWindow`, the window of
 * key-key's proxy queries and of observed's observation queries; `poolKernel`, observed's max-pool
 * width (odd). format::kDefaultScorerWindow / kDefaultPoolKernel in kernels/nq_format.h (the
 * agreement test compares them).
 */
export const SCORER_DEFAULTS: Readonly<{ scorerWindow: number; poolKernel: number }> = Object.freeze({ scorerWindow: 32, poolKernel: 7 });

/** The scorer named by a native id (the inverse of SCORER_IDS); undefined for an unknown id. */
export function scorerFromId(id: number): ScorerName | undefined {
  return SCORERS.find((name) => SCORER_IDS[name] === id);
}

/** A complete description of how a cache is compressed. Presets are named instances of it. */
export interface CompressionSpec {
  /** 2, 3 or 4; 1 only with a calibrated transform profile (SpecBits). */
  keyBits: SpecBits;
  valueBits: SpecBits;
  /** Fraction of the evictable tokens (those outside the sinks and the recent window) removed, in [0, 1). */
  evictFraction: number;
  /** The first tokens of a sequence, always kept (attention sinks). At least 1 when evicting. */
  sinkTokens: number;
  /** The most recent tokens at compression time, always kept. */
  recentWindow: number;
  scorer: ScorerName;
  /** Tokens appended after a compression wait in an FP16 buffer of this capacity, quantized when it fills. */
  residualWindow: number;
  /** Tokens per storage page (a multiple of 8). */
  pageTokens: number;
}

export const DEFAULT_SPEC: Readonly<CompressionSpec> = Object.freeze({
  keyBits: 3,
  valueBits: 2,
  evictFraction: 0,
  sinkTokens: 4,
  recentWindow: 64,
  scorer: "key-key",
  residualWindow: 128,
  pageTokens: 64,
});

const SPEC_KEYS: readonly (keyof CompressionSpec)[] = Object.keys(DEFAULT_SPEC) as (keyof CompressionSpec)[];

/** The frozen specs validateSpec returned: checked once, never again (isValidatedSpec). */
const validated = new WeakSet<object>();

/**
 * True for a spec that validateSpec returned (every preset's spec is one): complete, within the
 * format's limits and frozen, so whoever receives it need not check it again.
 */
export function isValidatedSpec(spec: unknown): boolean {
  return typeof spec === "object" && spec !== null && validated.has(spec);
}

/**
 * Checks every field against the ranges the format supports (FORMAT_LIMITS), returning a frozen copy;
 * throws INVALID_ARGUMENT naming the bad field and its limit. Unknown keys (typos such as
 * `evictFracton`) are refused with the closest field name.
 */
export function validateSpec(spec: CompressionSpec): Readonly<CompressionSpec> {
  checkObject("spec", spec, "a CompressionSpec object");
  checkOptionKeys("spec", spec, SPEC_KEYS);
  const { keyBits, valueBits, evictFraction, sinkTokens, recentWindow, scorer, residualWindow, pageTokens } = spec;
  checkOneOf("spec.keyBits", keyBits, SPEC_BITS, "2, 3 or 4 (or 1 with a transform profile)");
  checkOneOf("spec.valueBits", valueBits, SPEC_BITS, "2, 3 or 4 (or 1 with a transform profile)");
  checkFiniteNumber("spec.evictFraction", evictFraction, { min: 0, max: 1, maxExclusive: true });
  const L = FORMAT_LIMITS;
  checkInt("spec.sinkTokens", sinkTokens, { min: evictFraction > 0 ? 1 : 0, max: L.maxWindowTokens, maxName: "FORMAT_LIMITS.maxWindowTokens" });
  checkInt("spec.recentWindow", recentWindow, { min: 0, max: L.maxWindowTokens, maxName: "FORMAT_LIMITS.maxWindowTokens" });
  if (sinkTokens + recentWindow > L.maxSequenceTokens) {
    throw invalidArgument("spec.sinkTokens + spec.recentWindow", `at most ${L.maxSequenceTokens} (positions are int32)`, sinkTokens + recentWindow);
  }
  checkOneOf("spec.scorer", scorer, SCORERS, `one of ${SCORERS.join(", ")}`);
  checkInt("spec.residualWindow", residualWindow, { min: 0, max: L.maxResidualWindow, maxName: "FORMAT_LIMITS.maxResidualWindow" });
  checkInt("spec.pageTokens", pageTokens, { min: 8, max: L.maxPageTokens, maxName: "FORMAT_LIMITS.maxPageTokens" });
  if (pageTokens % 8 !== 0) throw invalidArgument("spec.pageTokens", "a multiple of 8", pageTokens);
  const checked = Object.freeze({ ...spec });
  validated.add(checked);
  return checked;
}

/** Thrown for names that are not presets; lists the closest ones. */
export function unknownPresetError(name: string, known: readonly string[]): NexusQuantError {
  return new NexusQuantError(
    "UNKNOWN_PRESET",
    `Unknown preset ${JSON.stringify(name)}. Known presets: ${known.join(", ")}. Run \`nexusquant presets\` to compare them.`,
    { name, known: [...known] },
  );
}
