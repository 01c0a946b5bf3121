/**
 * Builds an ONNX decoder graph for a Hugging Face Llama checkpoint (RMSNorm, RoPE in rotate_half
 * form, grouped-query attention, SwiGLU MLP, tied or untied LM head) with the KV-cache I/O convention
 * that transformers.js / Optimum exports use, so the integration layer can drive it like any exported
 * model. Standard ONNX ops only, opset 17, IR version 8 (onnxruntime >= 1.14 loads it).
 *
 * Semantics that matter for a compressed cache (docs/model.md has the long version):
 * - RoPE angles come from `position_ids`, never from the past length, so a past shortened by
 *   eviction keeps every token at its true position.
 * - Visibility = `attention_mask` (one entry per past slot + new token; 0 = padding/absent) AND causal
 *   order inside the new chunk (new token i sees past slots and new tokens 0..i). The mask is not
 *   derived from positions, so a past of any length with any holes works.
 * - A query row that can see nothing (a left-padding token) gets an all-zero attention output instead
 *   of softmax over garbage; the TS reference does the same, so such rows are comparable too.
 * - dtype "f16" stores weights as FP16 and uses FP16 for past/present/logits I/O, but computes in FP32
 *   (onnxruntime's CPU provider has few FP16 kernels). New K/V are rounded to FP16 *before* attention,
 *   so attention always uses exactly what `present` returns.
 */
import { NexusQuantError } from "../errors.js";
import { f32ArrayToF16 } from "../shared/half.js";
import { llamaWeightShapes, ropeInverseFrequencies, type LlamaConfig } from "./llama-config.js";
import { DataType, GraphBuilder, onnx, type ElemType } from "./onnx-graph.js";
import { requireWeight, toFloat32, type WeightMap } from "./tensor.js";
import { pastKeyName, pastValueName, presentKeyName, presentValueName } from "./kv-names.js";

export type OnnxDtype = "f32" | "f16";

export interface BuildLlamaOnnxOptions {
  config: LlamaConfig;
  weights: WeightMap;
  /** Storage and I/O precision; compute is FP32 either way. Default "f32". */
  dtype?: OnnxDtype;
  /**
   * With dtype "f32": round new K/V to FP16 values before attention and `present` (I/O stays float32).
   * This is exactly what a cache holding FP16 K/V computes (the native path's preset "none"), so the
   * two can be compared at FP32 precision. Default false.
   */
  roundKvToF16?: boolean;
}

export const LLAMA_ONNX_OPSET = 17;
const IR_VERSION = 8;
/** Protobuf messages cannot exceed 2 GiB; larger models would need ONNX external data. */
const MAX_INLINE_BYTES = 2 ** 31 - 2 ** 24;
/** Added to masked scores; finite so a fully masked row stays NaN-free before it is zeroed. */
const MASK_VALUE = -1e9;

/** Graph input and output names in declaration order. */
export function llamaOnnxNames(config: LlamaConfig): { inputs: string[]; outputs: string[] } {
  const inputs = ["input_ids", "attention_mask", "position_ids"];
  const outputs = ["logits"];
  for (let i = 0; i < config.numLayers; i++) {
    inputs.push(pastKeyName(i), pastValueName(i));
    outputs.push(presentKeyName(i), presentValueName(i));
  }
  return { inputs, outputs };
}

