/**
 * A scalar baseline (scalar-baselines.ts) as a KvState, so the harness steps it through the same
 * step adapter as the FP16 and compressed caches: FP16 K/V per head, quantized-and-dequantized in
 * place at the moments the CompressedKVCache compresses (after a prompt chunk, then every
 * `compressEvery` decode tokens), so both hold the same FP16 tail between compressions. KIVI
 * quantizes only complete key groups (its FP16 residual is the incomplete one). Bytes are the true
 * storage: codes + FP16 side data, FP16 for unquantized tokens.
 */
import { fp16BytesPerTokenLayer } from "../../src/format/index.js";
import { CompressSchedule, type KvStats } from "../../src/integrations/conversation-cache.js";
import { checkPresent, type KvLayout, type KvState, type PastKv, type PresentKv } from "../../src/integrations/kv-state.js";
import { f16ArrayToF32, f32ArrayToF16 } from "../../src/shared/half.js";
import { checkOneOf, checkPositiveInt } from "../../src/validate.js";
import { DEFAULT_GROUP, kiviKeysInPlace, kiviValuesInPlace, rotatedInPlace, rotationSigns, scalarBitsPerHead, scalarName, type ScalarSpec } from "./scalar-baselines.js";

export class ScalarKvState implements KvState {
  readonly cache = undefined;
  /** Per layer, per KV head: FP16 bits [capacity, headDim]; the first #length tokens are in use. */
  #keys: Uint16Array[][];
  #values: Uint16Array[][];
  #length = 0;
  /** Tokens [0, #quantized) hold dequantized codes; the rest are FP16 as the model wrote them. */
  #quantized = 0;
  #compressions = 0;
  #compressSeconds = 0;
  readonly #signs: Float32Array;
  /** The CompressedKvState's schedule: a prompt chunk at once, decode tokens every compressEvery. */
  readonly #schedule: CompressSchedule;

  constructor(
    readonly layout: KvLayout,
    readonly spec: ScalarSpec,
    compressEvery: number,
  ) {
    // One conversation of one sequence in FP16: what the harness runs, and all the byte count assumes.
    checkOneOf("layout.batch", layout.batch, [1], "1 (a scalar baseline holds one sequence)");
    checkOneOf("layout.dtype", layout.dtype, ["float16"], '"float16" (the baselines quantize FP16 K/V)');
    checkPositiveInt("compressEvery", compressEvery);
    const empty = () => Array.from({ length: layout.kvHeads }, () => new Uint16Array(0));
    this.#keys = Array.from({ length: layout.layers }, empty);
    this.#values = Array.from({ length: layout.layers }, empty);
    this.#signs = rotationSigns(layout.headDim);
    this.#schedule = new CompressSchedule(compressEvery);
  }

  realTokens(row: number): number {
    return row === 0 ? this.#length : 0;
  }

  past(): PastKv {
    const { kvHeads, headDim: d } = this.layout;
    const n = this.#length;
    const gather = (heads: Uint16Array[]) => {
      const out = new Uint16Array(kvHeads * n * d);
      heads.forEach((h, i) => out.set(h.subarray(0, n * d), i * n * d));
      return out;
    };
    return { slots: n, keys: this.#keys.map(gather), values: this.#values.map(gather), mask: new Uint8Array(n).fill(1) };
  }

  absorb(present: PresentKv, newMask: Uint8Array, n: number): void {
    const past = this.#length;
    checkPresent(this.layout, present, n, past);
    const { layers, kvHeads, headDim: d } = this.layout;
    const kept: number[] = [];
    for (let j = 0; j < n; j++) if (newMask[j]) kept.push(j);
    this.#reserve(past + kept.length);
    for (let l = 0; l < layers; l++) {
      const pk = present.keys[l] as Uint16Array;
      const pv = present.values[l] as Uint16Array;
      for (let h = 0; h < kvHeads; h++) {
        const base = (h * present.slots + past) * d;
        kept.forEach((j, i) => {
          const at = base + j * d;
          this.#keys[l]![h]!.set(pk.subarray(at, at + d), (past + i) * d);
          this.#values[l]![h]!.set(pv.subarray(at, at + d), (past + i) * d);
        });
      }
    }
    this.#length += kept.length;
  }

  /** Grows every head's storage (doubling) to hold `tokens` tokens. */
  #reserve(tokens: number): void {
    const capacity = this.#keys[0]![0]!.length / this.layout.headDim;
    if (tokens <= capacity) return;
    const size = Math.max(tokens, 2 * capacity) * this.layout.headDim;
    const grow = (a: Uint16Array) => {
      const b = new Uint16Array(size);
      b.set(a);
      return b;
    };
    this.#keys = this.#keys.map((hs) => hs.map(grow));
    this.#values = this.#values.map((hs) => hs.map(grow));
  }

  async compressIfDue(n: number): Promise<void> {
    if (this.#schedule.due(n)) await this.compress();
  }

  /** Quantizes what the format quantizes now: every new token (rotated), whole key groups (KIVI). */
  async compress(): Promise<void> {
    const start = performance.now();
    const d = this.layout.headDim;
    const group = this.spec.group ?? DEFAULT_GROUP;
    const upTo = this.spec.kind === "kivi" ? Math.floor(this.#length / group) * group : this.#length;
    const count = upTo - this.#quantized;
    if (count > 0) {
      for (const [layers, isKey] of [[this.#keys, true], [this.#values, false]] as const) {
        for (const heads of layers) {
          for (const bits of heads) {
            const span = bits.subarray(this.#quantized * d, upTo * d);
            const x = f16ArrayToF32(span);
            if (this.spec.kind === "kivi") {
              if (isKey) kiviKeysInPlace(x, count, d, this.spec.bits, group);
              else kiviValuesInPlace(x, count, d, this.spec.bits, group);
            } else {
              rotatedInPlace(x, count, d, this.spec.bits, this.spec.kind, this.#signs);
            }
            span.set(f32ArrayToF16(x));
          }
        }
      }
      this.#quantized = upTo;
    }
    this.#compressions += 1;
    this.#schedule.restart();
    this.#compressSeconds += (performance.now() - start) / 1000;
  }

  stats(): KvStats {
    const { layers, kvHeads, headDim: d } = this.layout;
    const heads = layers * kvHeads;
    const perTokenHead = fp16BytesPerTokenLayer(1, d);
    const baselineKvBytes = this.#length * heads * perTokenHead;
    const fp16Tokens = this.#length - this.#quantized;
    const bytes = heads * (scalarBitsPerHead(this.spec, this.#quantized, d) / 8 + fp16Tokens * perTokenHead);
    return {
      preset: scalarName(this.spec),
      // Not a cache backend: the harness quantizes in TypeScript (the run reports "harness").
      backend: "none",
      tokens: this.#length,
      heldTokens: this.#length,
      tokensEvicted: 0,
      baselineKvBytes,
      compressedKvBytes: bytes,
      ratio: baselineKvBytes / bytes,
      denseKvBytes: this.#keys.reduce((sum, hs, l) => sum + hs.reduce((s, k, h) => s + k.byteLength + this.#values[l]![h]!.byteLength, 0), 0),
      compressions: this.#compressions,
      compressSeconds: this.#compressSeconds,
    };
  }

  dispose(): void {
    this.#keys = [];
    this.#values = [];
  }
}
