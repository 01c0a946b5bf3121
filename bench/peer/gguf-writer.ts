/**
 * A GGUF v3 writer (the file format of ggml / llama.cpp, specified in ggml's docs/gguf.md), written for
 * the peer lab: enough to hand a converted checkpoint to node-llama-cpp. Little-endian throughout:
 *
 *   "GGUF" | version u32 = 3 | tensor count u64 | metadata count u64
 *   metadata: key (string) | value type u32 | value          (string = u64 byte length + UTF-8 bytes;
 *                                                              array = item type u32 + u64 count + items)
 *   tensor infos: name (string) | n_dims u32 | dims u64[n_dims] (innermost first) | ggml type u32 | offset u64
 *   zero padding to the alignment, then each tensor's data at its offset (relative to the data section,
 *   a multiple of the alignment), zero padding between tensors.
 *
 * The alignment is `general.alignment` when present, else 32 (the spec's default); this writer always
 * uses 32 and never writes that key.
 */
import { open } from "node:fs/promises";
import { invalidArgument } from "../../src/errors.js";
import { GGML_TYPES, ggmlRowBytes } from "./ggml-types.js";

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const VERSION = 3;
export const GGUF_ALIGNMENT = 32;

/** GGUF metadata value types (gguf_metadata_value_type). */
const VALUE_TYPE = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 } as const;

export type GgufScalarType = "u32" | "i32" | "f32" | "bool" | "string" | "u64";

/** One metadata entry. Arrays hold scalars of one type. */
export type GgufEntry =
  | { key: string; type: "u32" | "i32" | "f32" | "u64"; value: number }
  | { key: string; type: "bool"; value: boolean }
  | { key: string; type: "string"; value: string }
  | { key: string; type: "array"; itemType: "string"; value: readonly string[] }
  | { key: string; type: "array"; itemType: "i32" | "u32" | "f32"; value: readonly number[] };

export interface GgufTensor {
  /** At most 64 bytes (the spec's limit). */
  name: string;
  /** Hugging Face / row-major shape, outermost first ([out, in] for a projection); stored reversed. */
  shape: readonly number[];
  type: "F32" | "F16";
  /** F32 values, or FP16 bits. */
  data: Float32Array | Uint16Array;
}

export interface GgufContents {
  metadata: readonly GgufEntry[];
  tensors: readonly GgufTensor[];
}

/** A growing little-endian byte buffer for the header (metadata and tensor infos). */
class ByteWriter {
  #buf = Buffer.alloc(1 << 16);
  #at = 0;

  get length(): number {
    return this.#at;
  }

