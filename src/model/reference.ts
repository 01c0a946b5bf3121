/**
 * A plain TypeScript forward pass of the same decoder the ONNX builder emits, with the same inputs
 * and outputs (past K/V in, present K/V out), computed in float64 from the FP32 weights. It exists to
 * cross-check the graph: two independent implementations of the masking, RoPE and GQA rules in
 * onnx-builder.ts. Written for clarity, not speed (tiny models only).
 */
import { invalidArgument } from "../errors.js";
import { f16BitsToNumber, numberToF16Bits } from "../shared/half.js";
import { llamaWeightShapes, type LlamaConfig } from "./llama-config.js";
import { requireWeight, toFloat32, type WeightMap } from "./tensor.js";

/** One layer's cache, [batch, kvHeads, length, headDim] row-major. */
export interface KvPair {
  key: Float32Array;
  value: Float32Array;
}

export interface ForwardInputs {
  /** [batch, seq] token ids. */
  inputIds: BigInt64Array;
  /** [batch, pastLength + seq]; 0 marks a slot nobody may attend to (padding). */
  attentionMask: BigInt64Array;
  /** [batch, seq] true positions (RoPE angles); independent of pastLength. */
  positionIds: BigInt64Array;
  batch: number;
  seq: number;
  pastLength: number;
  /** One entry per layer (ignored when pastLength is 0). */
  past?: KvPair[];
}

export interface ForwardOutputs {
  /** [batch, seq, vocab] */
  logits: Float32Array;
  /** One entry per layer, [batch, kvHeads, pastLength + seq, headDim]. */
  present: KvPair[];
  presentLength: number;
}

export interface ReferenceOptions {
  /** Round new K/V to FP16 before use, mirroring the ONNX graph built with dtype "f16". */
  kvPrecision?: "f32" | "f16";
}

export class LlamaReference {
  private readonly w = new Map<string, Float32Array>();
  private readonly invFreq: Float64Array;
  private readonly roundKv: (x: number) => number;

  constructor(
    readonly config: LlamaConfig,
    weights: WeightMap,
    options: ReferenceOptions = {},
  ) {
    for (const [name, shape] of llamaWeightShapes(config)) this.w.set(name, toFloat32(requireWeight(weights, name, shape)));
    const half = config.headDim / 2;
    // Math.fround: the graph stores inv_freq as an FP32 constant.
    this.invFreq = Float64Array.from({ length: half }, (_, j) => Math.fround(1 / config.ropeTheta ** ((2 * j) / config.headDim)));
    this.roundKv = options.kvPrecision === "f16" ? (x) => f16BitsToNumber(numberToF16Bits(x)) : (x) => Math.fround(x);
  }

