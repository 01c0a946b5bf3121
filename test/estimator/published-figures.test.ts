/**
 * Figures users check us against, from published KV-cache calculators and articles (issue 2 §2),
 * and the published figures that are wrong (docs/estimator.md), checked against their correct values.
 */
import { describe, expect, it } from "vitest";
import {
  ARCHITECTURES,
  kvBytesPerToken,
  kvCacheForContext,
  maxContextForMemory,
  planCapacity,
  weightMemory,
  type Architecture,
} from "../../src/estimator/index.js";

const llama70b = ARCHITECTURES["llama-3.1-70b"]!;

describe("published figures", () => {
  it("llama-3.1-70b bytes per token: bf16 327,680, fp8 163,840, int4 81,920", () => {
    expect(kvBytesPerToken(llama70b, "bf16")).toBe(327_680);
    expect(kvBytesPerToken(llama70b, "fp8")).toBe(163_840);
    expect(kvBytesPerToken(llama70b, "int4")).toBe(81_920);
    expect(kvBytesPerToken(llama70b)).toBe(327_680); // fp16 is the default
  });

  it("llama-3.1-70b at 131,072 tokens bf16 = 42,949,672,960 B = 40.0 GiB", () => {
    const c = kvCacheForContext(llama70b, 131_072, "bf16");
    expect(c.bytes).toBe(42_949_672_960);
    expect(c.gib).toBe(40);
    expect(c.gb).toBeCloseTo(42.949672960, 9);
  });

  it("llama-3.1-70b at 4,096 tokens fp8 = 671,088,640 B = 0.625 GiB", () => {
    const c = kvCacheForContext(llama70b, 4096, "fp8");
    expect(c.bytes).toBe(671_088_640);
    expect(c.gib).toBe(0.625);
  });

  it("maxContextForMemory(llama70b, 20, bf16) = 65,536 and fp8 131,072 (20 is GiB, as published)", () => {
    expect(maxContextForMemory(llama70b, 20, "bf16")).toBe(65_536);
    expect(maxContextForMemory(llama70b, 20, "fp8")).toBe(131_072);
    // Explicit units give the same answer, and decimal GB gives less.
    expect(maxContextForMemory(llama70b, { gib: 20 }, "bf16")).toBe(65_536);
    expect(maxContextForMemory(llama70b, { gb: 20 }, "bf16")).toBe(Math.floor(20e9 / 327_680));
    expect(maxContextForMemory(llama70b, { bytes: 327_680 * 3 - 1 }, "bf16")).toBe(2);
  });

  it("weightMemory of a 70B model: bf16 140 GB, int8 70 GB, int4 35 GB", () => {
    expect(weightMemory(llama70b, "bf16").bytes).toBe(140e9);
    expect(weightMemory(llama70b, "int8").gb).toBe(70);
    expect(weightMemory(llama70b, "int4").gb).toBe(35);
    expect(weightMemory(llama70b, "fp32").gb).toBe(280);
  });

  it("Llama-3-8B at 128,000 tokens = 16.78 GB", () => {
    const c = kvCacheForContext(ARCHITECTURES["llama-3-8b"]!, 128_000, "fp16");
    expect(c.bytes).toBe(16_777_216_000);
    expect(c.gb.toFixed(2)).toBe("16.78");
  });

  it("Mistral-7B: 131,072 B/token, 32,000 tokens = 4.19 GB", () => {
    const mistral = ARCHITECTURES["mistral-7b"]!;
    expect(kvBytesPerToken(mistral, "fp16")).toBe(131_072);
    expect(kvCacheForContext(mistral, 32_000, "fp16").gb.toFixed(2)).toBe("4.19");
  });

  it("2·48·16·64·1,000,000·2 = 196.6 GB for a 48-layer, 16-KV-head, head_dim-64 model", () => {
    const custom: Architecture = {
      id: "custom-48l", name: "48 layers, 16 KV heads, head_dim 64", source: "test", layers: 48,
      attentionHeads: 16, kvHeads: 16, headDim: 64, hiddenSize: 1024, attention: "mha", notes: [],
    };
    const c = kvCacheForContext(custom, 1_000_000, "fp16");
    expect(c.bytes).toBe(2 * 48 * 16 * 64 * 1_000_000 * 2);
    expect(c.gb.toFixed(1)).toBe("196.6");
  });
});

describe("published figures that are wrong (see docs/estimator.md)", () => {
  const llama3_70b = ARCHITECTURES["llama-3-70b"]!;

  it("Llama-3-70B at 128K is 41.94 GB (128,000 tokens) / 40 GiB (131,072), not 167.77 GB or 160 GB", () => {
    const at128000 = kvCacheForContext(llama3_70b, 128_000, "fp16");
    expect(at128000.gb.toFixed(2)).toBe("41.94");
    expect(at128000.gb).not.toBeCloseTo(167.77, 1);
    expect(kvCacheForContext(llama3_70b, 131_072, "fp16").gib).toBe(40);
  });

  it("Llama-3-8B is 16.78 GB (15.63 GiB) at 128,000 tokens and 131.07 GB (122.07 GiB) at 1M, not 16.7 / 130.4", () => {
    const llama8b = ARCHITECTURES["llama-3-8b"]!;
    const at128k = kvCacheForContext(llama8b, 128_000, "fp16");
    const at1m = kvCacheForContext(llama8b, 1_000_000, "fp16");
    expect([at128k.gb.toFixed(2), at128k.gib.toFixed(2)]).toEqual(["16.78", "15.63"]);
    expect([at1m.gb.toFixed(2), at1m.gib.toFixed(2)]).toEqual(["131.07", "122.07"]);
  });

  it("Llama-3-70B is 320 KiB per token (80 layers, 8 KV heads), not 6 MB", () => {
    expect(kvBytesPerToken(llama3_70b, "fp16")).toBe(320 * 1024);
    expect(llama3_70b.layers).toBe(80);
    expect(llama3_70b.kvHeads).toBe(8);
  });

  it("4K sessions of Llama-3-70B on 2× H100 (bf16 weights, fp8 KV, 5 GB overhead) is 22, not 24", () => {
    const plan = planCapacity({
      arch: llama3_70b, gpu: "h100", tensorParallel: 2, context: 4096,
      precision: "fp8", weightsPrecision: "bf16", overheadGb: 2.5, // 2.5 GB per GPU = 5 GB in all
    });
    // 160 GB − 140 GB − 5 GB = 15 GB free, 0.625 GiB per session: 15e9 / 671,088,640 = 22.35.
    expect(plan.freeBytesPerGpu * 2).toBe(15e9);
    expect(plan.kvBytesPerSession).toBe(671_088_640);
    expect(plan.maxSessions).toBe(22);
    expect(plan.maxSessions).toBe(Math.floor(15e9 / 671_088_640));
  });
});
