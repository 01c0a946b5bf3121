/**
 * The native tables of a transform profile, built once per (profile, key bits, value bits) and shared
 * by every cache made with them: they are model data, like the weights, so N conversations hold them
 * once (the allocator's "transform" category), not N times. A cache's stats() still lists them, as
 * what that cache needs besides its tokens.
 */
import { callNative, native } from "./native.js";
import type { NativeTransformHandle } from "./binding.js";
import type { SpecBits } from "../format/spec.js";
import { cacheTransformArrays, type CacheShapeForProfile } from "../transform/cache-arrays.js";
import type { TransformProfile } from "../transform/profile.js";

const built = new WeakMap<TransformProfile, Map<string, NativeTransformHandle>>();

/** The shared tables of `profile` for a cache of `shape` (PROFILE_MISMATCH for another shape). */
export function sharedTransformTables(profile: TransformProfile, shape: CacheShapeForProfile, keyBits: SpecBits, valueBits: SpecBits): NativeTransformHandle {
  let byBits = built.get(profile);
  const key = `${keyBits}/${valueBits}`;
  const found = byBits?.get(key);
  if (found !== undefined) {
    cacheTransformArrays(profile, shape, keyBits, valueBits, { checkOnly: true });
    return found;
  }
  const arrays = cacheTransformArrays(profile, shape, keyBits, valueBits);
  const Native = native().NativeTransform;
  const handle = callNative(() => new Native({ layers: shape.layers, kvHeads: shape.kvHeads, headDim: shape.headDim, keyBits, valueBits, ...arrays }));
  if (byBits === undefined) built.set(profile, (byBits = new Map()));
  byBits.set(key, handle);
  return handle;
}
