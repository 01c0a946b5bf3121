import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseContext } from "../../src/cli/args.js";
import { ARCHITECTURES, kvCacheBytes, planCapacity, presetCacheLayout } from "../../src/estimator/index.js";
import { PRESETS } from "../../src/format/index.js";
import { cli, cliJson } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "nexusquant-cli-"));
const llama70b = ARCHITECTURES["llama-3.1-70b"]!;

describe("estimate --json", () => {
  it("reports the published llama-3.1-70b figures", async () => {
    const r = await cliJson("estimate", "--model", "llama-3.1-70b", "--context", "128k", "--precision", "bf16");
    expect(r).toMatchObject({ model: "llama-3.1-70b", context: 131_072, precision: "bf16", kvBytesPerToken: 327_680, kvCacheBytes: 42_949_672_960 });
    expect(r.preset).toBeUndefined();
    expect(r.gpu).toBeUndefined();
  });

  it("--preset adds preset, compressedBytes and ratio from the compressed layout", async () => {
    const r = await cliJson("estimate", "--model", "llama-3.1-70b", "--context", "128k", "--preset", "balanced");
    const layout = presetCacheLayout(llama70b, 131_072, "balanced");
    expect(r).toMatchObject({ preset: "balanced", compressedBytes: layout.bytes.total, ratio: layout.ratio });
    expect(r.ratio as number).toBeGreaterThan(15);
  });

  it("--gpu adds gpu, fits, maxSessions, maxContext (for the preset when one is given)", async () => {
    const r = await cliJson("estimate", "--model", "llama-3.1-70b", "--context", "128k", "--gpu", "h100", "--preset", "balanced", "--tp", "2");
    const plan = planCapacity({ arch: llama70b, gpu: "h100", context: 131_072, preset: "balanced", tensorParallel: 2 });
    expect(r).toMatchObject({ gpu: "h100-80gb", fits: plan.fits, maxSessions: plan.maxSessions, maxContext: plan.maxContext });
    expect(r.maxSessions).toBe(8);
    expect((r.baselineCapacity as { maxSessions: number }).maxSessions).toBe(0);
  });

  it("the 4K-sessions-on-2x-H100 example is 22 sessions", async () => {
    const r = await cliJson("estimate", "--model", "llama-3-70b", "--context", "4096", "--precision", "fp8", "--gpu", "h100", "--tp", "2", "--overhead-gb", "2.5");
    expect(r.maxSessions).toBe(22);
  });

  it("--batch multiplies the cache and --memory-gb replaces --gpu", async () => {
    const r = await cliJson("estimate", "--model", "mistral-7b", "--context", "32000", "--batch", "3", "--memory-gb", "24", "--weights-precision", "int4");
    expect(r.kvCacheBytes).toBe(3 * 131_072 * 32_000);
    expect(r.gpu).toBe("24 GB");
    expect(r.fits).toBe(true);
  });

  it("defaults the context to the model's max_position_embeddings", async () => {
    expect((await cliJson("estimate", "--model", "gpt2")).context).toBe(1024);
  });

  it("--config reads a Hugging Face config.json (and --params sizes its weights)", async () => {
    const path = join(tmp, "my-model.json");
    writeFileSync(path, readFileSync(new URL("../estimator/fixtures/gemma-2-9b.json", import.meta.url)));
    const r = await cliJson("estimate", "--config", path, "--context", "8k", "--gpu", "l4", "--params", "9.24b");
    expect(r.model).toBe("my-model");
    expect(r.kvCacheBytes).toBe(kvCacheBytes(ARCHITECTURES["gemma-2-9b"]!, 8192));
    expect(r.capacity).toMatchObject({ weightBytesPerGpu: 18.48e9 });
  });
});

describe("estimate table", () => {
  it("the target command prints a correct table", async () => {
    const r = await cli("estimate", "--model", "llama-3.1-70b", "--context", "128k", "--gpu", "h100", "--preset", "balanced");
    expect(r.code).toBe(0);
    const layout = presetCacheLayout(llama70b, 131_072, "balanced");
    expect(r.stdout).toMatch(/fp16\s+327,680\s+42,949,672,960\s+42\.95\s+40\.00\s+1\.00x/);
    expect(r.stdout).toContain(layout.bytes.total.toLocaleString("en-US"));
    expect(r.stdout).toContain(`${layout.ratio.toFixed(2)}x`);
    expect(r.stdout).toContain("131,072 (128k)");
    expect(r.stdout).toContain("h100-80gb");
    // bf16 weights (140 GB) do not fit one 80 GB H100; the table says so and suggests what fits.
    expect(r.stdout).toMatch(/free for KV -60\.00 GB/);
    expect(r.stdout).toMatch(/try --tp 2 \(8 balanced sessions\)/);
  });

  it("prints the parser's notes and the sliding window", async () => {
    const phi = await cli("estimate", "--model", "phi-3-mini", "--context", "4k");
    expect(phi.stdout).toMatch(/Note .*sliding_window 2047 ignored/);
    const gemma = await cli("estimate", "--model", "gemma-2-27b", "--context", "8k");
    expect(gemma.stdout).toContain("23/46 layers window 4,096");
  });
});

describe("estimate --plot", () => {
  it("writes an SVG rendered by vega with one series per cache and the GPU line", async () => {
    const file = join(tmp, "memory.svg");
    const r = await cli("estimate", "--model", "llama-3.1-8b", "--context", "32k", "--gpu", "l4", "--plot", file);
    expect(r.code).toBe(0);
    const svg = readFileSync(file, "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain("mark-line"); // vega's scenegraph classes: not hand-written
    for (const name of ["fp16", ...Object.keys(PRESETS)]) expect(svg).toContain(`>${name}<`);
    expect(svg).toContain("NVIDIA L4: 24.00 GB");
    expect(svg).toContain(">32k<");
  });

  it("--plot must name an .svg file", async () => {
    const r = await cli("estimate", "--model", "gpt2", "--plot", join(tmp, "x.png"));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/for --plot/);
  });
});

