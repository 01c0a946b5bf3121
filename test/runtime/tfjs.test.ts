import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { beforeAll, describe, expect, it } from "vitest";
import { CompressedKVCache, quantizeSync, syntheticKV } from "../../src/runtime/index.js";
import { expectCode } from "../helpers.js";

// @tensorflow/tfjs tensors are accepted wherever the runtime takes typed arrays (tfjs is an optional
// peer; the pure-JS core with its CPU backend is what installs everywhere).
describe("tfjs tensors as input", () => {
  beforeAll(async () => {
    await tf.setBackend("cpu");
  });

  it("quantize and the cache give the same bytes for a tensor as for its Float32Array", () => {
    const kv = syntheticKV({ kvHeads: 2, headDim: 64, tokens: 50, seed: 1 });
    const kt = tf.tensor3d(kv.keys, [2, 50, 64]);
    const vt = tf.tensor3d(kv.values, [2, 50, 64]);
    const a = quantizeSync(kt, { headDim: 64, bits: 2 });
    const b = quantizeSync(kv.keys, { headDim: 64, bits: 2 });
    expect(Buffer.from(a.bytes).equals(Buffer.from(b.bytes))).toBe(true);

    const c1 = new CompressedKVCache({ layers: 1, kvHeads: 2, headDim: 64, preset: "balanced" });
    const c2 = new CompressedKVCache({ layers: 1, kvHeads: 2, headDim: 64, preset: "balanced" });
    c1.append(0, kt, vt);
    c2.append(0, kv.keys, kv.values);
    c1.compressSync();
    c2.compressSync();
    expect(Buffer.from(c1.serialize()).equals(Buffer.from(c2.serialize()))).toBe(true);
    const q = tf.randomNormal([2, 1, 64], 0, 1, "float32", 3);
    expect(Array.from(c1.attention(0, q))).toEqual(Array.from(c2.attention(0, q.dataSync() as Float32Array)));
    c1.dispose();
    c2.dispose();
  });

  it("int32 and disposed tensors are typed errors", () => {
    const c = new CompressedKVCache({ layers: 1, kvHeads: 1, headDim: 8 });
    expectCode(() => c.append(0, tf.zeros([1, 2, 8], "int32"), tf.zeros([1, 2, 8], "int32")), "INVALID_ARGUMENT", /float32/);
    const t = tf.ones([1, 2, 8]);
    t.dispose();
    expectCode(() => quantizeSync(t, { headDim: 8, bits: 2 }), "INVALID_ARGUMENT", /disposed/);
    c.dispose();
  });
});
