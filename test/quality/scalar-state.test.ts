/**
 * The scalar baselines as a KvState (what the harness steps through the step adapter): what it
 * absorbs it feeds back, it quantizes exactly the tokens the cache's schedule says and no token twice,
 * it counts the true bits, and bad input is a typed error that changes nothing.
 */
import { describe, expect, it } from "vitest";
import { ScalarKvState } from "../../bench/quality/scalar-state.js";
import { rotatedInPlace, rotationSigns, type ScalarSpec } from "../../bench/quality/scalar-baselines.js";
import type { KvLayout, PresentKv } from "../../src/integrations/kv-state.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../../src/shared/half.js";

const layout: KvLayout = { layers: 2, kvHeads: 2, headDim: 64, batch: 1, dtype: "float16" };
const d = layout.headDim;

/** A deterministic stream of values in (-2, 2). */
function noise(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32) * 4 - 2;
  };
}

/** What a model returns after `state`'s past: that past, then `n` new random FP16 slots per head. */
function presentAfter(state: ScalarKvState, n: number, seed: number): PresentKv {
  const past = state.past();
  const slots = past.slots + n;
  const next = noise(seed);
  const extend = (a: Uint16Array) => {
    const out = new Uint16Array(layout.kvHeads * slots * d);
    for (let h = 0; h < layout.kvHeads; h++) {
      out.set(a.subarray(h * past.slots * d, (h + 1) * past.slots * d), h * slots * d);
      out.set(f32ArrayToF16(Float32Array.from({ length: n * d }, next)), (h * slots + past.slots) * d);
    }
    return out;
  };
  return { slots, keys: past.keys.map((k) => extend(k as Uint16Array)), values: past.values.map((v) => extend(v as Uint16Array)) };
}

/** Tokens [from, to) of head h of a [kvHeads, slots, d] array. */
const tokensOf = (a: Uint16Array, slots: number, h: number, from: number, to: number) => Array.from(a.subarray((h * slots + from) * d, (h * slots + to) * d));

/** Absorbs one step of `n` tokens and lets the schedule decide; returns the present it absorbed. */
async function feed(state: ScalarKvState, n: number, seed: number): Promise<PresentKv> {
  const present = presentAfter(state, n, seed);
  state.absorb(present, new Uint8Array(n).fill(1), n);
  await state.compressIfDue(n);
  return present;
}

describe("ScalarKvState", () => {
  it("refuses layouts and schedules it cannot run with INVALID_ARGUMENT", () => {
    const spec: ScalarSpec = { kind: "turbo", bits: 3 };
    expect(() => new ScalarKvState({ ...layout, batch: 2 }, spec, 4)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => new ScalarKvState({ ...layout, dtype: "float32" }, spec, 4)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => new ScalarKvState(layout, spec, 0)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("a present of the wrong size is MODEL_OUTPUT and leaves the state as it was", async () => {
    const state = new ScalarKvState(layout, { kind: "hadamard", bits: 4 }, 4);
    await feed(state, 5, 1);
    const before = state.past();
    const wrong = presentAfter(state, 2, 2);
    expect(() => state.absorb(wrong, new Uint8Array(1).fill(1), 1)).toThrow(expect.objectContaining({ code: "MODEL_OUTPUT" }));
    const after = state.past();
    expect(state.realTokens(0)).toBe(5);
    expect(Array.from(after.keys[1]!)).toEqual(Array.from(before.keys[1]!));
    state.dispose();
  });

  it("quantizes a prompt chunk at once, then every compressEvery decode tokens, each token once", async () => {
    const state = new ScalarKvState(layout, { kind: "hadamard", bits: 4 }, 4);
    const signs = rotationSigns(d);
    /** Head h of layer 1's keys of `present` over tokens [from, to), quantized independently here. */
    const expected = (present: PresentKv, h: number, from: number, to: number) => {
      const x = f16ArrayToF32(present.keys[1]!.subarray((h * present.slots + from) * d, (h * present.slots + to) * d) as Uint16Array);
      rotatedInPlace(x, to - from, d, 4, "hadamard", signs);
      return Array.from(f32ArrayToF16(x));
    };

    const prompt = await feed(state, 10, 3);
    let past = state.past();
    expect(past.slots).toBe(10);
    expect(Array.from(past.mask)).toEqual(new Array(10).fill(1));
    expect(state.stats().compressions).toBe(1);
    // Had-4 per vector: 64 × 4 bits + FP16 scale and zero = 36 bytes; K and V; FP16 tokens 2 × 128 bytes.
    const heads = layout.layers * layout.kvHeads;
    expect(state.stats().compressedKvBytes).toBe(heads * 10 * 2 * 36);
    const quantizedPrompt = tokensOf(past.keys[1] as Uint16Array, 10, 1, 0, 10);
    expect(quantizedPrompt).toEqual(expected(prompt, 1, 0, 10));
    expect(quantizedPrompt).not.toEqual(tokensOf(prompt.keys[1] as Uint16Array, 10, 1, 0, 10));

    // Three decode tokens wait as FP16, exactly as the model wrote them.
    let last = prompt;
    for (let i = 0; i < 3; i++) last = await feed(state, 1, 10 + i);
    past = state.past();
    expect(state.stats().compressions).toBe(1);
    expect(state.stats().compressedKvBytes).toBe(heads * (10 * 2 * 36 + 3 * 2 * 128));
    expect(tokensOf(past.keys[1] as Uint16Array, 13, 1, 10, 13)).toEqual(tokensOf(last.keys[1] as Uint16Array, 13, 1, 10, 13));

    // The fourth compresses the four new tokens and leaves the prompt's codes alone.
    last = await feed(state, 1, 20);
    past = state.past();
    expect(state.stats().compressions).toBe(2);
    expect(state.stats().compressedKvBytes).toBe(heads * 14 * 2 * 36);
    expect(tokensOf(past.keys[1] as Uint16Array, 14, 1, 0, 10)).toEqual(quantizedPrompt);
    expect(tokensOf(past.keys[1] as Uint16Array, 14, 1, 10, 14)).toEqual(expected(last, 1, 10, 14));
    state.dispose();
  });

  it("KIVI keeps the incomplete key group FP16 and is charged 2.5 bits per element for KIVI-2 at head_dim 64", async () => {
    const state = new ScalarKvState(layout, { kind: "kivi", bits: 2 }, 64);
    const prompt = await feed(state, 70, 7);
    const past = state.past();
    for (const [got, sent] of [[past.keys[0], prompt.keys[0]], [past.values[1], prompt.values[1]]] as const) {
      expect(tokensOf(got as Uint16Array, 70, 0, 64, 70)).toEqual(tokensOf(sent as Uint16Array, 70, 0, 64, 70)); // the residual
      expect(tokensOf(got as Uint16Array, 70, 0, 0, 64)).not.toEqual(tokensOf(sent as Uint16Array, 70, 0, 0, 64));
    }
    const s = state.stats();
    const heads = layout.layers * layout.kvHeads;
    // Per head: 64 tokens × 64 channels × (K, V) at 2.5 bits, and 6 FP16 tokens × (K, V) × 64 channels × 2 bytes.
    expect(s.compressedKvBytes).toBe(heads * ((64 * 64 * 2 * 2.5) / 8 + 6 * 2 * 64 * 2));
    expect(s.baselineKvBytes).toBe(heads * 70 * 2 * 64 * 2);
    expect(s.ratio).toBe(s.baselineKvBytes / s.compressedKvBytes);
    expect([s.tokens, s.heldTokens, s.tokensEvicted]).toEqual([70, 70, 0]);
    state.dispose();
  });
});