/** Returns a serialized onnx.ModelProto. */
export function buildLlamaOnnx(options: BuildLlamaOnnxOptions): Uint8Array {
  const { config, weights } = options;
  const dtype = options.dtype ?? "f32";
  if (dtype !== "f32" && dtype !== "f16") {
    throw new NexusQuantError("INVALID_ARGUMENT", `Expected "f32" or "f16" for dtype but received ${JSON.stringify(dtype)}`, { arg: "dtype" });
  }
  for (const [name, shape] of llamaWeightShapes(config)) requireWeight(weights, name, shape);

  const g = new GraphBuilder();
  const ctx = new LlamaGraph(g, config, weights, dtype);
  ctx.roundKv = options.roundKvToF16 === true;
  ctx.build();
  if (g.initializerBytes > MAX_INLINE_BYTES) {
    throw new NexusQuantError(
      "UNSUPPORTED",
      `Model weights take ${g.initializerBytes} bytes; ONNX files without external data are limited to 2 GiB`,
      { bytes: g.initializerBytes },
    );
  }
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: "", version: LLAMA_ONNX_OPSET }],
    producerName: "nexusquant",
    docString: "Llama decoder built by nexusquant src/model/onnx-builder.ts",
    graph: g.graph("llama_decoder"),
  });
  return onnx.ModelProto.encode(model).finish();
}

/**
 * Per-build state: the graph, the config and the shared tensors (mask, cos/sin). The pieces of a
 * decoder layer are public so that the segment builder (segment-builder.ts) emits the same ops.
 * @internal
 */
export class LlamaGraph {
  private readonly ioType: ElemType;
  private readonly kvGroups: number;
  /** The embedding matrix value, shared by the input Gather and a tied LM head. */
  embed = "";
  /** Round new K/V through FP16 (see BuildLlamaOnnxOptions.roundKvToF16). */
  roundKv = false;
  private readonly presents: [string, string][] = [];

  constructor(
    readonly g: GraphBuilder,
    readonly config: LlamaConfig,
    private readonly weights: WeightMap,
    private readonly dtype: OnnxDtype,
  ) {
    this.ioType = dtype === "f16" ? DataType.FLOAT16 : DataType.FLOAT;
    this.kvGroups = config.numHeads / config.numKvHeads;
  }

  build(): void {
    const { g, config } = this;
    const kvDims = ["batch", config.numKvHeads, "past_sequence", config.headDim];
    const inputIds = g.input("input_ids", DataType.INT64, ["batch", "sequence"]);
    const attentionMask = g.input("attention_mask", DataType.INT64, ["batch", "total_sequence"]);
    const positionIds = g.input("position_ids", DataType.INT64, ["batch", "sequence"]);
    const pasts: [string, string][] = [];
    for (let i = 0; i < config.numLayers; i++) {
      pasts.push([g.input(pastKeyName(i), this.ioType, kvDims), g.input(pastValueName(i), this.ioType, kvDims)]);
    }

    const mask = this.attentionMask(inputIds, attentionMask);
    const rope = this.rotaryTables(positionIds);
    this.embed = this.weight("model.embed_tokens.weight", false);
    let hidden = g.op("Gather", [this.embed, inputIds], { axis: 0 }, "embed");
    for (let i = 0; i < config.numLayers; i++) {
      const p = `model.layers.${i}`;
      const normed = this.rmsNorm(hidden, `${p}.input_layernorm.weight`);
      const attn = this.attention(i, normed, pasts[i], mask, rope);
      hidden = g.op("Add", [hidden, attn], {}, `layer${i}_attn_residual`);
      const normed2 = this.rmsNorm(hidden, `${p}.post_attention_layernorm.weight`);
      hidden = g.op("Add", [hidden, this.mlp(i, normed2)], {}, `layer${i}_mlp_residual`);
    }
    const logits = this.lmHead(this.rmsNorm(hidden, "model.norm.weight"), inputIds);
    // Outputs in the conventional order: logits, then present.{i}.key/value.
    g.output("logits", this.toIo(logits), this.ioType, ["batch", "sequence", config.vocabSize]);
    const presentDims = ["batch", config.numKvHeads, "total_sequence", config.headDim];
    this.presents.forEach(([key, value], i) => {
      g.output(presentKeyName(i), key, this.ioType, presentDims);
      g.output(presentValueName(i), value, this.ioType, presentDims);
    });
  }

