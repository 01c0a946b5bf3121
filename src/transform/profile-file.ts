/**
 * `nexusquant-profile.bin`: a transform profile on disk, next to the checkpoint. Little-endian:
 *
 *   "NQTP" | u32 version (1) | u32 JSON length | UTF-8 JSON | zero padding to 4 bytes
 *   per tensor, in profile.heads order:
 *     mean f32[d] | matrix f32[d*d] | bandRms f32[d/8] | rates u8[3][d/8] (budgets 2, 3, 4) | padding to 4
 *   CRC-32 of everything before it
 *
 * The JSON holds the model identity, the calibration record and, per tensor, only the small fields
 * (`calibrated`, `predictedNmse`); the arrays are raw so the native side could map them as they are.
 * Decoding checks the frame (magic, version, sizes, checksum) here and the content with
 * validateProfile, the same check a profile built in memory gets.
 */
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { writeFileAtomically } from "../shared/atomic-file.js";
import { NexusQuantError } from "../errors.js";
import { FORMAT_LIMITS } from "../format/limits.js";
import { crc32 } from "../shared/crc32.js";
import { GROUP_SIZE } from "./band-transform.js";
import { TRANSFORM_BUDGETS, type TransformBudget } from "./codec-distortion.js";
import { MAX_EIGEN_DIM } from "./linalg.js";
import { TRANSFORM_PROFILE_VERSION, validateProfile, type HeadTensorTransform, type TransformProfile } from "./profile.js";

export const PROFILE_FILE_NAME = "nexusquant-profile.bin";

const MAGIC = "NQTP";
const HEADER_BYTES = 12;
const CRC_BYTES = 4;

/** The JSON part: everything but the per-tensor arrays. */
interface ProfileJson {
  model: TransformProfile["model"];
  calibration: TransformProfile["calibration"];
  heads: { calibrated: HeadTensorTransform["calibrated"]; predictedNmse: HeadTensorTransform["predictedNmse"] }[];
}

const align4 = (n: number): number => Math.ceil(n / 4) * 4;

/** Bytes of one tensor's arrays, padding included. */
function tensorBytes(d: number): number {
  const bands = d / GROUP_SIZE;
  return align4(4 * (d + d * d + bands) + TRANSFORM_BUDGETS.length * bands);
}

/** The profile's bytes. Validates it first: a file is only ever written from a profile that loads. */
export function encodeProfile(profile: TransformProfile): Uint8Array {
  validateProfile(profile);
  const { headDim: d } = profile.model;
  const bands = d / GROUP_SIZE;
  const json: ProfileJson = {
    model: profile.model,
    calibration: profile.calibration,
    heads: profile.heads.map((h) => ({ calibrated: h.calibrated, predictedNmse: h.predictedNmse })),
  };
  const jsonBytes = new TextEncoder().encode(JSON.stringify(json));
  const payloadAt = align4(HEADER_BYTES + jsonBytes.length);
  const crcAt = payloadAt + profile.heads.length * tensorBytes(d);
  const bytes = new Uint8Array(crcAt + CRC_BYTES);
  const view = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode(MAGIC), 0);
  view.setUint32(4, TRANSFORM_PROFILE_VERSION, true);
  view.setUint32(8, jsonBytes.length, true);
  bytes.set(jsonBytes, HEADER_BYTES);
  let at = payloadAt;
  for (const h of profile.heads) {
    for (const array of [h.mean, h.matrix, h.bandRms]) {
      for (let i = 0; i < array.length; i++, at += 4) view.setFloat32(at, array[i]!, true);
    }
    for (const bits of TRANSFORM_BUDGETS) {
      bytes.set(h.rates[bits], at);
      at += bands;
    }
    at = align4(at);
  }
  view.setUint32(crcAt, crc32(bytes.subarray(0, crcAt)), true);
  return bytes;
}

/**
 * A profile from its bytes. CORRUPT_DATA for anything but a complete, intact profile file of a
 * version this build reads; sizes are checked against the buffer before anything is allocated.
 */
