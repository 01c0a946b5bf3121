/**
 * Argument validation of the op entry points (test and lab code: the parity suite, test/native and
 * bench/gpu), shared by both backends: cuda.ts (cuda*) and cpu.ts (cpu*) check the same options the
 * same way and hand the binding the same object (native/binding/op_options.h reads it for either), so
 * a parity test passes one options object to both. Only the head_dim ceilings differ per backend.
 */
import { invalidArgument } from "../../src/errors.js";
import { CODE_BITS, SCORER_DEFAULTS, SCORER_IDS, codeBytesPerVector, type CodeBits } from "../../src/format/index.js";
import type { NativeAttentionArgs, NativeAttentionSequence, NativeScoreArgs, NativeSelectArgs, NativeTransformHandle } from "../../src/runtime/binding.js";
import { checkBoolean, checkInt, checkKVData, checkObject, checkOneOf, checkOptionKeys, checkSeed, type KVData } from "../../src/runtime/validate.js";

/**
 * A calibrated transform for a codec op (issue 26): tables from sharedTransformTables and the entry
 * to code with, (layer, K|V, head) of their [layers][2][kvHeads] entries. The entry's budget is the
 * tables' key or value bits (1 bit exists only here). An entry the calibration left flat codes as
 * without a transform.
 */
export interface OpTransform {
  tables: NativeTransformHandle;
  kvHeads: number;
  layer: number;
  kv: 0 | 1;
  head: number;
}

/** Codec arguments of the encode/decode ops. */
export interface OpCodecOptions {
  headDim: number;
  /** 2, 3 or 4; 1 only with a transform. */
  bits: CodeBits | 1;
  rotate?: boolean;
  seed?: number;
  transform?: OpTransform;
}

/** Codec options as the binding takes them: the transform as tables + entry index. */
export type CodecArgs = Required<Omit<OpCodecOptions, "transform">> & { transform?: NativeTransformHandle; entry?: number };

/** Validated codec options; `maxHeadDim` is the backend's own ceiling. `entry`: the transform entry's index. */
export function codecOptions(o: OpCodecOptions, maxHeadDim: number, moreKeys: readonly string[] = []): CodecArgs {
  checkObject("options", o, "{ headDim, bits }");
  checkOptionKeys("options", o, ["headDim", "bits", "rotate", "seed", "transform", ...moreKeys]);
  checkInt("options.headDim", o.headDim, { min: 8, max: maxHeadDim, maxName: "this backend's codec limit" });
  if (o.headDim % 8 !== 0) throw invalidArgument("options.headDim", "a multiple of 8", o.headDim);
  if (o.transform !== undefined) checkOneOf("options.bits", o.bits, [1, ...CODE_BITS] as const, "1, 2, 3 or 4");
  else checkOneOf("options.bits", o.bits, CODE_BITS, "2, 3 or 4 (1 only with a transform)");
  const rotate = checkBoolean("options.rotate", o.rotate ?? true);
  const seed = checkSeed("options.seed", o.seed ?? 0);
  if (o.transform === undefined) return { headDim: o.headDim, bits: o.bits, rotate, seed };
  const t = o.transform;
  checkObject("options.transform", t, "{ tables, kvHeads, layer, kv, head }");
  const kvHeads = posInt("options.transform.kvHeads", t.kvHeads);
  const layer = posInt("options.transform.layer", t.layer, 0);
  checkOneOf("options.transform.kv", t.kv, [0, 1] as const, "0 (keys) or 1 (values)");
  const head = checkInt("options.transform.head", t.head, { min: 0, max: kvHeads - 1, maxName: "kvHeads - 1" });
  return { headDim: o.headDim, bits: o.bits, rotate, seed, transform: t.tables, entry: (layer * 2 + t.kv) * kvHeads + head };
}

/** Validated encode arguments: `data` holds whole head vectors. */
export function encodeArgs(data: KVData, options: OpCodecOptions, maxHeadDim: number): CodecArgs {
  const o = codecOptions(options, maxHeadDim);
  checkKVData("data", data);
  if (data.length % o.headDim !== 0) throw invalidArgument("data.length", `a multiple of headDim (${o.headDim})`, data.length);
  return o;
}