  #room(n: number): void {
    if (this.#at + n <= this.#buf.length) return;
    const next = Buffer.alloc(Math.max(this.#buf.length * 2, this.#at + n));
    this.#buf.copy(next, 0, 0, this.#at);
    this.#buf = next;
  }

  u32(v: number): void {
    this.#room(4);
    this.#at = this.#buf.writeUInt32LE(v, this.#at);
  }

  i32(v: number): void {
    this.#room(4);
    this.#at = this.#buf.writeInt32LE(v, this.#at);
  }

  f32(v: number): void {
    this.#room(4);
    this.#at = this.#buf.writeFloatLE(v, this.#at);
  }

  u64(v: number): void {
    this.#room(8);
    this.#at = this.#buf.writeBigUInt64LE(BigInt(v), this.#at);
  }

  u8(v: number): void {
    this.#room(1);
    this.#at = this.#buf.writeUInt8(v, this.#at);
  }

  string(s: string): void {
    const bytes = Buffer.from(s, "utf8");
    this.u64(bytes.length);
    this.#room(bytes.length);
    this.#at += bytes.copy(this.#buf, this.#at);
  }

  zeros(n: number): void {
    this.#room(n);
    this.#buf.fill(0, this.#at, this.#at + n);
    this.#at += n;
  }

  bytes(): Buffer {
    return this.#buf.subarray(0, this.#at);
  }
}

const padTo = (n: number, alignment: number) => Math.ceil(n / alignment) * alignment;

function writeScalar(w: ByteWriter, type: GgufScalarType, value: number | boolean | string): void {
  switch (type) {
    case "u32":
      return w.u32(value as number);
    case "i32":
      return w.i32(value as number);
    case "f32":
      return w.f32(value as number);
    case "u64":
      return w.u64(value as number);
    case "bool":
      return w.u8(value ? 1 : 0);
    case "string":
      return w.string(value as string);
  }
}

function checkEntry(entry: GgufEntry): void {
  if (typeof entry.key !== "string" || entry.key.length === 0) throw invalidArgument("metadata key", "a non-empty string", entry.key);
  const integer = (v: unknown, min: number, max: number) => Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;
  const ok = (type: string, v: unknown): boolean =>
    type === "u32" ? integer(v, 0, 2 ** 32 - 1) : type === "i32" ? integer(v, -(2 ** 31), 2 ** 31 - 1) : type === "u64" ? integer(v, 0, Number.MAX_SAFE_INTEGER) : type === "f32" ? typeof v === "number" && Number.isFinite(v) : type === "bool" ? typeof v === "boolean" : typeof v === "string";
  const values = entry.type === "array" ? entry.value : [entry.value];
  const type = entry.type === "array" ? entry.itemType : entry.type;
  const bad = values.find((v) => !ok(type, v));
  if (bad !== undefined) throw invalidArgument(`metadata "${entry.key}"`, `${type} values`, bad);
}

/** The header: everything before the data section's padding, and each tensor's offset in the data section. */
function encodeHeader(contents: GgufContents): { header: Buffer; offsets: number[]; dataBytes: number } {
  const w = new ByteWriter();
  w.u32(MAGIC);
  w.u32(VERSION);
  w.u64(contents.tensors.length);
  w.u64(contents.metadata.length);
  const keys = new Set<string>();
  for (const entry of contents.metadata) {
    checkEntry(entry);
    if (keys.has(entry.key)) throw invalidArgument("metadata", "unique keys", entry.key);
    keys.add(entry.key);
    w.string(entry.key);
    if (entry.type === "array") {
      w.u32(VALUE_TYPE.array);
      w.u32(VALUE_TYPE[entry.itemType]);
      w.u64(entry.value.length);
      for (const v of entry.value) writeScalar(w, entry.itemType, v);
    } else {
      w.u32(VALUE_TYPE[entry.type]);
      writeScalar(w, entry.type, entry.value);
    }
  }
  const offsets: number[] = [];
  let dataBytes = 0;
  const names = new Set<string>();
  for (const t of contents.tensors) {
    if (Buffer.byteLength(t.name, "utf8") > 64) throw invalidArgument("tensor name", "at most 64 bytes", t.name);
    if (names.has(t.name)) throw invalidArgument("tensors", "unique names", t.name);
    names.add(t.name);
    const elements = t.shape.reduce((a, d) => a * d, 1);
    if (t.shape.length === 0 || t.shape.length > 4 || t.data.length !== elements) {
      throw invalidArgument(`tensor "${t.name}"`, `1-4 dimensions and data of their element count`, `shape [${t.shape.join(", ")}] with ${t.data.length} values`);
    }
    if ((t.type === "F32") !== t.data instanceof Float32Array) throw invalidArgument(`tensor "${t.name}".data`, t.type === "F32" ? "a Float32Array" : "a Uint16Array of FP16 bits", t.data);
    w.string(t.name);
    w.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) w.u64(d); // ggml's ne[0] is the innermost (contiguous) dimension
    w.u32(GGML_TYPES[t.type].id);
    dataBytes = padTo(dataBytes, GGUF_ALIGNMENT);
    offsets.push(dataBytes);
    w.u64(dataBytes);
    dataBytes += ggmlRowBytes(t.type, elements);
  }
  w.zeros(padTo(w.length, GGUF_ALIGNMENT) - w.length);
  return { header: w.bytes(), offsets, dataBytes };
}

/** Writes a GGUF file; tensors are streamed one at a time after the header. Returns the file's size. */
export async function writeGguf(path: string, contents: GgufContents): Promise<number> {
  const { header, offsets } = encodeHeader(contents);
  const file = await open(path, "w");
  try {
    await file.write(header, 0, header.length, 0);
    let end = header.length;
    for (const [i, t] of contents.tensors.entries()) {
      const at = header.length + offsets[i]!;
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      // Little-endian hosts only (x64, arm64): typed-array bytes are already the file's byte order.
      await file.write(bytes, 0, bytes.length, at);
      end = at + bytes.length;
    }
    // Trailing padding is not required by the spec; the file ends with the last tensor's bytes.
    return end;
  } finally {
    await file.close();
  }
}
