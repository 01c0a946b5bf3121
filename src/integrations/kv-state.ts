/**
 * The KV state of one conversation (a batch of sequences) between model steps, independent of the
 * runtime: dense pass-through (preset "none") or held compressed in a CompressedKVCache. Both speak
 * in the export layout [batch, kvHeads, slots, headDim]: `past()` gives what to feed next, `absorb()`
 * takes the model's `present` outputs and keeps only the new slots.
 */
import { NexusQuantError } from "../errors.js";
import { fp16BytesPerTokenLayer } from "../format/index.js";
import { CompressedKVCache, floatsToHalfBits, halfBitsToFloats, type BackendName, type DenseLayer } from "../runtime/index.js";
import type { ResolvedOptions } from "./options.js";

export type KvDtype = "float32" | "float16";
/** float32 data, or FP16 bits for float16 models. */
export type KvArray = Float32Array | Uint16Array;

export interface KvLayout {
  layers: number;
  kvHeads: number;
  headDim: number;
  batch: number;
  dtype: KvDtype;
  /** Query heads, for the observed scorer's queries (default kvHeads). */
  queryHeads?: number;
}

/** The options a KV state is made from: the parts of withNexusQuant's resolved options it reads. */
export type KvStateOptions = Pick<ResolvedOptions, "preset" | "passThrough" | "backend" | "compressEvery" | "spec" | "seed" | "denseMirror"> &
  Partial<Pick<ResolvedOptions, "memoryLimitBytes">>;

/** What a compression may get beyond the cache itself. */
export interface CompressExtras {
  /**
   * Observed scorer (SnapKV): per row, per layer, the last queries [queryHeads, window, headDim]. A
   * runtime that can read the model's queries passes them (the quality harness does); without them
   * the cache falls back to key-key.
   */
  observedQueries?: readonly (readonly Float32Array[] | undefined)[];
}

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

/** What `stats()` reports. Token counts are per sequence position (not multiplied by layers). */
export interface KvStats {
  preset: string;
  /** "none" for pass-through, else where the compressed cache lives. */
  backend: BackendName | "none";
  /** Tokens of text the conversation holds, summed over rows (the true length; padding excluded). */
  tokens: number;
  /** Tokens still held after eviction, summed over rows. */
  heldTokens: number;
  tokensEvicted: number;
  /** What an FP16 cache of every token would hold: tokens × layers × kvHeads × headDim × 2 (K, V) × 2 bytes. */
  baselineKvBytes: number;
  /** Bytes the compressed cache holds, measured by its accounting allocator (= baseline for "none"). */
  compressedKvBytes: number;
  ratio: number;
  /** Bytes of dense K/V arrays the wrapper holds between steps (the pass-through cache, or the denseMirror; else 0). */
  denseKvBytes: number;
  compressions: number;
  compressSeconds: number;
}

/** The stats of a wrapper that has not run a step yet. */
export function emptyKvStats(preset: string): KvStats {
  return {
    preset,
    backend: "none",
    tokens: 0,
    heldTokens: 0,
    tokensEvicted: 0,
    baselineKvBytes: 0,
    compressedKvBytes: 0,
    ratio: 1,
    denseKvBytes: 0,
    compressions: 0,
    compressSeconds: 0,
  };
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
  dispose(): void;
}

/**
 * When a compressed state compresses: a prompt chunk (more than one token) at once, since that is
 * where the bulk of the memory arrives, and the first step of a conversation whatever its size (from
 * then on the cache holds no more than FP16: format fitsFp16); decode tokens wait in the FP16
 * residual window until `every` of them have accumulated. One definition, so every state that
 * compresses (the quality harness's scalar baselines too) does it at the same moments.
 */
export class CompressSchedule {
  #since = 0;
  #first = true;

  constructor(readonly every: number) {}

  /** Counts a step of `n` tokens; true when the state should compress now. */
  due(n: number): boolean {
    if (n !== 1 || this.#first) {
      this.#first = false;
      return true;
    }
    this.#since += 1;
    return this.#since >= this.every;
  }

  /** A compression happened: the decode-token count starts again. */
  restart(): void {
    this.#since = 0;
    this.#first = false;
  }
}

