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
