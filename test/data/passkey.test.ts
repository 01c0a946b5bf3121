import { describe, expect, it } from "vitest";
import {
  RETRIEVAL_DEPTHS, approxTokenCount, isCorrectCompletion, makeRetrievalSample, makeRetrievalSuite, splitSentences,
  type RetrievalKind,
} from "../../bench/data/passkey.js";
import { Mulberry32, deriveSeed } from "../../src/shared/prng.js";
import { heldOutSpeeches } from "../../bench/data/sotu.js";

const filler = heldOutSpeeches().map((s) => s.text);
const countOccurrences = (text: string, part: string) => text.split(part).length - 1;

describe("Mulberry32", () => {
  it("matches the published mulberry32 sequence and stays in range", () => {
    const rng = new Mulberry32(1);
    // mulberry32(1) in its usual float form starts 0.6270739405881613 = 2693262067 / 2^32.
    expect([rng.nextUint32(), rng.nextUint32(), rng.nextUint32()]).toEqual([2693262067, 11749833, 2265367787]);
    const r = new Mulberry32(7);
    for (let i = 0; i < 1000; i++) {
      const n = r.nextInt(10);
      expect(n >= 0 && n < 10 && Number.isInteger(n)).toBe(true);
    }
    expect(deriveSeed(5, 0)).not.toBe(deriveSeed(5, 1));
    expect(() => new Mulberry32(-1)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });
});

describe("retrieval samples", () => {
  for (const kind of ["passkey", "fact"] as RetrievalKind[]) {
    for (const depth of [0.1, 0.5, 0.9]) {
      it(`${kind} at depth ${depth}: needle where asked, answer stated exactly once, prompt fits`, () => {
        const s = makeRetrievalSample({ seed: 1234 + Math.round(depth * 10), filler, targetTokens: 2000, depth, kind });
        expect(s.prompt.slice(s.needleOffset, s.needleOffset + s.needle.length)).toBe(s.needle);
        expect(countOccurrences(s.prompt, s.value)).toBe(1);
        expect(s.prompt.endsWith(`\n\n${s.question}`)).toBe(true);
        expect(s.answer).toBe(` ${s.value}`);
        expect(s.promptTokens).toBe(approxTokenCount(s.prompt));
        expect(s.promptTokens).toBeLessThanOrEqual(2000);
        // Longest prompt that fits: one more sentence would not (sentences here are > 4 characters).
        expect(s.promptTokens).toBeGreaterThan(2000 - 200);
        // The needle sits at the sentence boundary nearest to depth × filler length.
        const passage = s.prompt.slice(0, s.prompt.length - s.question.length - 2);
        const fillerText = passage.replace(`${s.needle} `, "").replace(` ${s.needle}`, "");
        const longest = Math.max(...splitSentences(fillerText).map((x) => x.length));
        expect(Math.abs(s.needleOffset - depth * fillerText.length)).toBeLessThanOrEqual(longest / 2 + 1);
        expect(Math.abs(s.needleDepth - depth)).toBeLessThan(0.1);
        if (kind === "passkey") expect(s.value).toMatch(/^[1-9]\d{4}$/);
        else expect(s.question).toContain(`the ${s.key}?`);
      });
    }
  }

  it("is deterministic by seed and varies with it", () => {
    const options = { filler, targetTokens: 1000, depth: 0.3, kind: "passkey" as const };
    const a = makeRetrievalSample({ ...options, seed: 42 });
    expect(makeRetrievalSample({ ...options, seed: 42 })).toEqual(a);
    const b = makeRetrievalSample({ ...options, seed: 43 });
    expect(b.prompt).not.toBe(a.prompt);
  });

  it("sizes prompts with the caller's token counter", () => {
    const words = (t: string) => t.split(" ").length;
    const s = makeRetrievalSample({ seed: 9, filler, targetTokens: 1024, depth: 0.5, kind: "fact", countTokens: words });
    expect(words(s.prompt)).toBe(s.promptTokens);
    expect(s.promptTokens).toBeLessThanOrEqual(1024);
    expect(s.promptTokens).toBeGreaterThan(900);
  });

  it("continues into the next speeches when one is too short, and refuses impossible requests", () => {
    const short = ["One. Two. Three.", "Four. Five."];
    expect(() => makeRetrievalSample({ seed: 1, filler: short, targetTokens: 500, depth: 0.5, kind: "passkey" })).toThrow(/too short/);
    expect(() => makeRetrievalSample({ seed: 1, filler, targetTokens: 3, depth: 0.5, kind: "passkey" })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
    expect(() => makeRetrievalSample({ seed: 1, filler, targetTokens: 100, depth: 1.5, kind: "passkey" })).toThrow(/depth/);
    const two = ["Alpha beta gamma. ".repeat(20).trim(), "Delta epsilon zeta. ".repeat(20).trim()];
    const s = makeRetrievalSample({ seed: 3, filler: two, targetTokens: 150, depth: 0, kind: "passkey" });
    expect(s.needleOffset).toBe(0);
    expect(s.prompt).toContain("Alpha");
    expect(s.prompt).toContain("Delta");
    expect(s.promptTokens).toBeGreaterThan(140);
  });

  it("builds the harness suite: contexts × depths × samples, alternating kinds", () => {
    const suite = makeRetrievalSuite({ seed: 7, filler, contexts: [1024, 2048], samplesPerCell: 2 });
    expect(suite.length).toBe(2 * RETRIEVAL_DEPTHS.length * 2);
    expect(suite.map((s) => s.kind).slice(0, 4)).toEqual(["passkey", "fact", "passkey", "fact"]);
    expect(suite.every((s) => s.promptTokens <= s.targetTokens && countOccurrences(s.prompt, s.value) === 1)).toBe(true);
    expect(new Set(suite.map((s) => s.seed)).size).toBe(suite.length);
    expect(makeRetrievalSuite({ seed: 7, filler, contexts: [1024, 2048], samplesPerCell: 2 })).toEqual(suite);
  });

  it("grades completions", () => {
    const s = makeRetrievalSample({ seed: 5, filler, targetTokens: 300, depth: 0.5, kind: "passkey" });
    expect(isCorrectCompletion(s, `${s.answer}. Remember`)).toBe(true);
    expect(isCorrectCompletion(s, ` ${s.value}7`)).toBe(false);
    expect(isCorrectCompletion(s, " 00000")).toBe(false);
  });
});
