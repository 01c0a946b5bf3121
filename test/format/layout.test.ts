import { describe, expect, it } from "vitest";
import {
  DEFAULT_SPEC,
  PRESETS,
  PRESET_ALIASES,
  compressedLayout,
  getPreset,
  keptTokenCount,
  pageBytes,
  pagingPays,
  presetRatio,
  quantizedTensorBytes,
  type CompressionSpec,
} from "../../src/format/index.js";
import { NexusQuantError } from "../../src/errors.js";

const spec = (over: Partial<CompressionSpec>): CompressionSpec => ({ ...DEFAULT_SPEC, ...over });

describe("compressedLayout", () => {
  it("counts each component of a K2V2, no-eviction cache by hand", () => {
    const s = spec({ keyBits: 2, valueBits: 2, evictFraction: 0, pageTokens: 64, residualWindow: 16 });
    const l = compressedLayout({ layers: 2, kvHeads: 4, headDim: 128, tokens: 100 }, s);
    // 100 tokens -> 2 pages of 64 slots per layer; 2 layers -> 4 pages; 4 heads -> 4*64*4 = 1024 slots
    expect(l.pagesPerLayer).toEqual([2]);
    expect(l.bytes.codes).toBe(1024 * (32 + 32));
    expect(l.bytes.scales).toBe(1024 * 4);
    expect(l.bytes.positions).toBe(0);
    expect(l.bytes.headers).toBe(4 * 16);
    expect(l.bytes.residual).toBe(0); // right after compression the residual is empty; it grows with appends
    expect(l.bytes.total).toBe(l.bytes.codes + l.bytes.scales + l.bytes.headers + l.bytes.residual);
    expect(l.baselineBytes).toBe(2 * 2 * 4 * 100 * 128 * 2);
  });

  it("keeps a sequence too short for a page to pay in FP16: ratio exactly 1, no pages", () => {
    const s = spec({ keyBits: 2, valueBits: 2, evictFraction: 0, pageTokens: 64 });
    // One page of 4 heads x 64 slots: 16 + 256 * (32 + 32 + 4) = 17424 B; FP16 costs 2*4*128*2 = 2048 B a token.
    expect(pageBytes(4, 128, s)).toBe(17424);
    expect(pagingPays(4, 128, s, 8)).toBe(false); // 16384 B of FP16 < one page
    expect(pagingPays(4, 128, s, 9)).toBe(true); // 18432 B >= 17424 B
    expect(pagingPays(4, 128, s, 0)).toBe(true); // nothing to hold: no page, no residual
    const short = compressedLayout({ layers: 2, kvHeads: 4, headDim: 128, tokens: [8, 9] }, s);
    expect(short.pagesPerLayer).toEqual([0, 1]);
    expect(short.fp16Tokens).toEqual([8, 0]);
    expect(short.bytes.residual).toBe(2 * 8 * 2048);
    expect(short.bytes.headers).toBe(2 * 16);
    const eight = compressedLayout({ layers: 2, kvHeads: 4, headDim: 128, tokens: 8 }, s);
    expect(eight.bytes.total).toBe(eight.baselineBytes);
    expect(eight.ratio).toBe(1);
    // Eviction that must happen still pages: sinks 1, window 0, half of the rest evicted.
    const evicting = compressedLayout({ layers: 1, kvHeads: 4, headDim: 128, tokens: 8 }, spec({ evictFraction: 0.5, sinkTokens: 1, recentWindow: 0 }));
    expect(evicting.keptTokens).toEqual([8 - 3]);
    expect(evicting.pagesPerLayer).toEqual([1]);
    expect(evicting.fp16Tokens).toEqual([0]);
  });

  it("evicts floor(evictable * fraction) tokens and keeps sinks and the window", () => {
    const s = spec({ evictFraction: 0.6, sinkTokens: 4, recentWindow: 64 });
    expect(keptTokenCount(1000, s)).toBe(1000 - Math.floor(932 * 0.6));
    expect(keptTokenCount(50, s)).toBe(50); // everything protected
    expect(keptTokenCount(0, s)).toBe(0);
    const l = compressedLayout({ layers: 1, kvHeads: 2, headDim: 64, tokens: [1000, 50] }, s);
    expect(l.keptTokens).toEqual([keptTokenCount(1000, s), 50]);
    expect(l.bytes.positions).toBeGreaterThan(0);
  });

  it("handles batches with different lengths as the sum of single sequences", () => {
    const s = PRESETS.balanced!.spec;
    const shape = { layers: 3, kvHeads: 8, headDim: 96 };
    const both = compressedLayout({ ...shape, tokens: [777, 4096] }, s);
    const a = compressedLayout({ ...shape, tokens: 777 }, s);
    const b = compressedLayout({ ...shape, tokens: 4096 }, s);
    expect(both.bytes.total).toBe(a.bytes.total + b.bytes.total);
    expect(both.baselineBytes).toBe(a.baselineBytes + b.baselineBytes);
  });

  it("rejects bad shapes and specs with the field name", () => {
    expect(() => compressedLayout({ layers: 1, kvHeads: 1, headDim: 100, tokens: 1 }, DEFAULT_SPEC)).toThrow(/shape.headDim/);
    expect(() => compressedLayout({ layers: 0, kvHeads: 1, headDim: 64, tokens: 1 }, DEFAULT_SPEC)).toThrow(/shape.layers/);
    expect(() => compressedLayout({ layers: 1, kvHeads: 1, headDim: 64, tokens: -1 }, DEFAULT_SPEC)).toThrow(/shape.tokens/);
    expect(() => compressedLayout({ layers: 1, kvHeads: 1, headDim: 64, tokens: [1, 2], batch: 3 }, DEFAULT_SPEC)).toThrow(/shape.batch/);
    expect(() => compressedLayout({ layers: 1, kvHeads: 1, headDim: 64, tokens: 1 }, spec({ keyBits: 5 as 2 }))).toThrow(/keyBits/);
    expect(() => compressedLayout({ layers: 1, kvHeads: 1, headDim: 64, tokens: 1 }, spec({ evictFraction: 1 }))).toThrow(/evictFraction/);
    expect(() => compressedLayout({ layers: 1, kvHeads: 1, headDim: 64, tokens: 1 }, spec({ evictFraction: 0.5, sinkTokens: 0 }))).toThrow(/sinkTokens/);
    expect(() => compressedLayout({ layers: 1, kvHeads: 1, headDim: 64, tokens: 1 }, spec({ pageTokens: 12 }))).toThrow(/pageTokens/);
  });

  it("sizes a standalone quantized tensor as vectors x (headDim x bits / 8 + 2) + a 32-byte header", () => {
    expect(quantizedTensorBytes(10, 128, 2)).toBe(32 + 10 * (32 + 2));
    expect(quantizedTensorBytes(3, 64, 3)).toBe(32 + 3 * (24 + 2));
    expect(quantizedTensorBytes(1, 256, 4)).toBe(32 + 128 + 2);
  });
});

