/**
 * The harness's view of a tokenizer: encode/decode and the id that starts every document. A model
 * directory with tokenizer.json (the trained reference model) is read through
 * `@huggingface/transformers` (tokenizer only: its ONNX runtime is never used here); without one the
 * harness feeds UTF-8 bytes, which needs a vocabulary of at least 256 and says so in the report.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { NexusQuantError } from "../../src/errors.js";

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

/** tokenizer.json (+ tokenizer_config.json when present) from `dir`, or undefined when there is none. */
export async function loadTokenizerJson(dir: string): Promise<QualityTokenizer | undefined> {
  let jsonText: string;
  try {
    jsonText = await readFile(join(dir, "tokenizer.json"), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  const configText = await readFile(join(dir, "tokenizer_config.json"), "utf8").catch(() => "{}");
  let tokenizerJson: unknown;
  let tokenizerConfig: unknown;
  try {
    tokenizerJson = JSON.parse(jsonText);
    tokenizerConfig = JSON.parse(configText);
  } catch (error) {
    throw new NexusQuantError("CONFIG_ERROR", `${join(dir, "tokenizer.json")} or tokenizer_config.json is not valid JSON (${(error as Error).message})`);
  }
  let transformers: typeof import("@huggingface/transformers");
  try {
    transformers = await import("@huggingface/transformers");
  } catch (error) {
    throw new NexusQuantError(
      "BACKEND_UNAVAILABLE",
      `${join(dir, "tokenizer.json")} needs @huggingface/transformers to be read (${(error as Error).message}); install it, or remove tokenizer.json to fall back to UTF-8 bytes.`,
    );
  }
  // The constructor takes the parsed files directly: no hub or cache-path resolution for a local dir.
  const tokenizer = new transformers.PreTrainedTokenizer(tokenizerJson, tokenizerConfig);
  const bos = tokenizer.get_vocab().get(DOCUMENT_START_TOKEN);
  return {
    kind: "tokenizer.json",
    description: `${join(dir, "tokenizer.json")} (${tokenizer.get_vocab().size} tokens), documents start with ${bos === undefined ? "no special token" : `${DOCUMENT_START_TOKEN} = ${bos}`}`,
    bosId: bos ?? null,
    // The training convention: the tokenizer adds no special tokens itself; the harness puts bosId first.
    encode: (text) => tokenizer.encode(text, { add_special_tokens: false }),
    decode: (ids) => tokenizer.decode([...ids], { skip_special_tokens: true }),
  };
}

/** Token ids of a document as the model saw documents in training: bosId first, then the text. */
export function documentIds(tokenizer: QualityTokenizer, text: string): number[] {
  const ids = tokenizer.encode(text);
  return tokenizer.bosId === null ? ids : [tokenizer.bosId, ...ids];
}