/** Validated decode arguments: codes and scales of the same vectors, `out` sized for them. */
export function decodeArgs(
  codes: Uint8Array,
  scales: Uint16Array,
  options: OpCodecOptions & { out: Float32Array | Uint16Array; unrotate?: boolean },
  maxHeadDim: number,
): CodecArgs & { unrotate: boolean } {
  // `out` and `unrotate` belong to decode (cudaDecode once refused its own `out` as an unknown option).
  const o = codecOptions(options, maxHeadDim, ["out", "unrotate"]);
  if (!(codes instanceof Uint8Array)) throw invalidArgument("codes", "a Uint8Array", codes);
  if (!(scales instanceof Uint16Array)) throw invalidArgument("scales", "a Uint16Array of FP16 bits", scales);
  if (codes.length !== scales.length * codeBytesPerVector(o.headDim, o.bits)) {
    throw invalidArgument("codes.length", `scales.length × ${codeBytesPerVector(o.headDim, o.bits)}`, codes.length);
  }
  const out = options.out;
  if (!(out instanceof Float32Array) && !(out instanceof Uint16Array)) throw invalidArgument("options.out", "a Float32Array or Uint16Array", out);
  if (out.length !== scales.length * o.headDim) throw invalidArgument("options.out.length", `${scales.length * o.headDim}`, out.length);
  return { ...o, unrotate: checkBoolean("options.unrotate", options.unrotate ?? true) };
}

/** One sequence of an attention op call: codes per KV head, the FP16 residual, the queries. */
export interface AttentionSequence extends Omit<NativeAttentionSequence, "residual" | "firstResidualPos" | "out"> {
  /** FP16 rows after the codes (default 0). */
  residual?: number;
  /** Position of residual row 0 (default: compressed). */
  firstResidualPos?: number;
}

/** Attention op options: NativeAttentionArgs with defaults (nq 1, pageTokens 64, seed 0, scale 1/sqrt(headDim), splitTokens 0). */
type AttentionDefaults = "nq" | "pageTokens" | "seed" | "scale" | "splitTokens";
export interface AttentionOptions extends Omit<NativeAttentionArgs, AttentionDefaults | "storesPositions" | "sequences" | "keyBits" | "valueBits">, Partial<Pick<NativeAttentionArgs, AttentionDefaults>> {
  /** 2, 3 or 4; 1 only with a transform. */
  keyBits: CodeBits | 1;
  valueBits: CodeBits | 1;
  sequences: AttentionSequence[];
}

export const posInt = (arg: string, v: unknown, min = 1): number => checkInt(arg, v, { min });

export function checkLength(arg: string, a: ArrayLike<unknown> | undefined, n: number, what: string): void {
  if (a === undefined || a.length !== n) throw invalidArgument(arg, `${what} of length ${n}`, a);
}

/** Validated attention options as the binding reads them (op_options.h), and the output arrays. */
export function attentionArgs(options: AttentionOptions, maxHeadDim: number): { args: NativeAttentionArgs; outs: Float32Array[] } {
  if (options === null || typeof options !== "object") throw invalidArgument("options", "an AttentionOptions object", options);
  const H = posInt("options.kvHeads", options.kvHeads);
  const QH = posInt("options.queryHeads", options.queryHeads);
  if (QH % H !== 0) throw invalidArgument("options.queryHeads", `a multiple of kvHeads (${H})`, QH);
  const d = posInt("options.headDim", options.headDim, 8);
  if (d % 8 !== 0 || d > maxHeadDim) throw invalidArgument("options.headDim", `a multiple of 8 up to ${maxHeadDim}`, d);
  const bits: readonly number[] = options.transform !== undefined ? [1, ...CODE_BITS] : CODE_BITS;
  if (!bits.includes(options.keyBits)) throw invalidArgument("options.keyBits", options.transform ? "1, 2, 3 or 4" : "2, 3 or 4 (1 only with a transform)", options.keyBits);
  if (!bits.includes(options.valueBits)) throw invalidArgument("options.valueBits", options.transform ? "1, 2, 3 or 4" : "2, 3 or 4 (1 only with a transform)", options.valueBits);
  if (options.transform !== undefined) posInt("options.transformLayer", options.transformLayer, 0);
  const nq = posInt("options.nq", options.nq ?? 1);
  const pageTokens = posInt("options.pageTokens", options.pageTokens ?? 64, 8);
  if (!Array.isArray(options.sequences) || options.sequences.length === 0) throw invalidArgument("options.sequences", "a non-empty array", options.sequences);
  const kc = codeBytesPerVector(d, options.keyBits), vc = codeBytesPerVector(d, options.valueBits);
  const storesPositions = options.sequences.some((s) => s.positions !== undefined);
  const outs: Float32Array[] = [];
  const sequences = options.sequences.map((s, i): NativeAttentionSequence => {
    const at = `options.sequences[${i}]`;
    const n = posInt(`${at}.compressed`, s.compressed, 0);
    const r = posInt(`${at}.residual`, s.residual ?? 0, 0);
    if (n > 0) {
      checkLength(`${at}.keyCodes`, s.keyCodes, H * n * kc, "a Uint8Array");
      checkLength(`${at}.valueCodes`, s.valueCodes, H * n * vc, "a Uint8Array");
      checkLength(`${at}.keyScales`, s.keyScales, H * n, "a Uint16Array");
      checkLength(`${at}.valueScales`, s.valueScales, H * n, "a Uint16Array");
      if (storesPositions) checkLength(`${at}.positions`, s.positions, H * n, "an Int32Array (give positions for every sequence or none)");
    }
    if (r > 0) {
      checkLength(`${at}.residualKeys`, s.residualKeys, H * r * d, "a Uint16Array");
      checkLength(`${at}.residualValues`, s.residualValues, H * r * d, "a Uint16Array");
    }
    if (!(s.queries instanceof Float32Array)) throw invalidArgument(`${at}.queries`, "a Float32Array", s.queries);
    checkLength(`${at}.queries`, s.queries, QH * nq * d, "a Float32Array");
    if (!(s.queryPositions instanceof Int32Array)) throw invalidArgument(`${at}.queryPositions`, "an Int32Array", s.queryPositions);
    checkLength(`${at}.queryPositions`, s.queryPositions, nq, "an Int32Array");
    if (s.accumulated !== undefined) checkLength(`${at}.accumulated`, s.accumulated, H * (n + r), "a Float32Array");
    const out = new Float32Array(QH * nq * d);
    outs.push(out);
    return { ...s, compressed: n, residual: r, firstResidualPos: s.firstResidualPos ?? n, out };
  });
  const scale = options.scale ?? 1 / Math.sqrt(d);
  const args: NativeAttentionArgs = {
    kvHeads: H,
    queryHeads: QH,
    headDim: d,
    nq,
    keyBits: options.keyBits,
    valueBits: options.valueBits,
    pageTokens,
    seed: options.seed ?? 0,
    scale,
    splitTokens: options.splitTokens ?? 0,
    storesPositions,
    sequences,
    ...(options.transform !== undefined ? { transform: options.transform, transformLayer: options.transformLayer } : {}),
  };
  return { args, outs };
}