describe("estimate errors", () => {
  it("unknown model: exit 2 with the closest ids", async () => {
    const r = await cli("estimate", "--model", "llama-3.1-7b");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Unknown model "llama-3.1-7b"\. Closest ids: llama-3.1-70b, llama-3.1-8b/);
  });

  it("unknown GPU: exit 2 with the closest ids", async () => {
    const r = await cli("estimate", "--model", "gpt2", "--gpu", "h1000");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Unknown GPU "h1000"\. Closest ids: h100/);
  });

  it.each([
    [["--context", "12x"], "--context"],
    [["--context", "0"], "--context"],
    [["--context=-4k"], "--context"],
    [["--batch", "0"], "--batch"],
    [["--batch", "2.5"], "--batch"],
    [["--tp", "two"], "--tp"],
    [["--overhead-gb=-1"], "--overhead-gb"],
    [["--overhead-gb", "-1"], "--overhead-gb"], // util.parseArgs: "ambiguous", names the flag
    [["--memory-gb", "0"], "--memory-gb"],
    [["--precision", "fp4"], "--precision"],
    [["--precision", "balanced"], "--precision"],
    [["--weights-precision", "balanced"], "--weights-precision"],
  ])("bad value %j names %s, exit 2", async (flags, flag) => {
    const r = await cli("estimate", "--model", "gpt2", ...flags);
    expect(r.code).toBe(2);
    expect(r.stderr.includes(`for ${flag} but received`) || r.stderr.includes(`Option '${flag}' argument is ambiguous`)).toBe(true);
  });

  it("usage errors: no model, both model and config, unknown flag, --gpu with --memory-gb, unknown preset", async () => {
    for (const argv of [[], ["--model", "gpt2", "--config", "x.json"], ["--model", "gpt2", "--bogus"], ["--model", "gpt2", "--gpu", "l4", "--memory-gb", "3"], ["--model", "gpt2", "--preset", "medium"]]) {
      const r = await cli("estimate", ...argv);
      expect(r.code, argv.join(" ")).toBe(2);
      expect(r.stderr.length).toBeGreaterThan(0);
    }
  });

  it("a preset on an MLA model is a usage error that says why", async () => {
    const r = await cli("estimate", "--model", "deepseek-v3", "--preset", "max");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/MLA/);
  });

  it("a --config model with --gpu needs --params", async () => {
    const path = join(tmp, "noparams.json");
    writeFileSync(path, JSON.stringify({ num_hidden_layers: 2, num_attention_heads: 2, hidden_size: 16, max_position_embeddings: 64 }));
    const r = await cli("estimate", "--config", path, "--gpu", "l4");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--params/);
  });

  it("a missing --config file is a usage error (exit 2); an invalid config is a failure (exit 1)", async () => {
    const bad = join(tmp, "bad.json");
    writeFileSync(bad, "{ not json");
    const missing = await cli("estimate", "--config", join(tmp, "missing.json"));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/Cannot read --config .*missing\.json/);
    expect(missing.stderr).toMatch(/--help/);
    const r = await cli("estimate", "--config", bad);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not valid JSON/);
    const incomplete = join(tmp, "incomplete.json");
    writeFileSync(incomplete, JSON.stringify({ num_hidden_layers: 2, hidden_size: 16 }));
    const r2 = await cli("estimate", "--config", incomplete, "--context", "10");
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/num_attention_heads/);
  });

  it("a misspelt config key is a warning on stderr and in --json", async () => {
    const typo = join(tmp, "typo.json");
    writeFileSync(typo, JSON.stringify({ num_hidden_layers: 32, num_attention_heads: 32, hidden_size: 4096, num_key_value_head: 8 }));
    const r = await cli("estimate", "--config", typo, "--context", "8k", "--json");
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/warning: config.json has num_key_value_head.*did you mean num_key_value_heads\?/);
    const out = JSON.parse(r.stdout) as { warnings?: string[] };
    expect(out.warnings).toHaveLength(1);
    expect(out.warnings![0]).toMatch(/num_key_value_heads/);
    // A correct config has no warnings.
    const good = join(tmp, "good.json");
    writeFileSync(good, JSON.stringify({ num_hidden_layers: 32, num_attention_heads: 32, hidden_size: 4096, num_key_value_heads: 8 }));
    const g = await cli("estimate", "--config", good, "--context", "8k", "--json");
    expect(g.stderr).toBe("");
    expect((JSON.parse(g.stdout) as { warnings?: string[] }).warnings).toBeUndefined();
  });

  it("a negative --context is a clear usage error, not parseArgs's 'ambiguous'", async () => {
    const r = await cli("estimate", "--model", "llama-3.1-8b", "--context", "-5");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/positive whole number of tokens.* for --context but received "-5"/);
    expect(r.stderr).not.toMatch(/ambiguous/);
  });
});

describe("parseContext", () => {
  it("integers, k = 1024, m = 1024²", () => {
    expect(parseContext("--context", "4096")).toBe(4096);
    expect(parseContext("--context", "32k")).toBe(32_768);
    expect(parseContext("--context", "128K")).toBe(131_072);
    expect(parseContext("--context", "1m")).toBe(1_048_576);
    expect(parseContext("--context", "1.5k")).toBe(1536);
  });
  it.each(["", "k", "1.3", "0.1k", "1e3", "32kb", "0"])("rejects %j", (text) => {
    expect(() => parseContext("--context", text)).toThrow(/for --context/);
  });
});
