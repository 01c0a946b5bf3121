/**
 * A StateStore in Redis, shared by every worker that reaches it. The client is node-redis (the npm
 * package `redis`, ≥ 5), an optional peer dependency loaded only when a RedisStateStore first
 * connects; or pass a connected client of your own.
 *
 * A value is never one giant Redis value: it is cut into chunks of `chunkBytes` (default 1 MiB), each
 * its own key named after this write (a random id), and a small manifest under the key names the
 * write, its chunk count, its size and its CRC-32. The manifest is set last, by one Lua script that
 * first checks that every chunk is there, so:
 *
 * - a reader sees a whole value or none: a write that fails half-way has no manifest pointing at its
 *   chunks, which expire (`pendingTtlMs`) and are deleted on the spot when Redis can still be reached;
 * - of two writers on one key, the last commit wins whole (their chunks never share a key);
 * - a reader that fetched the old manifest still finds its chunks for `readGraceMs` after it was
 *   replaced, and re-reads the manifest if they are gone.
 *
 * All keys of one value carry the same hash tag ({key}), so they stay in one slot of a cluster.
 * Every command is bounded by `timeoutMs`: unreachable, stalled or refusing Redis is a
 * STORE_UNAVAILABLE error after at most that long per command, and the previous value stays readable.
 */
import { randomUUID } from "node:crypto";
import { NexusQuantError, invalidArgument } from "../errors.js";
import { crc32 } from "../shared/crc32.js";
import { importOptionalPeer } from "../shared/optional-peer.js";
import { checkInt } from "../validate.js";
import { checkKey, checkValue, storeUnavailable, ttlMilliseconds, withTimeout, type PutOptions, type StateStore } from "./state-store.js";

/** What the store uses of a node-redis client: raw commands, with binary replies where asked. */
export interface RedisClientLike {
  sendCommand(args: readonly (string | Buffer)[], options?: { typeMapping?: Record<number, unknown> }): Promise<unknown>;
}

export interface RedisStateStoreOptions {
  /** A connected node-redis client; the store does not close it. Give this or `url`. */
  client?: RedisClientLike;
  /** Where to connect (`redis://host:port`); the store makes the client (package `redis`) and close() ends it. */
  url?: string;
  /** Prefix of every key the store writes (default "nexusquant:"). */
  prefix?: string;
  /** Bytes per chunk (default 1 MiB; 1 KiB to 64 MiB). */
  chunkBytes?: number;
  /** Longest wait for one command (and for connecting), in ms (default 5000). */
  timeoutMs?: number;
  /** How long the chunks of a replaced value stay for readers that fetched its manifest, in ms (default 30000). */
  readGraceMs?: number;
  /** Expiry of the chunks of a write until its commit (what a writer that dies leaves behind), in ms (default 600000). */
  pendingTtlMs?: number;
}

/** RESP's bulk string type ("$"): mapped to Buffer so that values come back as bytes, not text. */
const RESP_BLOB_STRING = 36;
const AS_BYTES = { typeMapping: { [RESP_BLOB_STRING]: Buffer } };
const MANIFEST_TAG = "nq1";
/** Chunks fetched per MGET: replies stay a few chunks big. */
const CHUNKS_PER_READ = 8;
/** Reads that find a chunk gone re-read the manifest this many times (a writer replaced it meanwhile). */
const READ_ATTEMPTS = 4;

/**
 * Commit: KEYS[1] manifest; ARGV manifest value, TTL ms (0: none), chunk key prefix, chunk count,
 * grace ms. Refuses if a chunk is missing; gives the chunks the value's TTL (plus the grace); sets the
 * manifest; gives the replaced value's chunks the grace. Atomic: readers see the old or the new.
 */
const COMMIT_SCRIPT = `
local n = tonumber(ARGV[4])
for i = 0, n - 1 do
  if redis.call('EXISTS', ARGV[3] .. i) == 0 then return redis.error_reply('NQ chunk ' .. i .. ' of this write is missing (expired before the commit)') end
end
local ttl = tonumber(ARGV[2])
local grace = tonumber(ARGV[5])
for i = 0, n - 1 do
  if ttl > 0 then redis.call('PEXPIRE', ARGV[3] .. i, ttl + grace) else redis.call('PERSIST', ARGV[3] .. i) end
end
local old = redis.call('GET', KEYS[1])
if ttl > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl) else redis.call('SET', KEYS[1], ARGV[1]) end
if old then
  local _, _, id, count = string.find(old, '^${MANIFEST_TAG} (%S+) (%d+) ')
  if id and id ~= string.match(ARGV[1], '^${MANIFEST_TAG} (%S+) ') then
    for i = 0, tonumber(count) - 1 do redis.call('PEXPIRE', KEYS[1] .. '#' .. id .. '#' .. i, grace) end
  end
end
return 1
`;

