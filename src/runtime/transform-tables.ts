/**
 * The native tables of a transform profile, built once per (profile, key bits, value bits) and shared
 * by every cache made with them: they are model data, like the weights, so N conversations hold them
 * once (the allocator's "transform" category), not N times. A cache's stats() still lists them, as
 * what that cache needs besides its tokens.
 */
import { callNative, native } from "./native.js";
import type { NativeTransformHandle } from "./binding.js";
import type { SpecBits } from "../format/spec.js";
import { createHash } from "node:crypto";
import { cacheTransformArrays, type CacheShapeForProfile, type CacheTransformArrays } from "../transform/cache-arrays.js";
import { checkProfileShape, type TransformProfile } from "../transform/profile.js";

/**
 * What identifies a set of tables in serialized caches (NQKV version 2 records it instead of the
 * tables): SHA-256 over the shape, the bits and every array, so another profile, or the same one at
 * other bits, never reads a cache's codes.
 */
function tablesId(shape: CacheShapeForProfile, keyBits: SpecBits, valueBits: SpecBits, arrays: CacheTransformArrays): Uint8Array {
  const hash = createHash("sha256").update(`nexusquant-transform-tables-v1 ${shape.layers} ${shape.kvHeads} ${shape.headDim} ${keyBits} ${valueBits}\n`);
  for (const a of [arrays.mean, arrays.matrix, arrays.bandRms, arrays.rates, arrays.calibrated]) hash.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  return new Uint8Array(hash.digest());
}

const built = new WeakMap<TransformProfile, Map<string, NativeTransformHandle>>();

/** The shared tables of `profile` for a cache of `shape` (PROFILE_MISMATCH for another shape). */
export function sharedTransformTables(profile: TransformProfile, shape: CacheShapeForProfile, keyBits: SpecBits, valueBits: SpecBits): NativeTransformHandle {
  let byBits = built.get(profile);
  const key = `${keyBits}/${valueBits}`;
  const found = byBits?.get(key);
  if (found !== undefined) {
    checkProfileShape(profile, shape);
    return found;
  }
  const arrays = cacheTransformArrays(profile, shape, keyBits, valueBits);
  const Native = native().NativeTransform;
  const id = tablesId(shape, keyBits, valueBits, arrays);
  const handle = callNative(() => new Native({ layers: shape.layers, kvHeads: shape.kvHeads, headDim: shape.headDim, keyBits, valueBits, ...arrays, id }));
  if (byBits === undefined) built.set(profile, (byBits = new Map()));
  byBits.set(key, handle);
  return handle;
}
