// The fused attention kernels (native/cpu/attention*.cc) on many shapes: against dequantize-then-dense
// attention in float64 (in process, at the ISA this machine picks), and every ISA level against the
// portable one, each forced with NEXUSQUANT_ISA in a child process that reads the same serialized
// caches. Also: NEXUSQUANT_THREADS is clamped to the hardware and never aborts the process.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CompressedKVCache, syntheticKV, backendInfo } from "../../src/runtime/index.js";
import { denseAttention } from "../runtime/reference.js";

const ADDON = resolve(__dirname, "../../build/Release/nexusquant.node");

interface Case {
  name: string;
  cache: CompressedKVCache;
  q: Float32Array;
  nq: number;
  positions: Int32Array | null;
  residual?: [Float32Array, Float32Array];  // appended after compress()
}

// Lengths 1..1000+, head_dim 8/24/40/64/96/128, GQA 1/2/4/8, residual on/off, evicting and non-evicting
// specs, decode and causal chunks (including queries in the middle of the context).
function buildCases(): Case[] {
  const lengths = [1, 7, 17, 33, 97, 1100];
  const dims = [64, 96, 128, 8, 24, 40]; // 8, 24, 40: not a multiple of the AVX-512 width
  const groups = [1, 2, 4, 8];
  const cases: Case[] = [];
  let seed = 1;
  for (let i = 0; i < 24; i++) {
    const n = lengths[i % lengths.length]!;
    const d = dims[i % dims.length]!;
    const group = groups[Math.floor(i / 2) % groups.length]!;
    const kvHeads = 1 + (i % 3);
    const preset = ["quant", "balanced", "high", "max"][i % 4]!;
    const residual = i % 2 === 0 ? 0 : 1 + (i % 5) * 3;
    const cache = new CompressedKVCache({ layers: 1, kvHeads, headDim: d, queryHeads: kvHeads * group, preset, spec: { pageTokens: 16 + 16 * (i % 3) } });
    const kv = syntheticKV({ kvHeads, headDim: d, tokens: n, seed: seed++ });
    cache.append(0, kv.keys, kv.values);
    const name = `n=${n} d=${d} gqa=${group} kvHeads=${kvHeads} ${preset} residual=${residual}`;
    const r = residual > 0 ? syntheticKV({ kvHeads, headDim: d, tokens: residual, seed: seed++ }) : null;
    cases.push({ name, cache, q: new Float32Array(), nq: 0, positions: null, residual: r ? [r.keys, r.values] : undefined });
  }
  return cases;
}

async function finish(cases: Case[]): Promise<void> {
  let seed = 1000;
  for (let i = 0; i < cases.length; i++) {
    const c = cases[i]!;
    await c.cache.compress();
    if (c.residual) c.cache.append(0, c.residual[0], c.residual[1]);
    const appended = c.cache.tokens(0).appended;
    // decode (default positions), a causal chunk at the end, or queries at earlier positions
    const mode = i % 3;
    c.nq = mode === 0 ? 1 : Math.min(appended, 5);
    if (mode === 1) c.positions = Int32Array.from({ length: c.nq }, (_, j) => appended - c.nq + j);
    if (mode === 2) c.positions = Int32Array.from({ length: c.nq }, (_, j) => Math.floor((appended * (j + 1)) / (c.nq + 1)) - 1);
    c.q = syntheticKV({ kvHeads: c.cache.queryHeads, headDim: c.cache.headDim, tokens: c.nq, seed: seed++ }).values;
  }
}

function attentionOf(c: Case): Float32Array {
  return c.cache.attention(0, c.q, c.positions ? { positions: c.positions } : {});
}

// max |a - b| over one query row, relative to max |b| of that row (rows with no visible key are zeros).
function worstRowError(a: ArrayLike<number>, b: ArrayLike<number>, d: number): number {
  let worst = 0;
  for (let r = 0; r < a.length / d; r++) {
    let diff = 0, ref = 0;
    for (let i = 0; i < d; i++) {
      diff = Math.max(diff, Math.abs(a[r * d + i]! - b[r * d + i]!));
      ref = Math.max(ref, Math.abs(b[r * d + i]!));
    }
    worst = Math.max(worst, ref === 0 ? diff : diff / ref);
  }
  return worst;
}

const cases = buildCases();
const ready = finish(cases);
const dir = mkdtempSync(join(tmpdir(), "nq-attn-"));
afterAll(() => {
  for (const c of cases) c.cache.dispose();
  rmSync(dir, { recursive: true, force: true });
});

// A child process with its own environment: loads the addon directly, runs attention on every case.
const CHILD = `
const fs = require("fs");
const nq = require(process.argv[1]);
const input = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const out = { isa: nq.backendInfo().cpu.isa, threads: nq.backendInfo().cpu.threads, results: [] };
for (const c of input) {
  const h = nq.NativeCache.deserialize(new Uint8Array(Buffer.from(c.cache, "base64")));
  const q = new Float32Array(new Uint8Array(Buffer.from(c.q, "base64")).buffer);
  const pos = c.positions ? Int32Array.from(c.positions) : null;
  const r = h.attention(0, 0, q, c.qHeads, c.nq, pos, 1 / Math.sqrt(c.d));
  out.results.push(Buffer.from(r.buffer, r.byteOffset, r.byteLength).toString("base64"));
  h.dispose();
}
process.stdout.write(JSON.stringify(out));
`;

