/**
 * The one small interface every store of conversation states implements: a value under a key, with
 * an optional time to live. What a store promises, whatever is behind it:
 *
 * - `get` returns a value exactly as some `put` stored it, or undefined: never a part of one, never a
 *   mix of two (a write that failed or is still running is not readable);
 * - `put` replaces the whole value; of two writers on one key, the last to finish wins, whole;
 * - every failure of the medium (unreachable, timed out, full disk) is a STORE_UNAVAILABLE error, after
 *   a bounded time, and leaves the previous value readable.
 */
import { NexusQuantError, invalidArgument } from "../errors.js";
import { checkFiniteNumber } from "../validate.js";

export interface PutOptions {
  /** Seconds until the value expires (reads as absent). Default: it never expires. */
  ttlSeconds?: number;
}

export interface StateStore {
  /** The value under `key`, or undefined when there is none (or it expired). */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Stores `value` under `key`, replacing what was there as a whole. */
  put(key: string, value: Uint8Array, options?: PutOptions): Promise<void>;
  /** Removes `key`; true when there was a value. */
  delete(key: string): Promise<boolean>;
  /** Releases what the store holds open (connections); optional. */
  close?(): Promise<void>;
}

/** Keys are what users and the prefix cache name states by: printable, and short enough for any store. */
export const MAX_KEY_LENGTH = 1024;

export function checkKey(key: unknown): string {
  // Control characters would make keys that print alike but differ.
  // eslint-disable-next-line no-control-regex
  if (typeof key !== "string" || key.length === 0 || key.length > MAX_KEY_LENGTH || /[\u0000-\u001f\u007f]/.test(key)) {
    throw invalidArgument("key", `a non-empty string of at most ${MAX_KEY_LENGTH} printable characters`, key);
  }
  return key;
}

export function checkValue(value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalidArgument("value", "a Uint8Array (e.g. from saveState())", value);
  return value;
}

/** The TTL in milliseconds (0: none). */
export function ttlMilliseconds(options: PutOptions | undefined): number {
  if (options?.ttlSeconds === undefined) return 0;
  const s = checkFiniteNumber("options.ttlSeconds", options.ttlSeconds, { min: 0.001, what: "a number of seconds > 0" });
  return Math.max(1, Math.round(s * 1000));
}

/** A STORE_UNAVAILABLE error naming the store, the operation and the cause. */
export function storeUnavailable(store: string, operation: string, cause: unknown, details: Record<string, unknown> = {}): NexusQuantError {
  if (cause instanceof NexusQuantError && cause.code === "STORE_UNAVAILABLE") return cause;
  const why = cause instanceof Error ? cause.message : String(cause);
  return new NexusQuantError("STORE_UNAVAILABLE", `${store}: ${operation} failed (${why}). Nothing was half-written: the previous value, if any, is still the one readable.`, {
    store,
    operation,
    ...details,
  });
}

/** Runs `work`, or rejects with STORE_UNAVAILABLE after `ms` (the work itself is not cancelled); its failures are STORE_UNAVAILABLE too. */
export async function withTimeout<T>(work: Promise<T>, ms: number, store: string, operation: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(storeUnavailable(store, operation, new Error(`no answer within ${ms} ms`), { timeoutMs: ms })), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } catch (e) {
    // Our own typed errors (a missing client package, corrupt data) pass as they are.
    throw e instanceof NexusQuantError ? e : storeUnavailable(store, operation, e);
  } finally {
    clearTimeout(timer);
  }
}
