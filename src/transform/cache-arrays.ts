import type { SpecBits } from "../format/spec.js";
import { checkProfileShape, type TransformProfile } from "./profile.js";

/**
 * A profile's transforms as the native cache takes them (native/cache/transform_tables.h
 * TransformArrays): [layers][2][kvHeads] order (keys, then values, of each layer), the key entries with
 * the rates of the key budget and the value entries with those of the value budget.
 */
export interface CacheTransformArrays {
  mean: Float32Array;
  matrix: Float32Array;
  bandRms: Float32Array;
  rates: Uint8Array;
  calibrated: Uint8Array;
}

export interface CacheShapeForProfile {
  layers: number;
  kvHeads: number;
  headDim: number;
}

/**
 * The arrays of `profile` for a cache of `shape` coding keys at `keyBits` and values at `valueBits`.
 * A profile made for another shape is PROFILE_MISMATCH (checked before anything is copied).
 */
export function cacheTransformArrays(profile: TransformProfile, shape: CacheShapeForProfile, keyBits: SpecBits, valueBits: SpecBits): CacheTransformArrays {
  checkProfileShape(profile, shape);
  const { layers, kvHeads, headDim: d } = shape;
  const g = d / 8;
  const n = layers * 2 * kvHeads;
  const out: CacheTransformArrays = {
    mean: new Float32Array(n * d),
    matrix: new Float32Array(n * d * d),
    bandRms: new Float32Array(n * g),
    rates: new Uint8Array(n * g),
    calibrated: new Uint8Array(n),
  };
  for (let layer = 0; layer < layers; layer++) {
    for (let kv = 0; kv < 2; kv++) {
      const bits = kv === 0 ? keyBits : valueBits;
      for (let head = 0; head < kvHeads; head++) {
        const t = profile.heads[(layer * kvHeads + head) * 2 + kv]!;
        const i = (layer * 2 + kv) * kvHeads + head;
        out.mean.set(t.mean, i * d);
        out.matrix.set(t.matrix, i * d * d);
        out.bandRms.set(t.bandRms, i * g);
        out.rates.set(t.rates[bits], i * g);
        out.calibrated[i] = t.calibrated[bits] ? 1 : 0;
      }
    }
  }
  return out;
}
