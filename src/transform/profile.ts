/**
 * The transform profile: per (layer, KV head, K|V) the calibrated basis, band scales and bit
 * allocation that the native encoder and attention read as plain arrays. Made once per model by
 * `nexusquant calibrate`, saved next to the checkpoint (profile-file.ts); everything works without it.
 */
import { NexusQuantError, describeValue, invalidArgument } from "../errors.js";
import { FORMAT_LIMITS } from "../format/limits.js";
import { GROUP_SIZE } from "./band-transform.js";
import { TRANSFORM_BUDGETS, TRANSFORM_RATES, type TransformBudget } from "./codec-distortion.js";
import { MAX_EIGEN_DIM, orthonormalityError } from "./linalg.js";
import { checkIndex, checkInt, checkPositiveInt, checkSeed } from "../validate.js";

export interface HeadTensorTransform {
  /** μ (d): subtracted before the transform, added back after decoding. */
  mean: Float32Array;
  /** T (d×d row-major, orthonormal): y = T · (x − mean). */
  matrix: Float32Array;
  /** σ_b (d/8, all > 0): the calibrated RMS of each band's coordinates; the encoder divides by it. */
  bandRms: Float32Array;
  /** Bits per element of each band (d/8 values in {0, 1, 2, 3, 4}, summing to (d/8)·budget). */
  rates: Readonly<Record<TransformBudget, Uint8Array>>;
  /** The guard: false → this head uses today's flat Hadamard code at that budget. */
  calibrated: Readonly<Record<TransformBudget, boolean>>;
  /** Predicted NMSE of both schemes on the calibration data, for docs and the CLI. */
  predictedNmse: Readonly<Record<TransformBudget, { flat: number; calibrated: number }>>;
}

export interface TransformModelIdentity {
  fingerprint: string;
  layers: number;
  kvHeads: number;
  headDim: number;
}

export interface TransformProfile {
  version: 1;
  model: TransformModelIdentity;
  calibration: { tokens: number; source: string; seed: number; createdAt: string };
  /** index ((layer * kvHeads + head) * 2 + kv), kv 0 = keys, 1 = values */
  heads: HeadTensorTransform[];
}

/** What TransformCalibrator.finish() computes: a profile's tensors, before the model identity is added. */
export interface TransformProfileHeads {
  layers: number;
  kvHeads: number;
  headDim: number;
  seed: number;
  /** The fewest vectors any one tensor was calibrated on: the profile's `calibration.tokens`. */
  tokens: number;
  /** Same order as TransformProfile.heads. */
  heads: HeadTensorTransform[];
}

export const TRANSFORM_PROFILE_VERSION = 1;
/** The smallest head_dim a profile covers: two bands of 8. */
export const MIN_PROFILE_HEAD_DIM = 2 * GROUP_SIZE;

/**
 * A validated profile from a calibration's result and the identity of the model it ran on.
 * `createdAt` defaults to now (ISO 8601).
 */
export function buildTransformProfile(
  result: TransformProfileHeads,
  meta: { fingerprint: string; source: string; createdAt?: string },
): TransformProfile {
  const profile: TransformProfile = {
    version: TRANSFORM_PROFILE_VERSION,
    model: { fingerprint: meta.fingerprint, layers: result.layers, kvHeads: result.kvHeads, headDim: result.headDim },
    calibration: { tokens: result.tokens, source: meta.source, seed: result.seed, createdAt: meta.createdAt ?? new Date().toISOString() },
    heads: result.heads,
  };
  validateProfile(profile);
  return profile;
}

/** Largest orthonormality error a stored matrix may have (Float32 rounding leaves ~1e-6). */
export const MATRIX_ORTHONORMALITY_TOLERANCE = 1e-3;

/** Index of one tensor's transform in `profile.heads`. */
export function headIndex(kvHeads: number, layer: number, head: number, kv: 0 | 1): number {
  return (layer * kvHeads + head) * 2 + kv;
}

/** The transform of one (layer, KV head, keys = 0 | values = 1). */
export function headTransform(profile: TransformProfile, layer: number, head: number, kv: 0 | 1): HeadTensorTransform {
  const { layers, kvHeads } = profile.model;
  checkIndex("layer", layer, layers);
  checkIndex("head", head, kvHeads);
  checkKv(kv);
  return profile.heads[headIndex(kvHeads, layer, head, kv)]!;
}