export function createKvState(layout: KvLayout, options: KvStateOptions): KvState {
  return options.passThrough ? new DenseKvState(layout) : new CompressedKvState(layout, options);
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

function baselineBytes(layout: KvLayout, tokens: number): number {
  return tokens * layout.layers * fp16BytesPerTokenLayer(layout.kvHeads, layout.headDim);
}

/**
 * Pass-through: feeds `present` back unchanged with the accumulated mask, exactly what an unwrapped
 * generation loop does, so logits are bit-identical to the unwrapped model.
 */
class DenseKvState implements KvState {
  readonly cache = undefined;
  #keys: KvArray[];
  #values: KvArray[];
  #slots = 0;
  #mask = new Uint8Array(0);
  #real: number[];

  constructor(readonly layout: KvLayout) {
    this.#keys = Array.from({ length: layout.layers }, () => arrayFor(layout.dtype, 0));
    this.#values = Array.from({ length: layout.layers }, () => arrayFor(layout.dtype, 0));
    this.#real = new Array(layout.batch).fill(0);
  }

  realTokens(row: number): number {
    return this.#real[row]!;
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
      for (const m of row) this.#real[b]! += m;
    }
    this.#keys = present.keys;
    this.#values = present.values;
    this.#slots = present.slots;
    this.#mask = mask;
  }

  async compressIfDue(): Promise<void> {}

  async compress(): Promise<void> {}

  stats(): KvStats {
    const tokens = this.#real.reduce((a, b) => a + b, 0);
    const baseline = baselineBytes(this.layout, tokens);
    const denseKvBytes = this.#keys.reduce((sum, k, l) => sum + k.byteLength + this.#values[l]!.byteLength, 0);
    return {
      preset: "none",
      backend: "none",
      tokens,
      heldTokens: tokens,
      tokensEvicted: 0,
      baselineKvBytes: baseline,
      compressedKvBytes: baseline,
      ratio: 1,
      denseKvBytes,
      compressions: 0,
      compressSeconds: 0,
    };
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
  readonly #cache: CompressedKVCache;
  readonly #preset: string;
  readonly #schedule: CompressSchedule;
  readonly #real: number[];
  readonly #useMirror: boolean;
  /** denseMirror: the last dense past + new slots, valid until the cache's contents change. */
  #mirror: PastKv | undefined;
  /** The past handed out last (its mask starts the mirror's mask). */
  #lastPast: PastKv | undefined;
  #compressions = 0;
  #compressSeconds = 0;

  constructor(
    readonly layout: KvLayout,
    options: KvStateOptions,
  ) {
    this.#preset = options.preset;
    this.#schedule = new CompressSchedule(options.compressEvery);
    this.#useMirror = options.denseMirror;
    this.#real = new Array(layout.batch).fill(0);
    this.#cache = new CompressedKVCache({
      layers: layout.layers,
      kvHeads: layout.kvHeads,
      headDim: layout.headDim,
      batch: layout.batch,
      ...(layout.queryHeads !== undefined ? { queryHeads: layout.queryHeads } : {}),
      preset: options.preset,
      spec: options.spec,
      backend: options.backend,
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      ...(options.memoryLimitBytes ? { memoryLimitBytes: options.memoryLimitBytes } : {}),
    });
  }

  get cache(): CompressedKVCache {
    return this.#cache;
  }

  realTokens(row: number): number {
    return this.#real[row]!;
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
      this.#real[b]! += m;
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
    if (this.#schedule.due(n)) await this.compress(extras);
  }

  async compress(extras?: CompressExtras): Promise<void> {
    const start = performance.now();
    for (let b = 0; b < this.layout.batch; b++) {
      const observedQueries = extras?.observedQueries?.[b];
      if (this.#real[b]! > 0) await this.#cache.compress({ sequence: b, ...(observedQueries !== undefined ? { observedQueries: [...observedQueries] } : {}) });
    }
    this.#compressSeconds += (performance.now() - start) / 1000;
    this.#mirror = undefined;
    this.#compressions += 1;
    this.#schedule.restart();
  }

  stats(): KvStats {
    const s = this.#cache.stats();
    let held = 0;
    for (let b = 0; b < this.layout.batch; b++) held += this.#cache.tokens(0, b).held;
    const tokens = this.#real.reduce((a, b) => a + b, 0);
    return {
      preset: this.#preset,
      backend: s.backend,
      tokens,
      heldTokens: held,
      tokensEvicted: tokens - held,
      baselineKvBytes: s.baselineBytes,
      compressedKvBytes: s.bytes.total,
      ratio: s.ratio,
      denseKvBytes: this.#mirror === undefined ? 0 : this.#mirror.keys.reduce((sum, k, l) => sum + k.byteLength + this.#mirror!.values[l]!.byteLength, 0),
      compressions: this.#compressions,
      compressSeconds: this.#compressSeconds,
    };
  }

  dispose(): void {
    this.#mirror = undefined;
    this.#lastPast = undefined;
    this.#cache.dispose();
  }
}
