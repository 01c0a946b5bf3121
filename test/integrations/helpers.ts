/**
 * Plumbing for the integration tests: a tiny built model in onnxruntime-node, an unwrapped greedy
 * loop that feeds `present` back as past (the baseline every wrapped run is compared with), and a
 * teacher-forced comparison that keeps positions aligned.
 */
import * as ort from "onnxruntime-node";
import { GraphBuilder, DataType, onnx } from "../../src/model/onnx-graph.js";
import { buildLlamaOnnx, type LlamaModel, type OnnxDtype } from "../../src/model/index.js";
import { tinyModel } from "./fixtures.js";

export { tinyModel, promptTokens } from "./fixtures.js";
import { FidelityMeter, type FidelitySummary } from "../../src/integrations/fidelity.js";
import type { NexusQuantSession } from "../../src/integrations/index.js";
import { argmax } from "../../src/integrations/sampling.js";
import { halfBitsToFloats } from "../../src/runtime/index.js";

export { ort };

export async function tinySession(model: LlamaModel = tinyModel(), dtype: OnnxDtype = "f32"): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(buildLlamaOnnx({ ...model, dtype }));
}

export interface PlainRun {
  tokens: number[];
  /** Last-position logits of every step: [prefill, decode 1, …]; entry i predicts tokens[i]. */
  logits: Float32Array[];
}

/** The unwrapped baseline: greedy decoding with present fed back as past, batch 1. */
export async function plainGreedy(session: ort.InferenceSession, layers: number, kvHeads: number, headDim: number, prompt: number[], steps: number, dtype: OnnxDtype = "f32"): Promise<PlainRun> {
  const type = dtype === "f16" ? "float16" : "float32";
  const empty = () => (dtype === "f16" ? new Uint16Array(0) : new Float32Array(0));
  let past: Record<string, ort.Tensor> = {};
  for (let l = 0; l < layers; l++) {
    past[`past_key_values.${l}.key`] = new ort.Tensor(type, empty(), [1, kvHeads, 0, headDim]);
    past[`past_key_values.${l}.value`] = new ort.Tensor(type, empty(), [1, kvHeads, 0, headDim]);
  }
  let ids = prompt;
  let position = 0;
  const tokens: number[] = [];
  const logits: Float32Array[] = [];
  for (let step = 0; step <= steps; step++) {
    const total = position + ids.length;
    const out = await session.run({
      input_ids: new ort.Tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
      attention_mask: new ort.Tensor("int64", new BigInt64Array(total).fill(1n), [1, total]),
      position_ids: new ort.Tensor("int64", BigInt64Array.from(ids.map((_, j) => BigInt(position + j))), [1, ids.length]),
      ...past,
    });
    const vocab = out.logits.dims[2];
    const all = dtype === "f16" ? halfBitsToFloats(out.logits.data as Uint16Array) : (out.logits.data as Float32Array);
    const last = all.slice((ids.length - 1) * vocab, ids.length * vocab);
    logits.push(last);
    position = total;
    past = {};
    for (let l = 0; l < layers; l++) {
      past[`past_key_values.${l}.key`] = out[`present.${l}.key`];
      past[`past_key_values.${l}.value`] = out[`present.${l}.value`];
    }
    if (step === steps) break;
    const next = argmax(last);
    tokens.push(next);
    ids = [next];
  }
  return { tokens, logits };
}

/**
 * Feeds the wrapped session the baseline's prompt and then the baseline's own tokens (teacher
 * forcing), comparing next-token distributions at the same positions.
 */
export async function teacherForced(wrapped: NexusQuantSession, prompt: number[], baseline: PlainRun): Promise<FidelitySummary> {
  const meter = new FidelityMeter();
  let result = await wrapped.step(prompt);
  meter.add(baseline.logits[0]!, result.last());
  for (let i = 0; i < baseline.tokens.length && i + 1 < baseline.logits.length; i++) {
    result = await wrapped.step([baseline.tokens[i]!]);
    meter.add(baseline.logits[i + 1]!, result.last());
  }
  return meter.summary();
}

/** An ONNX model that is not a KV-cache decoder: logits = Cast(input_ids), no past inputs. */
export async function nonConventionSession(): Promise<ort.InferenceSession> {
  const g = new GraphBuilder();
  const ids = g.input("input_ids", DataType.INT64, ["batch", "sequence"]);
  g.input("attention_mask", DataType.INT64, ["batch", "total"]);
  g.input("cache_k0", DataType.FLOAT, ["batch", 2, "past", 32]);
  const logits = g.op("Cast", [ids], { to: DataType.FLOAT });
  g.output("logits", logits, DataType.FLOAT, ["batch", "sequence"]);
  const model = onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: "", version: 17 }], graph: g.graph("not-a-decoder") });
  return ort.InferenceSession.create(onnx.ModelProto.encode(model).finish());
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
  }
  return max;
}
