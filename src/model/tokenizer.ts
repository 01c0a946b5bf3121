/**
 * A model directory's tokenizer.json, for callers that feed real text to a loaded checkpoint (the
 * demo, the quality harness). A GPT-2-style byte-level BPE (the reference model's) is read by our own
 * byte-level-bpe.ts; any other kind through `@huggingface/transformers` (an optional peer; only its
 * tokenizer is used, never its runtime). Returns undefined when the directory has no tokenizer.json.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { NexusQuantError } from "../errors.js";
import { byteLevelBpe } from "./byte-level-bpe.js";

export interface TextTokenizer {
  /** One line saying where it came from. */
  description: string;
  /** `<|endoftext|>` (or the config's bos_token) when the vocabulary has it: put in front of a document. */
  bosId: number | null;
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

export async function loadTokenizer(dir: string): Promise<TextTokenizer | undefined> {
  let jsonText: string;
  try {
    jsonText = await readFile(join(dir, "tokenizer.json"), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  const configText = await readFile(join(dir, "tokenizer_config.json"), "utf8").catch(() => "{}");
  let tokenizerJson: unknown;
  let tokenizerConfig: { bos_token?: unknown };
  try {
    tokenizerJson = JSON.parse(jsonText);
    tokenizerConfig = JSON.parse(configText) as { bos_token?: unknown };
  } catch (error) {
    throw new NexusQuantError("CONFIG_ERROR", `${join(dir, "tokenizer.json")} or tokenizer_config.json is not valid JSON (${(error as Error).message})`);
  }
  const bosName = typeof tokenizerConfig.bos_token === "string" ? tokenizerConfig.bos_token : "<|endoftext|>";
  const own = byteLevelBpe(tokenizerJson);
  if (own) {
    return {
      description: `${join(dir, "tokenizer.json")} (${own.vocabSize} tokens, byte-level BPE)`,
      bosId: own.tokenId(bosName) ?? null,
      encode: (text) => own.encode(text),
      decode: (ids) => own.decode(ids),
    };
  }
  let transformers: typeof import("@huggingface/transformers");
  try {
    transformers = await import("@huggingface/transformers");
  } catch (error) {
    throw new NexusQuantError(
      "BACKEND_UNAVAILABLE",
      `${join(dir, "tokenizer.json")} needs @huggingface/transformers to be read (${(error as Error).message}); install it (npm install @huggingface/transformers).`,
    );
  }
  const tokenizer = new transformers.PreTrainedTokenizer(tokenizerJson, tokenizerConfig);
  const vocab = tokenizer.get_vocab();
  const bos = vocab.get(bosName);
  return {
    description: `${join(dir, "tokenizer.json")} (${vocab.size} tokens)`,
    bosId: bos ?? null,
    encode: (text) => tokenizer.encode(text, { add_special_tokens: false }),
    decode: (ids) => tokenizer.decode([...ids], { skip_special_tokens: true }),
  };
}
