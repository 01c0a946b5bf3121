/**
 * The saved-state format: what `lm.saveState()` returns and `withNexusQuant(model, { state })` /
 * `lm.restoreState(bytes)` take back. One conversation of one handle, self-contained:
 *
 *   "NQST" | u32 version | u32 header length | header (JSON, UTF-8) | cache blob | engine blob | u32 CRC-32
 *
 * - the header: which engine saved it ("native" or "ort"), the model's fingerprint, the preset, the
 *   full spec, the compress schedule (interval and decode tokens since the last compression), the
 *   native prefill chunk, each row's true length and pending (sampled, not yet fed) token, and the
 *   sizes of the two blobs;
 * - the cache blob: CompressedKVCache.serialize(), kept opaque (it carries its own magic, version
 *   and CRC; CompressedKVCache.deserialize judges it), so a new cache format needs no new state format;
 * - the engine blob: the native engine's state beyond the cache that the next steps read: per row,
 *   the tokens appended since the last compression (the reconstruct scorer re-reads them) and the
 *   observed scorer's last query window per layer;
 * - the CRC-32 of everything before it.
 *
 * All integers little-endian. Everything that fails a check is CORRUPT_DATA naming what failed, except
 * a version newer than this build reads (UNSUPPORTED: upgrade).
 */
import { NexusQuantError, describeValue } from "../errors.js";
import { validateSpec, type CompressionSpec } from "../format/index.js";
import type { ModelFingerprint } from "../model/fingerprint.js";
import { CompressedKVCache } from "../runtime/index.js";
import type { TransformProfile } from "../transform/profile.js";
import { crc32 } from "../shared/crc32.js";
import { ConversationCache, type ConversationShape, type ConversationSnapshot } from "./conversation-cache.js";

export const STATE_MAGIC = "NQST";
/** The version this build writes and the newest it reads. */
export const STATE_FORMAT_VERSION = 1;
/** magic + version + header length. */
const PREAMBLE_BYTES = 12;
const CRC_BYTES = 4;
/** A header is a few hundred bytes plus a few per row; anything near this is not one. */
const MAX_HEADER_BYTES = 16 * 1024 * 1024;

/** Which engine saved a conversation; a state resumes only on a handle of the same kind. */
export type StateKind = "native" | "ort";

/** The observed scorer's window of one row: per layer [queryHeads, window, headDim], and how many queries it holds. */
export interface ObservedWindow {
  queries: Float32Array[];
  count: number;
}

/** The native engine's state beyond the cache, which the next steps read. */
export interface NativeEngineSnapshot {
  /** Per row: the token ids appended since the last compression (re-read by the reconstruct scorer). */
  sinceCompression: number[][];
  /** Per row: the observed scorer's last queries (undefined where none were kept yet). */
  observed: (ObservedWindow | undefined)[];
}

/** What an engine hands over to be saved, and takes back to resume. */
export interface EngineConversation {
  kind: StateKind;
  /** CompressedKVCache.serialize() of the conversation's cache. */
  cache: Uint8Array;
  conversation: ConversationSnapshot;
  /** Native path: prompt tokens per prefill chunk (later prompts are cut at the same places). */
  prefillChunk?: number;
  /** Native path: the layers a reconstruct re-read runs through (withNexusQuant's rereadLayers). */
  rereadLayers?: number | "half" | "all";
  /** Native path: the engine's own state. */
  native?: NativeEngineSnapshot;
}

/** A decoded state. */
export interface SavedConversation extends EngineConversation {
  version: number;
  model: ModelFingerprint;
  /** Per row: the last sampled token not yet fed to the model (generate({ continue: true }) feeds it first). */
  pending: (number | undefined)[];
}