/** Delete: KEYS[1] manifest; ARGV[1] the manifest expected ("" for any). Removes it and its chunks. */
const DELETE_SCRIPT = `
local old = redis.call('GET', KEYS[1])
if not old or (ARGV[1] ~= '' and old ~= ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
local _, _, id, count = string.find(old, '^${MANIFEST_TAG} (%S+) (%d+) ')
if id then
  for i = 0, tonumber(count) - 1 do redis.call('DEL', KEYS[1] .. '#' .. id .. '#' .. i) end
end
return 1
`;

interface Manifest {
  raw: string;
  id: string;
  chunks: number;
  bytes: number;
  crc: number;
}

export class RedisStateStore implements StateStore {
  readonly prefix: string;
  readonly chunkBytes: number;
  readonly timeoutMs: number;
  readonly readGraceMs: number;
  readonly pendingTtlMs: number;
  readonly #url: string | undefined;
  readonly #name: string;
  #client: RedisClientLike | undefined;
  /** The client this store made (closed by close()): ready once connected, and the client itself at once, to end it if connecting fails. */
  #own: { ready: Promise<OwnClient>; client?: OwnClient } | undefined;
  #lastError: unknown;

  constructor(options: RedisStateStoreOptions) {
    if (options === null || typeof options !== "object") throw invalidArgument("options", "{ url } or { client }", options);
    const { client, url } = options;
    if ((client === undefined) === (url === undefined)) throw invalidArgument("options", "exactly one of url (redis://host:port) or client (a connected node-redis client)", options);
    if (client !== undefined && typeof client.sendCommand !== "function") throw invalidArgument("options.client", "a node-redis client (with sendCommand)", client);
    if (url !== undefined && (typeof url !== "string" || !/^rediss?:\/\//.test(url))) throw invalidArgument("options.url", "a redis:// or rediss:// URL", url);
    this.#client = client;
    this.#url = url;
    this.prefix = options.prefix ?? "nexusquant:";
    if (typeof this.prefix !== "string") throw invalidArgument("options.prefix", "a string", this.prefix);
    this.chunkBytes = checkInt("options.chunkBytes", options.chunkBytes ?? 1 << 20, { min: 1024, max: 64 << 20 });
    this.timeoutMs = checkInt("options.timeoutMs", options.timeoutMs ?? 5000, { min: 1 });
    this.readGraceMs = checkInt("options.readGraceMs", options.readGraceMs ?? 30_000, { min: 1 });
    this.pendingTtlMs = checkInt("options.pendingTtlMs", options.pendingTtlMs ?? 600_000, { min: 1 });
    this.#name = `Redis store ${url ?? "(client)"}`;
  }

  #manifestKey(key: string): string {
    return `${this.prefix}{${key}}`;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    checkKey(key);
    const manifestKey = this.#manifestKey(key);
    let last: Manifest | undefined;
    for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
      const manifest = parseManifest(await this.#command(["GET", manifestKey], `get(${JSON.stringify(key)})`), manifestKey);
      if (manifest === undefined) return undefined;
      const value = await this.#readChunks(manifestKey, manifest, key);
      if (value !== undefined) return value;
      if (last?.raw === manifest.raw) break; // the same write, chunks still gone: not a concurrent replacement
      last = manifest;
    }
    // The manifest names chunks Redis no longer has (evicted under maxmemory, or expired): the value
    // is lost. It reads as absent, and the dangling manifest goes (unless a writer replaced it).
    await this.#command(["EVAL", DELETE_SCRIPT, "1", manifestKey, last!.raw], `get(${JSON.stringify(key)})`);
    return undefined;
  }

  async #readChunks(manifestKey: string, m: Manifest, key: string): Promise<Uint8Array | undefined> {
    const out = new Uint8Array(m.bytes);
    let at = 0;
    for (let first = 0; first < m.chunks; first += CHUNKS_PER_READ) {
      const keys: string[] = [];
      for (let i = first; i < Math.min(m.chunks, first + CHUNKS_PER_READ); i++) keys.push(`${manifestKey}#${m.id}#${i}`);
      const parts = (await this.#command(["MGET", ...keys], `get(${JSON.stringify(key)})`)) as (Buffer | null)[];
      for (const part of parts) {
        if (part === null) return undefined;
        if (at + part.byteLength > m.bytes) throw corruptValue(manifestKey, "its chunks hold more bytes than its manifest says");
        out.set(part, at);
        at += part.byteLength;
      }
    }
    if (at !== m.bytes) throw corruptValue(manifestKey, `its chunks hold ${at} bytes; its manifest says ${m.bytes}`);
    if (crc32(out) !== m.crc) throw corruptValue(manifestKey, "checksum mismatch");
    return out;
  }

  async put(key: string, value: Uint8Array, options?: PutOptions): Promise<void> {
    checkKey(key);
    checkValue(value);
    const ttl = ttlMilliseconds(options);
    const manifestKey = this.#manifestKey(key);
    const id = randomUUID().replaceAll("-", "");
    const chunks = Math.max(1, Math.ceil(value.byteLength / this.chunkBytes));
    const what = `put(${JSON.stringify(key)})`;
    let written = 0;
    try {
      for (let i = 0; i < chunks; i++) {
        const piece = value.subarray(i * this.chunkBytes, Math.min(value.byteLength, (i + 1) * this.chunkBytes));
        await this.#command(["SET", `${manifestKey}#${id}#${i}`, Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength), "PX", String(this.pendingTtlMs)], what);
        written = i + 1;
      }
      const manifest = `${MANIFEST_TAG} ${id} ${chunks} ${value.byteLength} ${crc32(value)}`;
      await this.#command(["EVAL", COMMIT_SCRIPT, "1", manifestKey, manifest, String(ttl), `${manifestKey}#${id}#`, String(chunks), String(this.readGraceMs)], what);
    } catch (e) {
      // Nothing points at this write's chunks; remove them now if Redis answers, else they expire.
      if (written > 0) {
        const keys = Array.from({ length: written }, (_, i) => `${manifestKey}#${id}#${i}`);
        await this.#command(["DEL", ...keys], what).catch(() => undefined);
      }
      throw storeUnavailable(this.#name, what, e);
    }
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    return (await this.#command(["EVAL", DELETE_SCRIPT, "1", this.#manifestKey(key), ""], `delete(${JSON.stringify(key)})`)) === 1;
  }

  /** Redis's INFO section (default "memory") as name → value, e.g. used_memory. */
  async info(section = "memory"): Promise<Record<string, string>> {
    const text = String(await this.#command(["INFO", section], `info(${section})`, false));
    return Object.fromEntries(
      text
        .split(/\r?\n/)
        .filter((l) => l.includes(":") && !l.startsWith("#"))
        .map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1)]),
    );
  }

  /** Ends the client this store made (not one passed in). */
  async close(): Promise<void> {
    this.#drop();
  }

  /** Ends the client this store made, connected or still trying (node-redis retries a refused connection until told to stop). */
  #drop(): void {
    const own = this.#own;
    this.#own = undefined;
    own?.ready.catch(() => undefined);
    own?.client?.destroy();
  }