  /**
   * A weight as an FP32 graph value. `transpose` turns HF's [out, in] into MatMul's [in, out] at build
   * time, so the graph has no Transpose nodes on weights. FP16 storage gets a Cast that onnxruntime
   * constant-folds at load.
   */
  weight(name: string, transpose: boolean): string {
    const tensor = this.weights.get(name)!;
    let values = toFloat32(tensor);
    let dims = tensor.shape;
    if (transpose) {
      const [rows, cols] = dims;
      const t = new Float32Array(values.length);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = values[r * cols + c];
      values = t;
      dims = [cols, rows];
    }
    if (this.dtype === "f32") return this.g.initializer(name, DataType.FLOAT, dims, values);
    const stored = this.g.initializer(name, DataType.FLOAT16, dims, f32ArrayToF16(values));
    return this.g.op("Cast", [stored], { to: DataType.FLOAT }, `${name}_f32`);
  }

  private toIo(value: string): string {
    return this.dtype === "f16" ? this.g.op("Cast", [value], { to: DataType.FLOAT16 }, `${value}_f16`) : value;
  }

  private fromIo(value: string): string {
    return this.dtype === "f16" ? this.g.op("Cast", [value], { to: DataType.FLOAT }, `${value}_f32`) : value;
  }

  /** x / sqrt(mean(x^2) + eps) * w, as HF LlamaRMSNorm (variance in FP32). */
  rmsNorm(x: string, weightName: string): string {
    const g = this.g;
    const meanSquare = g.op("ReduceMean", [g.op("Mul", [x, x])], { axes: [-1], keepdims: 1 }, "rms_mean_square");
    const rms = g.op("Sqrt", [g.op("Add", [meanSquare, g.float([this.config.rmsNormEps], true)])], {}, "rms");
    return g.op("Mul", [g.op("Div", [x, rms]), this.weight(weightName, false)], {}, "rms_norm");
  }

  /**
   * Additive mask and visibility, both [batch, 1, 1, seq, total] so they broadcast over
   * [batch, kvHeads, groups, seq, total] scores. past = total - seq, read off the input shapes.
   */
  private attentionMask(inputIds: string, attentionMask: string): { additive: string; visible: string } {
    const g = this.g;
    const seq = g.op("Shape", [inputIds], { start: 1, end: 2 }, "seq_len");
    const total = g.op("Shape", [attentionMask], { start: 1, end: 2 }, "total_len");
    const past = g.op("Sub", [total, seq], {}, "past_len");
    const scalar = (v: string) => g.op("Squeeze", [v, g.int64([0])], {}, `${v}_scalar`);
    const zero = g.int64([0], true);
    const one = g.int64([1], true);
    const keyIndex = g.op("Range", [zero, scalar(total), one], {}, "key_index"); // [total]
    const queryIndex = g.op("Range", [zero, scalar(seq), one], {}, "query_index"); // [seq]
    // New token i sits in slot past + i of the concatenated cache; it sees slots 0..past+i.
    const querySlot = g.op("Unsqueeze", [g.op("Add", [queryIndex, scalar(past)]), g.int64([1])], {}, "query_slot"); // [seq, 1]
    const causal = g.op("LessOrEqual", [keyIndex, querySlot], {}, "causal"); // [seq, total]
    const present = g.op("Unsqueeze", [g.op("Cast", [attentionMask], { to: DataType.BOOL }), g.int64([1])], {}, "mask_bool"); // [batch, 1, total]
    const visible3 = g.op("And", [causal, present], {}, "visible3"); // [batch, seq, total]
    const visible = g.op("Unsqueeze", [visible3, g.int64([1, 2])], {}, "visible");
    const additive = g.op("Where", [visible, g.float([0], true), g.float([MASK_VALUE], true)], {}, "mask_additive");
    return { additive, visible: g.op("Cast", [visible], { to: DataType.FLOAT }, "visible_f32") };
  }

