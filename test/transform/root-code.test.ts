// The 1-bit band code of a calibrated transform (kernels/nq_e8_root.h): the E8 lattice's 240 roots
// and the origin. Checked through the CPU ops with a transform whose basis is the identity (mean 0,
// band RMS 1, every band at 1 bit), so the decoded vector is ρ · 1.65 · (the band's point): each
// band's point must be one of the 241 and the nearest of them to the band's input over ρ · 1.65.
import { describe, expect, it } from "vitest";
import { native } from "../../src/runtime/native.js";
import { callNative } from "../../src/runtime/native.js";
import { halfBitsToFloats } from "../../src/runtime/half.js";
import { cpuDecode, cpuEncode } from "../ops/cpu.js";
import { gaussianStream } from "./synthetic.js";

const SCALE_FACTOR_1 = 1.65;  // kernels/nq_scale.h kScaleFactor1

/** The 241 points: the origin, (±1, ±1, 0⁶) and (±½)⁸ with an even number of minus signs. */
function rootPoints(): number[][] {
  const pts: number[][] = [new Array(8).fill(0)];
  for (let i = 0; i < 8; i++)
    for (let j = i + 1; j < 8; j++)
      for (const si of [1, -1])
        for (const sj of [1, -1]) {
          const p = new Array(8).fill(0);
          p[i] = si;
          p[j] = sj;
          pts.push(p);
        }
  for (let bits = 0; bits < 256; bits++) {
    const p = Array.from({ length: 8 }, (_, k) => ((bits >> k) & 1 ? -0.5 : 0.5));
    if (p.filter((x) => x < 0).length % 2 === 0) pts.push(p);
  }
  return pts;
}

/** A NativeTransform of one layer and KV head whose K and V entries are the identity at 1 bit per band. */
function identityTransform(headDim: number) {
  const g = headDim / 8, n = 2;
  const matrix = new Float32Array(n * headDim * headDim);
  for (let e = 0; e < n; e++) for (let i = 0; i < headDim; i++) matrix[e * headDim * headDim + i * headDim + i] = 1;
  const Native = native().NativeTransform;
  return callNative(
    () =>
      new Native({
        layers: 1, kvHeads: 1, headDim, keyBits: 1, valueBits: 1, id: new Uint8Array(32),
        mean: new Float32Array(n * headDim), matrix, bandRms: new Float32Array(n * g).fill(1), rates: new Uint8Array(n * g).fill(1), calibrated: new Uint8Array(n).fill(1),
      }),
  );
}

describe("the 1-bit band code (E8 roots and the origin)", () => {
  const d = 64, vectors = 400;
  const tables = identityTransform(d);
  const points = rootPoints();
  const g = gaussianStream(17);
  const x = Float32Array.from({ length: vectors * d }, (_, i) => g() * (i % 97 === 0 ? 0.05 : 1));
  const opts = { headDim: d, bits: 1 as const, transform: { tables, kvHeads: 1, layer: 0, kv: 0 as const, head: 0 } };
  const e = cpuEncode(x, opts);
  const y = cpuDecode(e.codes, e.scales, { ...opts, out: new Float32Array(vectors * d) });
  const rho = halfBitsToFloats(e.scales);

  it("takes one byte per band, each one of the 241 codes", () => {
    expect(points.length).toBe(241);
    expect(e.codes.length).toBe(vectors * (d / 8));
    for (const c of e.codes) expect(c).toBeLessThan(241);
  });

  it("decodes every band to the nearest of the 241 points (brute force), and uses both kinds of roots and the origin", () => {
    let mismatches = 0;
    const used = new Set<string>();
    for (let v = 0; v < vectors; v++) {
      const s = rho[v]! * SCALE_FACTOR_1;
      for (let b = 0; b < d / 8; b++) {
        const at = v * d + 8 * b;
        const u = Array.from(x.subarray(at, at + 8), (t) => t / s);
        let best = 0, bestDist = Infinity;
        points.forEach((p, k) => {
          const dist = p.reduce((acc, pi, i) => acc + (u[i]! - pi) ** 2, 0);
          if (dist < bestDist - 1e-9) [best, bestDist] = [k, dist];
        });
        const want = points[best]!;
        const got = Array.from(y.subarray(at, at + 8), (t) => t / s);
        if (got.some((t, i) => Math.abs(t - want[i]!) > 1e-3)) mismatches++;
        used.add(want.filter((t) => t !== 0).length === 0 ? "origin" : want.some((t) => Math.abs(t) === 1) ? "pairs" : "halves");
      }
    }
    expect(mismatches).toBe(0);
    expect([...used].sort()).toEqual(["halves", "origin", "pairs"]);
  });

  it("codes Gaussian bands with NMSE near the 0.320 the allocation assumes (GROUP_NMSE[1])", () => {
    let err = 0, energy = 0;
    for (let i = 0; i < x.length; i++) {
      err += (x[i]! - y[i]!) ** 2;
      energy += x[i]! ** 2;
    }
    // ρ normalizes each vector's energy, so the error is close to, not exactly, the fixed-scale figure.
    expect(err / energy).toBeGreaterThan(0.28);
    expect(err / energy).toBeLessThan(0.36);
  });
});
