// The cache after the store / CPU ops / compress policy split reproduces the monolith it replaced:
// cache-golden.json was recorded from KvCache at commit b87dbb4 (fixtures/make-cache-golden.ts).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { backendInfo } from "../../src/runtime/index.js";
import { GOLDEN_CASES, floatsFromBase64, runGoldenCase, type GoldenResult } from "./fixtures/cache-golden-cases.js";

const here = dirname(fileURLToPath(import.meta.url));
const golden = JSON.parse(readFileSync(join(here, "fixtures", "cache-golden.json"), "utf8")) as {
  recordedOn: { isa: string; threads: number };
  cases: GoldenResult[];
};
const info = backendInfo();
// The fused attention sums in an order fixed by the SIMD width and the token split over threads:
// bit-exact only where both match the recording; elsewhere the codes are still exact and attention
// agrees to float rounding.
const sameMachineShape = info.cpu.isa === golden.recordedOn.isa && info.cpu.threads === golden.recordedOn.threads;

describe("CompressedKVCache reproduces the pre-split monolith (cache-golden.json)", () => {
  it("has one recording per scenario", () => {
    expect(golden.cases.map((c) => c.name)).toEqual(GOLDEN_CASES.map((c) => c.name));
  });
  for (const c of GOLDEN_CASES) {
    it(c.name, () => {
      const want = golden.cases.find((g) => g.name === c.name)!;
      const got = runGoldenCase(c);
      expect(got.tokens).toEqual(want.tokens);
      expect(got.attention.length).toBe(want.attention.length);
      // The accumulated scorer keeps attention's softmax mass as state: its stored scores (and so
      // what it evicts) carry attention's rounding, exact only on the recording's ISA and threads.
      if (c.spec?.scorer === "accumulated" && !sameMachineShape) return;
      expect(got.serialized).toEqual(want.serialized);
      expect(got.materialized).toEqual(want.materialized);
      if (sameMachineShape) {
        expect(got.attention).toEqual(want.attention);
      } else {
        got.attention.forEach((a, i) => {
          const x = floatsFromBase64(a), y = floatsFromBase64(want.attention[i]!);
          let err = 0, norm = 0;
          for (let j = 0; j < x.length; j++) {
            err = Math.max(err, Math.abs(x[j]! - y[j]!));
            norm = Math.max(norm, Math.abs(y[j]!));
          }
          expect(err).toBeLessThanOrEqual(1e-5 * Math.max(norm, 1e-30));
        });
      }
    });
  }
});
