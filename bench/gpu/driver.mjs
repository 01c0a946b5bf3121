#!/usr/bin/env node
// Memory verification and kernel benchmarks on the GPU machine (imports what pack.sh compiled into
// .gpu/js and the addon only; kernel timings need a lab addon, NEXUSQUANT_LAB=ON).
//   node bench/gpu/driver.mjs [--out DIR] [--quick]
// Writes DIR/memory.json, DIR/kernels.json, DIR/attention.json; prints short tables.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cudaBench } from "../../.gpu/js/bench/native/lab-binding.js";
import { PRESETS, compressedLayout } from "../../.gpu/js/src/format/index.js";
import { memoryStats } from "../../.gpu/js/src/runtime/memory.js";
import { CudaDeviceArena, CudaDeviceBuffer, cudaEncode, cudaMemGetInfo, cudaUnavailableReason } from "../../.gpu/js/test/ops/cuda.js";

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const out = arg("--out", process.env.OUT ?? ".");
const quick = process.argv.includes("--quick");
mkdirSync(out, { recursive: true });
const reason = cudaUnavailableReason();
if (reason) {
  console.error(`driver: CUDA unavailable: ${reason}`);
  process.exit(1);
}
const MiB = 2 ** 20, GiB = 2 ** 30;
const GRANULARITY = 2 * MiB;  // cudaMalloc rounds large allocations to 2 MiB pages

// ---- memory verification: Llama-3.1-8B shape at 128K tokens -----------------------------------------
function deviceSnapshot() {
  return memoryStats().device;
}
function deltaByCategory(a, b) {
  const d = {};
  for (const k of Object.keys(b.byCategory)) d[k] = b.byCategory[k] - a.byCategory[k];
  return d;
}

function verifyMemory() {
  const shape = { layers: 32, kvHeads: 8, headDim: 128, tokens: 131072 };
  cudaEncode(new Float32Array(128), { headDim: 128, bits: 2 });  // context + codebook tables exist before measuring
  const rows = [];
  // FP16 baseline: K and V of every layer, one cudaMalloc each, filled (so nothing is lazily committed).
  {
    const perBuffer = shape.tokens * shape.kvHeads * shape.headDim * 2;
    const expected = 2 * shape.layers * perBuffer;
    const a0 = deviceSnapshot(), m0 = cudaMemGetInfo();
    const bufs = [];
    for (let i = 0; i < 2 * shape.layers; i++) bufs.push(new CudaDeviceBuffer(perBuffer, "tensor", 0x3c));
    const a1 = deviceSnapshot(), m1 = cudaMemGetInfo();
    for (const b of bufs) b.dispose();
    rows.push(row("fp16", expected, a1.totalBytes - a0.totalBytes, m1.usedBytes - m0.usedBytes, 2 * shape.layers, null, null));
  }
  const names = [...Object.keys(PRESETS)];
  for (const name of names) {
    const spec = PRESETS[name].spec;
    const layout = compressedLayout(shape, spec);
    const b = layout.bytes;
    const pages = layout.pagesPerLayer[0];
    const slots = shape.kvHeads * spec.pageTokens;
    const codesPerPage = slots * ((shape.headDim / 8) * spec.keyBits + (shape.headDim / 8) * spec.valueBits);
    const scalesPerPage = slots * 4;
    const positionsPerPage = spec.evictFraction > 0 ? slots * 4 : 0;
    const residualPerLayer = b.residual / shape.layers;
    const a0 = deviceSnapshot(), m0 = cudaMemGetInfo();
    // One arena for the whole cache, carved page by page in the page layout's order.
    const arena = new CudaDeviceArena(b.total);
    for (let l = 0; l < shape.layers; l++) {
      for (let p = 0; p < pages; p++) {
        arena.carve(16, "headers");
        arena.carve(codesPerPage, "codes");
        arena.carve(scalesPerPage, "scales");
        if (positionsPerPage > 0) arena.carve(positionsPerPage, "positions");
      }
      if (residualPerLayer > 0) arena.carve(residualPerLayer, "residual");
    }
    const a1 = deviceSnapshot(), m1 = cudaMemGetInfo();
    const byCat = deltaByCategory(a0, a1);
    arena.dispose();
    rows.push(row(name, b.total, a1.totalBytes - a0.totalBytes, m1.usedBytes - m0.usedBytes, 1, byCat, b));
  }
  const fp16Measured = rows[0].cudaMemGetInfoDelta;
  for (const r of rows) r.measuredRatio = fp16Measured / r.cudaMemGetInfoDelta;
  return { shape, granularityBytes: GRANULARITY, rows, pass: rows.every((r) => r.pass) };

  function row(name, layoutBytes, allocatorDelta, memGetInfoDelta, allocations, byCategory, layoutBytesByCategory) {
    const categoriesExact =
      byCategory === null ||
      (byCategory.codes === layoutBytesByCategory.codes && byCategory.scales === layoutBytesByCategory.scales &&
        byCategory.positions === layoutBytesByCategory.positions && byCategory.residual === layoutBytesByCategory.residual &&
        byCategory.headers === layoutBytesByCategory.headers && byCategory.scratch === 0);
    const allowance = 0.01 * layoutBytes + allocations * GRANULARITY;
    const r = {
      name, layoutBytes, allocatorDelta, cudaMemGetInfoDelta: memGetInfoDelta, byCategory,
      allocatorExact: allocatorDelta === layoutBytes && categoriesExact,
      memGetInfoWithin: Math.abs(memGetInfoDelta - layoutBytes) <= allowance,
      memGetInfoRelative: (memGetInfoDelta - layoutBytes) / layoutBytes,
    };
    r.pass = r.allocatorExact && r.memGetInfoWithin;
    return r;
  }
}

