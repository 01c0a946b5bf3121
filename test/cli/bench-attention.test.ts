import { describe, expect, it } from "vitest";
import { attentionPlot, runAttentionBench, type AttentionBenchRow } from "../../src/cli/bench/attention.js";
import { cli } from "./helpers.js";

describe("bench attention", () => {
  it("runs every case side by side on a tiny shape, each with a time and a ratio to dense FP16", async () => {
    const { rows } = await runAttentionBench({ contexts: [96], prefillContexts: [], headDims: [64], prefill: 8, repeats: 1, progress: () => {} });
    const cases = rows.map((r) => r.case);
    for (const c of ["dense FP32", "dense FP16", "codes K2V2", "codes K3V2", "codes K4V4"]) expect(cases).toContain(c);
    for (const r of rows.filter((r) => r.medianMs !== null)) {
      expect(r.medianMs).toBeGreaterThan(0);
      expect(r.vsDenseF16).toBeGreaterThan(0);
    }
    expect(rows.find((r) => r.case === "dense FP16")?.vsDenseF16).toBe(1);
  });

  it("plots decode time against context at the largest head_dim, skipping cases without a time", () => {
    const r = (context: number, headDim: number, c: string, ms: number | null, mode: "decode" | "prefill" = "decode") =>
      ({ context, headDim, mode, case: c, medianMs: ms }) as AttentionBenchRow;
    const rows = [r(1024, 64, "codes K2V2", 1), r(1024, 128, "codes K2V2", 2), r(4096, 128, "codes K2V2", 5), r(4096, 128, "onnxruntime int4", null), r(1024, 128, "dense FP16", 3, "prefill")];
    const spec = attentionPlot(rows, "2026-12-02T00:00:00Z") as unknown as { title: string; layer: { data: { values: { context: number; value: number; series: string }[] } }[] };
    expect(spec.title).toMatch(/head_dim 128/);
    expect(spec.layer[0]!.data.values).toEqual([
      { context: 1024, value: 2, series: "codes K2V2" },
      { context: 4096, value: 5, series: "codes K2V2" },
    ]);
  });

  it("a --plot (or bench memory --out) in a missing folder is a usage error before any case runs", async () => {
    for (const args of [["bench", "attention", "--plot", "/no/such/dir/a.svg"], ["bench", "memory", "--out", "/no/such/dir/memory"]]) {
      const r = await cli(...args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/existing folder/);
      expect(r.stdout).toBe("");
      expect(r.stderr).not.toMatch(/decode n=|\[1\//); // refused up front: no case's progress line was printed
    }
  });
});
