/**
 * How far a compressed run's next-token distributions are from the uncompressed run's, at the same
 * positions: KL(reference ‖ compressed) in nats, and whether the argmax agrees.
 */
import { argmax } from "./sampling.js";

function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i]! - lse;
  return out;
}

/** KL(p ‖ q) in nats for two logit vectors (p = reference, q = approximation). */
export function klDivergence(reference: ArrayLike<number>, approximation: ArrayLike<number>): number {
  const lp = logSoftmax(reference);
  const lq = logSoftmax(approximation);
  let kl = 0;
  for (let i = 0; i < lp.length; i++) kl += Math.exp(lp[i]!) * (lp[i]! - lq[i]!);
  return Math.max(0, kl); // rounding can dip a hair below 0 for identical inputs
}

export interface FidelitySummary {
  positions: number;
  /** Mean KL(reference ‖ compressed) over positions, nats. */
  klDivergence: number;
  maxKlDivergence: number;
  /** Fraction of positions whose argmax tokens agree. */
  top1Agreement: number;
}

/** Accumulates per-position comparisons. */
export class FidelityMeter {
  #n = 0;
  #kl = 0;
  #max = 0;
  #agree = 0;

  add(reference: ArrayLike<number>, approximation: ArrayLike<number>): number {
    const kl = klDivergence(reference, approximation);
    this.#n += 1;
    this.#kl += kl;
    this.#max = Math.max(this.#max, kl);
    if (argmax(reference) === argmax(approximation)) this.#agree += 1;
    return kl;
  }

  summary(): FidelitySummary {
    return {
      positions: this.#n,
      klDivergence: this.#n === 0 ? 0 : this.#kl / this.#n,
      maxKlDivergence: this.#max,
      top1Agreement: this.#n === 0 ? 1 : this.#agree / this.#n,
    };
  }
}
