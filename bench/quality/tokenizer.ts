/**
 * The harness's view of a tokenizer: encode/decode and the id that starts every document. A model
 * directory with tokenizer.json (the trained reference model) is read through
 * `@huggingface/transformers` (tokenizer only: its ONNX runtime is never used here); without one the
 * harness feeds UTF-8 bytes, which needs a vocabulary of at least 256 and says so in the report.
 */
import { NexusQuantError } from "../../src/errors.js";
import { loadTokenizer } from "../../src/model/tokenizer.js";

export interface QualityTokenizer {
  /** "tokenizer.json" or "utf8-bytes". */
  kind: "tokenizer.json" | "utf8-bytes";
  /** One line for the report. */
  description: string;
  /** Id put in front of every document (`<|endoftext|>` = 0 in the trained model), or null for none. */
  bosId: number | null;
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

/** The token the training script puts at the start of every document (bench/model/README.md). */
export const DOCUMENT_START_TOKEN = "<|endoftext|>";

export function byteTokenizer(vocab: number): QualityTokenizer {
  if (vocab < 256) {
    throw new NexusQuantError("UNSUPPORTED", `Without tokenizer.json the quality harness feeds UTF-8 bytes as tokens, which needs vocab_size >= 256; this model has ${vocab}.`);
  }
  const encoder = new TextEncoder();
  const decoder = new TextDecoder("utf-8", { fatal: false });
  return {
    kind: "utf8-bytes",
    description: "UTF-8 bytes as token ids (no tokenizer.json in the model directory); no document-start token",
    bosId: null,
    encode: (text) => Array.from(encoder.encode(text)),
    decode: (ids) => decoder.decode(Uint8Array.from(ids.filter((id) => id < 256))),
  };
}

/**
 * tokenizer.json (+ tokenizer_config.json when present) from `dir`, or undefined when there is none.
 * Read by the product's loader (src/model/tokenizer.ts); the harness adds its kind and describes the
 * document-start token it puts first.
 */
export async function loadTokenizerJson(dir: string): Promise<QualityTokenizer | undefined> {
  const tokenizer = await loadTokenizer(dir);
  if (tokenizer === undefined) return undefined;
  const bos = tokenizer.bosId;
  return {
    ...tokenizer,
    kind: "tokenizer.json",
    description: `${tokenizer.description}, documents start with ${bos === null ? "no special token" : `${DOCUMENT_START_TOKEN} = ${bos}`}`,
  };
}

/** Token ids of a document as the model saw documents in training: bosId first, then the text. */
export function documentIds(tokenizer: QualityTokenizer, text: string): number[] {
  const ids = tokenizer.encode(text);
  return tokenizer.bosId === null ? ids : [tokenizer.bosId, ...ids];
}
