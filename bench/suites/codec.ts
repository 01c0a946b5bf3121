import { parseFlags, parsePositiveInt } from "../../src/cli/args.js";
import { renderTable, toJson } from "../../src/cli/table.js";
import type { CliCommand } from "../../src/cli/types.js";
import { CODE_BITS } from "../../src/format/index.js";
import { native } from "../../src/runtime/native.js";
import { gaussian, studentT } from "../../src/runtime/synthetic.js";
import { seededRandom } from "../../src/shared/prng.js";
import { labBinding, type CodecBenchQuantizer } from "../native/lab-binding.js";

const USAGE = `nexusquant bench codec [--vectors N] [--head-dim D] [--seed N] [--json]
  NMSE, bits per element (scales included) and encode/decode throughput (all CPU threads) of the
  E8 codec and two scalar baselines at equal bits, after the same rotation and with the same FP16
  scale: per-vector absmax uniform, and Lloyd-Max (Gaussian-optimal). Data: i.i.d. Gaussian, and
  KV-like (Student-t nu=5 tails, 4 outlier channels scaled 10/13/16/20x), each with and without
  rotation. Defaults: 16384 vectors of head_dim 128. Lab suite: the baselines are lab code
  (bench/native), in an addon built with \`NEXUSQUANT_LAB=ON npm run build:native\`.
`;

type Quantizer = CodecBenchQuantizer;
type Distribution = "gaussian" | "kv-like";

export interface CodecBenchRow {
  quantizer: Quantizer;
  bits: number;
  distribution: Distribution;
  rotate: boolean;
  nmse: number;
  bitsPerElement: number;
  encodeMElemPerSec: number;
  decodeMElemPerSec: number;
}

/** The Shannon bound for a unit-variance Gaussian at `bits` per element: 2^(-2 bits). */
export const shannonBound = (bits: number): number => 2 ** (-2 * bits);

function makeData(dist: Distribution, vectors: number, d: number, seed: number): Float32Array {
  const rand = seededRandom(seed);
  const x = new Float32Array(vectors * d);
  if (dist === "gaussian") {
    const g = gaussian(rand);
    for (let i = 0; i < x.length; i++) x[i] = g();
    return x;
  }
  const t = studentT(rand, 5);
  const outliers = new Map([[3 % d, 10], [17 % d, 13], [66 % d, 16], [101 % d, 20]]);
  for (let v = 0; v < vectors; v++) for (let c = 0; c < d; c++) x[v * d + c] = t() * (outliers.get(c) ?? 1);
  return x;
}

function nmse(x: Float32Array, y: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < x.length; i++) {
    num += (x[i]! - y[i]!) ** 2;
    den += x[i]! ** 2;
  }
  return num / den;
}

export function runCodecBench(vectors: number, d: number, seed: number): CodecBenchRow[] {
  const b = labBinding();
  const rows: CodecBenchRow[] = [];
  for (const distribution of ["gaussian", "kv-like"] as Distribution[]) {
    const data = makeData(distribution, vectors, d, seed);
    for (const rotate of [true, false]) {
      for (const bits of CODE_BITS) {
        for (const quantizer of ["e8", "lloyd-max", "uniform"] as Quantizer[]) {
          b.codecBenchmark(quantizer, data.subarray(0, 256 * d), d, bits, rotate, seed); // warm tables and caches
          const runs = [0, 1, 2].map(() => b.codecBenchmark(quantizer, data, d, bits, rotate, seed));
          const med = (f: (r: (typeof runs)[number]) => number) => runs.map(f).sort((p, q) => p - q)[1]!;
          rows.push({
            quantizer,
            bits,
            distribution,
            rotate,
            nmse: nmse(data, runs[0]!.reconstruction),
            bitsPerElement: bits + 16 / d,
            encodeMElemPerSec: data.length / med((r) => r.encodeSeconds) / 1e6,
            decodeMElemPerSec: data.length / med((r) => r.decodeSeconds) / 1e6,
          });
        }
      }
    }
  }
  return rows;
}

export const codecSuite: CliCommand = {
  name: "codec",
  summary: "E8 codec vs uniform and Lloyd-Max scalar quantizers: NMSE and throughput",
  usage: USAGE,
  async run(args, io) {
    const { values: v } = parseFlags(args, { vectors: { type: "string" }, "head-dim": { type: "string" }, seed: { type: "string" }, json: { type: "boolean" } });
    const vectors = v.vectors ? parsePositiveInt("--vectors", v.vectors) : 16384;
    const d = v["head-dim"] ? parsePositiveInt("--head-dim", v["head-dim"]) : 128;
    const seed = v.seed ? parsePositiveInt("--seed", v.seed) : 1;
    const results = runCodecBench(vectors, d, seed);
    const threads = native().backendInfo().cpu.threads;
    if (v.json) {
      io.stdout(toJson({ suite: "codec", vectors, headDim: d, threads, date: new Date().toISOString(), results }));
      return 0;
    }
    io.stdout(`${vectors} vectors of head_dim ${d}, ${threads} CPU threads; Shannon bound 2^(-2b): ${CODE_BITS.map((b) => shannonBound(b)).join(", ")}\n\n`);
    io.stdout(
      renderTable(
        ["quantizer", "bits", "distribution", "rotate", "NMSE", "dB above bound", "bits/elem", "encode M/s", "decode M/s"],
        results.map((r) => [r.quantizer, String(r.bits), r.distribution, r.rotate ? "yes" : "no", r.nmse.toPrecision(4), (10 * Math.log10(r.nmse / shannonBound(r.bits))).toFixed(2), r.bitsPerElement.toFixed(3), r.encodeMElemPerSec.toFixed(1), r.decodeMElemPerSec.toFixed(1)]),
        ["left", "right", "left", "left", "right", "right", "right", "right", "right"],
      ),
    );
    return 0;
  },
};
