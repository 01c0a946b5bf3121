/**
 * Builds a Llama-family decoder as ONNX *segments without attention*, for the native decode path:
 * onnxruntime runs everything but attention, and between two segments the addon appends the new K/V
 * to a CompressedKVCache and computes attention on its codes. No segment sees a past K/V tensor.
 *
 *   segment 0      input_ids, position_ids          -> hidden_out, q, k, v   (embeddings + layer 0 pre-attention)
 *   segment i      hidden, attention, position_ids  -> hidden_out, q, k, v   (o_proj + residual + MLP of layer i-1,
 *                                                                          then layer i pre-attention)
 *   segment L      hidden, attention                -> logits            (o_proj + MLP of the last layer, final
 *                                                                          norm, LM head on the last position)
 *
 * Layouts: hidden [b, s, hidden]; q and attention [b, heads, s, headDim]; k, v [b, kvHeads, s, headDim]
 * (so row b's slab is exactly what CompressedKVCache.append / attention take); logits [b, vocab], or
 * [b, s, vocab] with `logits: "all"`. All I/O is float32 (compute is FP32 either way).
 */
import { NexusQuantError } from "../errors.js";
import { llamaWeightShapes, type LlamaConfig } from "./llama-config.js";
import { LLAMA_ONNX_OPSET, LlamaGraph, type OnnxDtype } from "./onnx-builder.js";
import { DataType, GraphBuilder, onnx } from "./onnx-graph.js";
import { requireWeight, type WeightMap } from "./tensor.js";

export interface BuildSegmentsOptions {
  config: LlamaConfig;
  weights: WeightMap;
  /** Weight storage in the ONNX files; "f16" halves the files (compute stays FP32). Default "f32". */
  dtype?: OnnxDtype;
  /** "last" (default): logits of the last position only, [b, vocab]. "all": [b, s, vocab], for quality harnesses and tests. */
  logits?: "last" | "all";
}

/** The serialized segments, in execution order (numLayers + 1 of them). */
export interface DecoderSegments {
  config: LlamaConfig;
  logits: "last" | "all";
  segments: Uint8Array[];
}

const IR_VERSION = 8;
const MAX_INLINE_BYTES = 2 ** 31 - 2 ** 24;

export const SEGMENT_NAMES = {
  inputIds: "input_ids",
  positionIds: "position_ids",
  hidden: "hidden",
  hiddenOut: "hidden_out",
  attention: "attention",
  query: "q",
  key: "k",
  value: "v",
  logits: "logits",
} as const;

export function buildDecoderSegments(options: BuildSegmentsOptions): DecoderSegments {
  const { config, weights } = options;
  const dtype = options.dtype ?? "f32";
  const logits = options.logits ?? "last";
  if (dtype !== "f32" && dtype !== "f16") {
    throw new NexusQuantError("INVALID_ARGUMENT", `Expected "f32" or "f16" for dtype but received ${JSON.stringify(dtype)}`, { arg: "dtype" });
  }
  if (logits !== "last" && logits !== "all") {
    throw new NexusQuantError("INVALID_ARGUMENT", `Expected "last" or "all" for logits but received ${JSON.stringify(logits)}`, { arg: "logits" });
  }
  for (const [name, shape] of llamaWeightShapes(config)) requireWeight(weights, name, shape);
  const segments: Uint8Array[] = [];
  for (let i = 0; i <= config.numLayers; i++) segments.push(buildSegment(config, weights, dtype, i, logits));
  return { config, logits, segments };
}

