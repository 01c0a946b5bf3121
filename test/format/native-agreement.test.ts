import { describe, expect, it } from "vitest";
import {
  DEFAULT_SPEC,
  PRESETS,
  compressedLayout,
  keptTokenCount,
  pageBytes,
  quantizedTensorBytes,
  residualBytes,
  residualCapacity,
  type CompressionSpec,
} from "../../src/format/index.js";
import { native } from "../../src/runtime/native.js";

// kernels/nq_format.h is the allocator's copy of the layout; it must agree with src/format byte for byte.
describe("native layout mirror agrees with src/format", () => {
  const specs: CompressionSpec[] = [
    ...Object.values(PRESETS).map((p) => p.spec),
    { ...DEFAULT_SPEC, keyBits: 4, valueBits: 4, evictFraction: 0.3333, sinkTokens: 1, recentWindow: 0, pageTokens: 8, residualWindow: 0 },
    { ...DEFAULT_SPEC, keyBits: 2, valueBits: 3, evictFraction: 0.9, sinkTokens: 7, recentWindow: 33, pageTokens: 256 },
  ];
  const shapes = [
    { kvHeads: 1, headDim: 64 },
    { kvHeads: 8, headDim: 128 },
    { kvHeads: 2, headDim: 96 },
    { kvHeads: 4, headDim: 80 },
    { kvHeads: 16, headDim: 256 },
  ];
  const tokenCounts = [0, 1, 7, 63, 64, 65, 1000, 4097, 131072, 1_000_003];

  it("pages, kept tokens, residual and tensor sizes", () => {
    const n = native();
    let checked = 0;
    for (const s of specs) {
      for (const { kvHeads, headDim } of shapes) {
        for (const tokens of tokenCounts) {
          const r = n.nativeLayout(s, kvHeads, headDim, tokens);
          const kept = keptTokenCount(tokens, s);
          expect(r.keptTokens).toBe(kept);
          expect(r.pageBytes).toBe(pageBytes(kvHeads, headDim, s));
          expect(r.pageEnd).toBe(r.pageBytes);
          expect(r.residualBytes).toBe(residualBytes(kvHeads, headDim, s));
          expect(r.residualCapacity).toBe(residualCapacity(tokens, s));
          expect(r.pages).toBe(compressedLayout({ layers: 1, kvHeads, headDim, tokens }, s).pagesPerLayer[0]);
          expect(r.quantizedTensorBytesKey).toBe(quantizedTensorBytes(tokens, headDim, s.keyBits));
          checked++;
        }
      }
    }
    expect(checked).toBe(specs.length * shapes.length * tokenCounts.length);
  });
});