/** The JSON header as written. */
interface StateHeader {
  kind: StateKind;
  model: ModelFingerprint;
  preset: string;
  spec: CompressionSpec | null;
  compressEvery: number;
  sinceCompression: number;
  compressions: number;
  prefillChunk: number | null;
  rereadLayers: number | "half" | "all" | null;
  lengths: number[];
  pending: (number | null)[];
  cacheBytes: number;
  /** Native engine blob: tokens since the last compression per row, observed query counts per row (null: none), floats per layer window. */
  engine: { since: number[]; observed: (number | null)[]; layers: number; windowFloats: number } | null;
}

/** Encodes a conversation for saveState(). */
export function encodeConversationState(saved: Omit<SavedConversation, "version">): Uint8Array {
  const { conversation, native } = saved;
  const rows = conversation.lengths.length;
  let layers = 0;
  let windowFloats = 0;
  for (const o of native?.observed ?? []) {
    if (o === undefined) continue;
    layers = o.queries.length;
    windowFloats = o.queries[0]?.length ?? 0;
  }
  const header: StateHeader = {
    kind: saved.kind,
    model: { id: saved.model.id, covers: saved.model.covers },
    preset: conversation.preset,
    spec: conversation.spec === null ? null : { ...conversation.spec },
    compressEvery: conversation.schedule.every,
    sinceCompression: conversation.schedule.since,
    compressions: conversation.compressions,
    prefillChunk: saved.prefillChunk ?? null,
    rereadLayers: saved.rereadLayers ?? null,
    lengths: [...conversation.lengths],
    pending: Array.from({ length: rows }, (_, b) => saved.pending[b] ?? null),
    cacheBytes: saved.cache.byteLength,
    engine:
      native === undefined
        ? null
        : {
            since: Array.from({ length: rows }, (_, b) => native.sinceCompression[b]?.length ?? 0),
            observed: Array.from({ length: rows }, (_, b) => native.observed[b]?.count ?? null),
            layers,
            windowFloats,
          },
  };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const engineBytes = engineBlobBytes(header);
  const total = PREAMBLE_BYTES + json.byteLength + saved.cache.byteLength + engineBytes + CRC_BYTES;
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out.set(new TextEncoder().encode(STATE_MAGIC), 0);
  view.setUint32(4, STATE_FORMAT_VERSION, true);
  view.setUint32(8, json.byteLength, true);
  out.set(json, PREAMBLE_BYTES);
  let at = PREAMBLE_BYTES + json.byteLength;
  out.set(saved.cache, at);
  at += saved.cache.byteLength;
  if (native !== undefined) {
    for (let b = 0; b < rows; b++) {
      for (const t of native.sinceCompression[b] ?? []) {
        view.setUint32(at, t, true);
        at += 4;
      }
    }
    for (let b = 0; b < rows; b++) {
      const o = native.observed[b];
      if (o === undefined) continue;
      for (const q of o.queries) {
        for (let i = 0; i < q.length; i++) view.setFloat32(at + 4 * i, q[i]!, true);
        at += 4 * q.length;
      }
    }
  }
  view.setUint32(at, crc32(out.subarray(0, at)), true);
  return out;
}

function engineBlobBytes(h: Pick<StateHeader, "engine">): number {
  const e = h.engine;
  if (e === null) return 0;
  const tokens = e.since.reduce((a, n) => a + n, 0);
  const windows = e.observed.filter((c) => c !== null).length;
  return 4 * tokens + 4 * windows * e.layers * e.windowFloats;
}

function corrupt(what: string, details?: Record<string, unknown>): NexusQuantError {
  return new NexusQuantError("CORRUPT_DATA", `Not a valid nexusquant conversation state: ${what}`, details);
}

