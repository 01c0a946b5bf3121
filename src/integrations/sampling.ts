import { invalidArgument } from "../errors.js";
import { seededRandom } from "../shared/prng.js";

export interface SamplingOptions {
  /** 0 (default) = greedy argmax; otherwise logits are divided by it before sampling. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 or undefined = all). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 or undefined = all). */
  topP?: number;
  /** Seed of the sampler's PRNG, so sampled runs are reproducible. */
  seed?: number;
}

/** A token picker for one generation: greedy, or temperature/top-k/top-p sampling with a seeded PRNG. */
export type TokenSampler = (logits: Float32Array) => number;

export function createSampler(options: SamplingOptions = {}): TokenSampler {
  const temperature = options.temperature ?? 0;
  if (typeof temperature !== "number" || !(temperature >= 0) || !Number.isFinite(temperature)) throw invalidArgument("temperature", "a number >= 0", temperature);
  const topK = options.topK ?? 0;
  if (!Number.isSafeInteger(topK) || topK < 0) throw invalidArgument("topK", "an integer >= 0", topK);
  const topP = options.topP ?? 1;
  if (typeof topP !== "number" || !(topP > 0 && topP <= 1)) throw invalidArgument("topP", "a number in (0, 1]", topP);
  if (temperature === 0) return argmax;
  const random = seededRandom(options.seed ?? 0);
  return (logits) => sampleFrom(logits, temperature, topK, topP, random);
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

function sampleFrom(logits: Float32Array, temperature: number, topK: number, topP: number, random: () => number): number {
  let order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!);
  if (topK > 0) order = order.slice(0, topK);
  const max = logits[order[0]!]!;
  let probs = order.map((i) => Math.exp((logits[i]! - max) / temperature));
  const total = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((p) => p / total);
  if (topP < 1) {
    let cumulative = 0;
    let keep = 0;
    while (keep < probs.length && cumulative < topP) cumulative += probs[keep++]!;
    order = order.slice(0, keep);
    probs = probs.slice(0, keep).map((p) => p / cumulative);
  }
  let u = random();
  for (let i = 0; i < order.length; i++) {
    u -= probs[i]!;
    if (u < 0) return order[i]!;
  }
  return order[order.length - 1]!;
}

