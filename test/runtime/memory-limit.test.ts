import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { NexusQuantError } from "../../src/errors.js";
import { CompressedKVCache, memoryStats, quantizeSync, setHostMemoryLimit, hostMemoryLimit } from "../../src/runtime/index.js";
import { native } from "../../src/runtime/native.js";
import { expectCode, TIME_SCALE } from "../helpers.js";


// Refusing what does not fit, tested against configured limits rather than the host's RAM (which
// made the old test take minutes and 8.65 GB RSS on a shared machine).
function oomOf(fn: () => void): NexusQuantError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(NexusQuantError);
    expect((e as NexusQuantError).code).toBe("OUT_OF_MEMORY");
    return e as NexusQuantError;
  }
  throw new Error("expected OUT_OF_MEMORY");
}

afterEach(() => setHostMemoryLimit(null));

describe("memory limits", () => {
  it("a context larger than the cache's memoryLimitBytes is OUT_OF_MEMORY naming the bytes, and the cache is unchanged", () => {
    const limit = 8 << 20;
    const c = new CompressedKVCache({ layers: 1, kvHeads: 8, headDim: 128, preset: "balanced", memoryLimitBytes: limit });
    try {
      const block = new Float32Array(8 * 128 * 256).fill(0.25);  // 256 tokens
      const rss0 = process.memoryUsage().rss;
      const t0 = performance.now();
      let appended = 0;
      const err = oomOf(() => {
        for (let i = 0; i < 10_000; i++) {
          c.append(0, block, block);
          appended += 256;
        }
      });
      const ms = performance.now() - t0;
      expect(err.message).toMatch(/could not allocate \d+ bytes for the FP16 residual window/);
      expect(err.message).toMatch(/memoryLimitBytes \(8388608 bytes; \d+ already held\)/);
      expect(c.tokens(0).appended).toBe(appended);  // the refused append changed nothing
      expect(c.stats().bytes.total).toBeLessThanOrEqual(limit);
      expect(process.memoryUsage().rss - rss0).toBeLessThan(96 << 20);
      expect(ms).toBeLessThan(10_000 * TIME_SCALE);  // measured: ~50 ms idle (was 190 s and 8.65 GB filling host RAM)
      // Still usable within the limit.
      c.compressSync();
      expect(c.tokens(0).compressed).toBeGreaterThan(0);
    } finally {
      c.dispose();
    }
  });

  it("memoryLimitBytes must be a non-negative integer", () => {
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 60, "1"]) {
      expectCode(() => new CompressedKVCache({ layers: 1, kvHeads: 1, headDim: 8, memoryLimitBytes: bad as number }), "INVALID_ARGUMENT", /memoryLimitBytes/);
    }
  });

  it("the process-wide limit covers every cache and tensor together", () => {
    const held = memoryStats().host.totalBytes;
    setHostMemoryLimit(held + (1 << 20));
    expect(hostMemoryLimit()).toBe(held + (1 << 20));
    const err = oomOf(() => quantizeSync(new Float32Array(128 * 16384).fill(1), { headDim: 128, bits: 4 }));
    expect(err.message).toMatch(/process-wide host memory limit/);
    const c = new CompressedKVCache({ layers: 1, kvHeads: 8, headDim: 128 });
    try {
      const block = new Float32Array(8 * 128 * 1024).fill(0.25);
      oomOf(() => {
        for (let i = 0; i < 100; i++) c.append(0, block, block);
      });
    } finally {
      c.dispose();
    }
    setHostMemoryLimit(null);
    expect(hostMemoryLimit()).toBeNull();
    expect(quantizeSync(new Float32Array(128 * 16384).fill(1), { headDim: 128, bits: 4 }).vectors).toBe(16384);
  });

  it("hostAvailableBytes reads the cgroup limit as well as MemAvailable", () => {
    // Never more than MemAvailable (the cgroup can only lower it). Read before and after: on a busy
    // machine MemAvailable moves between two reads, so the bound is the larger of them.
    const memAvailable = () => Number(/MemAvailable:\s+(\d+)/.exec(readFileSync("/proc/meminfo", "utf8"))![1]) * 1024;
    const before = memAvailable();
    const available = native().hostAvailableBytes();
    const after = memAvailable();
    expect(available).toBeGreaterThan(0);
    expect(available).toBeLessThanOrEqual(Math.max(before, after) + (256 << 20));
  });
});

