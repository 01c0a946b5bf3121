/**
 * Lab converter: a Llama-family checkpoint (what src/model loads: config.json + safetensors, and
 * tokenizer.json when there is one) to a GGUF file that llama.cpp (node-llama-cpp) runs, so that the
 * peer benchmarks feed both engines the same weights and the same token ids.
 *
 * What it writes, as llama.cpp's own convert_hf_to_gguf.py does for a Llama checkpoint:
 * - architecture "llama" (Llama 2/3, SmolLM, TinyLlama, Mistral without a sliding window);
 * - matrices (and the embedding) as F16, norms as F32 (`weights: "F32"` keeps everything F32);
 * - q_proj and k_proj rows permuted per head from Hugging Face's rotate-half RoPE layout (the two
 *   halves of a head) to ggml's interleaved pairs (row h*d + 2i + j <- h*d + j*d/2 + i);
 * - Llama 3.1 RoPE scaling as a `rope_freqs.weight` tensor of per-frequency divisors;
 * - the tokenizer: a GPT-2-style byte-level BPE tokenizer.json (the one src/model/byte-level-bpe.ts
 *   reads) as `gpt2` tokens + merges with pre-tokenizer "gpt-2"; a checkpoint without one (models
 *   built in memory) gets a byte vocabulary (id b < 256 = byte b, GPT-2's byte characters), no merges.
 * Biased attention (Qwen2, attention_bias) is refused, not converted approximately.
 *
 * Run: npx tsx bench/peer/gguf-convert.ts <model-dir> <out.gguf> [--f32]
 */
import { readFile } from "node:fs/promises";
import { endianness } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { NexusQuantError } from "../../src/errors.js";
import { byteLevelBpe, byteToChar } from "../../src/model/byte-level-bpe.js";
import { loadModelDir, ropeInverseFrequencies, toFloat32, type LlamaConfig, type LlamaModel } from "../../src/model/index.js";
import { f32ArrayToF16 } from "../../src/shared/half.js";
import { writeGguf, type GgufEntry, type GgufTensor } from "./gguf-writer.js";

/** llama.cpp's token types (llama_token_type / gguf TokenType). */
const TOKEN_TYPE = { normal: 1, control: 3, userDefined: 4, unused: 5 } as const;
/** general.file_type: all F32, or F16 matrices (LLAMA_FTYPE_ALL_F32 / MOSTLY_F16). */
const FILE_TYPE = { F32: 0, F16: 1 } as const;

export interface GgufVocabulary {
  tokens: string[];
  tokenTypes: number[];
  merges: string[];
  /** Where it came from, for the file's description. */
  source: string;
}

export interface ConvertOptions {
  /** Storage of matrices and the embedding. Default "F16" (norms are F32 either way). */
  weights?: "F16" | "F32";
  /** The vocabulary; default: byteVocabulary(config.vocabSize). */
  vocabulary?: GgufVocabulary;
  /** Model name written to general.name. */
  name?: string;
  /** @internal Tests only: skip the q/k permutation, to show that a converter without it fails the logits check. */
  permuteQK?: boolean;
}

/**
 * Hugging Face rows of one projection ([heads * d, cols]) in ggml's RoPE order: within each head, row
 * j*(d/2) + i (half j, frequency i) moves to 2i + j, so rotation pairs sit next to each other.
 */
export function permuteRopeRows(values: Float32Array, heads: number, cols: number): Float32Array {
  const rows = values.length / cols;
  const d = rows / heads;
  if (!Number.isInteger(d) || d % 2 !== 0) throw new NexusQuantError("INVALID_ARGUMENT", `Expected rows (${rows}) to split into ${heads} heads of an even size`);
  const out = new Float32Array(values.length);
  const half = d / 2;
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < half; i++) {
        const from = (h * d + j * half + i) * cols;
        out.set(values.subarray(from, from + cols), (h * d + 2 * i + j) * cols);
      }
    }
  }
  return out;
}

/** GGUF tensor name of a Hugging Face Llama parameter (llama.cpp's LLM_TENSOR names). */
function ggufName(hf: string): string {
  const fixed: Record<string, string> = { "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight" };
  if (fixed[hf] !== undefined) return fixed[hf]!;
  const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(hf);
  const parts: Record<string, string> = {
    input_layernorm: "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    post_attention_layernorm: "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
  };
  if (m === null || parts[m[2]!] === undefined) throw new NexusQuantError("UNSUPPORTED", `The GGUF converter does not know the tensor "${hf}"`, { tensor: hf });
  return `blk.${m[1]}.${parts[m[2]!]}.weight`;
}