  forward(inputs: ForwardInputs): ForwardOutputs {
    const { config } = this;
    const { batch, seq, pastLength } = inputs;
    checkInputs(config, inputs);
    const total = pastLength + seq;
    const h = config.hiddenSize;
    const rows = batch * seq;

    const embed = this.w.get("model.embed_tokens.weight")!;
    let hidden: Float64Array = new Float64Array(rows * h);
    for (let r = 0; r < rows; r++) {
      const id = Number(inputs.inputIds[r]);
      for (let c = 0; c < h; c++) hidden[r * h + c] = embed[id * h + c];
    }

    const present: KvPair[] = [];
    for (let layer = 0; layer < config.numLayers; layer++) {
      const p = `model.layers.${layer}`;
      const normed = rmsNorm(hidden, this.w.get(`${p}.input_layernorm.weight`)!, config.rmsNormEps);
      const { out, kv } = this.attention(layer, normed, inputs, total);
      present.push(kv);
      hidden = add(hidden, out);
      const normed2 = rmsNorm(hidden, this.w.get(`${p}.post_attention_layernorm.weight`)!, config.rmsNormEps);
      hidden = add(hidden, this.mlp(layer, normed2));
    }
    const finalNorm = rmsNorm(hidden, this.w.get("model.norm.weight")!, config.rmsNormEps);
    const head = this.w.get(config.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight")!;
    const logits = Float32Array.from(linear(finalNorm, head, rows, h, config.vocabSize));
    return { logits, present, presentLength: total };
  }

  private attention(layer: number, x: Float64Array, inputs: ForwardInputs, total: number): { out: Float64Array; kv: KvPair } {
    const { numHeads, numKvHeads, headDim: d, hiddenSize } = this.config;
    const { batch, seq, pastLength } = inputs;
    const rows = batch * seq;
    const p = `model.layers.${layer}.self_attn`;
    const q = linear(x, this.w.get(`${p}.q_proj.weight`)!, rows, hiddenSize, numHeads * d);
    const k = linear(x, this.w.get(`${p}.k_proj.weight`)!, rows, hiddenSize, numKvHeads * d);
    const v = linear(x, this.w.get(`${p}.v_proj.weight`)!, rows, hiddenSize, numKvHeads * d);
    for (let r = 0; r < rows; r++) {
      const position = Number(inputs.positionIds[r]);
      for (let head = 0; head < numHeads; head++) this.rope(q, (r * numHeads + head) * d, position);
      for (let head = 0; head < numKvHeads; head++) this.rope(k, (r * numKvHeads + head) * d, position);
    }

    // present = concat(past, new) along the sequence axis, layout [b, kv, t, d].
    const key = new Float32Array(batch * numKvHeads * total * d);
    const value = new Float32Array(key.length);
    const past = inputs.past?.[layer];
    for (let b = 0; b < batch; b++) {
      for (let kh = 0; kh < numKvHeads; kh++) {
        for (let t = 0; t < total; t++) {
          const dst = ((b * numKvHeads + kh) * total + t) * d;
          if (t < pastLength) {
            const src = ((b * numKvHeads + kh) * pastLength + t) * d;
            key.set(past!.key.subarray(src, src + d), dst);
            value.set(past!.value.subarray(src, src + d), dst);
          } else {
            const src = ((b * seq + (t - pastLength)) * numKvHeads + kh) * d;
            for (let j = 0; j < d; j++) {
              key[dst + j] = this.roundKv(k[src + j]);
              value[dst + j] = this.roundKv(v[src + j]);
            }
          }
        }
      }
    }

    const groups = numHeads / numKvHeads;
    const context = new Float64Array(rows * numHeads * d);
    const scores = new Float64Array(total);
    const scale = 1 / Math.sqrt(d);
    for (let b = 0; b < batch; b++) {
      for (let i = 0; i < seq; i++) {
        for (let head = 0; head < numHeads; head++) {
          const kh = Math.floor(head / groups);
          const qOff = ((b * seq + i) * numHeads + head) * d;
          let max = -Infinity;
          for (let t = 0; t < total; t++) {
            // Visible: the mask allows the slot and it is not after this token (slot pastLength + i).
            if (inputs.attentionMask[b * total + t] === 0n || t > pastLength + i) {
              scores[t] = -Infinity;
              continue;
            }
            const kOff = ((b * numKvHeads + kh) * total + t) * d;
            let dot = 0;
            for (let j = 0; j < d; j++) dot += q[qOff + j] * key[kOff + j];
            scores[t] = dot * scale;
            if (scores[t] > max) max = scores[t];
          }
          if (max === -Infinity) continue; // sees nothing: zero context (the graph's rule too)
          let sum = 0;
          for (let t = 0; t < total; t++) sum += scores[t] = scores[t] === -Infinity ? 0 : Math.exp(scores[t] - max);
          for (let t = 0; t < total; t++) {
            if (scores[t] === 0) continue;
            const weight = scores[t] / sum;
            const vOff = ((b * numKvHeads + kh) * total + t) * d;
            for (let j = 0; j < d; j++) context[qOff + j] += weight * value[vOff + j];
          }
        }
      }
    }
    const out = linear(context, this.w.get(`${p}.o_proj.weight`)!, rows, numHeads * d, hiddenSize);
    return { out, kv: { key, value } };
  }

  /** In place on x[offset .. offset+headDim): HF rotate_half form (pairs j and j + headDim/2). */
  private rope(x: Float64Array, offset: number, position: number): void {
    const half = this.config.headDim / 2;
    for (let j = 0; j < half; j++) {
      const angle = Math.fround(position * this.invFreq[j]);
      const cos = Math.cos(angle);
      const sin = Math.sin(angle);
      const a = x[offset + j];
      const b = x[offset + j + half];
      x[offset + j] = a * cos - b * sin;
      x[offset + j + half] = b * cos + a * sin;
    }
  }

  private mlp(layer: number, x: Float64Array): Float64Array {
    const { hiddenSize: h, intermediateSize: ff } = this.config;
    const rows = x.length / h;
    const p = `model.layers.${layer}.mlp`;
    const gate = linear(x, this.w.get(`${p}.gate_proj.weight`)!, rows, h, ff);
    const up = linear(x, this.w.get(`${p}.up_proj.weight`)!, rows, h, ff);
    for (let i = 0; i < gate.length; i++) gate[i] = (gate[i] / (1 + Math.exp(-gate[i]))) * up[i];
    return linear(gate, this.w.get(`${p}.down_proj.weight`)!, rows, ff, h);
  }
}

/** y[rows, out] = x[rows, in] · W^T with W in HF layout [out, in]. */
function linear(x: Float64Array, w: Float32Array, rows: number, inDim: number, outDim: number): Float64Array {
  const y = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outDim; o++) {
      let sum = 0;
      for (let i = 0; i < inDim; i++) sum += x[r * inDim + i] * w[o * inDim + i];
      y[r * outDim + o] = sum;
    }
  }
  return y;
}

