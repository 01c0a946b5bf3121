/**
 * The KV state of one conversation (a batch of sequences) between model steps, for runtimes that take
 * the past as dense tensors (onnxruntime-node sessions, transformers.js): dense pass-through (preset
 * "none") or held compressed. Both speak in the export layout [batch, kvHeads, slots, headDim]:
 * `past()` gives what to feed next, `absorb()` takes the model's `present` outputs and keeps only the
 * new slots. The cache, true lengths, schedule and stats are the conversation's (ConversationCache).
 */
import { NexusQuantError } from "../errors.js";
import { floatsToHalfBits, halfBitsToFloats, type CompressedKVCache, type DenseLayer } from "../runtime/index.js";
import { ConversationCache, type CompressExtras, type ConversationShape, type KvStats } from "./conversation-cache.js";
import type { ResolvedOptions } from "./options.js";

export type KvDtype = "float32" | "float16";
/** float32 data, or FP16 bits for float16 models. */
export type KvArray = Float32Array | Uint16Array;

export interface KvLayout extends ConversationShape {
  dtype: KvDtype;
}

/** The options a KV state is made from: the parts of withNexusQuant's resolved options it reads. */
export type KvStateOptions = Pick<ResolvedOptions, "preset" | "spec" | "backend" | "compressEvery" | "seed" | "denseMirror"> & Partial<Pick<ResolvedOptions, "memoryLimitBytes" | "profile">>;

export interface PastKv {
  /** Slots on the sequence axis (equal for every row and layer; shorter rows are left-padded). */
  slots: number;
  /** Per layer, [batch, kvHeads, slots, headDim]. */
  keys: KvArray[];
  values: KvArray[];
  /** [batch, slots]: 1 where the slot holds a token, 0 at padding. */
  mask: Uint8Array;
}

export interface PresentKv {
  /** Slots of the present tensors = past slots + new tokens. */
  slots: number;
  keys: KvArray[];
  values: KvArray[];
}

export interface KvState {
  readonly layout: KvLayout;
  /** True length of a row: the position the row's next token gets. */
  realTokens(row: number): number;
  past(): PastKv;
  /** Keeps the slots of `present` after the past whose `newMask` entry is 1 (newMask is [batch, n]). */
  absorb(present: PresentKv, newMask: Uint8Array, n: number): void;
  /** Compresses when the schedule says so: after every multi-token chunk, and every compressEvery decode tokens. */
  compressIfDue(n: number, extras?: CompressExtras): Promise<void>;
  /** Compresses now (a no-op for pass-through) and restarts the decode-token count. */
  compress(extras?: CompressExtras): Promise<void>;
  stats(): KvStats;
  /** The compressed cache, for inspection (undefined for pass-through). */
  readonly cache: CompressedKVCache | undefined;
  /** The conversation (true lengths, schedule, stats; its snapshot is what saveState records), when the state keeps one (the quality harness's scalar baselines do not). */
  readonly conversation?: ConversationCache;
  dispose(): void;
}

export function createKvState(layout: KvLayout, options: KvStateOptions): KvState {
  return options.spec === null ? new DenseKvState(layout, options) : new CompressedKvState(layout, options);
}

/** A compressed KV state around a resumed conversation (a saved state's cache); the state owns it from now on. */
export function resumeKvState(layout: KvLayout, options: KvStateOptions, conversation: ConversationCache): KvState {
  return new CompressedKvState(layout, options, conversation);
}

const arrayFor = (dtype: KvDtype, length: number): KvArray => (dtype === "float16" ? new Uint16Array(length) : new Float32Array(length));

/** Checks that `present` holds past + n slots of the layout's shape and dtype (MODEL_OUTPUT otherwise); every KvState absorbs through it. */
export function checkPresent(layout: KvLayout, present: PresentKv, n: number, pastSlots: number): void {
  const { batch, kvHeads, headDim, layers, dtype } = layout;
  if (present.slots !== pastSlots + n) {
    throw new NexusQuantError("MODEL_OUTPUT", `The model returned present tensors of ${present.slots} slots; expected past ${pastSlots} + new ${n}.`);
  }
  const expected = batch * kvHeads * present.slots * headDim;
  for (let l = 0; l < layers; l++) {
    for (const a of [present.keys[l], present.values[l]]) {
      if (a === undefined || a.length !== expected || (dtype === "float16") !== a instanceof Uint16Array) {
        throw new NexusQuantError("MODEL_OUTPUT", `present.${l} has ${a?.length ?? 0} ${a?.constructor.name ?? ""} elements; expected ${expected} (${dtype}).`);
      }
    }
  }
}

/**
 * Pass-through: feeds `present` back unchanged with the accumulated mask, exactly what an unwrapped
 * generation loop does, so logits are bit-identical to the unwrapped model.
 */
class DenseKvState implements KvState {
  readonly cache = undefined;
  readonly #conversation: ConversationCache;