function runChild(env: Record<string, string>, inputPath: string): { isa: string; threads: number; results: Float32Array[] } {
  const r = spawnSync(process.execPath, ["-e", CHILD, ADDON, inputPath], { env: { ...process.env, ...env }, encoding: "utf8", maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`child failed (${r.status} ${r.signal}): ${r.stderr}`);
  const parsed = JSON.parse(r.stdout) as { isa: string; threads: number; results: string[] };
  return { ...parsed, results: parsed.results.map((b) => new Float32Array(new Uint8Array(Buffer.from(b, "base64")).buffer)) };
}

describe("fused attention kernels", () => {
  it("equal dequantize-then-dense attention (float64) within 1e-5 on every shape", async () => {
    await ready;
    for (const c of cases) {
      const m = c.cache.materialize(0);
      const d = c.cache.headDim;
      const appended = c.cache.tokens(0).appended;
      const qpos = c.positions ? Array.from(c.positions) : Array.from({ length: c.nq }, (_, j) => appended - c.nq + j);
      const want = denseAttention(c.q, c.cache.queryHeads, c.nq, qpos, m.keys, m.values, m.positions, c.cache.kvHeads, m.tokens, d, 1 / Math.sqrt(d));
      const err = worstRowError(attentionOf(c), want, d);
      expect(err, c.name).toBeLessThan(1e-5);
    }
  });

  it("every ISA level equals the portable one within 1e-5 (forced with NEXUSQUANT_ISA)", async () => {
    await ready;
    const input = join(dir, "cases.json");
    writeFileSync(
      input,
      JSON.stringify(
        cases.map((c) => ({
          cache: Buffer.from(c.cache.serialize()).toString("base64"),
          q: Buffer.from(c.q.buffer, c.q.byteOffset, c.q.byteLength).toString("base64"),
          positions: c.positions ? Array.from(c.positions) : null,
          qHeads: c.cache.queryHeads,
          nq: c.nq,
          d: c.cache.headDim,
        })),
      ),
    );
    const levels = backendInfo().cpu.isasSupported ?? ["scalar"];
    expect(levels).toContain("scalar");
    const scalar = runChild({ NEXUSQUANT_ISA: "scalar" }, input);
    expect(scalar.isa).toBe("scalar");
    for (const level of levels) {
      const got = runChild({ NEXUSQUANT_ISA: level }, input);
      expect(got.isa).toBe(level);
      cases.forEach((c, i) => {
        expect(worstRowError(got.results[i]!, scalar.results[i]!, c.cache.headDim), `${level}: ${c.name}`).toBeLessThan(1e-5);
        expect(worstRowError(got.results[i]!, attentionOf(c), c.cache.headDim), `${level} vs in-process: ${c.name}`).toBeLessThan(1e-5);
      });
    }
  });

  it("an unknown NEXUSQUANT_ISA falls back to the best level and says why", () => {
    const r = spawnSync(process.execPath, ["-e", `const b = require(process.argv[1]).backendInfo().cpu; process.stdout.write(JSON.stringify(b))`, ADDON], {
      env: { ...process.env, NEXUSQUANT_ISA: "sse9" },
      encoding: "utf8",
    });
    expect(r.status).toBe(0);
    const cpu = JSON.parse(r.stdout) as { isa: string; isaNote?: string; isasSupported: string[] };
    expect(cpu.isa).toBe(cpu.isasSupported[cpu.isasSupported.length - 1]);
    expect(cpu.isaNote).toMatch(/sse9/);
  });

  it("NEXUSQUANT_THREADS=100000 is clamped to the hardware and attention still runs", async () => {
    await ready;
    const input = join(dir, "one.json");
    const c = cases[cases.length - 1]!;
    writeFileSync(
      input,
      JSON.stringify([{ cache: Buffer.from(c.cache.serialize()).toString("base64"), q: Buffer.from(c.q.buffer, c.q.byteOffset, c.q.byteLength).toString("base64"), positions: c.positions ? Array.from(c.positions) : null, qHeads: c.cache.queryHeads, nq: c.nq, d: c.cache.headDim }]),
    );
    const got = runChild({ NEXUSQUANT_THREADS: "100000" }, input);
    expect(got.threads).toBeGreaterThanOrEqual(1);
    expect(got.threads).toBeLessThanOrEqual(availableParallelism());
    expect(worstRowError(got.results[0]!, attentionOf(c), c.cache.headDim)).toBeLessThan(1e-5);
    const single = runChild({ NEXUSQUANT_THREADS: "1" }, input);
    expect(single.threads).toBe(1);
    expect(worstRowError(single.results[0]!, attentionOf(c), c.cache.headDim)).toBeLessThan(1e-5);
  });
});