function rmsNorm(x: Float64Array, weight: Float32Array, eps: number): Float64Array {
  const h = weight.length;
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / h; r++) {
    let meanSquare = 0;
    for (let c = 0; c < h; c++) meanSquare += x[r * h + c] ** 2;
    const inv = 1 / Math.sqrt(meanSquare / h + eps);
    for (let c = 0; c < h; c++) y[r * h + c] = x[r * h + c] * inv * weight[c];
  }
  return y;
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  const y = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) y[i] = a[i] + b[i];
  return y;
}

function checkInputs(config: LlamaConfig, inputs: ForwardInputs): void {
  const { batch, seq, pastLength } = inputs;
  for (const [name, value] of [["batch", batch], ["seq", seq]] as const) {
    if (!Number.isSafeInteger(value) || value < 1) throw invalidArgument(name, "a positive integer", value);
  }
  if (!Number.isSafeInteger(pastLength) || pastLength < 0) throw invalidArgument("pastLength", "a non-negative integer", pastLength);
  const expectLength = (name: string, array: ArrayLike<unknown> | undefined, length: number) => {
    if (array === undefined || array.length !== length) throw invalidArgument(name, `${length} elements`, array);
  };
  expectLength("inputIds", inputs.inputIds, batch * seq);
  expectLength("positionIds", inputs.positionIds, batch * seq);
  expectLength("attentionMask", inputs.attentionMask, batch * (pastLength + seq));
  for (const id of inputs.inputIds) {
    if (id < 0n || id >= BigInt(config.vocabSize)) throw invalidArgument("inputIds", `token ids in [0, ${config.vocabSize})`, id);
  }
  if (pastLength > 0) {
    if (inputs.past?.length !== config.numLayers) throw invalidArgument("past", `${config.numLayers} layers`, inputs.past);
    const size = batch * config.numKvHeads * pastLength * config.headDim;
    inputs.past.forEach((kv, i) => {
      expectLength(`past[${i}].key`, kv.key, size);
      expectLength(`past[${i}].value`, kv.value, size);
    });
  }
}
