/**
 * Calibrated transform tables for the op-level tests of the transform codec (issue 26): the parity
 * cases (test/ops/parity-cases.mjs, CUDA against the CPU ops), the CPU ops' own checks and the CUDA
 * cache tests. A profile fitted on syntheticKV (keys with outlier channels and per-channel means).
 * The last KV head's values are then marked flat at 2-4 bits, as the calibration's guard marks a
 * tensor it finds no gain on, so every case meets calibrated and flat heads side by side (at 1 bit
 * every head stays calibrated: there is no flat 1-bit code).
 */
import type { SpecBits } from "../../src/format/index.js";
import type { NativeTransformHandle } from "../../src/runtime/binding.js";
import { syntheticKV } from "../../src/runtime/synthetic.js";
import { sharedTransformTables } from "../../src/runtime/transform-tables.js";
import { TransformCalibrator, buildTransformProfile, type TransformProfile } from "../../src/transform/index.js";

export interface TransformFixtureShape {
  layers: number;
  kvHeads: number;
  headDim: number;
}

const profiles = new Map<string, TransformProfile>();

/** The calibration stream of layer `layer` is syntheticKV with this seed; test data comes later in it. */
const streamSeed = (seed: number, layer: number): number => seed + 40 + layer;

/** A profile for `shape`, fitted on the first `tokens` of each layer's synthetic stream (built once per shape and seed). */
export function transformProfileFor(shape: TransformFixtureShape, seed = 3, tokens = 1024): TransformProfile {
  const key = `${shape.layers}/${shape.kvHeads}/${shape.headDim}/${seed}/${tokens}`;
  const found = profiles.get(key);
  if (found) return found;
  const { layers, kvHeads, headDim } = shape;
  const cal = new TransformCalibrator({ layers, kvHeads, headDim, seed });
  for (let l = 0; l < layers; l++) {
    const kv = syntheticKV({ kvHeads, headDim, tokens, seed: streamSeed(seed, l) });
    const per = tokens * headDim;
    for (let h = 0; h < kvHeads; h++) {
      cal.add(l, h, 0, kv.keys.subarray(h * per, (h + 1) * per));
      cal.add(l, h, 1, kv.values.subarray(h * per, (h + 1) * per));
    }
  }
  const fitted = buildTransformProfile(cal.finish(), { fingerprint: "sha256:synthetic", source: "syntheticKV (test/ops/transform-fixture.ts)" });
  const flatHead = (layer: number) => (layer * kvHeads + kvHeads - 1) * 2 + 1;  // profile.heads: [layers][kvHeads][K|V]
  const flat = new Set(Array.from({ length: layers }, (_, l) => flatHead(l)));
  const heads = fitted.heads.map((h, i) => (flat.has(i) ? { ...h, calibrated: { ...h.calibrated, 2: false, 3: false, 4: false } } : h));
  const profile: TransformProfile = { ...fitted, heads };
  profiles.set(key, profile);
  return profile;
}

/** The shared native tables of that profile for (keyBits, valueBits). */
export function transformTablesFor(shape: TransformFixtureShape, keyBits: SpecBits, valueBits: SpecBits, seed = 3): NativeTransformHandle {
  return sharedTransformTables(transformProfileFor(shape, seed), shape, keyBits, valueBits);
}

/** K/V [kvHeads][tokens][headDim] of layer `layer`'s stream after the calibration part (f32). */
export function transformTestKV(shape: TransformFixtureShape, layer: number, tokens: number, seed = 3, start = 4096): { keys: Float32Array; values: Float32Array } {
  return syntheticKV({ kvHeads: shape.kvHeads, headDim: shape.headDim, tokens, seed: streamSeed(seed, layer), startPosition: start });
}
