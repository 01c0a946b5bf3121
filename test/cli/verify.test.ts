import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ARCHITECTURES } from "../../src/estimator/index.js";
import { getPreset, transformTableBytes } from "../../src/format/index.js";
import { backendInfo } from "../../src/runtime/backend.js";
import { largestFittingContext, verifyWorkingSet } from "../../src/runtime/working-set.js";
import { cli } from "./helpers.js";
import { TIME_SCALE } from "../helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "nexusquant-verify-"));
const tinyConfig = (extra: Record<string, unknown> = {}) => {
  const path = join(tmp, `tiny-${Object.keys(extra).join("-") || "plain"}.json`);
  writeFileSync(path, JSON.stringify({ num_hidden_layers: 3, num_attention_heads: 4, hidden_size: 256, num_key_value_heads: 2, ...extra }));
  return path;
};

describe("verify refuses at once what cannot fit", () => {
  it("llama-3.1-70b at 100m tokens: OUT_OF_MEMORY in well under a second, naming the bytes and the largest context", async () => {
    const started = performance.now();
    const r = await cli("verify", "--model", "llama-3.1-70b", "--context", "100m", "--preset", "balanced");
    expect(performance.now() - started).toBeLessThan(5000 * TIME_SCALE);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/needs \d+ bytes at its peak/);
    expect(r.stderr).toMatch(/largest context that fits is \d+ tokens|Not even one token fits/);
    expect(r.stdout).toBe("");
  });

  it("a configured --memory-limit refuses without depending on the host's RAM, with the exact largest context", async () => {
    const r = await cli("verify", "--model", "llama-3.1-8b", "--context", "1m", "--preset", "balanced", "--memory-limit", "1GiB");
    expect(r.code).toBe(1);
    const arch = ARCHITECTURES["llama-3.1-8b"]!;
    const shape = { layers: arch.layers, kvHeads: arch.kvHeads, headDim: arch.headDim, batch: 1 };
    const threads = backendInfo().cpu.threads;
    const need = verifyWorkingSet({ ...shape, tokens: 1 << 20 }, getPreset("balanced").spec, threads).totalBytes;
    const fits = largestFittingContext(shape, getPreset("balanced").spec, threads, 2 ** 30, 1 << 20);
    expect(fits).toBeGreaterThan(0);
    expect(verifyWorkingSet({ ...shape, tokens: fits }, getPreset("balanced").spec, threads).totalBytes).toBeLessThanOrEqual(2 ** 30);
    expect(verifyWorkingSet({ ...shape, tokens: fits + 1 }, getPreset("balanced").spec, threads).totalBytes).toBeGreaterThan(2 ** 30);
    expect(r.stderr).toContain(`needs ${need} bytes`);
    expect(r.stderr).toContain(`but ${2 ** 30} bytes are available (memoryLimitBytes)`);
    expect(r.stderr).toContain(`largest context that fits is ${fits} tokens`);
  });

  it("an invalid --memory-limit is a usage error (a bare g is ambiguous)", async () => {
    for (const bad of ["4g", "-1", "0", "lots"]) {
      const r = await cli("verify", "--model", "llama-3.1-8b", "--context", "1k", "--preset", "balanced", "--memory-limit", bad);
      expect(r.code, bad).toBe(2);
      expect(r.stderr).toMatch(/--memory-limit/);
    }
  });

  it("--context -5 and a missing --config are usage errors (exit 2)", async () => {
    const neg = await cli("verify", "--model", "llama-3.1-8b", "--context", "-5", "--preset", "balanced");
    expect(neg.code).toBe(2);
    expect(neg.stderr).toMatch(/--context but received "-5"/);
    const missing = await cli("verify", "--config", join(tmp, "nope.json"), "--context", "1k", "--preset", "balanced");
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/Cannot read --config/);
  });
});

describe("verify output", () => {
  it("prints plain progress lines on stderr when stderr is not a terminal, also with --json", async () => {
    const r = await cli("verify", "--config", tinyConfig(), "--context", "300", "--preset", "balanced", "--json");
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^balanced: layers 1\/3 [\d.]+s$/m);
    expect(r.stderr).toMatch(/^balanced: layers 3\/3 [\d.]+s$/m);
    expect(r.stderr).not.toContain("\r");
    const [result] = JSON.parse(r.stdout) as { exact: boolean; plannedPeakBytes: number; measuredBytes: number }[];
    expect(result!.exact).toBe(true);
    expect(result!.plannedPeakBytes).toBeGreaterThan(result!.measuredBytes);
  });

  it("--profile: the allocator holds exactly the estimate with the profile's tables, for two presets in one run; another shape's profile is PROFILE_MISMATCH", async () => {
    const config = "models/sotu-llama/config.json", profile = "models/sotu-llama/nexusquant-profile.bin";
    const r = await cli("verify", "--config", config, "--context", "700", "--preset", "quant,balanced", "--profile", profile, "--json");
    expect(r.code).toBe(0);
    const results = JSON.parse(r.stdout) as { exact: boolean; transform: boolean; components: { estimated: { transform: number }; measured: { transform: number } } }[];
    const tables = transformTableBytes(4, 2, 64);
    for (const x of results) {
      expect(x.exact).toBe(true);
      expect(x.transform).toBe(true);
      expect(x.components.estimated.transform).toBe(tables);
      expect(x.components.measured.transform).toBe(tables);
    }
    const wrong = await cli("verify", "--config", tinyConfig(), "--context", "100", "--preset", "quant", "--profile", profile);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/calibrated for layers 4, this cache has 3/);
  });

  it("a misspelt config key is a warning on stderr and in the --json results", async () => {
    const r = await cli("verify", "--config", tinyConfig({ max_position_embedding: 4096 }), "--context", "100", "--preset", "quant", "--json");
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/warning: config.json has max_position_embedding.*did you mean max_position_embeddings\?/);
    const [result] = JSON.parse(r.stdout) as { warnings?: string[] }[];
    expect(result!.warnings?.[0]).toMatch(/max_position_embeddings/);
  });
});
