import { describe, expect, it } from "vitest";
import { heldOutSpeeches, loadAllSpeeches, splitOfYear, trainSpeeches } from "../../bench/data/sotu.js";

describe("State of the Union split", () => {
  const all = loadAllSpeeches();
  const train = trainSpeeches();
  const heldout = heldOutSpeeches();
  const id = (s: { year: number; president: string }) => `${s.year}/${s.president}`;

  it("loads every speech of the package with its metadata", () => {
    expect(all.length).toBe(233);
    expect(all[0]).toMatchObject({ year: 1790, president: "George Washington" });
    for (const s of all) {
      expect(Number.isInteger(s.year)).toBe(true);
      expect(s.president.length).toBeGreaterThan(0);
      expect(s.text.length).toBeGreaterThan(1000);
    }
  });

  it("holds out whole speeches of years divisible by ten and trains on all others", () => {
    expect(heldout.every((s) => s.year % 10 === 0)).toBe(true);
    expect(train.every((s) => s.year % 10 !== 0)).toBe(true);
    expect(heldout.map((s) => s.year)).toEqual(Array.from({ length: 24 }, (_, i) => 1790 + 10 * i));
    expect(train.length + heldout.length).toBe(all.length);
    expect(splitOfYear(1960)).toBe("heldout");
    expect(splitOfYear(1961)).toBe("train");
  });

  it("is disjoint: no speech and no text appears in both splits", () => {
    const trainIds = new Set(train.map(id));
    expect(heldout.some((s) => trainIds.has(id(s)))).toBe(false);
    const trainTexts = new Set(train.map((s) => s.text));
    expect(heldout.some((s) => trainTexts.has(s.text))).toBe(false);
    // Whole speeches: each split's texts are the package's texts unchanged, not slices of them.
    const allTexts = new Set(all.map((s) => s.text));
    expect([...train, ...heldout].every((s) => allTexts.has(s.text))).toBe(true);
  });

  it("is deterministic and ordered by year, then president", () => {
    expect(trainSpeeches().map(id)).toEqual(train.map(id));
    const years = train.map((s) => s.year);
    expect([...years].sort((a, b) => a - b)).toEqual(years);
    // Two addresses in 1953 and in 1961 (outgoing and incoming president) both train.
    expect(train.filter((s) => s.year === 1953).map((s) => s.president)).toEqual(["Dwight D Eisenhower", "Harry S Truman"]);
  });

  it("rejects a non-integer year", () => {
    expect(() => splitOfYear(1960.5)).toThrow(/integer year/);
  });
});