  /** cos/sin of position * inv_freq, duplicated to headDim as HF's `cat((freqs, freqs), -1)`: [batch, 1, seq, headDim]. */
  rotaryTables(positionIds: string): { cos: string; sin: string } {
    const g = this.g;
    const invFreq = ropeInverseFrequencies(this.config);
    const positions = g.op("Unsqueeze", [g.op("Cast", [positionIds], { to: DataType.FLOAT }), g.int64([2])], {}, "positions"); // [b, s, 1]
    const freqs = g.op("Mul", [positions, g.float(invFreq)], {}, "rope_freqs"); // [b, s, half]
    const angles = g.op("Unsqueeze", [g.op("Concat", [freqs, freqs], { axis: -1 }), g.int64([1])], {}, "rope_angles");
    return { cos: g.op("Cos", [angles], {}, "rope_cos"), sin: g.op("Sin", [angles], {}, "rope_sin") };
  }

  /** x * cos + rotate_half(x) * sin with rotate_half(x) = cat(-x2, x1); cos/sin broadcast from the left. */
  private applyRope(x: string, cos: string, sin: string): string {
    const g = this.g;
    const half = this.config.headDim / 2;
    const [x1, x2] = g.opN("Split", [x, g.int64([half, half])], 2, { axis: -1 }, "rope_half");
    const rotated = g.op("Concat", [g.op("Neg", [x2]), x1], { axis: -1 }, "rope_rotated");
    return g.op("Add", [g.op("Mul", [x, cos]), g.op("Mul", [rotated, sin])], {}, "rope");
  }

  /**
   * GQA without materializing repeated K/V: queries are reshaped to [b, kvHeads, groups, s, d] and
   * K/V get a size-1 group axis, so MatMul broadcasting pairs query head h with kv head h / groups —
   * the same pairing as HF's repeat_kv.
   */
  private attention(
    layer: number,
    x: string,
    [pastKey, pastValue]: [string, string],
    mask: { additive: string; visible: string },
    rope: { cos: string; sin: string },
  ): string {
    const g = this.g;
    const { headDim } = this.config;
    const qkv = this.queryKeyValue(layer, x, rope);
    const q = qkv.q;
    const throughF16 = (v: string) => g.op("Cast", [g.op("Cast", [v], { to: DataType.FLOAT16 })], { to: DataType.FLOAT });
    const kNew = this.roundKv && this.dtype === "f32" ? throughF16(qkv.k) : qkv.k;
    const vNew = this.roundKv && this.dtype === "f32" ? throughF16(qkv.v) : qkv.v;

    const presentKey = g.op("Concat", [pastKey, this.toIo(kNew)], { axis: 2 }, `layer${layer}_present_key`);
    const presentValue = g.op("Concat", [pastValue, this.toIo(vNew)], { axis: 2 }, `layer${layer}_present_value`);
    this.presents.push([presentKey, presentValue]);

    const withGroupAxis = (v: string) => g.op("Unsqueeze", [this.fromIo(v), g.int64([2])]); // [b, kv, 1, t, d]
    const keyT = g.op("Transpose", [withGroupAxis(presentKey)], { perm: [0, 1, 2, 4, 3] }); // [b, kv, 1, d, t]
    const scores = g.op("Mul", [g.op("MatMul", [q, keyT]), g.float([1 / Math.sqrt(headDim)], true)], {}, `layer${layer}_scores`);
    const probs = g.op("Softmax", [g.op("Add", [scores, mask.additive])], { axis: -1 }, `layer${layer}_probs`);
    // Zero rows that see nothing (elsewhere a no-op: masked probabilities are already exp(-1e9) = 0).
    const visibleProbs = g.op("Mul", [probs, mask.visible]);
    const context = g.op("MatMul", [visibleProbs, withGroupAxis(presentValue)]); // [b, kv, groups, s, d]
    const merged = g.op("Reshape", [g.op("Transpose", [context], { perm: [0, 3, 1, 2, 4] }), g.int64([0, 0, -1])], {}, `layer${layer}_context`);
    return this.outputProjection(layer, merged);
  }

