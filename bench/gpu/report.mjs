#!/usr/bin/env node
// Merges DIR/{parity,memory,kernels,attention,sdpa,env}.json into DIR/results.json and DIR/results.md.
//   node bench/gpu/report.mjs DIR
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2] ?? process.env.OUT ?? ".";
const load = (f) => (existsSync(join(dir, f)) ? JSON.parse(readFileSync(join(dir, f), "utf8")) : undefined);
const env = load("env.json"), parity = load("parity.json"), memory = load("memory.json"), kernels = load("kernels.json");
const attention = load("attention.json"), sdpa = load("sdpa.json");
const GiB = 2 ** 30;
const md = [];
md.push(`# nexusquant CUDA results`, "");
if (env) md.push(`GPU: ${env.gpu} · driver ${env.driver} · CUDA runtime ${env.cudaRuntime} · ${env.date} · \`${env.command}\``, "");
if (parity) {
  md.push("## Parity (CUDA vs the CPU oracle)", "");
  if (parity.skipped) md.push(`skipped: ${parity.skipped}`, "");
  else {
    md.push(`${parity.cases - parity.failed}/${parity.cases} cases passed.`, "", "| kind | cases | failed | worst metric |", "| --- | --- | --- | --- |");
    for (const [k, v] of Object.entries(parity.byKind)) md.push(`| ${k} | ${v.cases} | ${v.failed} | ${v.worstMetric} |`);
    md.push("", "Metric: codec = fraction of groups whose code differs (bound 0); attention/dense = ‖gpu − ref‖/‖ref‖ (bound 1e-3); score = same (1e-4); select = indices differing (0).", "");
  }
}
if (memory) {
  md.push("## Memory: Llama-3.1-8B shape, 128K tokens", "", "| cache | layout bytes | allocator | cudaMemGetInfo Δ | vs layout | measured ratio | pass |", "| --- | --- | --- | --- | --- | --- | --- |");
  for (const r of memory.rows)
    md.push(`| ${r.name} | ${r.layoutBytes} (${(r.layoutBytes / GiB).toFixed(3)} GiB) | ${r.allocatorExact ? "exact" : r.allocatorDelta} | ${r.cudaMemGetInfoDelta} | ${(100 * r.memGetInfoRelative).toFixed(3)}% | ${r.measuredRatio.toFixed(2)}× | ${r.pass ? "yes" : "NO"} |`);
  md.push("", "Compressed caches are carved page by page (the page layout of src/format) from one device arena; the GPU cache itself is not wired yet (docs/cuda.md).", "");
}
if (kernels) {
  md.push(`## Kernels (copy bandwidth ${kernels.copyGBs.toFixed(0)} GB/s, same run)`, "", "| kernel | median ms | GB/s (read + written) | % of copy | ms per 16 GiB FP16 |", "| --- | --- | --- | --- | --- |");
  for (const r of kernels.rows) md.push(`| ${r.kernel} | ${r.medianMs.toFixed(3)} | ${r.gbPerSecond.toFixed(0)} | ${r.percentOfCopy.toFixed(1)}% | ${r.msPer16GiBFp16 ? r.msPer16GiBFp16.toFixed(1) : ""} |`);
  md.push("");
}
const merged = [];
if (attention) {
  const sd = new Map((sdpa?.rows ?? []).map((r) => [`${r.tokens}/${r.batch}`, r]));
  md.push("## Decode attention: Llama-3.1-8B layer (32 q heads, 8 KV heads, d=128), one step", "", "| context | batch | variant | median ms | GB/s on bytes read | % of copy | SDPA flash ms | speedup vs SDPA |", "| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const r of attention.rows) {
    const s = sd.get(`${r.tokens}/${r.batch}`);
    const base = s?.flash?.medianMs ?? s?.auto?.medianMs;
    const speedup = base && r.medianMs ? base / r.medianMs : undefined;
    merged.push({ ...r, sdpaMs: base, speedup });
    md.push(`| ${r.tokens} | ${r.batch} | ${r.variant} | ${r.medianMs?.toFixed(3) ?? r.skipped ?? r.error} | ${r.gbPerSecond?.toFixed(0) ?? ""} | ${r.percentOfCopy?.toFixed(1) ?? ""} | ${base?.toFixed(3) ?? s?.skipped ?? ""} | ${speedup ? speedup.toFixed(2) + "×" : ""} |`);
  }
  md.push("");
}
writeFileSync(join(dir, "results.json"), JSON.stringify({ env, parity: parity && { ...parity, results: undefined }, memory, kernels, attention: merged, sdpa }, null, 2));
writeFileSync(join(dir, "results.md"), md.join("\n") + "\n");
console.log(md.join("\n"));
