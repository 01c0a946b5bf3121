/**
 * Every error nexusquant throws on purpose is a NexusQuantError with a stable `code`, a message that
 * says what was wrong and what to do, and (where useful) the data a caller needs to react.
 */
export type NexusQuantErrorCode =
  | "INVALID_ARGUMENT" // a value of the wrong type, range or shape
  | "INVALID_DATA" // NaN/Inf or otherwise unusable numbers inside a tensor
  | "UNKNOWN_MODEL"
  | "UNKNOWN_GPU"
  | "UNKNOWN_PRESET"
  | "CONFIG_ERROR" // a model config.json that is missing or contradicts keys
  | "UNSUPPORTED" // a valid request this backend/build cannot do
  | "BACKEND_UNAVAILABLE"
  | "NATIVE_UNAVAILABLE" // the addon could not be loaded
  | "OUT_OF_MEMORY"
  | "DISPOSED" // use after dispose()
  | "BUSY" // in use by another call or handle: async work (compress()) or one conversation at a time; retry after it ends
  | "MODEL_OUTPUT" // a model returned outputs of the wrong shape, count or type, or NaN/Inf logits (no token is sampled from them)
  | "CORRUPT_DATA" // a serialized buffer that fails its checks
  | "MODEL_MISMATCH" // a saved conversation state resumed on another model than the one that saved it
  | "PROFILE_MISMATCH" // a transform profile (nexusquant calibrate) made for another model or shape
  | "STORE_UNAVAILABLE" // a state store (Redis, a directory) failed, could not be reached or timed out
  | "NATIVE_ERROR" // a failure inside native code (always a message from our own checks)
  | "LAB_ONLY"; // a lab tool (bench/) run outside a clone of the repository

export class NexusQuantError extends Error {
  readonly code: NexusQuantErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: NexusQuantErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = "NexusQuantError";
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}

/** "Expected <what> for <arg> but received <value>" — the one message shape for argument errors. */
export function invalidArgument(arg: string, expected: string, received: unknown): NexusQuantError {
  return new NexusQuantError(
    "INVALID_ARGUMENT",
    `Expected ${expected} for ${arg} but received ${describeValue(received)}`,
    { arg },
  );
}

export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "undefined";
  if (typeof value === "string") return JSON.stringify(value.length > 60 ? value.slice(0, 57) + "..." : value);
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value);
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as { length?: number }).length ?? value.byteLength})`;
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  return typeof value === "object" ? `an object (${value.constructor?.name ?? "Object"})` : typeof value;
}
