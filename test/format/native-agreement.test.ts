import { describe, expect, it } from "vitest";
import type { CodeBits } from "../../src/format/index.js";
import {
  CODE_BITS,
  DEFAULT_SPEC,
  ENCODER_SCALE_FACTORS,
  FORMAT_LIMITS,
  FP16_BYTES,
  GROUP_SIZE,
  PAGE_HEADER_BYTES,
  PAGE_HEADER_FIELDS,
  POSITION_BYTES,
  PRESETS,
  QUANTIZED_TENSOR_HEADER,
  QUANTIZED_TENSOR_HEADER_BYTES,
  SCALE_BYTES,
  SCORERS,
  SCORER_DEFAULTS,
  SCORER_IDS,
  SERIALIZED_CACHE_HEADER,
  compressedLayout,
  keptTokenCount,
  pageBytes,
  pagingPays,
  quantizedTensorBytes,
  residualBytes,
  residualCapacity,
  scoreBytesPerSlot,
  residualSlots,
  type CompressionSpec,
} from "../../src/format/index.js";
import { CompressedKVCache } from "../../src/runtime/cache.js";
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
  // 1..20: around where a first page starts to pay for itself (pagingPays) for every spec and shape.
  const tokenCounts = [0, ...Array.from({ length: 20 }, (_, i) => i + 1), 63, 64, 65, 1000, 4097, 131072, 1_000_003];

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
          expect(r.pagingPays).toBe(pagingPays(kvHeads, headDim, s, tokens));
          // A store that evicts nothing and for which paging does not pay stays in FP16: no pages.
          const layout = compressedLayout({ layers: 1, kvHeads, headDim, tokens }, s);
          const fp16 = kept === tokens && !r.pagingPays;
          expect(layout.pagesPerLayer[0]).toBe(fp16 ? 0 : r.pages);
          expect(layout.fp16Tokens[0]).toBe(fp16 ? tokens : 0);
          expect(r.quantizedTensorBytesKey).toBe(quantizedTensorBytes(tokens, headDim, s.keyBits as CodeBits));
          for (const scorer of SCORERS) expect(r.scoreBytesByScorer[SCORER_IDS[scorer]], scorer).toBe(scoreBytesPerSlot({ ...s, scorer }));
          // The residual of a compressed store with `tokens` on pages and `waiting` more in FP16.
          for (const waiting of [0, 1, 5, 33, 64, 129, 300]) {
            const pages = Math.ceil(tokens / s.pageTokens);
            expect([tokens, waiting, n.nativeLayout(s, kvHeads, headDim, tokens, waiting).residualSlots]).toEqual([
              tokens,
              waiting,
              residualSlots(kvHeads, headDim, s, pages, waiting, tokens + waiting),
            ]);
          }
          checked++;
        }
      }
    }
    expect(checked).toBe(specs.length * shapes.length * tokenCounts.length);
  });
});

// formatInfo() reads every constant from kernels/nq_format.h (and nq_scale.h); each must equal the
// src/format definition, so that changing either side alone fails here.
describe("formatInfo() agrees with src/format field by field", () => {
  const info = native().formatInfo();

  it("sizes", () => {
    expect(info.groupSize).toBe(GROUP_SIZE);
    expect(info.scaleBytes).toBe(SCALE_BYTES);
    expect(info.positionBytes).toBe(POSITION_BYTES);
    expect(info.fp16Bytes).toBe(FP16_BYTES);
  });

  it("the page header", () => {
    expect(info.pageHeader).toEqual({ bytes: PAGE_HEADER_BYTES, ...PAGE_HEADER_FIELDS });
  });

  it("the QuantizedTensor header", () => {
    expect(info.quantizedTensorHeader).toEqual({ bytes: QUANTIZED_TENSOR_HEADER_BYTES, ...QUANTIZED_TENSOR_HEADER });
  });

  it("the serialized cache header", () => {
    expect(info.serializedHeader).toEqual(SERIALIZED_CACHE_HEADER);
  });

  it("scorer ids", () => {
    expect(info.scorerIds).toEqual(SCORER_IDS);
    expect(Object.keys(info.scorerIds).sort()).toEqual([...SCORERS].sort());
  });

  it("scorer defaults (window and pool width), and what a cache without them gets", () => {
    expect(info.scorerDefaults).toEqual(SCORER_DEFAULTS);
    const c = new CompressedKVCache({ layers: 1, kvHeads: 1, headDim: 8 });
    try {
      expect({ scorerWindow: c.options.scorerWindow, poolKernel: c.options.poolKernel }).toEqual(SCORER_DEFAULTS);
    } finally {
      c.dispose();
    }
  });

  it("encoder scale factors (float32 in C++)", () => {
    expect(Object.keys(info.scaleFactors).map(Number)).toEqual([...CODE_BITS]);
    for (const bits of CODE_BITS) expect(info.scaleFactors[bits]).toBe(Math.fround(ENCODER_SCALE_FACTORS[bits]));
  });

  it("limits", () => {
    for (const [key, value] of Object.entries(info.limits)) expect([key, value]).toEqual([key, FORMAT_LIMITS[key as keyof typeof FORMAT_LIMITS]]);
    expect(Object.keys(info.limits).sort()).toEqual(["maxAbsValue", "maxHeadDim", "maxHeads", "maxSequenceTokens"]);
  });

  it("TypeScript's stricter limits stay within what native code accepts", () => {
    const n = info.nativeBounds;
    const L = FORMAT_LIMITS;
    expect(L.maxPageTokens).toBeLessThanOrEqual(n.maxPageTokens);
    expect(L.maxResidualWindow).toBeLessThanOrEqual(n.maxResidualWindow);
    expect(L.maxHeads).toBeLessThanOrEqual(n.maxQueryHeads); // query heads are validated against maxHeads
    expect(L.maxBatch * L.maxLayers).toBeLessThanOrEqual(n.maxStores);
    expect(L.maxWindowTokens).toBeLessThanOrEqual(n.maxWindowTokens);
  });
});