/** The scorers the ops implement (both backends), by their native ids (SCORER_IDS in src/format). */
const OP_SCORERS = { keynorm: SCORER_IDS.keynorm, "key-key": SCORER_IDS["key-key"], observed: SCORER_IDS.observed } as const;
export type OpScorerName = keyof typeof OP_SCORERS;

/** Score op options: NativeScoreArgs with the scorer by name and defaults (queryHeads kvHeads, window and pool SCORER_DEFAULTS). */
export interface ScoreOptions extends Omit<NativeScoreArgs, "scorer" | "queryHeads" | "window" | "pool">, Partial<Pick<NativeScoreArgs, "queryHeads" | "window" | "pool">> {
  scorer: OpScorerName;
}

/** Validated score options as the binding reads them. */
export function scoreArgs(o: ScoreOptions): NativeScoreArgs {
  if (!(o.scorer in OP_SCORERS)) throw invalidArgument("options.scorer", Object.keys(OP_SCORERS).join(", "), o.scorer);
  const H = posInt("options.kvHeads", o.kvHeads), T = posInt("options.tokens", o.tokens), d = posInt("options.headDim", o.headDim);
  checkLength("options.keys", o.keys, H * T * d, "a Float32Array");
  const window = posInt("options.window", o.window ?? SCORER_DEFAULTS.scorerWindow);
  const queryHeads = posInt("options.queryHeads", o.queryHeads ?? H);
  if (o.scorer === "observed") {
    if (queryHeads % H !== 0) throw invalidArgument("options.queryHeads", `a multiple of kvHeads (${H})`, queryHeads);
    checkLength("options.queries", o.queries, queryHeads * window * d, "a Float32Array");
  }
  return { scorer: OP_SCORERS[o.scorer], kvHeads: H, tokens: T, headDim: d, keys: o.keys, queries: o.queries, queryHeads, window, pool: o.pool ?? SCORER_DEFAULTS.poolKernel };
}

export type SelectOptions = NativeSelectArgs;

/** Validated select options as the binding reads them. */
export function selectArgs(o: SelectOptions): NativeSelectArgs {
  const H = posInt("options.kvHeads", o.kvHeads), T = posInt("options.tokens", o.tokens);
  const target = posInt("options.target", o.target, 0);
  if (target > T) throw invalidArgument("options.target", `an integer <= tokens (${T})`, target);
  checkLength("options.scores", o.scores, H * T, "a Float32Array");
  checkLength("options.positions", o.positions, H * T, "an Int32Array");
  return { kvHeads: H, tokens: T, target, sinkTokens: posInt("options.sinkTokens", o.sinkTokens, 0), recentWindow: posInt("options.recentWindow", o.recentWindow, 0), scores: o.scores, positions: o.positions };
}

