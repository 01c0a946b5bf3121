import { invalidArgument } from "../errors.js";

/**
 * mulberry32: a tiny 32-bit PRNG whose every step is integer arithmetic, so that the Python port in
 * bench/model/passkey.py reproduces it bit for bit (a parity test holds them together). Not for
 * cryptography; for reproducible synthetic data only.
 */
export class Mulberry32 {
  private state: number;

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw invalidArgument("seed", "an integer in [0, 2^32)", seed);
    }
    this.state = seed >>> 0;
  }

  /** The next value, uniform in [0, 2^32). */
  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform integer in [0, n); n ≤ 2^21 keeps `u32 * n` exact in a double (and in the Python port). */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 21) throw invalidArgument("n", "an integer in [1, 2^21]", n);
    return Math.floor((this.nextUint32() * n) / 4294967296);
  }

  /** Uniform float in [0, 1) with 32 random bits. */
  nextFloat(): number {
    return this.nextUint32() / 4294967296;
  }
}

/**
 * A uniform [0, 1) stream from a Mulberry32 seeded with `seed` taken modulo 2^32 (any number works, so
 * callers can mix seeds arithmetically): the one seeded generator of synthetic data, weights, sampling.
 */
export function seededRandom(seed: number): () => number {
  const rng = new Mulberry32(seed >>> 0);
  return () => rng.nextFloat();
}

/** An independent seed for item `index` of a family seeded with `base` (same formula in passkey.py). */
export function deriveSeed(base: number, index: number): number {
  if (!Number.isInteger(base) || base < 0 || base > 0xffffffff) {
    throw invalidArgument("base", "an integer in [0, 2^32)", base);
  }
  if (!Number.isInteger(index) || index < 0 || index > 0xffffffff) {
    throw invalidArgument("index", "an integer in [0, 2^32)", index);
  }
  return new Mulberry32((base ^ Math.imul(index, 0x9e3779b1)) >>> 0).nextUint32();
}
