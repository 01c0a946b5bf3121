import { NexusQuantError } from "../errors.js";
import { PAST_NAME, pastKeyName, pastValueName, presentKeyName, presentValueName } from "../model/kv-names.js";
import type { KvDtype } from "./kv-state.js";

/**
 * The export convention the integrations rely on (Hugging Face Optimum / transformers.js, and the
 * builder in src/model): inputs input_ids, attention_mask, position_ids, past_key_values.{i}.key/value;
 * outputs logits, present.{i}.key/value; K/V layout [batch, kvHeads, sequence, headDim].
 */
export interface ModelConvention {
  layers: number;
  kvHeads: number;
  headDim: number;
  /** Element type of past/present (what the wrapper must feed back). */
  kvDtype: KvDtype;
  logitsDtype: KvDtype;
  /** Inputs beyond the convention (e.g. use_cache_branch, num_logits_to_keep). */
  extraInputs: string[];
  /** The vocabulary size, when the logits' last axis is a fixed number in the metadata. */
  vocabSize?: number;
}

/** Just what the check needs from an InferenceSession (onnxruntime-node or the one inside transformers.js). */
export interface SessionMetadataLike {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata?: readonly { name: string; isTensor?: boolean; type?: string; shape?: readonly (number | string)[] }[];
  readonly outputMetadata?: readonly { name: string; isTensor?: boolean; type?: string; shape?: readonly (number | string)[] }[];
}

/**
 * Reads layers, kvHeads, headDim and dtypes off the session's names and metadata. A model that does
 * not follow the convention is an UNSUPPORTED error that lists the inputs and outputs it has, so the
 * user sees at once what their export calls things.
 */
export function inspectConvention(session: SessionMetadataLike, hints: { kvHeads?: number; headDim?: number } = {}): ModelConvention {
  const inputs = [...session.inputNames];
  const outputs = [...session.outputNames];
  const fail = (why: string): never => {
    throw new NexusQuantError(
      "UNSUPPORTED",
      `This model does not follow the KV-cache export convention nexusquant wraps: ${why}. ` +
        `It has inputs [${inputs.join(", ")}] and outputs [${outputs.join(", ")}]. Expected inputs input_ids, ` +
        `attention_mask, position_ids, past_key_values.{i}.key/.value and outputs logits, present.{i}.key/.value ` +
        `(layout [batch, kvHeads, sequence, headDim]); see docs/integrations.md.`,
      { inputs, outputs, reason: why },
    );
  };
  for (const name of ["input_ids", "attention_mask", "position_ids"]) {
    if (!inputs.includes(name)) fail(`input "${name}" is missing`);
  }
  if (!outputs.includes("logits")) fail(`output "logits" is missing`);
  let layers = 0;
  for (const name of inputs) {
    const m = PAST_NAME.exec(name);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  if (layers === 0) fail("it has no past_key_values.{i}.key/.value inputs");
  const missing: string[] = [];
  for (let i = 0; i < layers; i++) {
    for (const [past, present] of [[pastKeyName(i), presentKeyName(i)], [pastValueName(i), presentValueName(i)]] as const) {
      if (!inputs.includes(past)) missing.push(past);
      if (!outputs.includes(present)) missing.push(present);
    }
  }
  if (missing.length > 0) fail(`missing ${missing.join(", ")}`);

  const meta = session.inputMetadata?.find((m) => m.name === pastKeyName(0));
  const shape = meta?.shape;
  const dimOf = (index: number, hint: number | undefined, what: string): number => {
    const fromShape = shape?.[index];
    if (typeof fromShape === "number" && fromShape > 0) {
      if (hint !== undefined && hint !== fromShape) fail(`${what} hint ${hint} contradicts the model's ${fromShape}`);
      return fromShape;
    }
    if (hint !== undefined) return hint;
    return fail(`the ${what} axis of past_key_values.0.key is symbolic (${String(fromShape)}); it must be a fixed number`);
  };
  if (shape !== undefined && shape.length !== 4) fail(`past_key_values.0.key has ${shape.length} axes, expected 4`);
  const kvHeads = dimOf(1, hints.kvHeads, "kvHeads");
  const headDim = dimOf(3, hints.headDim, "headDim");
  const kvDtype = toKvDtype(meta?.type ?? "float32", "past_key_values.0.key", fail);
  const logitsMeta = session.outputMetadata?.find((m) => m.name === "logits");
  const logitsDtype = toKvDtype(logitsMeta?.type ?? "float32", "logits", fail);
  const known = new Set(["input_ids", "attention_mask", "position_ids"]);
  const extraInputs = inputs.filter((n) => !known.has(n) && !PAST_NAME.test(n));
  const vocab = logitsMeta?.shape?.[2];
  return { layers, kvHeads, headDim, kvDtype, logitsDtype, extraInputs, ...(typeof vocab === "number" && vocab > 0 ? { vocabSize: vocab } : {}) };
}

function toKvDtype(type: string, name: string, fail: (why: string) => never): KvDtype {
  if (type === "float32" || type === "float16") return type;
  return fail(`${name} has element type ${type}; float32 and float16 are supported`);
}