  get conversation(): ConversationCache {
    return this.#conversation;
  }
  #keys: KvArray[];
  #values: KvArray[];
  #slots = 0;
  #mask = new Uint8Array(0);

  constructor(
    readonly layout: KvLayout,
    options: KvStateOptions,
  ) {
    this.#conversation = ConversationCache.create(layout, options, "caller");
    this.#keys = Array.from({ length: layout.layers }, () => arrayFor(layout.dtype, 0));
    this.#values = Array.from({ length: layout.layers }, () => arrayFor(layout.dtype, 0));
  }

  realTokens(row: number): number {
    return this.#conversation.length(row);
  }

  past(): PastKv {
    return { slots: this.#slots, keys: this.#keys, values: this.#values, mask: this.#mask };
  }

  absorb(present: PresentKv, newMask: Uint8Array, n: number): void {
    checkPresent(this.layout, present, n, this.#slots);
    const { batch } = this.layout;
    const mask = new Uint8Array(batch * present.slots);
    for (let b = 0; b < batch; b++) {
      mask.set(this.#mask.subarray(b * this.#slots, (b + 1) * this.#slots), b * present.slots);
      const row = newMask.subarray(b * n, (b + 1) * n);
      mask.set(row, b * present.slots + this.#slots);
      this.#conversation.advance(b, row.reduce((a, m) => a + m, 0));
    }
    this.#keys = present.keys;
    this.#values = present.values;
    this.#slots = present.slots;
    this.#mask = mask;
  }

  async compressIfDue(): Promise<void> {}

  async compress(): Promise<void> {}

  stats(): KvStats {
    return this.#conversation.stats(this.#keys.reduce((sum, k, l) => sum + k.byteLength + this.#values[l]!.byteLength, 0));
  }

  dispose(): void {
    this.#keys = [];
    this.#values = [];
  }
}

/**
 * Holds the conversation in a CompressedKVCache and materializes dense K/V only for the step that
 * needs it. Heads may keep different token sets after eviction but the same count, so one mask per
 * row serves every head; rows with fewer held tokens are left-padded (mask 0) to the longest row.
 */
class CompressedKvState implements KvState {
  readonly #conversation: ConversationCache;
  readonly #cache: CompressedKVCache;
  readonly #useMirror: boolean;
  /** denseMirror: the last dense past + new slots, valid until the cache's contents change. */
  #mirror: PastKv | undefined;
  /** The past handed out last (its mask starts the mirror's mask). */
  #lastPast: PastKv | undefined;

  constructor(
    readonly layout: KvLayout,
    options: KvStateOptions,
    resumed?: ConversationCache,
  ) {
    this.#useMirror = options.denseMirror;
    this.#conversation = resumed ?? ConversationCache.create(layout, options);
    this.#cache = this.#conversation.cache!;
  }

  get cache(): CompressedKVCache {
    return this.#cache;
  }

  get conversation(): ConversationCache {
    return this.#conversation;
  }

  realTokens(row: number): number {
    return this.#conversation.length(row);
  }

  past(): PastKv {
    this.#lastPast = this.#mirror ?? this.#materialize();
    return this.#lastPast;
  }

  #materialize(): PastKv {
    const { layers, kvHeads, headDim, batch, dtype } = this.layout;
    // Per layer and row; every layer of a row must hold the same count (one mask serves all layers).
    const held: number[] = [];
    const dense = Array.from({ length: layers }, (_, l) =>
      Array.from({ length: batch }, (_, b) => {
        const d: DenseLayer = dtype === "float16" ? this.#cache.materialize(l, { sequence: b, dtype: "f16" }) : this.#cache.materialize(l, { sequence: b });
        if (l === 0) held[b] = d.tokens;
        else if (held[b] !== d.tokens) {
          throw new NexusQuantError("UNSUPPORTED", `Layer ${l} of sequence ${b} holds ${d.tokens} tokens but layer 0 holds ${held[b]}; one attention mask cannot serve both.`);
        }
        return d;
      }),
    );
    const slots = Math.max(0, ...held);
    const mask = new Uint8Array(batch * slots);
    for (let b = 0; b < batch; b++) mask.fill(1, b * slots + slots - held[b]!, (b + 1) * slots);
    if (batch === 1) {
      // materialize's [kvHeads, tokens, headDim] already is [1, kvHeads, slots, headDim]: no copy.
      return { slots, keys: dense.map((rows) => rows[0]!.keys), values: dense.map((rows) => rows[0]!.values), mask };
    }
    const keys: KvArray[] = [];
    const values: KvArray[] = [];
    for (let l = 0; l < layers; l++) {
      const k = arrayFor(dtype, batch * kvHeads * slots * headDim);
      const v = arrayFor(dtype, k.length);
      for (let b = 0; b < batch; b++) {
        const d = dense[l]![b]!;
        const pad = slots - d.tokens;
        for (let h = 0; h < kvHeads; h++) {
          const src = h * d.tokens * headDim;
          const dst = ((b * kvHeads + h) * slots + pad) * headDim;
          k.set(d.keys.subarray(src, src + d.tokens * headDim), dst);
          v.set(d.values.subarray(src, src + d.tokens * headDim), dst);
        }
      }
      keys.push(k);
      values.push(v);
    }
    return { slots, keys, values, mask };
  }

  absorb(present: PresentKv, newMask: Uint8Array, n: number): void {
    const { layers, kvHeads, headDim, batch, dtype } = this.layout;
    const pastSlots = present.slots - n;
    checkPresent(this.layout, present, n, pastSlots);
    const compressedBefore = this.#useMirror ? this.#compressedCounts() : "";
    for (let b = 0; b < batch; b++) {
      const kept: number[] = [];
      for (let j = 0; j < n; j++) if (newMask[b * n + j]) kept.push(j);
      const m = kept.length;
      if (m === 0) continue;
      // Real tokens of a chunk are contiguous after left padding: one block copy per head.
      const contiguous = kept[m - 1]! - kept[0]! === m - 1;
      for (let l = 0; l < layers; l++) {
        const k = arrayFor(dtype, kvHeads * m * headDim);
        const v = arrayFor(dtype, k.length);
        const srcK = present.keys[l]!;
        const srcV = present.values[l]!;
        for (let h = 0; h < kvHeads; h++) {
          const base = ((b * kvHeads + h) * present.slots + pastSlots) * headDim;
          if (contiguous) {
            const s = base + kept[0]! * headDim;
            k.set(srcK.subarray(s, s + m * headDim), h * m * headDim);
            v.set(srcV.subarray(s, s + m * headDim), h * m * headDim);
          } else {
            kept.forEach((j, i) => {
              const s = base + j * headDim;
              k.set(srcK.subarray(s, s + headDim), (h * m + i) * headDim);
              v.set(srcV.subarray(s, s + headDim), (h * m + i) * headDim);
            });
          }
        }
        this.#cache.append(l, k, v, { sequence: b });
      }
      this.#conversation.advance(b, m);
    }
    if (this.#useMirror) this.#updateMirror(present, newMask, n, pastSlots, compressedBefore);
  }

  #compressedCounts(): string {
    return Array.from({ length: this.layout.batch }, (_, b) => this.#cache.tokens(0, b).compressed).join(",");
  }

  /**
   * The next past is this step's present, as long as the cache still holds exactly that: no
   * compression and no residual flush in between (both change the dequantized values). The new slots
   * are rounded to FP16, as the cache's residual window holds them, so the mirror feeds the same
   * numbers a fresh materialize() would.
   */
  #updateMirror(present: PresentKv, newMask: Uint8Array, n: number, pastSlots: number, compressedBefore: string): void {
    if (this.#compressedCounts() !== compressedBefore) {
      this.#mirror = undefined;
      return;
    }
    const { layers, kvHeads, headDim, batch, dtype } = this.layout;
    const previous = this.#lastPast?.slots === pastSlots ? this.#lastPast.mask : undefined;
    if (previous === undefined) {
      this.#mirror = undefined; // absorb() without a past() before it: nothing to extend
      return;
    }
    if (dtype === "float32") {
      for (let l = 0; l < layers; l++) {
        for (const a of [present.keys[l] as Float32Array, present.values[l] as Float32Array]) {
          for (let bh = 0; bh < batch * kvHeads; bh++) {
            const s = (bh * present.slots + pastSlots) * headDim;
            const block = a.subarray(s, s + n * headDim);
            block.set(halfBitsToFloats(floatsToHalfBits(block)));
          }
        }
      }
    }
    const mask = new Uint8Array(batch * present.slots);
    for (let b = 0; b < batch; b++) {
      mask.set(previous.subarray(b * pastSlots, (b + 1) * pastSlots), b * present.slots);
      mask.set(newMask.subarray(b * n, (b + 1) * n), b * present.slots + pastSlots);
    }
    this.#mirror = { slots: present.slots, keys: present.keys, values: present.values, mask };
  }

  async compressIfDue(n: number, extras?: CompressExtras): Promise<void> {
    if (this.#conversation.due(n)) await this.compress(extras);
  }

  async compress(extras?: CompressExtras): Promise<void> {
    await this.#conversation.compress(extras);
    this.#mirror = undefined;
  }

  stats(): KvStats {
    const mirror = this.#mirror;
    return this.#conversation.stats(mirror === undefined ? 0 : mirror.keys.reduce((sum, k, l) => sum + k.byteLength + mirror.values[l]!.byteLength, 0));
  }

  dispose(): void {
    this.#mirror = undefined;
    this.#lastPast = undefined;
    this.#conversation.dispose();
  }
}
