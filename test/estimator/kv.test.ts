import { describe, expect, it } from "vitest";
import {
  ARCHITECTURES,
  kvBytesPerToken,
  kvCacheBytes,
  kvCacheForContext,
  maxContextForMemory,
  weightMemory,
  architectureFromHfConfig,
} from "../../src/estimator/index.js";
import { asymptoticBytesPerTokenLayer, compressedLayout, getPreset, PRESET_NAMES } from "../../src/format/index.js";
import { thrown } from "./helpers.js";

const llama8b = ARCHITECTURES["llama-3.1-8b"]!;
const gemma = ARCHITECTURES["gemma-2-9b"]!;

describe("number formats", () => {
  it("bytes per token follow 2 · layers · kvHeads · headDim · bytes for every format", () => {
    const bytes = { fp32: 4, fp16: 2, bf16: 2, fp8: 1, int8: 1, int4: 0.5 } as const;
    for (const arch of Object.values(ARCHITECTURES)) {
      if (arch.mla) continue;
      for (const [format, b] of Object.entries(bytes)) {
        expect(kvBytesPerToken(arch, format), `${arch.id} ${format}`).toBe(2 * arch.layers * arch.kvHeads * arch.headDim * b);
      }
    }
  });

  it("cache bytes are exact integers and scale linearly without windows", () => {
    for (const t of [0, 1, 17, 4096, 131_071]) {
      const c = kvCacheForContext(llama8b, t, "int4");
      expect(Number.isSafeInteger(c.bytes)).toBe(true);
      expect(c.bytes).toBe(t * kvBytesPerToken(llama8b, "int4"));
      expect(c.gb).toBe(c.bytes / 1e9);
      expect(c.gib).toBe(c.bytes / 2 ** 30);
    }
  });

  it("sliding layers hold min(tokens, window)", () => {
    const perLayerToken = 2 * gemma.kvHeads * gemma.headDim * 2;
    expect(kvCacheBytes(gemma, 4096)).toBe(42 * 4096 * perLayerToken);
    expect(kvCacheBytes(gemma, 4097)).toBe((42 * 4096 + 21) * perLayerToken);
  });

  it("maxContextForMemory is the largest context whose cache fits, also with windows", () => {
    for (const gib of [0.5, 3, 20]) {
      const t = maxContextForMemory(gemma, gib, "fp8");
      expect(kvCacheBytes(gemma, t, "fp8")).toBeLessThanOrEqual(gib * 2 ** 30);
      expect(kvCacheBytes(gemma, t + 1, "fp8")).toBeGreaterThan(gib * 2 ** 30);
    }
  });

  it("maxContextForMemory is Infinity when every layer slides and the window fits", () => {
    const mistralV01 = architectureFromHfConfig({ model_type: "mistral", num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, hidden_size: 4096, sliding_window: 4096 });
    expect(maxContextForMemory(mistralV01, 1, "fp16")).toBe(Number.POSITIVE_INFINITY);
    expect(maxContextForMemory(mistralV01, { bytes: 131_072 * 100 }, "fp16")).toBe(100);
  });

  it("weightMemory rounds int4 of an odd parameter count up to whole bytes", () => {
    expect(weightMemory({ ...llama8b, parameters: 3 }, "int4").bytes).toBe(2);
  });
});

