import { describe, expect, it } from "vitest";
import { ARCHITECTURES, GPUS, kvCacheBytes, planCapacity, weightMemory } from "../../src/estimator/index.js";
import { thrown } from "./helpers.js";

const llama70b = ARCHITECTURES["llama-3.1-70b"]!;

describe("planCapacity", () => {
  it("works in integer bytes per GPU: free = memory − weights − overhead", () => {
    const p = planCapacity({ arch: "llama-3.1-8b", gpu: "h100", context: 32_768, precision: "fp16", overheadGb: 3 });
    expect(p.memoryBytesPerGpu).toBe(80e9);
    expect(p.weightBytesPerGpu).toBe(16e9);
    expect(p.freeBytesPerGpu).toBe(80e9 - 16e9 - 3e9);
    expect(p.kvBytesPerSession).toBe(131_072 * 32_768);
    expect(p.maxSessions).toBe(Math.floor(61e9 / (131_072 * 32_768)));
    expect(p.fits).toBe(true);
    // The longest context for one session uses all the free memory.
    expect(131_072 * p.maxContext).toBeLessThanOrEqual(61e9);
    expect(131_072 * (p.maxContext + 1)).toBeGreaterThan(61e9);
  });

  it("weights that do not fit: fits false, no sessions, no context", () => {
    const p = planCapacity({ arch: llama70b, gpu: "h100", context: 131_072, preset: "balanced" });
    expect(p.freeBytesPerGpu).toBe(80e9 - 140e9);
    expect([p.fits, p.maxSessions, p.maxContext]).toEqual([false, 0, 0]);
  });

  it("batch: fits only when batch sessions fit; maxContext is for the whole batch", () => {
    const one = planCapacity({ arch: "llama-3.1-8b", memoryGb: 24, context: 8192, weightsPrecision: "int4" });
    const many = planCapacity({ arch: "llama-3.1-8b", memoryGb: 24, context: 8192, weightsPrecision: "int4", batch: one.maxSessions + 1 });
    expect(one.fits).toBe(true);
    expect(many.fits).toBe(false);
    expect(many.maxContext).toBeLessThan(8192);
    expect((one.maxSessions + 1) * kvCacheBytes(ARCHITECTURES["llama-3.1-8b"]!, many.maxContext)).toBeLessThanOrEqual(one.freeBytesPerGpu);
  });

  it("a preset fits far more sessions than fp16, sized by the format", () => {
    const fp16 = planCapacity({ arch: llama70b, gpu: "h200", tensorParallel: 2, context: 131_072 });
    const bal = planCapacity({ arch: llama70b, gpu: "h200", tensorParallel: 2, context: 131_072, preset: "balanced" });
    expect(bal.kvBytesPerSessionPerGpu).toBe(kvCacheBytes(llama70b, 131_072, "balanced", { kvHeads: 4 }));
    expect(bal.maxSessions).toBeGreaterThan(fp16.maxSessions * 10);
  });

  it("tensor parallelism splits KV heads, and replicates them when GPUs outnumber heads", () => {
    expect(planCapacity({ arch: llama70b, memoryGb: 80, context: 1, tensorParallel: 4 }).kvHeadsPerGpu).toBe(2);
    const p16 = planCapacity({ arch: llama70b, memoryGb: 80, context: 1000, tensorParallel: 16 });
    expect(p16.kvHeadsPerGpu).toBe(1);
    expect(p16.kvBytesPerSession).toBe(2 * kvCacheBytes(llama70b, 1000)); // 16 GPUs × 1 head vs 8 heads
    expect(p16.weightBytesPerGpu).toBe(Math.ceil(weightMemory(llama70b).bytes / 16));
  });

  it("MLA latents are whole on every GPU", () => {
    const p = planCapacity({ arch: "deepseek-v3", gpu: "b200", tensorParallel: 8, context: 1000, precision: "fp8", weightsPrecision: "fp8" });
    expect(p.kvBytesPerSessionPerGpu).toBe(61 * 576 * 1000);
  });

  it("GPU memory is the vendor's decimal GB", () => {
    expect(GPUS["h200-141gb"]!.memoryBytes).toBe(141e9);
    expect(planCapacity({ arch: "gpt2", gpu: "rtx-4090", context: 1 }).memoryBytesPerGpu).toBe(24e9);
  });

  it("argument errors", () => {
    const base = { arch: "llama-3.1-8b", gpu: "h100", context: 1024 };
    expect(thrown(() => planCapacity({ ...base, gpu: "h1000" })).code).toBe("UNKNOWN_GPU");
    expect(thrown(() => planCapacity({ ...base, arch: "llama-8b" })).code).toBe("UNKNOWN_MODEL");
    expect(thrown(() => planCapacity({ ...base, memoryGb: 80 })).details?.arg).toBe("options.memoryGb");
    expect(thrown(() => planCapacity({ arch: "gpt2", context: 1 })).details?.arg).toBe("options.gpu");
    expect(thrown(() => planCapacity({ ...base, precision: "fp8", preset: "max" })).details?.arg).toBe("options.preset");
    expect(thrown(() => planCapacity({ ...base, batch: 0 })).details?.arg).toBe("options.batch");
    expect(thrown(() => planCapacity({ ...base, tensorParallel: 1.5 })).details?.arg).toBe("options.tensorParallel");
    expect(thrown(() => planCapacity({ ...base, overheadGb: -1 })).details?.arg).toBe("options.overheadGb");
    expect(thrown(() => planCapacity({ ...base, context: -5 })).details?.arg).toBe("options.context");
    expect(thrown(() => planCapacity({ ...base, weightsPrecision: "int3" as "int4" })).details?.arg).toBe("options.weightsPrecision");
    expect(thrown(() => planCapacity({ ...base, preset: "medium" })).code).toBe("INVALID_ARGUMENT");
  });
});
