/**
 * Shared test plumbing: run the built ONNX graph through onnxruntime-node with the same inputs the
 * TS reference takes, and return outputs in the reference's shape (FP16 outputs decoded to FP32).
 */
import type * as Ort from "onnxruntime-node";
import { buildLlamaOnnx, f16ArrayToF32, f32ArrayToF16, type LlamaModel, type OnnxDtype } from "../../src/model/index.js";
import type { ForwardInputs, ForwardOutputs, KvPair } from "../../src/model/index.js";

export type OrtModule = typeof Ort;

export interface GraphRunner {
  run(inputs: ForwardInputs): Promise<ForwardOutputs>;
  session: Ort.InferenceSession;
}

export async function createRunner(ort: OrtModule, model: LlamaModel, dtype: OnnxDtype = "f32"): Promise<GraphRunner> {
  const session = await ort.InferenceSession.create(buildLlamaOnnx({ ...model, dtype }));
  const { config } = model;
  const floatTensor = (data: Float32Array, dims: number[]) =>
    dtype === "f16" ? new ort.Tensor("float16", f32ArrayToF16(data), dims) : new ort.Tensor("float32", data, dims);
  const readFloat = (tensor: Ort.Tensor): Float32Array =>
    dtype === "f16" ? f16ArrayToF32(tensor.data as Uint16Array) : (tensor.data as Float32Array);

  return {
    session,
    async run(inputs) {
      const { batch, seq, pastLength } = inputs;
      const total = pastLength + seq;
      const feeds: Record<string, Ort.Tensor> = {
        input_ids: new ort.Tensor("int64", inputs.inputIds, [batch, seq]),
        attention_mask: new ort.Tensor("int64", inputs.attentionMask, [batch, total]),
        position_ids: new ort.Tensor("int64", inputs.positionIds, [batch, seq]),
      };
      const pastDims = [batch, config.numKvHeads, pastLength, config.headDim];
      for (let i = 0; i < config.numLayers; i++) {
        const past = pastLength > 0 ? inputs.past![i] : { key: new Float32Array(0), value: new Float32Array(0) };
        feeds[`past_key_values.${i}.key`] = floatTensor(past.key, pastDims);
        feeds[`past_key_values.${i}.value`] = floatTensor(past.value, pastDims);
      }
      const out = await session.run(feeds);
      expectDims(out.logits, [batch, seq, config.vocabSize], "logits");
      const present: KvPair[] = [];
      for (let i = 0; i < config.numLayers; i++) {
        const presentDims = [batch, config.numKvHeads, total, config.headDim];
        expectDims(out[`present.${i}.key`], presentDims, `present.${i}.key`);
        expectDims(out[`present.${i}.value`], presentDims, `present.${i}.value`);
        present.push({ key: readFloat(out[`present.${i}.key`]), value: readFloat(out[`present.${i}.value`]) });
      }
      return { logits: readFloat(out.logits), present, presentLength: total };
    },
  };
}

function expectDims(tensor: Ort.Tensor | undefined, dims: number[], name: string): void {
  if (tensor === undefined) throw new Error(`output ${name} missing`);
  if (tensor.dims.join(",") !== dims.join(",")) throw new Error(`output ${name} has dims [${tensor.dims}], expected [${dims}]`);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d; // NaN anywhere counts as a failure
  }
  return max;
}

/** The largest difference over every present tensor. */
export function presentDiff(a: KvPair[], b: KvPair[]): number {
  if (a.length !== b.length) throw new Error(`layer count mismatch ${a.length} vs ${b.length}`);
  let max = 0;
  a.forEach((kv, i) => {
    max = Math.max(max, maxAbsDiff(kv.key, b[i].key), maxAbsDiff(kv.value, b[i].value));
  });
  return max;
}

/** The largest difference over logits and over every present tensor. */
export function outputsDiff(a: ForwardOutputs, b: ForwardOutputs): { logits: number; present: number } {
  return { logits: maxAbsDiff(a.logits, b.logits), present: presentDiff(a.present, b.present) };
}

export const i64 = (values: number[]) => BigInt64Array.from(values.map(BigInt));

/** Keeps only the listed slots of a [batch, kvHeads, length, headDim] cache (what eviction does). */
export function selectSlots(kv: KvPair, batch: number, kvHeads: number, length: number, headDim: number, keep: number[]): KvPair {
  const pick = (src: Float32Array) => {
    const out = new Float32Array(batch * kvHeads * keep.length * headDim);
    for (let bh = 0; bh < batch * kvHeads; bh++) {
      keep.forEach((slot, j) => {
        out.set(src.subarray((bh * length + slot) * headDim, (bh * length + slot + 1) * headDim), (bh * keep.length + j) * headDim);
      });
    }
    return out;
  };
  return { key: pick(kv.key), value: pick(kv.value) };
}

/** Logits row (batch b, position s) of a [batch, seq, vocab] tensor. */
export function logitsRow(logits: Float32Array, seq: number, vocab: number, b: number, s: number): Float32Array {
  return logits.subarray((b * seq + s) * vocab, (b * seq + s + 1) * vocab);
}