describe("presets take their bytes from src/format", () => {
  it("kvCacheForContext equals compressedLayout of the same shape", () => {
    for (const name of PRESET_NAMES) {
      for (const t of [0, 1, 100, 4097, 131_072]) {
        const expected = compressedLayout({ layers: llama8b.layers, kvHeads: 8, headDim: 128, tokens: t }, getPreset(name).spec).bytes.total;
        expect(kvCacheForContext(llama8b, t, name).bytes, `${name} ${t}`).toBe(expected);
      }
    }
  });

  it("sliding layers are sized as a separate layout of min(tokens, window) tokens", () => {
    const spec = getPreset("balanced").spec;
    const full = compressedLayout({ layers: 21, kvHeads: 8, headDim: 256, tokens: 8192 }, spec).bytes.total;
    const sliding = compressedLayout({ layers: 21, kvHeads: 8, headDim: 256, tokens: 4096 }, spec).bytes.total;
    expect(kvCacheBytes(gemma, 8192, "balanced")).toBe(full + sliding);
  });

  it("per-token preset figures are the format's asymptotic bytes, and match the exact ones at long context", () => {
    const perToken = kvBytesPerToken(llama8b, "balanced");
    expect(perToken).toBe(32 * asymptoticBytesPerTokenLayer(8, 128, getPreset("balanced").spec));
    // Residual buffer, sinks, recent window and page rounding are fixed costs that fade with length.
    const exactPerToken = (t: number) => kvCacheBytes(llama8b, t, "balanced") / t;
    expect(Math.abs(exactPerToken(4_000_000) / perToken - 1)).toBeLessThan(1e-3);
    expect(Math.abs(exactPerToken(40_000_000) / perToken - 1)).toBeLessThan(Math.abs(exactPerToken(4_000_000) / perToken - 1));
  });

  it("compression shrinks the cache in the order of the presets", () => {
    const at = (p: string) => kvCacheBytes(llama8b, 131_072, p);
    expect(at("quant")).toBeLessThan(at("fp16"));
    expect(at("high")).toBeLessThan(at("quant"));
    expect(at("balanced")).toBeLessThan(at("asym"));
    expect(at("max")).toBeLessThan(at("balanced"));
  });

  it("maxContextForMemory with a preset is exact on the format's bytes", () => {
    const t = maxContextForMemory(llama8b, 2, "max");
    expect(kvCacheBytes(llama8b, t, "max")).toBeLessThanOrEqual(2 * 2 ** 30);
    expect(kvCacheBytes(llama8b, t + 1, "max")).toBeGreaterThan(2 * 2 ** 30);
    expect(t).toBeGreaterThan(maxContextForMemory(llama8b, 2, "fp16") * 20);
  });

  it("MLA caches cannot be sized by a preset (UNSUPPORTED), but number formats work", () => {
    const ds = ARCHITECTURES["deepseek-v3"]!;
    expect(thrown(() => kvCacheBytes(ds, 10, "balanced")).code).toBe("UNSUPPORTED");
    expect(thrown(() => kvBytesPerToken(ds, "max")).code).toBe("UNSUPPORTED");
    expect(kvCacheForContext(ds, 1000, "fp8").bytes).toBe(61 * 576 * 1000);
  });
});

describe("argument errors", () => {
  it("unknown precision lists formats and presets", () => {
    const e = thrown(() => kvBytesPerToken(llama8b, "fp4"));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.message).toMatch(/^Expected one of fp32, fp16, bf16, fp8, int8, int4 or a preset .* for precision but received "fp4"$/);
  });

  it.each([-1, 1.5, Number.NaN, "8"])("tokens %s", (t) => {
    expect(thrown(() => kvCacheForContext(llama8b, t as number)).code).toBe("INVALID_ARGUMENT");
  });

  it("bad memory", () => {
    expect(thrown(() => maxContextForMemory(llama8b, -1)).code).toBe("INVALID_ARGUMENT");
    expect(thrown(() => maxContextForMemory(llama8b, Number.NaN)).code).toBe("INVALID_ARGUMENT");
  });

  it("weights in a preset, or of a model without a parameter count", () => {
    expect(thrown(() => weightMemory(llama8b, "balanced" as "bf16")).message).toMatch(/presets do not apply to weights/);
    const parsed = architectureFromHfConfig({ num_hidden_layers: 2, num_attention_heads: 2, hidden_size: 16 });
    const e = thrown(() => weightMemory(parsed, "bf16"));
    expect([e.code, e.details?.key]).toEqual(["CONFIG_ERROR", "parameters"]);
  });

  it("not an architecture", () => {
    expect(thrown(() => kvBytesPerToken({} as never)).code).toBe("INVALID_ARGUMENT");
  });
});