// ---- kernel benchmarks ------------------------------------------------------------------------------
function median(ms) {
  const s = [...ms].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
function spread(ms) {
  const s = [...ms].sort((a, b) => a - b);
  return { p10: s[Math.floor(s.length * 0.1)], p90: s[Math.floor(s.length * 0.9)] };
}

function benchKernels() {
  const reps = quick ? 10 : 30;
  const copy = cudaBench("copy", { bytes: 1 * GiB, buffers: 2, warmup: 3, reps });
  const copyGBs = copy.gbPerSecond;
  const rows = [{ kernel: "copy (device-to-device)", ...pick(copy), percentOfCopy: 100 }];
  const vectors = quick ? 1 << 20 : 1 << 22;  // x 128 dims x 2 B = 1 GiB of FP16 input at 2^22
  for (const kind of ["encode", "decode"])
    for (const bits of [2, 3, 4]) {
      const r = cudaBench(kind, { headDim: 128, bits, f16: true, vectors, buffers: 2, warmup: 2, reps });
      rows.push({ kernel: `${kind} d=128 ${bits}-bit fp16`, ...pick(r), percentOfCopy: (100 * r.gbPerSecond) / copyGBs,
        msPer16GiBFp16: (r.medianMs * 16 * GiB) / (vectors * 128 * 2) });
    }
  return { copyGBs, rows };
  function pick(r) {
    return { medianMs: r.medianMs, ...spread(r.ms), bytesRead: r.bytesRead, bytesWritten: r.bytesWritten, gbPerSecond: r.gbPerSecond };
  }
}

function benchAttention(copyGBs) {
  const contexts = quick ? [4096, 32768] : [4096, 16384, 32768, 65536, 131072];
  const batches = quick ? [1, 8] : [1, 8, 32];
  const variants = [
    { name: "K2V2 codes", keyBits: 2, valueBits: 2 },
    { name: "K3V2 codes", keyBits: 3, valueBits: 2 },
    { name: "FP16 (ours)", fp16Reference: true },
  ];
  const rows = [];
  const free = cudaMemGetInfo().freeBytes;
  for (const tokens of contexts)
    for (const batch of batches) {
      const fp16Bytes = batch * 8 * tokens * 128 * 2 * 2;
      for (const v of variants) {
        if (v.fp16Reference && fp16Bytes * 1.2 > free * 0.8) {
          rows.push({ variant: v.name, tokens, batch, skipped: "does not fit" });
          continue;
        }
        try {
          const r = cudaBench("attention", { batch, kvHeads: 8, queryHeads: 32, headDim: 128, tokens, keyBits: v.keyBits ?? 2, valueBits: v.valueBits ?? 2, fp16Reference: !!v.fp16Reference, warmup: 5, reps: quick ? 10 : 30 });
          rows.push({ variant: v.name, tokens, batch, medianMs: r.medianMs, ...spread(r.ms), bytesRead: r.bytesRead, gbPerSecond: r.gbPerSecond, percentOfCopy: (100 * r.gbPerSecond) / copyGBs });
        } catch (err) {
          rows.push({ variant: v.name, tokens, batch, error: `${err.code}: ${err.message}` });
        }
      }
    }
  return rows;
}

const t0 = Date.now();
const memory = verifyMemory();
writeFileSync(join(out, "memory.json"), JSON.stringify(memory, null, 2));
console.log("memory verification (Llama-3.1-8B, 128K tokens):");
for (const r of memory.rows)
  console.log(`  ${r.name.padEnd(9)} layout ${(r.layoutBytes / GiB).toFixed(4)} GiB  allocator ${r.allocatorExact ? "exact" : "MISMATCH " + r.allocatorDelta}  cudaMemGetInfo ${(r.cudaMemGetInfoDelta / GiB).toFixed(4)} GiB (${(100 * r.memGetInfoRelative).toFixed(3)}%) ${r.pass ? "ok" : "FAIL"}  ratio ${r.measuredRatio.toFixed(2)}x`);
const kernels = benchKernels();
writeFileSync(join(out, "kernels.json"), JSON.stringify(kernels, null, 2));
console.log(`kernels (copy ${kernels.copyGBs.toFixed(0)} GB/s):`);
for (const r of kernels.rows) console.log(`  ${r.kernel.padEnd(28)} ${r.medianMs.toFixed(3)} ms  ${r.gbPerSecond.toFixed(0)} GB/s  ${r.percentOfCopy.toFixed(1)}% of copy`);
const attention = benchAttention(kernels.copyGBs);
writeFileSync(join(out, "attention.json"), JSON.stringify({ copyGBs: kernels.copyGBs, rows: attention }, null, 2));
console.log("attention (ours), median ms per decode step:");
for (const r of attention) console.log(`  ${r.variant.padEnd(12)} T=${String(r.tokens).padEnd(6)} B=${String(r.batch).padEnd(2)} ${r.medianMs !== undefined ? r.medianMs.toFixed(3) + " ms " + r.gbPerSecond.toFixed(0) + " GB/s" : r.skipped ?? r.error}`);
console.log(`driver: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
process.exit(memory.pass ? 0 : 1);