/**
 * Throws PROFILE_MISMATCH unless the profile was calibrated for this model: a basis fitted on other
 * weights would code every vector worse than no profile at all.
 */
export function checkProfileFor(profile: TransformProfile, model: TransformModelIdentity): void {
  const field = firstDifferent(profile, model, ["fingerprint", "layers", "kvHeads", "headDim"]);
  if (field === undefined) return;
  throw new NexusQuantError(
    "PROFILE_MISMATCH",
    `The transform profile was calibrated for another model: its ${field} is ${describeValue(profile.model[field])}, this model's is ${describeValue(model[field])}. ` +
      "Run `nexusquant calibrate DIR` for this model (DIR its checkpoint folder), or remove the profile to use the flat code.",
    { field, profile: profile.model[field], model: model[field] },
  );
}

/**
 * PROFILE_MISMATCH unless the profile was calibrated for this cache's shape (where no fingerprint is
 * at hand: an ONNX session's cache, a cache made directly).
 */
export function checkProfileShape(profile: TransformProfile, shape: Omit<TransformModelIdentity, "fingerprint">): void {
  const field = firstDifferent(profile, shape, ["layers", "kvHeads", "headDim"]);
  if (field === undefined) return;
  throw new NexusQuantError(
    "PROFILE_MISMATCH",
    `The transform profile was calibrated for ${field} ${profile.model[field]}, this cache has ${shape[field]}: run \`nexusquant calibrate DIR\` for this model.`,
    { field, profile: profile.model[field], cache: shape[field] },
  );
}

function firstDifferent<K extends keyof TransformModelIdentity>(profile: TransformProfile, model: Pick<TransformModelIdentity, K>, fields: readonly K[]): K | undefined {
  return fields.find((field) => profile.model[field] !== model[field]);
}

/**
 * Checks every field a consumer relies on: identity and calibration fields, one transform per tensor,
 * shapes, finite values, σ_b > 0, rates from {0, 1, 2, 3, 4} summing to the budget, T orthonormal.
 * Throws INVALID_ARGUMENT naming the first bad field (decodeProfile turns it into CORRUPT_DATA).
 * Costs d³/2 multiply-adds per tensor for the orthonormality check (~1 s for an 8B model).
 */
export function validateProfile(profile: TransformProfile): void {
  checkProfileFields(profile);
}

/**
 * validateProfile once per object, for the places that take a profile for every conversation (the
 * cache constructor, withNexusQuant's options): the d³ check would otherwise cost ~1 s per
 * conversation on an 8B model. A profile handed to them is not meant to be edited afterwards.
 */
export function validateProfileOnce(profile: TransformProfile): void {
  if (validatedProfiles.has(profile)) return;
  checkProfileFields(profile);
  validatedProfiles.add(profile);
}

const validatedProfiles = new WeakSet<TransformProfile>();

function checkProfileFields(profile: TransformProfile): void {
  checkPlainObject("profile", profile);
  if (profile.version !== TRANSFORM_PROFILE_VERSION) throw invalidArgument("profile.version", `${TRANSFORM_PROFILE_VERSION}`, profile.version);
  checkPlainObject("profile.model", profile.model);
  const { fingerprint, layers, kvHeads, headDim } = profile.model;
  if (typeof fingerprint !== "string") throw invalidArgument("profile.model.fingerprint", "a string", fingerprint);
  checkPositiveInt("profile.model.layers", layers, 1, FORMAT_LIMITS.maxLayers, "FORMAT_LIMITS.maxLayers");
  checkPositiveInt("profile.model.kvHeads", kvHeads, 1, FORMAT_LIMITS.maxHeads, "FORMAT_LIMITS.maxHeads");
  checkHeadDim("profile.model.headDim", headDim);
  checkPlainObject("profile.calibration", profile.calibration);
  const { tokens, source, seed, createdAt } = profile.calibration;
  checkInt("profile.calibration.tokens", tokens);
  if (typeof source !== "string") throw invalidArgument("profile.calibration.source", "a string", source);
  checkSeed("profile.calibration.seed", seed);
  if (typeof createdAt !== "string") throw invalidArgument("profile.calibration.createdAt", "a string", createdAt);
  const count = layers * kvHeads * 2;
  if (!Array.isArray(profile.heads) || profile.heads.length !== count) {
    throw invalidArgument("profile.heads", `an array of layers * kvHeads * 2 = ${count} transforms`, profile.heads);
  }
  profile.heads.forEach((h, i) => validateHeadTransform(`profile.heads[${i}]`, h, headDim));
}

