import { NexusQuantError, invalidArgument } from "../errors.js";

/** Bits per element of a lattice code. Each 8-element group stores one code of `bits` bytes. */
export type CodeBits = 2 | 3 | 4;
export const CODE_BITS: readonly CodeBits[] = [2, 3, 4];

export type ScorerName = "keynorm" | "key-key" | "observed" | "accumulated" | "random";
export const SCORERS: readonly ScorerName[] = ["keynorm", "key-key", "observed", "accumulated", "random"];

/** A complete description of how a cache is compressed. Presets are named instances of it. */
export interface CompressionSpec {
  keyBits: CodeBits;
  valueBits: CodeBits;
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

/** Checks every field, returning a frozen copy; throws INVALID_ARGUMENT naming the bad field. */
export function validateSpec(spec: CompressionSpec): Readonly<CompressionSpec> {
  if (spec === null || typeof spec !== "object") throw invalidArgument("spec", "a CompressionSpec object", spec);
  const { keyBits, valueBits, evictFraction, sinkTokens, recentWindow, scorer, residualWindow, pageTokens } = spec;
  if (!CODE_BITS.includes(keyBits)) throw invalidArgument("spec.keyBits", "2, 3 or 4", keyBits);
  if (!CODE_BITS.includes(valueBits)) throw invalidArgument("spec.valueBits", "2, 3 or 4", valueBits);
  if (typeof evictFraction !== "number" || !(evictFraction >= 0 && evictFraction < 1)) {
    throw invalidArgument("spec.evictFraction", "a number in [0, 1)", evictFraction);
  }
  checkCount("spec.sinkTokens", sinkTokens, evictFraction > 0 ? 1 : 0);
  checkCount("spec.recentWindow", recentWindow, 0);
  if (!SCORERS.includes(scorer)) throw invalidArgument("spec.scorer", `one of ${SCORERS.join(", ")}`, scorer);
  checkCount("spec.residualWindow", residualWindow, 0);
  checkCount("spec.pageTokens", pageTokens, 8);
  if (pageTokens % 8 !== 0) throw invalidArgument("spec.pageTokens", "a multiple of 8", pageTokens);
  return Object.freeze({ ...spec });
}

function checkCount(arg: string, value: unknown, min: number): void {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw invalidArgument(arg, `an integer >= ${min}`, value);
  }
}

/** Thrown for names that are not presets; lists the closest ones. */
export function unknownPresetError(name: string, known: readonly string[]): NexusQuantError {
  return new NexusQuantError(
    "UNKNOWN_PRESET",
    `Unknown preset ${JSON.stringify(name)}. Known presets: ${known.join(", ")}. Run \`nexusquant presets\` to compare them.`,
    { name, known: [...known] },
  );
}
