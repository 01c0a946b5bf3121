/**
 * The one module of argument validators. Every public entry point checks its input with these
 * before anything reaches native code ("TypeScript validates, native trusts"), and every failure is
 * a NexusQuantError whose message has the one shape "Expected <what> for <arg> but received <value>".
 *
 * It sits beside errors.ts, below every layer, because src/format (which may import nothing else)
 * validates specs and shapes with it too. Ranges come from src/format/limits.ts.
 */
import { NexusQuantError, describeValue, invalidArgument } from "./errors.js";

// ---------------------------------------------------------------------------------------------
// Numbers

export interface IntRange {
  min?: number;
  max?: number;
  /** What the maximum is, for the message: e.g. "FORMAT_LIMITS.maxPageTokens". */
  maxName?: string;
}

/** A safe integer in [min, max] (defaults: 0 and Number.MAX_SAFE_INTEGER); the error names the range. */
export function checkInt(arg: string, value: unknown, { min = 0, max = Number.MAX_SAFE_INTEGER, maxName }: IntRange = {}): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]${maxName ? ` (${maxName})` : ""}`;
    throw new NexusQuantError("INVALID_ARGUMENT", `Expected ${range} for ${arg} but received ${describeValue(value)}`, {
      arg,
      min,
      ...(max === Number.MAX_SAFE_INTEGER ? {} : { max }),
    });
  }
  return value;
}

/** An integer >= min (default 1), at most max when given. */
export function checkPositiveInt(arg: string, value: unknown, min = 1, max?: number, maxName?: string): number {
  return checkInt(arg, value, { min, ...(max === undefined ? {} : { max }), ...(maxName === undefined ? {} : { maxName }) });
}

/** Token id(s): one integer >= 0 or an array of them (empty allowed), as a new array. */
export function checkTokenIds(arg: string, value: unknown): number[] {
  const list = typeof value === "number" ? [value] : value;
  if (!Array.isArray(list)) throw invalidArgument(arg, "a token id or an array of token ids", value);
  return list.map((id, i) => checkInt(Array.isArray(value) ? `${arg}[${i}]` : arg, id));
}

/** An index into [0, limit). */
export function checkIndex(arg: string, value: unknown, limit: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value >= limit) {
    throw invalidArgument(arg, `an integer in [0, ${limit})`, value);
  }
  return value;
}

/** A 32-bit unsigned seed. */
export function checkSeed(arg: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 0xffffffff) throw invalidArgument(arg, "a uint32", value);
  return value;
}

/** A finite number, optionally bounded (inclusive unless `maxExclusive`). */
export function checkFiniteNumber(arg: string, value: unknown, range: { min?: number; max?: number; maxExclusive?: boolean; what?: string } = {}): number {
  const { min = -Infinity, max = Infinity, maxExclusive = false } = range;
  const ok = typeof value === "number" && Number.isFinite(value) && value >= min && (maxExclusive ? value < max : value <= max);
  if (!ok) {
    const what = range.what ?? (min === -Infinity && max === Infinity ? "a finite number" : `a number in [${min}, ${max}${maxExclusive ? ")" : "]"}`);
    throw invalidArgument(arg, what, value);
  }
  return value as number;
}

export function checkBoolean(arg: string, value: unknown): boolean {
  if (typeof value !== "boolean") throw invalidArgument(arg, "a boolean (true or false)", value);
  return value;
}

/** One of a fixed list of values (strings or numbers). */
export function checkOneOf<T extends string | number>(arg: string, value: unknown, allowed: readonly T[], what?: string): T {
  if (!allowed.includes(value as T)) throw invalidArgument(arg, what ?? `one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`, value);
  return value as T;
}

// ---------------------------------------------------------------------------------------------
// Option objects

/** A plain options object (not null, not an array). */
export function checkObject(arg: string, value: unknown, what = "an options object"): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw invalidArgument(arg, what, value);
  return value as Record<string, unknown>;
}

/**
 * Strict options: a key that is not one of `known` is refused with the closest known name, so a
 * typo (`prest`, `evictFracton`) fails loudly instead of being silently ignored. Keys whose value is
 * undefined are allowed through: they cannot change anything.
 */
export function checkOptionKeys(arg: string, value: object, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (known.includes(key) || (value as Record<string, unknown>)[key] === undefined) continue;
    const suggestion = closestName(key, known);
    throw new NexusQuantError(
      "INVALID_ARGUMENT",
      `Unknown option ${arg}.${key}${suggestion ? `; did you mean ${suggestion}?` : ""} Known options of ${arg}: ${known.join(", ")}.`,
      { arg: `${arg}.${key}`, ...(suggestion ? { suggestion } : {}), known: [...known] },
    );
  }
}

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/**
 * The candidate a misspelt name most likely meant (case-insensitive edit distance at most a third of
 * its length, at least 2; or a prefix of it), or undefined when nothing is close.
 */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  let best: { name: string; distance: number } | undefined;
  for (const c of candidates) {
    const other = c.toLowerCase();
    // A prefix (memoryLimit for memoryLimitBytes) counts as close whatever its length.
    const distance = other.startsWith(lower) || lower.startsWith(other) ? 1 : editDistance(lower, other);
    if (best === undefined || distance < best.distance) best = { name: c, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(name.length / 3)) ? best.name : undefined;
}

// ---------------------------------------------------------------------------------------------
// Typed arrays

/** Typed arrays the runtime accepts for K/V data: f32 values or FP16 bit patterns. */
export type KVData = Float32Array | Uint16Array;

/** Throws unless `value` is a usable (non-shared, attached, non-empty) Float32Array or Uint16Array. */
export function checkKVData(arg: string, value: unknown, { allowEmpty = false } = {}): asserts value is KVData {
  if (!(value instanceof Float32Array) && !(value instanceof Uint16Array)) {
    throw invalidArgument(arg, "a Float32Array or a Uint16Array of FP16 bits", value);
  }
  checkBuffer(arg, value, allowEmpty);
}

export function checkFloat32(arg: string, value: unknown, { allowEmpty = false } = {}): asserts value is Float32Array {
  if (!(value instanceof Float32Array)) throw invalidArgument(arg, "a Float32Array", value);
  checkBuffer(arg, value, allowEmpty);
}

/** INVALID_DATA naming the first NaN/Inf element. */
export function checkFinite(arg: string, values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!)) {
      throw new NexusQuantError("INVALID_DATA", `${arg}[${i}] is ${values[i]}; every element must be finite`, { arg, index: i });
    }
  }
}

/**
 * INVALID_DATA unless every f32 element is finite and within ±maxAbs (the FP16 range: what the
 * cache can hold and one FP16 scale per vector can represent). Names the first bad vector.
 */
export function checkFiniteWithin(arg: string, values: Float32Array, maxAbs: number, vectorLength: number): void {
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!;
    if (!(x >= -maxAbs && x <= maxAbs)) {
      throw new NexusQuantError(
        "INVALID_DATA",
        `${arg}[${i}] (vector ${Math.floor(i / vectorLength)}) is ${x}: values must be finite and within ±${maxAbs} (the FP16 range, as in the cache); scale the data first`,
        { arg, index: i, vector: Math.floor(i / vectorLength) },
      );
    }
  }
}

function checkBuffer(arg: string, value: ArrayBufferView, allowEmpty: boolean): void {
  if (typeof SharedArrayBuffer !== "undefined" && value.buffer instanceof SharedArrayBuffer) {
    // Native code reads the memory off the JS thread; a shared buffer could change underneath it.
    throw invalidArgument(arg, "a typed array over a regular ArrayBuffer (copy it out of the SharedArrayBuffer first)", value);
  }
  if (isDetached(value.buffer as ArrayBuffer)) {
    throw new NexusQuantError("INVALID_ARGUMENT", `${arg} is backed by a detached ArrayBuffer (it was transferred); pass a live array`, { arg });
  }
  if (!allowEmpty && value.byteLength === 0) throw new NexusQuantError("INVALID_ARGUMENT", `${arg} is empty; pass at least one vector`, { arg });
}

/** Node 20 has no ArrayBuffer.prototype.detached; constructing a view over a detached buffer throws. */
function isDetached(buffer: ArrayBuffer): boolean {
  if ((buffer as ArrayBuffer & { detached?: boolean }).detached !== undefined) return (buffer as ArrayBuffer & { detached: boolean }).detached;
  if (buffer.byteLength !== 0) return false;
  try {
    new Uint8Array(buffer);
    return false;
  } catch {
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// tfjs tensors

/**
 * A @tensorflow/tfjs tensor, recognised by its shape rather than imported: tfjs is an optional peer
 * (pure-JS @tensorflow/tfjs-core; tfjs-node cannot install here, docs/integrations.md).
 */
export interface TfjsTensorLike {
  dtype: string;
  shape: number[];
  dataSync(): ArrayLike<number>;
  isDisposed?: boolean;
}

export function isTfjsTensor(value: unknown): value is TfjsTensorLike {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as TfjsTensorLike).dataSync === "function" &&
    typeof (value as TfjsTensorLike).dtype === "string" &&
    Array.isArray((value as TfjsTensorLike).shape)
  );
}

/**
 * Typed arrays pass through unchanged; a float32 tfjs tensor becomes a Float32Array of its values
 * (read with dataSync, in row-major order of its shape). Anything else is returned as is for the
 * caller's own check to reject.
 */
export function fromTensor(arg: string, value: unknown): unknown {
  if (!isTfjsTensor(value)) return value;
  if (value.isDisposed === true) throw new NexusQuantError("INVALID_ARGUMENT", `${arg} is a disposed tfjs tensor`, { arg });
  if (value.dtype !== "float32") throw invalidArgument(arg, "a float32 tfjs tensor", `a ${value.dtype} tensor`);
  const data = value.dataSync();
  return data instanceof Float32Array ? data : Float32Array.from(data);
}
