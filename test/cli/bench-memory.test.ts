import { describe, expect, it } from "vitest";
import { cli } from "./helpers.js";
import { runMemoryCase } from "../../src/cli/bench/memory-case.js";
import { kvShare, memoryPlot, memoryTargets, type MemoryBenchReport, type MemoryBenchRow } from "../../src/cli/bench/memory.js";
import type { MemoryCaseResult } from "../../src/cli/bench/memory-case.js";

const tiny = { seed: 1, layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, intermediate: 64, vocab: 256 };

describe("bench memory", () => {
  it("runs a case in-process: plain ORT and the native path agree on greedy tokens with none", async () => {
    const spec = { prompt: 48, decode: 2, chunk: 32, model: tiny, wrapperPreset: "balanced" };
    const plain = await runMemoryCase({ ...spec, case: "ort-plain" });
    const none = await runMemoryCase({ ...spec, case: "native-none" });
    expect(plain.heldKvBytes).toBe(plain.fp16KvBytes);
    expect(none.heldKvBytes).toBeGreaterThanOrEqual(none.fp16KvBytes);
    expect(none.tokens).toEqual(plain.tokens);
    for (const r of [plain, none]) {
      expect(r.peakRssBytes).toBeGreaterThan(0);
      // The run's own peak (reset after loading) exists on Linux and never exceeds the process's.
      if (process.platform === "linux") expect(r.runPeakRssBytes).toBeGreaterThan(0);
      // (getrusage and /proc read the kernel's marks at slightly different moments: 4 MiB of slack)
      if (r.runPeakRssBytes !== null) expect(r.runPeakRssBytes).toBeLessThanOrEqual(r.peakRssBytes + 4 * 2 ** 20);
      expect(r.decodeTokensPerSecond).toBeGreaterThan(0);
    }
    await expect(runMemoryCase({ ...spec, case: "nope" })).rejects.toThrow(/unknown memory case/);
  });

  it("run from the TypeScript sources (no compiled case script), it says to build first instead of a child's stack trace", async () => {
    const r = await cli("bench", "memory", "--quick", "--cases", "ort-plain");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/npm run build:ts/);
  });

  it("the KV share subtracts run peaks when both cases have one, else whole-process peaks", () => {
    const r = (peak: number, run: number | null) => ({ peakRssBytes: peak, runPeakRssBytes: run }) as MemoryCaseResult;
    expect(kvShare(r(900, 300), r(950, 120))).toBe(180); // a loading peak above the run's does not hide it
    expect(kvShare(r(900, null), r(700, 120))).toBe(200);
    expect(kvShare(r(900, 300), undefined)).toBe(300);
  });

  it("plots every case's peak RSS against the prompt, the 256-token baselines included", () => {
    const r = (c: string, prompt: number, peak: number) => ({ case: c, prompt, peakRssBytes: peak }) as MemoryBenchRow;
    const report = { date: "2026-12-02T00:00:00Z", baselines: [r("native-none", 256, 3e8), r("ort-plain", 256, 2e8)], rows: [r("native-none", 4096, 5e8), r("ort-plain", 4096, 9e8)] } as unknown as MemoryBenchReport;
    const spec = memoryPlot(report) as unknown as { layer: { data: { values: { context: number; value: number; series: string }[] } }[] };
    const points = spec.layer[0]!.data.values;
    expect(points).toHaveLength(4);
    expect(points.find((p) => p.series === "ort-plain" && p.context === 4096)?.value).toBeCloseTo(0.9);
    expect(points.map((p) => p.context)).toEqual([256, 256, 4096, 4096]);
  });

  it("states each target as MET or MISSED", () => {
    const row = (c: string, kvShareBytes: number, heldRatio: number, tps: number) =>
      ({ case: c, prompt: 4096, kvShareBytes, heldRatio, decodeTokensPerSecond: tps }) as MemoryBenchRow;
    const lines = memoryTargets([
      row("native-none", 100e6, 1, 1), row("native-quant", 20e6, 5, 1), row("native-balanced", 50e6, 10, 1), row("native-max", -3e5, 30, 1), row("ort-plain", 0, 1, 2),
    ]);
    expect(lines.find((l) => l.startsWith("native quant at"))).toMatch(/5\.00x less.*MET$/);
    expect(lines.find((l) => l.startsWith("native balanced at"))).toMatch(/MISSED$/);
    // A KV share at or below 1 MB (the long run's peak no higher than the short one's): no ratio, not a huge one.
    expect(lines.find((l) => l.startsWith("native max at"))).toMatch(/no higher than the 256-token case's.*MET \(no ratio to read\)$/);
    expect(lines.find((l) => l.startsWith("native quant decode"))).toMatch(/0\.50x; target >= 0\.8x: MISSED$/);
    expect(lines.at(-1)).toMatch(/16K-token prompts were not run/);
    const prefill = (c: string, prefillSeconds: number) => ({ case: c, prompt: 4096, kvShareBytes: 1, heldRatio: 1, decodeTokensPerSecond: 1, prefillSeconds }) as MemoryBenchRow;
    const cost = memoryTargets([prefill("native-none", 10), prefill("native-balanced", 14), prefill("native-max", 16)]);
    expect(cost.find((l) => l.startsWith("native balanced prefill"))).toMatch(/14\.0 s vs none 10\.0 s = 1\.40x; target <= 1\.5x \(the default balanced\): MET$/);
    expect(cost.find((l) => l.startsWith("native max prefill"))).toMatch(/= 1\.60x$/);
  });

  it("states the llama.cpp targets when its cases ran: peak below q4_0's, decode at least f16's", () => {
    const row = (c: string, peakRssBytes: number, tps: number) => ({ case: c, prompt: 16384, peakRssBytes, kvShareBytes: 0, heldRatio: 1, decodeTokensPerSecond: tps }) as MemoryBenchRow;
    const lines = memoryTargets([row("native-quant", 9e8, 3), row("llama.cpp-q4_0", 1e9, 9), row("llama.cpp-f16", 2e9, 2)]);
    expect(lines.find((l) => l.startsWith("native quant at 16384 tokens: peak RSS"))).toMatch(/900\.0 MB vs llama\.cpp q4_0 1000\.0 MB; target below: MET$/);
    expect(lines.find((l) => l.startsWith("native quant decode at 16384 tokens: 3.00 tok/s vs llama.cpp f16"))).toMatch(/1\.50x; target >= 1x: MET$/);
    expect(memoryTargets([row("native-high", 1.1e9, 1), row("llama.cpp-q4_0", 1e9, 9), row("llama.cpp-f16", 2e9, 2)]).filter((l) => l.includes("llama.cpp")).every((l) => l.endsWith("MISSED"))).toBe(true);
  });
});
