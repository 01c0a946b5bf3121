/**
 * A StateStore in a directory: one file per key, for one machine or a shared file system.
 *
 * A put writes a temporary file beside the target in bounded chunks (1 MiB), syncs it, then renames
 * it over the target. rename() is atomic on POSIX file systems, so a reader sees the old file or the
 * new one, whole: a writer that dies half-way leaves only a temporary file (removed by prune()), and
 * of two writers the last rename wins. Each file carries its key, its expiry and a CRC-32, so a file
 * damaged on disk is CORRUPT_DATA naming it, never a wrong value.
 *
 *   "NQSF" | u32 version | f64 expires at (ms since the epoch, 0: never) | u32 key bytes | key (UTF-8)
 *   | u32 value bytes (low) | u32 value bytes (high) | value | u32 CRC-32 of everything before
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdir, open, readdir, readFile, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { NexusQuantError, invalidArgument } from "../errors.js";
import { crc32 } from "../shared/crc32.js";
import { writeFileAtomically } from "../shared/atomic-file.js";
import { checkKey, checkValue, storeUnavailable, ttlMilliseconds, type PutOptions, type StateStore } from "./state-store.js";

const MAGIC = "NQSF";
const VERSION = 1;
const SUFFIX = ".nqs";
const TEMP_SUFFIX = ".tmp";
/** Largest piece handed to one write(): the value is never copied whole into another buffer. */
export const FILE_WRITE_CHUNK_BYTES = 1 << 20;
/** prune() removes temporary files older than this: a writer that takes longer has died. */
const STALE_TEMP_MS = 60 * 60 * 1000;

export interface FileStateStoreOptions {
  /** The directory (created if missing). */
  dir: string;
}

export class FileStateStore implements StateStore {
  readonly dir: string;
  readonly #name: string;

  constructor(options: FileStateStoreOptions) {
    if (typeof options?.dir !== "string" || options.dir.length === 0) throw invalidArgument("options.dir", "a directory path", options?.dir);
    this.dir = options.dir;
    this.#name = `file store ${this.dir}`;
  }

  /** The file of a key: the SHA-256 of the key, so any key makes a safe file name. */
  #path(key: string): string {
    return join(this.dir, createHash("sha256").update(key).digest("hex") + SUFFIX);
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    checkKey(key);
    const path = this.#path(key);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw storeUnavailable(this.#name, `get(${JSON.stringify(key)})`, e);
    }
    const record = parseRecord(bytes, path);
    if (record.key !== key) return undefined; // another key with the same SHA-256: not ours
    if (record.expiresAt !== 0 && record.expiresAt <= Date.now()) {
      await unlink(path).catch(() => undefined);
      return undefined;
    }
    return record.value;
  }

  async put(key: string, value: Uint8Array, options?: PutOptions): Promise<void> {
    checkKey(key);
    checkValue(value);
    const ttl = ttlMilliseconds(options);
    const path = this.#path(key);
    const temp = `${path}.${process.pid}.${randomUUID()}${TEMP_SUFFIX}`;
    const keyBytes = new TextEncoder().encode(key);
    const head = new Uint8Array(24 + keyBytes.length + 8);
    const view = new DataView(head.buffer);
    head.set(new TextEncoder().encode(MAGIC), 0);
    view.setUint32(4, VERSION, true);
    view.setFloat64(8, ttl === 0 ? 0 : Date.now() + ttl, true);
    view.setUint32(16, keyBytes.length, true);
    head.set(keyBytes, 20);
    view.setUint32(20 + keyBytes.length, value.byteLength % 2 ** 32, true);
    view.setUint32(24 + keyBytes.length, Math.floor(value.byteLength / 2 ** 32), true);
    const body = head.subarray(0, 28 + keyBytes.length);
    try {
      await mkdir(this.dir, { recursive: true });
      await writeFileAtomically(path, temp, async (file) => {
        let crc = crc32(body);
        await file.write(body);
        for (let at = 0; at < value.byteLength; at += FILE_WRITE_CHUNK_BYTES) {
          const piece = value.subarray(at, Math.min(value.byteLength, at + FILE_WRITE_CHUNK_BYTES));
          crc = crc32(piece, crc);
          await file.write(piece);
        }
        const tail = new Uint8Array(4);
        new DataView(tail.buffer).setUint32(0, crc, true);
        await file.write(tail);
      });
    } catch (e) {
      throw storeUnavailable(this.#name, `put(${JSON.stringify(key)})`, e);
    }
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    try {
      await unlink(this.#path(key));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw storeUnavailable(this.#name, `delete(${JSON.stringify(key)})`, e);
    }
  }

  /** Removes expired values and the temporary files of writers that died; returns how many files went. */
  async prune(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return 0;
      throw storeUnavailable(this.#name, "prune()", e);
    }
    let removed = 0;
    for (const name of names) {
      const path = join(this.dir, name);
      try {
        if (name.endsWith(TEMP_SUFFIX)) {
          if (Date.now() - (await stat(path)).mtimeMs < STALE_TEMP_MS) continue;
        } else if (name.endsWith(SUFFIX)) {
          const head = await readHead(path);
          if (head === 0 || head > Date.now()) continue;
        } else {
          continue;
        }
        await unlink(path);
        removed += 1;
      } catch {
        // Another process got there first, or the file is not ours to judge: leave it.
      }
    }
    return removed;
  }
}

/** The expiry of a value file, read from its first 16 bytes. */
async function readHead(path: string): Promise<number> {
  const file = await open(path, "r");
  try {
    const head = new Uint8Array(16);
    await file.read(head, 0, 16, 0);
    return new DataView(head.buffer).getFloat64(8, true);
  } finally {
    await file.close();
  }
}

function parseRecord(bytes: Uint8Array, path: string): { key: string; expiresAt: number; value: Uint8Array } {
  const bad = (why: string) => new NexusQuantError("CORRUPT_DATA", `The file store's ${path} is damaged: ${why}. Delete it (or run prune()); the state has to be saved again.`, { path });
  if (bytes.byteLength < 32) throw bad(`only ${bytes.byteLength} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (new TextDecoder().decode(bytes.subarray(0, 4)) !== MAGIC) throw bad(`bad magic (expected "${MAGIC}")`);
  const version = view.getUint32(4, true);
  if (version !== VERSION) throw new NexusQuantError("UNSUPPORTED", `${path} was written by a file store of version ${version}; this build reads version ${VERSION}.`, { path, version });
  const end = bytes.byteLength - 4;
  if (crc32(bytes.subarray(0, end)) !== view.getUint32(end, true)) throw bad("checksum mismatch");
  const keyLength = view.getUint32(16, true);
  const valueAt = 28 + keyLength;
  if (valueAt > end) throw bad("its key length exceeds the file");
  const valueLength = view.getUint32(20 + keyLength, true) + view.getUint32(24 + keyLength, true) * 2 ** 32;
  if (valueAt + valueLength !== end) throw bad("its lengths do not add up");
  return { key: new TextDecoder().decode(bytes.subarray(20, 20 + keyLength)), expiresAt: view.getFloat64(8, true), value: new Uint8Array(bytes.buffer, bytes.byteOffset + valueAt, valueLength) };
}