function validateHeadTransform(arg: string, h: HeadTensorTransform, d: number): void {
  checkPlainObject(arg, h);
  const bands = d / GROUP_SIZE;
  checkFloats(`${arg}.mean`, h.mean, d);
  checkFloats(`${arg}.matrix`, h.matrix, d * d);
  checkFloats(`${arg}.bandRms`, h.bandRms, bands);
  h.bandRms.forEach((s, b) => {
    if (!(s > 0)) throw invalidArgument(`${arg}.bandRms[${b}]`, "a number > 0", s);
  });
  const err = orthonormalityError(h.matrix, d);
  if (!(err <= MATRIX_ORTHONORMALITY_TOLERANCE)) {
    throw new NexusQuantError("INVALID_ARGUMENT", `${arg}.matrix is not orthonormal: max |T·Tᵀ − I| is ${err}, more than ${MATRIX_ORTHONORMALITY_TOLERANCE}`, {
      arg: `${arg}.matrix`,
    });
  }
  checkPlainObject(`${arg}.rates`, h.rates);
  checkPlainObject(`${arg}.calibrated`, h.calibrated);
  checkPlainObject(`${arg}.predictedNmse`, h.predictedNmse);
  for (const bits of TRANSFORM_BUDGETS) {
    const rates = h.rates[bits];
    if (!(rates instanceof Uint8Array) || rates.length !== bands) throw invalidArgument(`${arg}.rates[${bits}]`, `a Uint8Array of ${bands} rates`, rates);
    let sum = 0;
    rates.forEach((r, b) => {
      if (!(TRANSFORM_RATES as readonly number[]).includes(r)) throw invalidArgument(`${arg}.rates[${bits}][${b}]`, `one of ${TRANSFORM_RATES.join(", ")}`, r);
      sum += r;
    });
    if (sum !== bands * bits) throw invalidArgument(`${arg}.rates[${bits}]`, `rates summing to ${bands} bands * ${bits} bits = ${bands * bits}`, `rates summing to ${sum}`);
    if (typeof h.calibrated[bits] !== "boolean") throw invalidArgument(`${arg}.calibrated[${bits}]`, "a boolean", h.calibrated[bits]);
    if (bits === 1 && !h.calibrated[1]) throw invalidArgument(`${arg}.calibrated[1]`, "true (there is no flat 1-bit code to fall back to)", false);
    const nmse = h.predictedNmse[bits];
    checkPlainObject(`${arg}.predictedNmse[${bits}]`, nmse, "an object { flat, calibrated }");
    for (const scheme of ["flat", "calibrated"] as const) {
      const v = nmse[scheme];
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw invalidArgument(`${arg}.predictedNmse[${bits}].${scheme}`, "a finite number >= 0", v);
    }
  }
}

/** headDim of a transform: a multiple of 8 (whole lattice groups) the eigen-solver handles. */
export function checkHeadDim(arg: string, headDim: unknown): number {
  // At least two bands: the 1-bit budget (2 bytes over 2 bands) cannot be split over one band.
  if (typeof headDim !== "number" || !Number.isInteger(headDim) || headDim < MIN_PROFILE_HEAD_DIM || headDim > MAX_EIGEN_DIM || headDim % GROUP_SIZE !== 0) {
    throw invalidArgument(arg, `a multiple of ${GROUP_SIZE} in [${MIN_PROFILE_HEAD_DIM}, ${MAX_EIGEN_DIM}]`, headDim);
  }
  return headDim;
}

/** kv selects keys (0) or values (1). */
export function checkKv(kv: unknown): asserts kv is 0 | 1 {
  if (kv !== 0 && kv !== 1) throw invalidArgument("kv", "0 (keys) or 1 (values)", kv);
}

function checkPlainObject(arg: string, value: unknown, what = "an object"): void {
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw invalidArgument(arg, what, value);
}

function checkFloats(arg: string, value: unknown, length: number): void {
  if (!(value instanceof Float32Array) || value.length !== length) throw invalidArgument(arg, `a Float32Array of ${length} elements`, value);
  for (let i = 0; i < length; i++) {
    if (!Number.isFinite(value[i]!)) throw invalidArgument(`${arg}[${i}]`, "a finite number", value[i]);
  }
}