  async #command(args: (string | Buffer)[], operation: string, bytes = true): Promise<unknown> {
    const client = await this.#connected(operation);
    const reply = client.sendCommand(args, bytes ? AS_BYTES : undefined).catch((e: unknown) => {
      const last = this.#lastError instanceof Error ? `; last connection error: ${this.#lastError.message}` : "";
      throw new Error(`${e instanceof Error ? e.message : String(e)}${last}`);
    });
    return withTimeout(reply, this.timeoutMs, this.#name, operation);
  }

  async #connected(operation: string): Promise<RedisClientLike> {
    if (this.#client !== undefined) return this.#client;
    if (this.#own === undefined) {
      const own: { ready: Promise<OwnClient>; client?: OwnClient } = { ready: Promise.resolve() as never };
      own.ready = this.#connect(own);
      this.#own = own;
    }
    const own = this.#own;
    try {
      return await withTimeout(own.ready, this.timeoutMs, this.#name, `connecting for ${operation}`);
    } catch (e) {
      // The next call tries a fresh connection; this one stops retrying now.
      if (this.#own === own) this.#drop();
      throw e;
    }
  }

  async #connect(own: { client?: OwnClient }): Promise<OwnClient> {
    const redis = await loadRedis();
    const client = (own.client = redis.createClient({
      url: this.#url,
      // Commands fail at once while disconnected instead of waiting in a queue for a reconnect.
      disableOfflineQueue: true,
      socket: { connectTimeout: this.timeoutMs, reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 2000) },
    }));
    // Without a listener an 'error' event would throw: keep the last one for the messages.
    client.on("error", (e: unknown) => (this.#lastError = e));
    await client.connect();
    return client;
  }
}

interface OwnClient extends RedisClientLike {
  on(event: "error", listener: (e: unknown) => void): unknown;
  connect(): Promise<unknown>;
  destroy(): void;
}

interface RedisModule {
  createClient(options: Record<string, unknown>): OwnClient;
}

/** The optional peer `redis`, loaded when a store first connects. */
function loadRedis(): Promise<RedisModule> {
  return importOptionalPeer<RedisModule>("redis", 'The Redis store\'s client, the optional peer dependency "redis" (node-redis ≥ 5),', "Install it with: npm install redis");
}

function parseManifest(reply: unknown, manifestKey: string): Manifest | undefined {
  if (reply === null || reply === undefined) return undefined;
  const raw = Buffer.isBuffer(reply) ? reply.toString("latin1") : String(reply);
  const m = /^nq1 ([0-9a-f]{32}) (\d+) (\d+) (\d+)$/.exec(raw);
  if (m === null) throw corruptValue(manifestKey, `its manifest ${JSON.stringify(raw.slice(0, 60))} is not one this store writes (another program's key under the store's prefix?)`);
  return { raw, id: m[1]!, chunks: Number(m[2]), bytes: Number(m[3]), crc: Number(m[4]) };
}

function corruptValue(manifestKey: string, why: string): NexusQuantError {
  return new NexusQuantError("CORRUPT_DATA", `The Redis value ${manifestKey} is damaged: ${why}.`, { key: manifestKey });
}
