import { describe, expect, it } from "vitest";
import { PRESETS, SCORERS } from "../../src/format/index.js";
import { CompressedKVCache } from "../../src/runtime/cache.js";

// deserialize() takes the options from the native header (kernels/nq_format.h SerializedCacheHeader):
// every option must come back as the cache was created, for each preset and scorer.
describe("serialize/deserialize round-trips the options", () => {
  for (const preset of Object.keys(PRESETS)) {
    for (const scorer of SCORERS) {
      it(`${preset} / ${scorer}`, () => {
        const c = new CompressedKVCache({
          layers: 2, kvHeads: 2, headDim: 16, batch: 2, queryHeads: 4, preset, spec: { scorer, pageTokens: 16 },
          seed: 1234, scorerWindow: 5, poolKernel: 3,
        });
        const d = CompressedKVCache.deserialize(c.serialize());
        expect(d.options).toEqual(c.options);
        expect(d.options.spec.scorer).toBe(scorer);
        expect(d.options.scorerWindow).toBe(5);
        expect(d.options.poolKernel).toBe(3);
        c.dispose();
        d.dispose();
      });
    }
  }
  it("budget and unrope keys", () => {
    const c = new CompressedKVCache({ layers: 1, kvHeads: 1, headDim: 16, preset: "balanced", spec: { evictFraction: 0.5 }, budgetTokens: 100, keyStorage: "unrope", ropeTheta: 10000 });
    const d = CompressedKVCache.deserialize(c.serialize());
    expect(d.options).toEqual(c.options);
    expect(d.options).toMatchObject({ budgetTokens: 100, keyStorage: "unrope", ropeTheta: 10000 });
    c.dispose();
    d.dispose();
  });
});