describe("numbers the binding cannot represent are refused, not wrapped", () => {
  const base = {
    batch: 1, layers: 1, kvHeads: 1, headDim: 8, keyBits: 2, valueBits: 2, evictFraction: 0, sinkTokens: 0, recentWindow: 0,
    residualWindow: 8, pageTokens: 8, scorer: 1, seed: 0, scorerWindow: 8, poolKernel: 7, queryHeads: 1, budgetTokens: 0, ropeTheta: 0,
  };
  const NativeCache = () => native().NativeCache as new (o: object) => { dispose(): void };
  for (const [field, value] of [
    ["pageTokens", 2 ** 32], ["pageTokens", 2 ** 31], ["residualWindow", 2 ** 32], ["recentWindow", 2 ** 31 - 1], ["headDim", 2 ** 32 + 8],
    ["queryHeads", 4294967288], ["seed", -1], ["kvHeads", 1.5], ["layers", Number.NaN],
  ] as const) {
    it(`${field}: ${value} → INVALID_ARGUMENT, not wrapped by Int32Value() or overflowed later`, () => {
      let err: unknown;
      try {
        new (NativeCache())({ ...base, [field]: value }).dispose();
      } catch (e) {
        err = e;
      }
      expect((err as { code?: string })?.code).toBe("INVALID_ARGUMENT");
      expect(String((err as Error).message)).toContain(field);
    });
  }

  it("attention with a scale beyond float32 (1e300) is a typed error, not all-NaN output", () => {
    const c = new CompressedKVCache({ layers: 1, kvHeads: 1, headDim: 8, preset: "quant" });
    try {
      c.append(0, new Float32Array(8 * 4).fill(0.5), new Float32Array(8 * 4).fill(0.5));
      expectCode(() => c.attention(0, new Float32Array(8).fill(1), { scale: 1e300 }), "INVALID_ARGUMENT", /scale/);
      expectCode(() => c.attention(0, new Float32Array(8).fill(60000), { scale: 1e36 }), "INVALID_DATA", /non-finite/);
      expect(c.attention(0, new Float32Array(8).fill(1)).every(Number.isFinite)).toBe(true);
    } finally {
      c.dispose();
    }
  });
});

describe("a container's memory limit (cgroup) is honoured", () => {
  it("with memory.max 160 MiB and 32 MiB used, a 256 MiB context is refused at once, naming the cgroup", () => {
    // A child process whose cgroup root is a directory of fake limit files (cgroup v2 layout).
    const root = mkdtempSync(join(tmpdir(), "nq-cgroup-"));
    writeFileSync(join(root, "memory.max"), `${160 << 20}\n`);
    writeFileSync(join(root, "memory.current"), `${32 << 20}\n`);
    const addon = process.env.NEXUSQUANT_ADDON ?? join(dirname(fileURLToPath(import.meta.url)), "..", "..", "build", "Release", "nexusquant.node");
    const script = `
      const nq = require(${JSON.stringify(addon)});
      const c = new nq.NativeCache({ batch: 1, layers: 1, kvHeads: 8, headDim: 128, keyBits: 2, valueBits: 2, evictFraction: 0, sinkTokens: 0,
        recentWindow: 0, residualWindow: 64, pageTokens: 64, scorer: 1, seed: 0, scorerWindow: 8, poolKernel: 7, queryHeads: 8, budgetTokens: 0, ropeTheta: 0 });
      const block = new Float32Array(8 * 128 * 1024).fill(0.5);  // 4 MiB of FP16 K+V per append
      let appended = 0, error;
      try { for (let i = 0; i < 64; i++) { c.append(0, 0, block, block, 1024); appended += 1024; } } catch (e) { error = { code: e.code, message: e.message }; }
      console.log(JSON.stringify({ available: nq.hostAvailableBytes(), appended, error, rss: process.memoryUsage().rss }));`;
    const out = execFileSync(process.execPath, ["-e", script], { env: { ...process.env, NEXUSQUANT_CGROUP_ROOT: root }, encoding: "utf8", timeout: 50_000 * TIME_SCALE });
    const r = JSON.parse(out.trim().split("\n").pop()!) as { available: number; appended: number; error?: { code: string; message: string }; rss: number };
    expect(r.available).toBe(128 << 20);
    expect(r.error?.code).toBe("OUT_OF_MEMORY");
    expect(r.error?.message).toMatch(/could not allocate \d+ bytes .*cgroup/);
    expect(r.appended).toBeLessThan(64 * 1024);
    expect(r.rss).toBeLessThan(400 << 20);
  }, 60_000 * TIME_SCALE);
});