/** Reads the fixed preamble: magic and version (UNSUPPORTED when newer than this build). */
function checkPreamble(bytes: Uint8Array): { version: number; headerBytes: number } {
  if (!(bytes instanceof Uint8Array)) {
    throw new NexusQuantError("INVALID_ARGUMENT", `Expected a Uint8Array (from saveState()) for state but received ${describeValue(bytes)}`, { arg: "state" });
  }
  if (bytes.byteLength < PREAMBLE_BYTES + CRC_BYTES) throw corrupt(`truncated: ${bytes.byteLength} bytes, fewer than the ${PREAMBLE_BYTES + CRC_BYTES} of an empty state`);
  const magic = new TextDecoder().decode(bytes.subarray(0, 4));
  if (magic !== STATE_MAGIC) {
    const hint = magic === "NQKV" ? " (these are the bytes of a CompressedKVCache: load them with CompressedKVCache.deserialize)" : "";
    throw corrupt(`bad magic ${JSON.stringify(magic)} (expected "${STATE_MAGIC}")${hint}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(4, true);
  if (version > STATE_FORMAT_VERSION) {
    throw new NexusQuantError(
      "UNSUPPORTED",
      `This conversation state was saved by a newer nexusquant (state format version ${version}); this build reads version ${STATE_FORMAT_VERSION} and older. Upgrade nexusquant on this worker, or save the state with the version every worker runs.`,
      { version, supported: STATE_FORMAT_VERSION },
    );
  }
  if (version < 1) throw corrupt(`invalid version ${version}`);
  return { version, headerBytes: view.getUint32(8, true) };
}

/** Decodes and checks a state (CRC, sizes, every header field). The cache blob is checked when it is deserialized. */
export function decodeConversationState(bytes: Uint8Array): SavedConversation {
  const { version, headerBytes } = checkPreamble(bytes);
  const end = bytes.byteLength - CRC_BYTES;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (crc32(bytes.subarray(0, end)) !== view.getUint32(end, true)) throw corrupt("checksum mismatch (the bytes were truncated or modified)");
  if (headerBytes > Math.min(MAX_HEADER_BYTES, end - PREAMBLE_BYTES)) throw corrupt(`the header length ${headerBytes} exceeds the data`);
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + headerBytes)));
  } catch (e) {
    throw corrupt(`the header is not valid JSON (${(e as Error).message})`);
  }
  const h = checkHeader(raw);
  const cacheAt = PREAMBLE_BYTES + headerBytes;
  const engineAt = cacheAt + h.cacheBytes;
  const declared = engineAt + engineBlobBytes(h);
  if (declared !== end) throw corrupt(`the header declares ${declared + CRC_BYTES} bytes but the state has ${bytes.byteLength}`);
  const saved: SavedConversation = {
    version,
    kind: h.kind,
    model: h.model,
    cache: bytes.slice(cacheAt, engineAt),
    conversation: { preset: h.preset, spec: h.spec, lengths: h.lengths, schedule: { every: h.compressEvery, since: h.sinceCompression }, compressions: h.compressions },
    pending: h.pending.map((t) => (t === null ? undefined : t)),
  };
  if (h.prefillChunk !== null) saved.prefillChunk = h.prefillChunk;
  if (h.rereadLayers !== null) saved.rereadLayers = h.rereadLayers;
  if (h.engine !== null) saved.native = readEngineBlob(bytes, engineAt, h.engine);
  return saved;
}

function readEngineBlob(bytes: Uint8Array, at: number, e: NonNullable<StateHeader["engine"]>): NativeEngineSnapshot {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const sinceCompression = e.since.map((n) => {
    const tokens: number[] = [];
    for (let i = 0; i < n; i++, at += 4) tokens.push(view.getUint32(at, true));
    return tokens;
  });
  const observed = e.observed.map((count) => {
    if (count === null) return undefined;
    const queries = Array.from({ length: e.layers }, () => {
      const q = new Float32Array(e.windowFloats);
      for (let i = 0; i < q.length; i++, at += 4) q[i] = view.getFloat32(at, true);
      return q;
    });
    return { queries, count };
  });
  return { sinceCompression, observed };
}

const isCount = (v: unknown, min = 0): v is number => Number.isSafeInteger(v) && (v as number) >= min;

/** Checks every header field; the message names the first that fails. */
function checkHeader(raw: unknown): StateHeader {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw corrupt("the header is not a JSON object");
  const h = raw as Record<string, unknown>;
  const field = (name: string, ok: boolean, expected: string) => {
    if (!ok) throw corrupt(`header field "${name}" is ${describeValue(h[name])}; expected ${expected}`, { field: name });
  };
  field("kind", h.kind === "native" || h.kind === "ort", '"native" or "ort"');
  const model = h.model as Record<string, unknown> | null;
  field("model", typeof model === "object" && model !== null && typeof model.id === "string" && typeof model.covers === "string", "{ id, covers } (the model fingerprint)");
  field("preset", typeof h.preset === "string" && h.preset.length > 0, "a preset name");
  let spec: CompressionSpec | null = null;
  if (h.spec !== null) {
    try {
      spec = validateSpec(h.spec as CompressionSpec) as CompressionSpec;
    } catch (e) {
      throw corrupt(`header field "spec" is not a valid compression spec (${(e as Error).message})`, { field: "spec" });
    }
  }
  field("compressEvery", isCount(h.compressEvery, 1), "an integer ≥ 1");
  field("sinceCompression", isCount(h.sinceCompression), "an integer ≥ 0");
  field("compressions", isCount(h.compressions), "an integer ≥ 0");
  field("prefillChunk", h.prefillChunk === null || isCount(h.prefillChunk, 1), "null or an integer ≥ 1");
  // Absent in states written before the option existed: null, the engine's default then applies.
  h.rereadLayers ??= null;
  field("rereadLayers", h.rereadLayers === null || h.rereadLayers === "half" || h.rereadLayers === "all" || isCount(h.rereadLayers, 1), 'null, "half", "all" or an integer ≥ 1');
  const lengths = h.lengths as unknown[];
  field("lengths", Array.isArray(lengths) && lengths.length >= 1 && lengths.every((n) => isCount(n)), "one true length (integer ≥ 0) per row");
  const rows = lengths.length;
  field("pending", Array.isArray(h.pending) && h.pending.length === rows && h.pending.every((t) => t === null || isCount(t)), `${rows} token ids or nulls`);
  field("cacheBytes", isCount(h.cacheBytes, 1), "an integer ≥ 1");
  const e = h.engine as Record<string, unknown> | null;
  if (e !== null) {
    const ok =
      typeof e === "object" &&
      Array.isArray(e.since) &&
      e.since.length === rows &&
      e.since.every((n) => isCount(n)) &&
      Array.isArray(e.observed) &&
      e.observed.length === rows &&
      e.observed.every((c) => c === null || isCount(c)) &&
      isCount(e.layers) &&
      isCount(e.windowFloats);
    field("engine", ok, `null or { since, observed } with one entry per row (${rows})`);
  }
  if (h.kind === "native") field("engine", e !== null, "the native engine's state (a native state always has one)");
  return { ...(h as unknown as StateHeader), spec };
}

/** The options of a handle that decide its next tokens: a state resumes only where they are the same. */
export interface StateOptions {
  spec: Readonly<CompressionSpec> | null;
  compressEvery: number;
  /** The native path's prefill chunk (where later prompts are cut, and so when they are compressed). */
  prefillChunk?: number;
  /** The native path's re-read depth (the reconstruct scorer's scores). */
  rereadLayers?: number | "half" | "all";
}

const ENGINE_NAMES: Record<StateKind, string> = { native: "native path (a loaded checkpoint)", ort: "onnxruntime-node session wrapper" };

/** Two specs (or two "none") that compress identically. */
export function sameSpec(a: Readonly<CompressionSpec> | null, b: Readonly<CompressionSpec> | null): boolean {
  if (a === null || b === null) return a === b;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)] as (keyof CompressionSpec)[]);
  return [...keys].every((k) => a[k] === b[k]);
}

/** Refuses a state saved by another kind of engine (INVALID_ARGUMENT). */
export function checkStateKind(saved: Pick<EngineConversation, "kind">, kind: StateKind): void {
  if (saved.kind !== kind) {
    throw new NexusQuantError("INVALID_ARGUMENT", `This conversation state was saved by the ${ENGINE_NAMES[saved.kind]}; it resumes only there, not on the ${ENGINE_NAMES[kind]}.`, { arg: "state", kind: saved.kind });
  }
}

/** Refuses a state of another engine, or saved with options that would make the next tokens differ (INVALID_ARGUMENT). */
export function checkStateOptions(saved: EngineConversation, kind: StateKind, options: StateOptions): void {
  checkStateKind(saved, kind);
  const s = saved.conversation;
  const differ: string[] = [];
  if (!sameSpec(s.spec, options.spec)) differ.push(`spec ${JSON.stringify(s.spec)} (preset "${s.preset}") vs ${JSON.stringify(options.spec)}`);
  if (s.schedule.every !== options.compressEvery) differ.push(`compressEvery ${s.schedule.every} vs ${options.compressEvery}`);
  if (kind === "native" && saved.prefillChunk !== options.prefillChunk) differ.push(`prefillChunk ${saved.prefillChunk} vs ${options.prefillChunk}`);
  if (kind === "native" && saved.rereadLayers !== undefined && saved.rereadLayers !== options.rereadLayers) differ.push(`rereadLayers ${JSON.stringify(saved.rereadLayers)} vs ${JSON.stringify(options.rereadLayers)}`);
  if (differ.length > 0) {
    throw new NexusQuantError(
      "INVALID_ARGUMENT",
      `This conversation state was saved with other options than this handle's, and they decide the next tokens (state vs handle: ${differ.join("; ")}). ` +
        "Resume it with withNexusQuant(model, { state }), which takes them from the state, or on a handle made with the same options.",
      { arg: "state" },
    );
  }
}