export function decodeProfile(bytes: Uint8Array): TransformProfile {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < MAGIC.length || new TextDecoder().decode(bytes.subarray(0, MAGIC.length)) !== MAGIC) {
    throw corrupt(`Not a nexusquant profile: it does not start with "${MAGIC}"`);
  }
  if (bytes.length < HEADER_BYTES + CRC_BYTES) throw corrupt(`Transform profile truncated: ${bytes.length} bytes, less than its ${HEADER_BYTES + CRC_BYTES}-byte frame`);
  const version = view.getUint32(4, true);
  if (version !== TRANSFORM_PROFILE_VERSION) {
    const why = version > TRANSFORM_PROFILE_VERSION ? "made by a newer nexusquant; re-run calibrate or upgrade" : "not a version any nexusquant wrote; re-run calibrate";
    throw corrupt(`Transform profile format version ${version}, this nexusquant reads version ${TRANSFORM_PROFILE_VERSION}: ${why}`, { version });
  }
  const jsonLength = view.getUint32(8, true);
  if (HEADER_BYTES + jsonLength + CRC_BYTES > bytes.length) {
    throw corrupt(`Transform profile truncated: its header announces ${jsonLength} bytes of JSON, the file has ${bytes.length} bytes in all`);
  }
  const intact = (): boolean => view.getUint32(bytes.length - CRC_BYTES, true) === crc32(bytes.subarray(0, bytes.length - CRC_BYTES));
  let json: ProfileJson;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(HEADER_BYTES, HEADER_BYTES + jsonLength))) as ProfileJson;
  } catch (e) {
    // A damaged byte is the likelier cause; say so when the checksum agrees.
    if (!intact()) throw checksumMismatch();
    throw corrupt(`Transform profile has an invalid JSON header (${(e as Error).message})`);
  }
  const d = json?.model?.headDim;
  const layers = json?.model?.layers;
  const kvHeads = json?.model?.kvHeads;
  if (!isIntIn(d, GROUP_SIZE, MAX_EIGEN_DIM) || d % GROUP_SIZE !== 0 || !isIntIn(layers, 1, FORMAT_LIMITS.maxLayers) || !isIntIn(kvHeads, 1, FORMAT_LIMITS.maxHeads)) {
    if (!intact()) throw checksumMismatch();
    throw corrupt("Transform profile's JSON header has no valid model.layers, model.kvHeads and model.headDim");
  }
  const tensors = layers * kvHeads * 2;
  const payloadAt = align4(HEADER_BYTES + jsonLength);
  const expected = payloadAt + tensors * tensorBytes(d) + CRC_BYTES;
  if (bytes.length !== expected) {
    const shape = `${layers} layers × ${kvHeads} KV heads × K,V at headDim ${d}`;
    if (bytes.length > expected && intact()) throw corrupt(`Transform profile has ${bytes.length - expected} bytes more than its header describes (${shape})`);
    throw corrupt(`Transform profile truncated or damaged: ${bytes.length} bytes where its header describes ${expected} (${shape})`);
  }
  if (!intact()) throw checksumMismatch();
  if (!Array.isArray(json.heads) || json.heads.length !== tensors) {
    throw corrupt(`Transform profile's JSON header lists ${Array.isArray(json.heads) ? json.heads.length : "no"} tensors, not ${tensors}`);
  }

  const bands = d / GROUP_SIZE;
  let at = payloadAt;
  const floats = (n: number): Float32Array => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++, at += 4) out[i] = view.getFloat32(at, true);
    return out;
  };
  const heads = json.heads.map((small): HeadTensorTransform => {
    const mean = floats(d);
    const matrix = floats(d * d);
    const bandRms = floats(bands);
    const rates = {} as Record<TransformBudget, Uint8Array>;
    for (const bits of TRANSFORM_BUDGETS) {
      rates[bits] = new Uint8Array(bytes.subarray(at, at + bands)); // a copy: a Buffer's slice() would share the file's memory
      at += bands;
    }
    at = align4(at);
    // Only the declared fields are taken, so a decoded profile has exactly the shape validateProfile checks.
    return { mean, matrix, bandRms, rates, calibrated: perBudget(small?.calibrated), predictedNmse: perBudget(small?.predictedNmse) };
  });
  const { fingerprint, headDim } = json.model;
  const { tokens, source, seed, createdAt } = json.calibration ?? ({} as Partial<TransformProfile["calibration"]>);
  const profile = {
    version: TRANSFORM_PROFILE_VERSION,
    model: { fingerprint, layers, kvHeads, headDim },
    calibration: { tokens, source, seed, createdAt },
    heads,
  } as TransformProfile;
  try {
    validateProfile(profile);
  } catch (e) {
    if (e instanceof NexusQuantError) throw corrupt(`Transform profile holds invalid data: ${e.message}`, e.details);
    throw e;
  }
  return profile;
}

/**
 * Writes the profile atomically: to a temporary file beside `path`, synced, then renamed over it, so
 * a reader sees the old profile or the new one, never half of one.
 */
export async function writeProfile(path: string, profile: TransformProfile): Promise<void> {
  const bytes = encodeProfile(profile);
  await writeFileAtomically(path, `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`, (file) => file.writeFile(bytes));
}

/** Reads and decodes a profile file; CORRUPT_DATA errors name the path; a missing file is INVALID_ARGUMENT; other file-system errors pass through. */
export async function readProfile(path: string): Promise<TransformProfile> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    throw new NexusQuantError("INVALID_ARGUMENT", `No transform profile at ${path}: make one with \`nexusquant calibrate DIR\` (it writes DIR/${PROFILE_FILE_NAME}).`, { arg: "path", path });
  }
  try {
    return decodeProfile(bytes);
  } catch (e) {
    if (e instanceof NexusQuantError) throw new NexusQuantError(e.code, `${path}: ${e.message}`, { ...e.details, path });
    throw e;
  }
}

function corrupt(message: string, details?: Record<string, unknown>): NexusQuantError {
  return new NexusQuantError("CORRUPT_DATA", message, details);
}

function checksumMismatch(): NexusQuantError {
  return corrupt("Transform profile damaged: its CRC-32 checksum does not match its contents; re-run calibrate");
}

/** The budgets' entries of a JSON record (undefined where missing, for validateProfile to name). */
function perBudget<T>(record: Readonly<Record<TransformBudget, T>> | undefined): Record<TransformBudget, T> {
  const out = {} as Record<TransformBudget, T>;
  for (const bits of TRANSFORM_BUDGETS) out[bits] = record?.[bits] as T;
  return out;
}

function isIntIn(value: unknown, min: number, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= min && value <= max;
}
