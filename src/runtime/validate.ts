import { NexusQuantError, invalidArgument } from "../errors.js";

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

export function checkIndex(arg: string, value: unknown, limit: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value >= limit) {
    throw invalidArgument(arg, `an integer in [0, ${limit})`, value);
  }
  return value;
}

export function checkPositiveInt(arg: string, value: unknown, min = 1): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) throw invalidArgument(arg, `an integer >= ${min}`, value);
  return value;
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
