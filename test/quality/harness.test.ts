/**
 * The whole harness on a tiny model with tiny sizes: every row present with a measured ratio, the
 * baseline reproducing itself exactly, compression actually reaching the logits, retrieval samples
 * of the requested lengths and depths, and the CLI writing its three files.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeRetrievalSuite, splitSentences } from "../../bench/data/index.js";
import { PRESET_NAMES, getPreset } from "../../src/format/index.js";
import { RANDOM_MODEL_DEFAULTS, runQualityBench, type QualityReport } from "../../bench/quality/index.js";
import { runCli } from "../../src/cli/run.js";
import { heldOutCorpus, tinyQualityModel } from "./fixtures.js";

const CONTEXT = 1024;
const DEPTHS = [0.2, 0.8];
const SAMPLES = 1;
let report: QualityReport;

beforeAll(async () => {
  report = await runQualityBench(tinyQualityModel(), {
    corpus: heldOutCorpus(4),
    settings: { ...RANDOM_MODEL_DEFAULTS, prefixes: [384], scoreTokens: 24, texts: 1, contexts: [CONTEXT], depths: DEPTHS, samplesPerCell: SAMPLES },
  });
}, 120_000);

describe("perplexity rows", () => {
  it("has every preset, the quantization-only variants and the scorers, each with a measured ratio > 1", () => {
    const names = report.rows.map((r) => r.variant);
    for (const p of PRESET_NAMES) expect(names).toContain(getPreset(p).name);
    for (const q of ["K2V2", "K3V2", "K4V4", "balanced/keynorm", "balanced/key-key", "balanced/observed", "balanced/random"]) expect(names).toContain(q);
    for (const row of report.rows.filter((r) => r.variant !== "none")) {
      expect(row.ratio, row.variant).toBeGreaterThan(1);
      expect(Number.isFinite(row.deltaPplPercent), row.variant).toBe(true);
    }
    // Aliases share their preset's measurement instead of repeating it.
    expect(report.rows.find((r) => r.variant === "L")!.sameAs).toBe("balanced");
    expect(report.rows.find((r) => r.variant === "K3V2")!.sameAs).toBe("quant");
  });

  it("preset none: a second FP16 run gives ΔPPL exactly 0, KL 0 and the same token choices", () => {
    const none = report.perplexity!.rows.filter((r) => r.variant === "none");
    expect(none.length).toBeGreaterThan(0);
    for (const r of none) {
      expect(r.deltaPplPercent).toBe(0);
      expect(r.klMean).toBe(0);
      expect(r.top1Agreement).toBe(1);
      expect(r.ratio).toBe(1);
    }
    expect(report.retrieval!.rows.find((r) => r.variant === "none")!.sameAsFp16).toBe(1);
  });

  it("compression reaches the logits: quantization moves them, more eviction holds fewer tokens", () => {
    const row = (v: string) => report.perplexity!.rows.find((r) => r.variant === v && r.prefix === "all")!;
    expect(row("quant").klMean).toBeGreaterThan(0);
    expect(row("K4V4").klMean).toBeLessThan(row("K2V2").klMean);
    expect(row("quant").heldFraction).toBe(1);
    expect(row("max").heldFraction).toBeLessThan(row("high").heldFraction);
    expect(row("max").ratio).toBeGreaterThan(row("quant").ratio);
    // Scorers at one preset's eviction fraction hold the same count, so the ratio is the same.
    const scorerRatios = ["keynorm", "key-key", "observed", "random"].map((s) => row(`balanced/${s}`).ratio);
    for (const r of scorerRatios) expect(r).toBeCloseTo(scorerRatios[0]!, 10);
    // The observed scorer got queries, so it is not key-key under another name.
    expect(report.observedScorer).toMatch(/own queries/);
    expect(row("balanced/observed").klMean).not.toBe(row("balanced/key-key").klMean);
  });

  it("checks the goals against the measured rows and says random weights make them meaningless", () => {
    expect(report.goals.map((g) => g.preset)).toEqual(["quant", "high", "balanced", "max"]);
    for (const g of report.goals) {
      const row = report.rows.find((r) => r.variant === g.preset)!;
      expect(g.status).toBe(row.deltaPplPercent! <= g.maxDeltaPplPercent && (!g.recallEqualsFp16 || row.recallDelta === 0) ? "met" : "missed");
      expect(g.detail).toMatch(/random weights/);
    }
  });
});

describe("retrieval", () => {
  it("samples have the requested context and depths, and every cache ran the same prompt", () => {
    const { samples } = report.retrieval!;
    // The same suite, generated here with the byte tokenizer's length.
    const suite = makeRetrievalSuite({ seed: RANDOM_MODEL_DEFAULTS.seed, filler: heldOutCorpus(4).map((c) => c.text), contexts: [CONTEXT], depths: DEPTHS, samplesPerCell: SAMPLES, countTokens: (t) => new TextEncoder().encode(t).length });
    expect(samples).toHaveLength(DEPTHS.length * SAMPLES);
    samples.forEach((s, i) => {
      expect(s.context).toBe(CONTEXT);
      expect(s.depth).toBe(DEPTHS[Math.floor(i / SAMPLES)]);
      // Byte tokens, no document-start token: what was fed is what the generator measured.
      expect(s.promptTokens).toBe(s.samplePromptTokens);
      expect(s.promptTokens).toBeLessThanOrEqual(CONTEXT - 16);
      expect(s.promptTokens).toBeGreaterThan(CONTEXT - 16 - 400); // at most one long sentence short
      expect(s.passageTokens + s.questionTokens).toBe(s.promptTokens);
      // The generator puts the needle at the sentence boundary nearest the depth: within one sentence.
      const generated = suite[i]!;
      expect(s.needleDepth).toBe(generated.needleDepth);
      expect(s.samplePromptTokens).toBe(generated.promptTokens);
      const passage = generated.prompt.slice(0, generated.prompt.lastIndexOf("\n\n"));
      const longest = Math.max(...splitSentences(passage).map((x) => x.length));
      expect(Math.abs(s.needleDepth - s.depth)).toBeLessThanOrEqual((longest + 1) / passage.length);
      expect(Math.abs(s.needleTokenDepth - s.needleDepth)).toBeLessThan(0.02);
      expect(Object.keys(s.answers).sort()).toEqual(report.rows.map((r) => r.variant).sort());
    });
    for (const r of report.retrieval!.rows) {
      expect(r.samples).toBe(samples.length);
      expect(r.recall).toBeGreaterThanOrEqual(0);
      expect(r.recall).toBeLessThanOrEqual(1);
    }
  });
});

describe("nexusquant bench quality", () => {
  let out: string;
  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), "nq-quality-"));
  });
  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it("--json prints the report and writes quality.json, quality.md and quality.svg", async () => {
    let stdout = "";
    let stderr = "";
    const args = ["bench", "quality", "--json", "--out", out, "--prefixes", "200", "--score", "8", "--texts", "1", "--contexts", "300", "--depths", "0.5", "--presets", "quant,max", "--quant-only", "none", "--scorers", "none"];
    const code = await runCli(args, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) });
    expect(code, stderr).toBe(0);
    const json = JSON.parse(stdout) as QualityReport;
    expect(json.rows.map((r) => r.variant)).toEqual(["none", "quant", "max"]);
    expect(JSON.parse(await readFile(join(out, "quality.json"), "utf8"))).toEqual(json);
    const md = await readFile(join(out, "quality.md"), "utf8");
    expect(md).toMatch(/\| quant \| K3V2, no eviction \|/);
    if (!json.model.trained) expect(md).toMatch(/random weights/);
    expect(await readFile(join(out, "quality.svg"), "utf8")).toMatch(/^<svg/);
  });

  it("rejects unknown presets and malformed variants before running anything", async () => {
    const run = (...a: string[]) => runCli(["bench", "quality", ...a], { stdout: () => {}, stderr: () => {} });
    expect(await run("--presets", "nope")).toBe(2);
    expect(await run("--quant-only", "K5V2")).toBe(2);
    expect(await run("--depths", "1.5")).toBe(2);
  });
});
