/**
 * The safetensors file format (https://huggingface.co/docs/safetensors): an 8-byte little-endian
 * header length N, N bytes of JSON ({ name: { dtype, shape, data_offsets: [begin, end] },
 * "__metadata__"?: { string: string } }), then the raw little-endian tensor bytes, with offsets
 * relative to the start of that data section. We read and write F32, F16 and BF16 only: that is what
 * Llama checkpoints hold. Validation follows the reference implementation: offsets must tile the data
 * section exactly (no gaps, no overlaps), so a truncated or padded file is caught, not half-read.
 */
import { readFile, writeFile } from "node:fs/promises";
import { endianness } from "node:os";
import { NexusQuantError } from "../errors.js";
import { BYTES_PER_ELEMENT, elementCount, type WeightDtype, type WeightMap, type WeightTensor } from "./tensor.js";

/** Headers larger than this are refused before parsing (the reference implementation uses 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;
const SUPPORTED_DTYPES: readonly WeightDtype[] = ["F32", "F16", "BF16"];

export interface SafetensorsContents {
  tensors: WeightMap;
  metadata: Record<string, string>;
}

function assertLittleEndianHost(): void {
  // Typed-array views use host byte order; the format is little-endian. Every platform Node ships
  // on is LE, so we refuse rather than carry a byte-swapping path nobody can test.
  if (endianness() !== "LE") throw new NexusQuantError("UNSUPPORTED", "safetensors I/O needs a little-endian host");
}

function corrupt(message: string, details?: Record<string, unknown>): NexusQuantError {
  return new NexusQuantError("CORRUPT_DATA", `Malformed safetensors data: ${message}`, details);
}

export function encodeSafetensors(tensors: WeightMap, metadata: Record<string, string> = {}): Uint8Array {
  assertLittleEndianHost();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const entries: [string, WeightTensor][] = [...tensors.entries()];
  for (const [name, tensor] of entries) {
    if (name === "__metadata__") throw corrupt(`"__metadata__" cannot be a tensor name`);
    const byteLength = elementCount(tensor.shape) * BYTES_PER_ELEMENT[tensor.dtype];
    if (tensor.data.byteLength !== byteLength) {
      throw new NexusQuantError(
        "INVALID_ARGUMENT",
        `Expected ${byteLength} bytes for tensor "${name}" of shape [${tensor.shape.join(", ")}] ${tensor.dtype} but its data has ${tensor.data.byteLength}`,
        { name },
      );
    }
    header[name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + byteLength] };
    offset += byteLength;
  }
  // Pad the JSON with spaces to a multiple of 8 so tensor data stays 8-byte aligned (as HF does),
  // which lets readers map F32 data without copying.
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, "utf8");
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let position = 8 + headerBytes.length;
  for (const [, tensor] of entries) {
    out.set(new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength), position);
    position += tensor.data.byteLength;
  }
  return out;
}

export function decodeSafetensors(bytes: Uint8Array): SafetensorsContents {
  assertLittleEndianHost();
  if (bytes.length < 8) throw corrupt(`${bytes.length} bytes is shorter than the 8-byte header length`);
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLength > BigInt(Math.min(MAX_HEADER_BYTES, bytes.length - 8))) {
    throw corrupt(`header length ${headerLength} exceeds the ${bytes.length - 8} bytes after it`, {
      headerLength: Number(headerLength),
    });
  }
  const dataStart = 8 + Number(headerLength);
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + 8, Number(headerLength)).toString("utf8"));
  } catch (error) {
    throw corrupt(`header is not valid JSON (${(error as Error).message})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) throw corrupt("header is not a JSON object");

  const metadata = parseMetadata((header as Record<string, unknown>).__metadata__);
  const dataLength = bytes.length - dataStart;
  const parsed: { name: string; dtype: WeightDtype; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") continue;
    parsed.push({ name, ...parseEntry(name, entry) });
  }
  // Offsets must tile [0, dataLength) exactly: sort by start and walk.
  const byStart = [...parsed].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const entry of byStart) {
    if (entry.begin !== expected) {
      throw corrupt(`tensor "${entry.name}" starts at byte ${entry.begin}; expected ${expected} (gap or overlap)`, { name: entry.name });
    }
    expected = entry.end;
  }
  if (expected !== dataLength) {
    throw corrupt(`tensors cover ${expected} bytes but the data section has ${dataLength} (truncated or trailing bytes)`, {
      covered: expected,
      dataLength,
    });
  }

  const tensors: WeightMap = new Map();
  for (const { name, dtype, shape, begin, end } of parsed) {
    // Copy: the source may be unaligned for Float32Array, and callers should not pin the whole file.
    // (Not bytes.slice: on a Node Buffer that is a view into a shared pool, not a copy.)
    const copy = new Uint8Array(bytes.subarray(dataStart + begin, dataStart + end));
    const tensor: WeightTensor =
      dtype === "F32"
        ? { dtype, shape, data: new Float32Array(copy.buffer, 0, copy.byteLength / 4) }
        : { dtype, shape, data: new Uint16Array(copy.buffer, 0, copy.byteLength / 2) };
    tensors.set(name, tensor);
  }
  return { tensors, metadata };
}

function parseMetadata(value: unknown): Record<string, string> {
  if (value === undefined) return {};
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw corrupt(`"__metadata__" is not an object`);
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== "string") throw corrupt(`"__metadata__.${key}" is not a string`);
  }
  return { ...(value as Record<string, string>) };
}

function parseEntry(name: string, entry: unknown): { dtype: WeightDtype; shape: number[]; begin: number; end: number } {
  if (entry === null || typeof entry !== "object" || Array.isArray(entry)) throw corrupt(`entry "${name}" is not an object`, { name });
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== "string") throw corrupt(`entry "${name}" has no dtype`, { name });
  if (!SUPPORTED_DTYPES.includes(dtype as WeightDtype)) {
    throw new NexusQuantError(
      "UNSUPPORTED",
      `Tensor "${name}" has dtype ${dtype}; only ${SUPPORTED_DTYPES.join(", ")} are supported`,
      { name, dtype },
    );
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw corrupt(`entry "${name}" has an invalid shape ${JSON.stringify(shape)}`, { name });
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[1] < offsets[0]
  ) {
    throw corrupt(`entry "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`, { name });
  }
  const [begin, end] = offsets as [number, number];
  const expectedBytes = elementCount(shape) * BYTES_PER_ELEMENT[dtype as WeightDtype];
  if (end - begin !== expectedBytes) {
    throw corrupt(`tensor "${name}" spans ${end - begin} bytes but shape [${shape.join(", ")}] ${dtype} needs ${expectedBytes}`, { name });
  }
  return { dtype: dtype as WeightDtype, shape: [...shape] as number[], begin, end };
}

export async function readSafetensors(path: string): Promise<SafetensorsContents> {
  return decodeSafetensors(await readFile(path));
}

export async function writeSafetensors(path: string, tensors: WeightMap, metadata?: Record<string, string>): Promise<void> {
  await writeFile(path, encodeSafetensors(tensors, metadata));
}