/**
 * Deserializes a saved cache and resumes its conversation around it. A cache that does not fit the
 * model's shape is MODEL_MISMATCH; a cache blob or snapshot that fails its checks is CORRUPT_DATA; a
 * cache coded with a transform profile needs the handle's to be that profile (PROFILE_MISMATCH).
 */
export function resumedCache(saved: EngineConversation, shape: Omit<ConversationShape, "batch">, profile?: TransformProfile): ConversationCache {
  let cache: CompressedKVCache;
  try {
    cache = CompressedKVCache.deserialize(saved.cache, profile !== undefined ? { profile } : {});
  } catch (e) {
    if (e instanceof NexusQuantError && e.code === "CORRUPT_DATA") throw corrupt(`its cache section: ${e.message}`, e.details);
    throw e;
  }
  try {
    const mine = [shape.layers, shape.kvHeads, shape.headDim, shape.queryHeads ?? shape.kvHeads];
    const theirs = [cache.layers, cache.kvHeads, cache.headDim, cache.queryHeads];
    if (mine.some((v, i) => v !== theirs[i])) {
      throw new NexusQuantError(
        "MODEL_MISMATCH",
        `This conversation state holds a cache of ${theirs[0]} layers × ${theirs[1]} KV heads × head_dim ${theirs[2]} (${theirs[3]} query heads); this model has ${mine[0]} × ${mine[1]} × ${mine[2]} (${mine[3]}). It was saved on another model.`,
        { state: theirs, model: mine },
      );
    }
    try {
      return ConversationCache.resume(cache, saved.conversation);
    } catch (e) {
      if (e instanceof NexusQuantError && e.code === "INVALID_ARGUMENT") throw corrupt(`its conversation does not fit its cache (${e.message})`);
      throw e;
    }
  } catch (e) {
    cache.dispose();
    throw e;
  }
}