function buildSegment(config: LlamaConfig, weights: WeightMap, dtype: OnnxDtype, index: number, logits: "last" | "all"): Uint8Array {
  const g = new GraphBuilder();
  const ctx = new LlamaGraph(g, config, weights, dtype);
  const { numHeads, numKvHeads, headDim, hiddenSize, vocabSize, numLayers } = config;
  const N = SEGMENT_NAMES;
  let hidden: string;
  let positionIds = "";
  if (index === 0) {
    const inputIds = g.input(N.inputIds, DataType.INT64, ["batch", "sequence"]);
    positionIds = g.input(N.positionIds, DataType.INT64, ["batch", "sequence"]);
    ctx.embed = ctx.weight("model.embed_tokens.weight", false);
    hidden = g.op("Gather", [ctx.embed, inputIds], { axis: 0 }, "embed");
  } else {
    const previous = index - 1;
    const hiddenIn = g.input(N.hidden, DataType.FLOAT, ["batch", "sequence", hiddenSize]);
    const attention = g.input(N.attention, DataType.FLOAT, ["batch", numHeads, "sequence", headDim]);
    if (index < numLayers) positionIds = g.input(N.positionIds, DataType.INT64, ["batch", "sequence"]);
    // [b, H, s, d] -> [b, s, H*d]: the merged context o_proj expects.
    const merged = g.op("Reshape", [g.op("Transpose", [attention], { perm: [0, 2, 1, 3] }), g.int64([0, 0, numHeads * headDim])], {}, "merged");
    const afterAttention = g.op("Add", [hiddenIn, ctx.outputProjection(previous, merged)], {}, `layer${previous}_attn_residual`);
    const normed = ctx.rmsNorm(afterAttention, `model.layers.${previous}.post_attention_layernorm.weight`);
    hidden = g.op("Add", [afterAttention, ctx.mlp(previous, normed)], {}, `layer${previous}_mlp_residual`);
  }

  if (index < numLayers) {
    const normed = ctx.rmsNorm(hidden, `model.layers.${index}.input_layernorm.weight`);
    const { q, k, v } = ctx.queryKeyValue(index, normed, ctx.rotaryTables(positionIds));
    // q is GQA-grouped [b, kv, groups, s, d]; heads kv*groups+g are exactly HF's head order.
    const q4 = g.op("Reshape", [q, g.int64([0, numHeads, -1, headDim])], {}, "q_heads");
    g.output(N.hiddenOut, hidden, DataType.FLOAT, ["batch", "sequence", hiddenSize]);
    g.output(N.query, q4, DataType.FLOAT, ["batch", numHeads, "sequence", headDim]);
    g.output(N.key, k, DataType.FLOAT, ["batch", numKvHeads, "sequence", headDim]);
    g.output(N.value, v, DataType.FLOAT, ["batch", numKvHeads, "sequence", headDim]);
  } else {
    let last = hidden;
    if (logits === "last") {
      // Only the last position predicts the next token: slice before the norm and the LM head, so a
      // prompt chunk never materializes [chunk, vocab] logits.
      last = g.op("Slice", [hidden, g.int64([-1]), g.int64([2 ** 62]), g.int64([1])], {}, "last_position");
    }
    const normed = ctx.rmsNorm(last, "model.norm.weight");
    const head = config.tieWordEmbeddings ? ctx.weight("model.embed_tokens.weight", false) : ctx.weight("lm_head.weight", false);
    const flat = g.op("Reshape", [normed, g.int64([-1, hiddenSize])]);
    const logits2d = g.op("Gemm", [flat, head], { transB: 1 }, "logits_2d");
    if (logits === "last") {
      g.output(N.logits, logits2d, DataType.FLOAT, ["batch", vocabSize]);
    } else {
      const shape = g.op("Concat", [g.op("Shape", [hidden], { start: 0, end: 2 }), g.int64([vocabSize])], { axis: 0 }, "logits_shape");
      g.output(N.logits, g.op("Reshape", [logits2d, shape], {}, "logits_all"), DataType.FLOAT, ["batch", "sequence", vocabSize]);
    }
  }
  if (g.initializerBytes > MAX_INLINE_BYTES) {
    throw new NexusQuantError("UNSUPPORTED", `Segment ${index} holds ${g.initializerBytes} bytes of weights; ONNX files without external data are limited to 2 GiB`, {
      bytes: g.initializerBytes,
    });
  }
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: "", version: LLAMA_ONNX_OPSET }],
    producerName: "nexusquant",
    docString: `Llama decoder segment ${index} of ${numLayers} (attention runs in nexusquant's addon), built by src/model/segment-builder.ts`,
    graph: g.graph(`llama_segment_${index}`),
  });
  return onnx.ModelProto.encode(model).finish();
}
