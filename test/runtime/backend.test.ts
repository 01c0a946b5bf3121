import { describe, expect, it } from "vitest";
import { backendInfo, resolveBackend, memoryStats, measureMemory } from "../../src/runtime/index.js";
import { NexusQuantError } from "../../src/errors.js";

describe("backendInfo", () => {
  const info = backendInfo();

  it("has the documented shape", () => {
    expect(typeof info.cuda.compiled).toBe("boolean");
    expect(typeof info.cuda.available).toBe("boolean");
    expect(Array.isArray(info.cuda.devices)).toBe(true);
    expect(info.cpu.threads).toBeGreaterThanOrEqual(1);
    if (!info.cuda.available) expect(info.cuda.reason).toMatch(/\w/);
    for (const d of info.cuda.devices) {
      expect(d.totalMemoryBytes).toBeGreaterThan(0);
      expect(d.computeCapability).toMatch(/^\d+\.\d+$/);
    }
  });

  it("auto is decided once, in backendInfo().auto: the CPU, with the reason, GPU or not", () => {
    // The CUDA cache has not run on a GPU yet, so "auto" never picks it (docs/cache.md, "Backend").
    expect(info.auto.backend).toBe("cpu");
    expect(resolveBackend("auto")).toBe(info.auto.backend);
    expect(resolveBackend()).toBe(info.auto.backend);
    if (info.cuda.available) {
      expect(info.auto.reason).toMatch(/has not been verified on a GPU/);
      return;
    }
    expect(info.auto.reason).toContain(info.cuda.reason!);
    expect(() => resolveBackend("cuda")).toThrow(NexusQuantError);
    try {
      resolveBackend("cuda");
    } catch (e) {
      expect((e as NexusQuantError).code).toBe("BACKEND_UNAVAILABLE");
    }
  });

  it("rejects unknown backend names", () => {
    expect(() => resolveBackend("tpu" as "cpu")).toThrow(/backend/);
  });
});

describe("memory accounting", () => {
  it("starts with no live cache bytes and measureMemory reports a zero delta for no work", async () => {
    const s = memoryStats();
    expect(s.host.totalBytes).toBeGreaterThanOrEqual(0);
    const m = await measureMemory(() => 42);
    expect(m.result).toBe(42);
    expect(m.delta).toBe(0);
    expect(Object.values(m.byCategory).every((v) => v === 0)).toBe(true);
  });
});