  /**
   * The projections of one layer with RoPE applied: q as [b, kvHeads, groups, s, d] (GQA-grouped),
   * k and v as [b, kvHeads, s, d]. Biases are added when the checkpoint has them (Qwen2).
   */
  queryKeyValue(layer: number, x: string, rope: { cos: string; sin: string }): { q: string; k: string; v: string } {
    const g = this.g;
    const { numKvHeads, headDim } = this.config;
    const p = `model.layers.${layer}.self_attn`;
    const project = (name: string) => {
      const product = g.op("MatMul", [x, this.weight(`${p}.${name}.weight`, true)], {}, `layer${layer}_${name}`);
      return this.config.qkvBias ? g.op("Add", [product, this.weight(`${p}.${name}.bias`, false)], {}, `layer${layer}_${name}_bias`) : product;
    };
    // q: [b, s, H*d] -> [b, s, kv, groups, d] -> [b, kv, groups, s, d]
    const q5 = g.op("Transpose", [g.op("Reshape", [project("q_proj"), g.int64([0, 0, numKvHeads, this.kvGroups, headDim])])], { perm: [0, 2, 3, 1, 4] });
    const cos5 = g.op("Unsqueeze", [rope.cos, g.int64([1])]);
    const sin5 = g.op("Unsqueeze", [rope.sin, g.int64([1])]);
    const q = this.applyRope(q5, cos5, sin5);
    // k, v: [b, s, kv*d] -> [b, kv, s, d]
    const heads = (v: string) => g.op("Transpose", [g.op("Reshape", [v, g.int64([0, 0, numKvHeads, headDim])])], { perm: [0, 2, 1, 3] });
    return { q, k: this.applyRope(heads(project("k_proj")), rope.cos, rope.sin), v: heads(project("v_proj")) };
  }

  /** o_proj of the merged attention context [b, s, H*d] (with its bias when the checkpoint has one). */
  outputProjection(layer: number, merged: string): string {
    const g = this.g;
    const p = `model.layers.${layer}.self_attn`;
    const out = g.op("MatMul", [merged, this.weight(`${p}.o_proj.weight`, true)], {}, `layer${layer}_o_proj`);
    return this.config.oBias ? g.op("Add", [out, this.weight(`${p}.o_proj.bias`, false)], {}, `layer${layer}_o_proj_bias`) : out;
  }

  /** down(silu(gate(x)) * up(x)), silu(z) = z * sigmoid(z). */
  mlp(layer: number, x: string): string {
    const g = this.g;
    const p = `model.layers.${layer}.mlp`;
    const gate = g.op("MatMul", [x, this.weight(`${p}.gate_proj.weight`, true)], {}, `layer${layer}_gate`);
    const up = g.op("MatMul", [x, this.weight(`${p}.up_proj.weight`, true)], {}, `layer${layer}_up`);
    const act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up], {}, `layer${layer}_swiglu`);
    return g.op("MatMul", [act, this.weight(`${p}.down_proj.weight`, true)], {}, `layer${layer}_down`);
  }

  /**
   * Logits via Gemm(transB=1) on [b*s, hidden] so the [vocab, hidden] matrix is used as stored: a tied
   * head reuses the embedding initializer instead of duplicating it transposed.
   */
  lmHead(x: string, inputIds: string): string {
    const g = this.g;
    const { hiddenSize, vocabSize, tieWordEmbeddings } = this.config;
    const head = tieWordEmbeddings ? this.embed : this.weight("lm_head.weight", false);
    const flat = g.op("Reshape", [x, g.int64([-1, hiddenSize])]);
    const logits2d = g.op("Gemm", [flat, head], { transB: 1 }, "logits_2d");
    const shape = g.op("Concat", [g.op("Shape", [inputIds]), g.int64([vocabSize])], { axis: 0 }, "logits_shape");
    return g.op("Reshape", [logits2d, shape], {}, "logits_f32");
  }
}
