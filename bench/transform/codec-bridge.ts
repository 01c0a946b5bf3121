/**
 * The transform study's (study.py) way to the real codec and the real layout, so that no figure of
 * the study comes from a re-implementation:
 *
 *   npx tsx bench/transform/codec-bridge.ts codec JOBS.json
 *     JOBS.json: [{ input, output, headDim, bits, rotate }]; each input is raw little-endian float32
 *     head vectors; writes quantize → dequantize of them (quantizeSync/dequantizeSync of
 *     src/runtime: E8 codes, one FP16 scale per vector of headDim values) to output.
 *
 *   npx tsx bench/transform/codec-bridge.ts ratio QUERY.json
 *     QUERY.json: { headDim, kvHeads, rows: [{ name, keyCodeBits, valueCodeBits }] } with code bits per
 *     vector (any multiple of 8); prints the long-context ratio against FP16 of pages holding such
 *     vectors plus one FP16 scale each (src/format/layout.ts: page header amortized over its slots,
 *     no eviction, so no positions). The same arithmetic as asymptoticBytesPerTokenLayer, checked
 *     against specRatio for the integer-bit specs before any row is answered.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { DEFAULT_SPEC, PAGE_HEADER_BYTES, SCALE_BYTES, fp16BytesPerTokenLayer, specRatio, type CodeBits } from "../../src/format/index.js";
import { dequantizeSync, quantizeSync } from "../../src/runtime/index.js";

interface CodecJob {
  input: string;
  output: string;
  headDim: number;
  bits: CodeBits;
  rotate: boolean;
}

function runCodec(jobsPath: string): void {
  const jobs = JSON.parse(readFileSync(jobsPath, "utf8")) as CodecJob[];
  for (const job of jobs) {
    const raw = readFileSync(job.input);
    const data = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
    const q = quantizeSync(data, { headDim: job.headDim, bits: job.bits, rotate: job.rotate });
    const out = dequantizeSync(q);
    writeFileSync(job.output, new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
  }
}

/** Long-context bytes per token and layer of pages whose vectors have these code bits (no eviction). */
function pagedBytesPerTokenLayer(kvHeads: number, keyCodeBits: number, valueCodeBits: number): number {
  const P = DEFAULT_SPEC.pageTokens;
  const perSlot = (keyCodeBits + valueCodeBits) / 8 + 2 * SCALE_BYTES;
  return (PAGE_HEADER_BYTES + kvHeads * P * perSlot) / P;
}

function runRatio(queryPath: string): void {
  const query = JSON.parse(readFileSync(queryPath, "utf8")) as { headDim: number; kvHeads: number; rows: { name: string; keyCodeBits: number; valueCodeBits: number }[] };
  const { headDim, kvHeads } = query;
  const fp16 = fp16BytesPerTokenLayer(kvHeads, headDim);
  for (const keyBits of [2, 3, 4] as const) {
    for (const valueBits of [2, 3, 4] as const) {
      const mine = fp16 / pagedBytesPerTokenLayer(kvHeads, headDim * keyBits, headDim * valueBits);
      const theirs = specRatio({ ...DEFAULT_SPEC, keyBits, valueBits, evictFraction: 0 }, headDim, kvHeads);
      if (Math.abs(mine - theirs) > 1e-9 * theirs) throw new Error(`layout mismatch at K${keyBits}V${valueBits}: ${mine} vs specRatio ${theirs}`);
    }
  }
  const rows = query.rows.map((r) => ({ ...r, ratio: fp16 / pagedBytesPerTokenLayer(kvHeads, r.keyCodeBits, r.valueCodeBits) }));
  process.stdout.write(JSON.stringify({ headDim, kvHeads, pageTokens: DEFAULT_SPEC.pageTokens, rows }) + "\n");
}

const [mode, path] = process.argv.slice(2);
if (mode === "codec" && path) runCodec(path);
else if (mode === "ratio" && path) runRatio(path);
else {
  console.error("usage: npx tsx bench/transform/codec-bridge.ts codec JOBS.json | ratio QUERY.json");
  process.exit(2);
}
