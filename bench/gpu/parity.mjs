#!/usr/bin/env node
// Parity suite on the GPU machine (no vitest there): the cases of test/ops/parity-cases.mjs against
// the modules pack.sh compiled into .gpu/js (the product's runtime and test/ops' op wrappers).
//   node bench/gpu/parity.mjs [--out DIR] [--filter TEXT]
// Writes DIR/parity.json and prints one line per failure and a summary; exit code 1 on any failure.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parityCases, runCase } from "../../test/ops/parity-cases.mjs";
import { CompressedKVCache } from "../../.gpu/js/src/runtime/cache.js";
import { dequantizeSync, quantizeSync } from "../../.gpu/js/src/runtime/codec.js";
import { floatsToHalfBits, halfBitsToFloats } from "../../.gpu/js/src/runtime/half.js";
import { cpuAttention, cpuDecode, cpuEncode, cpuScore, cpuSelect } from "../../.gpu/js/test/ops/cpu.js";
import { cudaAttention, cudaDecode, cudaDenseAttention, cudaEncode, cudaScore, cudaSelect, cudaUnavailableReason } from "../../.gpu/js/test/ops/cuda.js";
import { transformProfileFor, transformTablesFor, transformTestKV } from "../../.gpu/js/test/ops/transform-fixture.js";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const out = arg("--out", process.env.OUT ?? ".");
const filter = arg("--filter", "");
mkdirSync(out, { recursive: true });

const reason = cudaUnavailableReason();
if (reason) {
  console.error(`parity: CUDA unavailable: ${reason}`);
  writeFileSync(join(out, "parity.json"), JSON.stringify({ skipped: reason }, null, 2));
  process.exit(1);
}
const api = {
  quantizeSync, dequantizeSync, floatsToHalfBits, halfBitsToFloats, CompressedKVCache,
  cudaEncode, cudaDecode, cudaAttention, cudaDenseAttention, cudaScore, cudaSelect,
  cpuEncode, cpuDecode, cpuAttention, cpuScore, cpuSelect,
  transformProfileFor, transformTablesFor, transformTestKV,
};
const cases = parityCases().filter((c) => c.name.includes(filter));
const results = [];
const started = Date.now();
for (const c of cases) {
  const r = runCase(api, c);
  results.push(r);
  if (!r.ok) console.log(`FAIL ${r.name}: ${r.detail} (bound ${r.bound})`);
}
const failed = results.filter((r) => !r.ok);
const byKind = {};
for (const r of results) {
  const k = (byKind[r.kind] ??= { cases: 0, failed: 0, worstMetric: 0 });
  k.cases++;
  if (!r.ok) k.failed++;
  if (Number.isFinite(r.metric)) k.worstMetric = Math.max(k.worstMetric, r.metric);
  else k.worstMetric = Infinity;
}
writeFileSync(join(out, "parity.json"), JSON.stringify({ cases: results.length, failed: failed.length, seconds: (Date.now() - started) / 1000, byKind, results }, null, 2));
console.log(`parity: ${results.length - failed.length}/${results.length} passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
for (const [k, v] of Object.entries(byKind)) console.log(`  ${k.padEnd(18)} ${v.cases - v.failed}/${v.cases} passed, worst metric ${v.worstMetric}`);
process.exit(failed.length === 0 ? 0 : 1);
