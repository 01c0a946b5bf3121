import { describe, expect, it } from "vitest";
import { COMMANDS } from "../../src/cli/commands/index.js";
import { ARCHITECTURE_IDS, GPUS } from "../../src/estimator/index.js";
import { PRESET_NAMES, getPreset, presetRatio } from "../../src/format/index.js";
import { cli, cliJson } from "./helpers.js";

describe("top level", () => {
  it("no arguments prints the command list, exit 2; --help exit 0", async () => {
    const none = await cli();
    expect(none.code).toBe(2);
    for (const c of COMMANDS) expect(none.stdout).toContain(c.name);
    expect((await cli("--help")).code).toBe(0);
  });

  it("unknown command: exit 2", async () => {
    const r = await cli("frobnicate");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command "frobnicate"/);
  });

  it("every command answers --help with its usage, and takes --json", async () => {
    for (const entry of COMMANDS) {
      const c = await entry.load();
      expect(c.name).toBe(entry.name);
      const r = await cli(c.name, "--help");
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(c.loadUsage ? await c.loadUsage([]) : c.usage);
      expect(r.stdout).toContain("--json");
    }
  });

  it("estimate --help documents the k/m context suffixes", async () => {
    const r = await cli("estimate", "--help");
    expect(r.stdout).toMatch(/32k = 32,768/);
    expect(r.stdout).toMatch(/1m = 1,048,576/);
  });
});

describe("presets", () => {
  it("--json lists every preset with its computed ratio at head_dim 128", async () => {
    const rows = await cliJson<{ name: string; ratioHeadDim128: number; keyBits: number; tierTarget?: number }[]>("presets");
    expect(rows.map((r) => r.name)).toEqual([...PRESET_NAMES]);
    for (const r of rows) expect(r.ratioHeadDim128).toBe(presetRatio(r.name, 128));
    // The tier aliases meet their published ratios.
    for (const r of rows.filter((x) => x.tierTarget !== undefined)) expect(r.ratioHeadDim128).toBeGreaterThanOrEqual(r.tierTarget!);
  });

  it("table", async () => {
    const r = await cli("presets");
    expect(r.code).toBe(0);
    // The ratio the layout code computes (token scores included), printed to two decimals.
    const b = getPreset("balanced").spec;
    const row = `balanced\\s+${b.keyBits}\\s+${b.valueBits}\\s+${Math.round(b.evictFraction * 100)}%\\s+${presetRatio("balanced").toFixed(2).replace(".", "\\.")}x`;
    expect(r.stdout).toMatch(new RegExp(row));
  });
});

describe("models and gpus", () => {
  it("models --json lists the registry", async () => {
    const rows = await cliJson<{ id: string; fp16KvBytesPerToken: number }[]>("models");
    expect(rows.map((r) => r.id)).toEqual([...ARCHITECTURE_IDS]);
    expect(rows.find((r) => r.id === "llama-3.1-70b")!.fp16KvBytesPerToken).toBe(327_680);
  });

  it("models table shows attention kinds", async () => {
    const r = await cli("models");
    expect(r.stdout).toMatch(/deepseek-v3 .*MLA \(512\+64 latent\)/);
    expect(r.stdout).toMatch(/gemma-2-9b .*GQA, 21\/42 layers window 4,096/);
  });

  it("gpus --json and table", async () => {
    const rows = await cliJson<{ id: string; memoryBytes: number }[]>("gpus");
    expect(rows.map((g) => g.id)).toEqual(Object.keys(GPUS));
    expect(rows.find((g) => g.id === "h100-80gb")!.memoryBytes).toBe(80e9);
    expect((await cli("gpus")).stdout).toMatch(/h200-141gb\s+h200\s+NVIDIA H200 SXM 141GB\s+141/);
  });

  it("unknown flags are usage errors", async () => {
    for (const c of ["presets", "models", "gpus"]) expect((await cli(c, "--nope")).code).toBe(2);
  });
});