/** A vocabulary of bytes (id b < 256 is byte b) for checkpoints without a tokenizer; ids above 256 are unused pads. */
export function byteVocabulary(vocabSize: number): GgufVocabulary {
  if (vocabSize < 256) {
    // llama.cpp's BPE vocabulary needs a token for "\n" (and every byte for detokenizing).
    throw new NexusQuantError("UNSUPPORTED", `A checkpoint without tokenizer.json needs a vocabulary of at least 256 (its bytes) to be converted; this one has ${vocabSize}.`);
  }
  const chars = byteToChar();
  const tokens = Array.from({ length: vocabSize }, (_, id) => (id < 256 ? chars[id]! : `[PAD${id}]`));
  return { tokens, tokenTypes: tokens.map((_, id) => (id < 256 ? TOKEN_TYPE.normal : TOKEN_TYPE.unused)), merges: [], source: "bytes (no tokenizer.json)" };
}

/** A byte-level BPE tokenizer.json as GGUF vocabulary arrays; undefined for any other kind (refused by the caller). */
export function bpeVocabulary(tokenizerJson: unknown, vocabSize: number): GgufVocabulary | undefined {
  if (byteLevelBpe(tokenizerJson) === undefined) return undefined;
  const t = tokenizerJson as { model: { vocab: Record<string, number>; merges: (string | [string, string])[] }; added_tokens?: { id: number; content: string; special?: boolean }[] };
  const tokens: (string | undefined)[] = new Array(vocabSize).fill(undefined);
  const tokenTypes: number[] = new Array(vocabSize).fill(TOKEN_TYPE.normal);
  const place = (id: number, content: string, type: number) => {
    if (!Number.isSafeInteger(id) || id < 0 || id >= vocabSize) throw new NexusQuantError("CONFIG_ERROR", `tokenizer.json has token id ${id} ("${content}") outside the model's vocabulary of ${vocabSize}`);
    tokens[id] = content;
    tokenTypes[id] = type;
  };
  for (const [content, id] of Object.entries(t.model.vocab)) place(id, content, TOKEN_TYPE.normal);
  for (const a of t.added_tokens ?? []) place(a.id, a.content, a.special ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined);
  // Embedding rows the tokenizer never produces (vocabularies padded to a round size) become unused pads, as in llama.cpp's converter.
  for (let id = 0; id < vocabSize; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`;
      tokenTypes[id] = TOKEN_TYPE.unused;
    }
  }
  const merges = t.model.merges.map((m) => (typeof m === "string" ? m : m.join(" ")));
  return { tokens: tokens as string[], tokenTypes, merges, source: "tokenizer.json (byte-level BPE)" };
}

function refuseUnconvertible(config: LlamaConfig): void {
  if (config.qkvBias || config.oBias) {
    throw new NexusQuantError("UNSUPPORTED", `The lab GGUF converter writes Llama attention without biases; this ${config.modelType} checkpoint has ${config.qkvBias ? "q/k/v" : "o_proj"} biases.`);
  }
  if (config.modelType === "qwen2") throw new NexusQuantError("UNSUPPORTED", "The lab GGUF converter writes the llama architecture; qwen2 is another one in llama.cpp.");
}

function metadata(config: LlamaConfig, vocabulary: GgufVocabulary, options: ConvertOptions): GgufEntry[] {
  const c = config;
  const u32 = (key: string, value: number): GgufEntry => ({ key, type: "u32", value });
  const f32 = (key: string, value: number): GgufEntry => ({ key, type: "f32", value });
  const entries: GgufEntry[] = [
    { key: "general.architecture", type: "string", value: "llama" },
    { key: "general.name", type: "string", value: options.name ?? "nexusquant-lab-conversion" },
    u32("general.file_type", FILE_TYPE[options.weights ?? "F16"]),
    u32("llama.context_length", c.maxPositionEmbeddings),
    u32("llama.embedding_length", c.hiddenSize),
    u32("llama.block_count", c.numLayers),
    u32("llama.feed_forward_length", c.intermediateSize),
    u32("llama.attention.head_count", c.numHeads),
    u32("llama.attention.head_count_kv", c.numKvHeads),
    // Written always: head_dim need not be hidden / heads.
    u32("llama.attention.key_length", c.headDim),
    u32("llama.attention.value_length", c.headDim),
    u32("llama.rope.dimension_count", c.headDim),
    f32("llama.rope.freq_base", c.ropeTheta),
    f32("llama.attention.layer_norm_rms_epsilon", c.rmsNormEps),
    u32("llama.vocab_size", c.vocabSize),
    { key: "tokenizer.ggml.model", type: "string", value: "gpt2" },
    { key: "tokenizer.ggml.pre", type: "string", value: "gpt-2" },
    { key: "tokenizer.ggml.tokens", type: "array", itemType: "string", value: vocabulary.tokens },
    { key: "tokenizer.ggml.token_type", type: "array", itemType: "i32", value: vocabulary.tokenTypes },
    { key: "tokenizer.ggml.merges", type: "array", itemType: "string", value: vocabulary.merges },
    // The callers feed token ids themselves: nothing is added in front of or after them.
    { key: "tokenizer.ggml.add_bos_token", type: "bool", value: false },
    { key: "tokenizer.ggml.add_eos_token", type: "bool", value: false },
  ];
  if (c.bosTokenId !== undefined) entries.push(u32("tokenizer.ggml.bos_token_id", c.bosTokenId));
  // GGUF holds one eos id; a list's others are not written (llama.cpp also stops at its control tokens).
  if (c.eosTokenIds !== undefined) entries.push(u32("tokenizer.ggml.eos_token_id", c.eosTokenIds[0]!));
  return entries;
}

function tensors(model: LlamaModel, options: ConvertOptions): GgufTensor[] {
  const { config } = model;
  const matrices = options.weights ?? "F16";
  const out: GgufTensor[] = [];
  for (const [hf, tensor] of model.weights) {
    let values = toFloat32(tensor);
    const cols = tensor.shape[1] ?? 1;
    if (options.permuteQK !== false) {
      if (hf.endsWith("self_attn.q_proj.weight")) values = permuteRopeRows(values, config.numHeads, cols);
      if (hf.endsWith("self_attn.k_proj.weight")) values = permuteRopeRows(values, config.numKvHeads, cols);
    }
    const name = ggufName(hf);
    // 1-D tensors (norms) stay F32, as llama.cpp's converter keeps them.
    out.push(tensor.shape.length === 1 || matrices === "F32" ? { name, shape: tensor.shape, type: "F32", data: values } : { name, shape: tensor.shape, type: "F16", data: f32ArrayToF16(values) });
  }
  if (config.ropeScaling !== null) {
    // ggml divides each RoPE frequency by its factor: the unscaled frequency over the scaled one.
    const scaled = ropeInverseFrequencies(config);
    const plain = ropeInverseFrequencies({ ...config, ropeScaling: null });
    out.push({ name: "rope_freqs.weight", shape: [config.headDim / 2], type: "F32", data: Float32Array.from(plain, (f, i) => f / scaled[i]!) });
  }
  return out;
}

/** Writes `model` as a GGUF file. Returns the file's size in bytes. */
export async function writeLlamaGguf(model: LlamaModel, path: string, options: ConvertOptions = {}): Promise<number> {
  if (endianness() !== "LE") throw new NexusQuantError("UNSUPPORTED", "The GGUF writer writes little-endian files from typed arrays: a little-endian host is needed.");
  refuseUnconvertible(model.config);
  const vocabulary = options.vocabulary ?? byteVocabulary(model.config.vocabSize);
  return writeGguf(path, { metadata: metadata(model.config, vocabulary, options), tensors: tensors(model, options) });
}

/** The vocabulary of a checkpoint directory: its byte-level BPE tokenizer.json, bytes when it has none; another kind is refused. */
export async function directoryVocabulary(dir: string, vocabSize: number): Promise<GgufVocabulary> {
  let text: string;
  try {
    text = await readFile(join(dir, "tokenizer.json"), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return byteVocabulary(vocabSize);
    throw error;
  }
  const vocabulary = bpeVocabulary(JSON.parse(text), vocabSize);
  if (vocabulary === undefined) throw new NexusQuantError("UNSUPPORTED", `${join(dir, "tokenizer.json")} is not a GPT-2-style byte-level BPE tokenizer, the only kind the lab converter writes.`);
  return vocabulary;
}

/** Converts a checkpoint directory. */
export async function convertCheckpoint(dir: string, path: string, options: Omit<ConvertOptions, "vocabulary"> = {}): Promise<{ bytes: number; vocabulary: string }> {
  const model = await loadModelDir(dir);
  const vocabulary = await directoryVocabulary(dir, model.config.vocabSize);
  return { bytes: await writeLlamaGguf(model, path, { name: dir, ...options, vocabulary }), vocabulary: vocabulary.source };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [dir, out] = process.argv.slice(2).filter((a) => !a.startsWith("--"));
  if (dir === undefined || out === undefined) {
    process.stderr.write("usage: npx tsx bench/peer/gguf-convert.ts <model-dir> <out.gguf> [--f32]\n");
    process.exit(2);
  }
  const result = await convertCheckpoint(dir, out, { weights: process.argv.includes("--f32") ? "F32" : "F16" });
  process.stdout.write(`${out}: ${result.bytes} bytes, vocabulary from ${result.vocabulary}\n`);
}
