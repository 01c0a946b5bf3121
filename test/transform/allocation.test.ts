import { describe, expect, it } from "vitest";
import { ALLOCATION_RATES, GROUP_NMSE, TRANSFORM_RATES, allocateRates, calibratedPays, predictCalibratedNmse, type TransformRate } from "../../src/transform/index.js";
import { expectCode } from "../helpers.js";
import { gaussianStream } from "./synthetic.js";

const cost = (variance: ArrayLike<number>, rates: ArrayLike<number>): number => {
  let c = 0;
  for (let b = 0; b < variance.length; b++) c += variance[b]! * GROUP_NMSE[rates[b] as TransformRate];
  return c;
};

/** Least cost over every assignment of rates from `rates` summing to `total` (|rates|^G of them). */
function bruteForce(variance: number[], total: number, rates: readonly TransformRate[]): number {
  let best = Infinity;
  const walk = (b: number, left: number, acc: number): void => {
    if (b === variance.length) {
      if (left === 0) best = Math.min(best, acc);
      return;
    }
    for (const r of rates) if (r <= left) walk(b + 1, left - r, acc + variance[b]! * GROUP_NMSE[r]);
  };
  walk(0, total, 0);
  return best;
}

describe("allocateRates", () => {
  it("matches brute force on 4 bands, for every reachable total, and uses the total exactly", () => {
    const g = gaussianStream(11);
    for (let trial = 0; trial < 40; trial++) {
      // Spreads from flat to several decades, as real spectra have.
      const variance = Array.from({ length: 4 }, () => Math.exp(3 * trial * g() / 10));
      for (let total = 2; total <= 16; total++) {
        // The calibration's rates (the default, without 1 bit) and the format's (with it).
        for (const [set, rates] of [[ALLOCATION_RATES, allocateRates(variance, total)], [TRANSFORM_RATES, allocateRates(variance, total, TRANSFORM_RATES)]] as const) {
          expect(rates.reduce((s, r) => s + r, 0)).toBe(total);
          for (const r of rates) expect(set).toContain(r);
          expect(cost(variance, rates)).toBeCloseTo(bruteForce(variance, total, set), 12);
        }
      }
    }
  });

  it("gives equal variances equal rates", () => {
    for (const bits of [2, 3, 4]) expect([...allocateRates([1, 1, 1, 1, 1, 1, 1, 1], 8 * bits)]).toEqual(new Array(8).fill(bits));
  });

  it("gives a zero-variance band 0 bits when the budget allows", () => {
    expect([...allocateRates([5, 2, 0, 1], 8)]).toEqual([3, 3, 0, 2]);
    expect([...allocateRates([5, 2, 1e-12, 1], 8)][2]).toBe(0);
    // At 4 bits per band nothing can be taken from a band without another exceeding 4.
    expect([...allocateRates([5, 2, 0, 1], 16)]).toEqual([4, 4, 4, 4]);
  });

  it("refuses a total the rates cannot make, or bad variances", () => {
    expectCode(() => allocateRates([1], 5), "INVALID_ARGUMENT", /cannot be split/);
    // The calibration allocates without the 1-bit code (ALLOCATION_RATES); the format's rates have it.
    expectCode(() => allocateRates([1], 1), "INVALID_ARGUMENT", /cannot be split/);
    expect([...allocateRates([1, 1], 2, TRANSFORM_RATES)]).toEqual([1, 1]);
    expectCode(() => allocateRates([1, 1], 17), "INVALID_ARGUMENT", /cannot be split/);
    expectCode(() => allocateRates([1, NaN], 4), "INVALID_ARGUMENT", /bandVariance\[1\]/);
    expectCode(() => allocateRates([1, -1], 4), "INVALID_ARGUMENT");
    expectCode(() => allocateRates([1, 1], 2.5), "INVALID_ARGUMENT");
  });
});

describe("prediction and guard", () => {
  it("predicts the flat NMSE for a flat spectrum with zero mean", () => {
    expect(predictCalibratedNmse([1, 1], [2, 2], 16)).toBeCloseTo(GROUP_NMSE[2], 15);
  });

  it("takes the calibrated code only from 0.25 dB of gain", () => {
    expect(calibratedPays(0.1, 0.1)).toBe(false);
    expect(calibratedPays(0.1, 0.1 / 10 ** 0.024)).toBe(false);
    expect(calibratedPays(0.1, 0.1 / 10 ** 0.026)).toBe(true);
    expect(calibratedPays(0.1, 0.2)).toBe(false);
  });
});