describe("presets", () => {
  it("each alias tier's computed ratio at head_dim 128 meets its target", () => {
    for (const [name, { target }] of Object.entries(PRESET_ALIASES)) {
      expect(presetRatio(name), name).toBeGreaterThanOrEqual(target);
    }
  });

  it("ratios follow from bits and eviction (more eviction, fewer bits -> larger ratio)", () => {
    expect(presetRatio("quant")).toBeLessThan(presetRatio("high"));
    expect(presetRatio("high")).toBeLessThan(presetRatio("asym"));
    expect(presetRatio("asym")).toBeLessThan(presetRatio("balanced"));
    expect(presetRatio("balanced")).toBeLessThan(presetRatio("max"));
    // K3V3 without eviction: (48 + 48 code bytes + 4 scale bytes + 16/64 header) per slot vs 512 FP16 bytes
    expect(presetRatio("quant")).toBeCloseTo(512 / (100 + 16 / (64 * 8)), 10);
  });

  it("compressedLayout's ratio approaches the preset ratio at long context", () => {
    const l = compressedLayout({ layers: 32, kvHeads: 8, headDim: 128, tokens: 1 << 20 }, getPreset("balanced").spec);
    expect(l.ratio / presetRatio("balanced")).toBeGreaterThan(0.99);
    expect(l.ratio).toBeLessThan(presetRatio("balanced"));
  });

  it("unknown presets list the known ones", () => {
    try {
      getPreset("balance");
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(NexusQuantError);
      expect((e as NexusQuantError).code).toBe("UNKNOWN_PRESET");
      expect((e as Error).message).toContain("balanced");
    }
  });
});
