// Plain-TypeScript references for the cache tests: what the native code must agree with.
import { floatToHalfBits, halfBitsToFloat } from "../../src/runtime/half.js";

export const fp16Round = (x: number): number => halfBitsToFloat(floatToHalfBits(x));

/** Keys as the cache scores them before its first compression: rounded to FP16. */
export function roundKeys(keys: Float32Array): Float64Array {
  return Float64Array.from(keys, fp16Round);
}

export function keyNormScores(keys: Float64Array, heads: number, tokens: number, d: number): Float64Array {
  const s = new Float64Array(heads * tokens);
  for (let i = 0; i < heads * tokens; i++) {
    let n = 0;
    for (let c = 0; c < d; c++) n += keys[i * d + c]! ** 2;
    s[i] = -Math.sqrt(n);
  }
  return s;
}

export function keyKeyScores(keys: Float64Array, heads: number, tokens: number, d: number, window: number): Float64Array {
  const s = new Float64Array(heads * tokens);
  const w = Math.min(window, tokens);
  for (let h = 0; h < heads; h++) {
    for (let j = tokens - w; j < tokens; j++) {
      const logits: number[] = [];
      for (let i = 0; i <= j; i++) {
        let dot = 0;
        for (let c = 0; c < d; c++) dot += keys[(h * tokens + j) * d + c]! * keys[(h * tokens + i) * d + c]!;
        logits.push(dot / Math.sqrt(d));
      }
      const mx = Math.max(...logits);
      const e = logits.map((l) => Math.exp(l - mx));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let i = 0; i <= j; i++) s[h * tokens + i] += e[i]! / sum;
    }
  }
  return s;
}

/**
 * The selection rule: the first `sinks` positions and the last `recent` tokens are kept; of the
 * rest, the `target - protected` best scores (ties: earlier token). Returns kept token indices per head.
 */
export function selectKept(scores: Float64Array, heads: number, tokens: number, target: number, sinks: number, recent: number): number[][] {
  const out: number[][] = [];
  for (let h = 0; h < heads; h++) {
    const prot: number[] = [], cand: number[] = [];
    for (let t = 0; t < tokens; t++) (t < sinks || t >= tokens - recent ? prot : cand).push(t);
    const sc = (t: number) => scores[h * tokens + t]!;
    cand.sort((a, b) => sc(b) - sc(a) || a - b);
    out.push([...prot, ...cand.slice(0, Math.max(0, target - prot.length))].sort((a, b) => a - b));
  }
  return out;
}

/**
 * Dense causal attention in f64: queries [qHeads, nq, d] at positions qpos see keys [kvHeads, n, d]
 * whose positions (per head) are <= theirs.
 */
export function denseAttention(
  q: Float32Array,
  qHeads: number,
  nq: number,
  qpos: number[],
  keys: Float32Array,
  values: Float32Array,
  positions: Int32Array,
  kvHeads: number,
  n: number,
  d: number,
  scale: number,
): Float64Array {
  const out = new Float64Array(qHeads * nq * d);
  const group = qHeads / kvHeads;
  for (let qh = 0; qh < qHeads; qh++) {
    const h = Math.floor(qh / group);
    for (let j = 0; j < nq; j++) {
      const logits: number[] = [];
      for (let t = 0; t < n; t++) {
        if (positions[h * n + t]! > qpos[j]!) {
          logits.push(-Infinity);
          continue;
        }
        let dot = 0;
        for (let c = 0; c < d; c++) dot += q[(qh * nq + j) * d + c]! * keys[(h * n + t) * d + c]!;
        logits.push(dot * scale);
      }
      const mx = Math.max(...logits);
      const e = logits.map((l) => (l === -Infinity ? 0 : Math.exp(l - mx)));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let t = 0; t < n; t++) {
        if (e[t] === 0) continue;
        for (let c = 0; c < d; c++) out[(qh * nq + j) * d + c] += (e[t]! / sum) * values[(h * n + t) * d + c]!;
      }
    }
  }
  return out;
}

export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}
