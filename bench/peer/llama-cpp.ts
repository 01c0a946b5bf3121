/**
 * The peer engine: llama.cpp through node-llama-cpp (a lab devDependency, pinned), with its KV cache
 * types f16 / q8_0 / q4_0 and q8_0 keys with q4_0 values, fed the same token ids as our native path.
 * What the quality harness needs of a variant, in llama.cpp's terms:
 *   - teacher-forced next-token distributions over a prefix + scored tokens (PeerSession.logProbs),
 *   - a greedy continuation after a prompt (PeerSession.greedy),
 *   - the KV bytes it holds and its ratio against FP16 (peerKvBytes / peerKvRatio), counted from the
 *     cache types' block sizes (ggml-types.ts), as llama.cpp sizes its cache (checked against its own
 *     log line in test/peer/llama-cpp.test.ts).
 *
 * llama.cpp quantizes a token's K/V when it enters the cache and attends to the quantized cache for
 * every later query, prompt tokens included, so a teacher-forced batch sees the same cache as one token
 * per step. It needs flash attention for a quantized V cache; every session here uses it, f16 too.
 * The prebuilt CPU binary is loaded with `build: "never"`, `gpu: false`: nothing compiles or downloads.
 */
import { NexusQuantError } from "../../src/errors.js";
import { argmax } from "../../src/integrations/sampling.js";
import { ggmlRowBytes, type GgmlTypeName } from "./ggml-types.js";

type NodeLlamaCpp = typeof import("node-llama-cpp");
type Llama = Awaited<ReturnType<NodeLlamaCpp["getLlama"]>>;
type LlamaModel = Awaited<ReturnType<Llama["loadModel"]>>;
type LlamaContext = Awaited<ReturnType<LlamaModel["createContext"]>>;
type LlamaContextSequence = ReturnType<LlamaContext["getSequence"]>;

/** The KV cache types compared: both halves the same, or q8_0 keys with q4_0 values. */
export const PEER_KV_TYPES = {
  f16: { key: "F16", value: "F16" },
  q8_0: { key: "Q8_0", value: "Q8_0" },
  q4_0: { key: "Q4_0", value: "Q4_0" },
  "q8_0/q4_0": { key: "Q8_0", value: "Q4_0" },
} as const satisfies Record<string, { key: GgmlTypeName; value: GgmlTypeName }>;

export type PeerKvName = keyof typeof PEER_KV_TYPES;
export const PEER_KV_NAMES = Object.keys(PEER_KV_TYPES) as PeerKvName[];

export interface KvShape {
  layers: number;
  kvHeads: number;
  headDim: number;
}

/** `nexusquant bench memory` case names of the llama.cpp cases (lab only), one per KV type. */
export const PEER_MEMORY_CASES: Readonly<Record<string, PeerKvName>> = Object.fromEntries(PEER_KV_NAMES.map((kv) => [`llama.cpp-${kv.replace("/", "-")}`, kv]));

export function isPeerKvName(name: string): name is PeerKvName {
  return Object.hasOwn(PEER_KV_TYPES, name);
}

/** Bytes of K and V for `tokens` cache cells: per layer, one K row and one V row of kvHeads × headDim values per cell. */
export function peerKvBytes(shape: KvShape, kv: PeerKvName, tokens: number): number {
  const width = shape.kvHeads * shape.headDim;
  const { key, value } = PEER_KV_TYPES[kv];
  return tokens * shape.layers * (ggmlRowBytes(key, width) + ggmlRowBytes(value, width));
}

/** FP16 bytes over this cache type's, per token: its compression ratio (no eviction, no page overhead). */
export function peerKvRatio(shape: KvShape, kv: PeerKvName): number {
  return peerKvBytes(shape, "f16", 1) / peerKvBytes(shape, kv, 1);
}

export type LlamaCppAvailability = { available: true; module: NodeLlamaCpp } | { available: false; reason: string };

let availability: Promise<LlamaCppAvailability> | undefined;

/** node-llama-cpp and its prebuilt CPU binary, or why they cannot be used here (tests skip with it). */
export function llamaCppAvailability(): Promise<LlamaCppAvailability> {
  availability ??= (async (): Promise<LlamaCppAvailability> => {
    let module: NodeLlamaCpp;
    try {
      module = await import("node-llama-cpp");
    } catch (error) {
      return { available: false, reason: `node-llama-cpp is not installed (${(error as Error).message}); it is a devDependency: npm ci in a clone` };
    }
    try {
      const llama = await module.getLlama({ build: "never", gpu: false, progressLogs: false, logLevel: module.LlamaLogLevel.error });
      await llama.dispose();
      return { available: true, module };
    } catch (error) {
      return { available: false, reason: `node-llama-cpp's prebuilt CPU binary does not load here (${(error as Error).message.split("\n")[0]})` };
    }
  })();
  return availability;
}

export interface PeerLoadOptions {
  /** CPU threads llama.cpp computes with (the Llama instance's maximum and each context's). Default: its own (math cores). */
  threads?: number;
  /** Receives llama.cpp's log lines at `logLevel` and above (default: none kept). */
  logger?: (level: string, message: string) => void;
  logLevel?: "error" | "warn" | "info";
  /** Map the GGUF file (node-llama-cpp's default) or read the weights into memory. Default: its default. */
  useMmap?: boolean;
}

/** One GGUF model loaded in llama.cpp; sessions (contexts) at any KV type are opened on it. */
export class LlamaCppPeer {
  readonly shape: KvShape;
  readonly vocabSize: number;
  readonly threads: number;
  readonly #llama: Llama;
  readonly #model: LlamaModel;

  private constructor(llama: Llama, model: LlamaModel, shape: KvShape, vocabSize: number, threads: number) {
    this.#llama = llama;
    this.#model = model;
    this.shape = shape;
    this.vocabSize = vocabSize;
    this.threads = threads;
  }

  static async load(ggufPath: string, options: PeerLoadOptions = {}): Promise<LlamaCppPeer> {
    const found = await llamaCppAvailability();
    if (!found.available) throw new NexusQuantError("BACKEND_UNAVAILABLE", found.reason);
    const m = found.module;
    const level = { error: m.LlamaLogLevel.error, warn: m.LlamaLogLevel.warn, info: m.LlamaLogLevel.info }[options.logLevel ?? "error"];
    const llama = await m.getLlama({
      build: "never",
      gpu: false,
      progressLogs: false,
      logLevel: level,
      ...(options.threads !== undefined ? { maxThreads: options.threads } : {}),
      logger: (lvl, message) => options.logger?.(String(lvl), message),
    });
    try {
      const model = await llama.loadModel({ modelPath: ggufPath, gpuLayers: 0, ...(options.useMmap !== undefined ? { useMmap: options.useMmap } : {}) });
      const meta = model.fileInfo.metadata as { llama?: { block_count?: number; attention?: { head_count_kv?: number; key_length?: number } } };
      const shape = { layers: meta.llama?.block_count ?? 0, kvHeads: meta.llama?.attention?.head_count_kv ?? 0, headDim: meta.llama?.attention?.key_length ?? 0 };
      if (shape.layers === 0 || shape.kvHeads === 0 || shape.headDim === 0) {
        throw new NexusQuantError("CONFIG_ERROR", `${ggufPath}: expected llama.block_count, llama.attention.head_count_kv and llama.attention.key_length (files from bench/peer/gguf-convert.ts have them)`);
      }
      return new LlamaCppPeer(llama, model, shape, modelVocab(model), options.threads ?? llama.cpuMathCores);
    } catch (error) {
      await llama.dispose();
      throw error;
    }
  }

  /** A context with the given KV cache type and room for `contextSize` tokens (llama.cpp rounds it up to a multiple of 256). */
  async open(kv: PeerKvName, contextSize: number, options: { batchSize?: number } = {}): Promise<PeerSession> {
    if (!isPeerKvName(kv)) throw new NexusQuantError("INVALID_ARGUMENT", `Expected one of ${PEER_KV_NAMES.join(", ")} for kv but received ${JSON.stringify(kv)}`, { arg: "kv" });
    const { key, value } = PEER_KV_TYPES[kv];
    const context = await this.#model.createContext({
      contextSize,
      sequences: 1,
      flashAttention: true,
      threads: this.threads,
      experimentalKvCacheKeyType: key,
      experimentalKvCacheValueType: value,
      ...(options.batchSize !== undefined ? { batchSize: options.batchSize } : {}),
    });
    return new PeerSession(kv, context, this.shape, this.vocabSize);
  }

  async dispose(): Promise<void> {
    await this.#model.dispose();
    await this.#llama.dispose();
  }
}

/** Rows of the embedding = entries of the GGUF vocabulary (the converter writes one per row). */
function modelVocab(model: LlamaModel): number {
  return model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 0;
}

/** One conversation on a llama.cpp context of one KV type. */
export class PeerSession {
  readonly kv: PeerKvName;
  readonly #context: LlamaContext;
  readonly #sequence: LlamaContextSequence;
  readonly #shape: KvShape;
  readonly #vocab: number;

  constructor(kv: PeerKvName, context: LlamaContext, shape: KvShape, vocab: number) {
    this.kv = kv;
    this.#context = context;
    this.#sequence = context.getSequence();
    this.#shape = shape;
    this.#vocab = vocab;
  }

  /** Cache cells the context allocated (its context size, rounded up by llama.cpp). */
  get contextSize(): number {
    return this.#context.contextSize;
  }

  /** Tokens the sequence holds now. */
  get tokens(): number {
    return this.#sequence.nextTokenIndex;
  }

  /** Bytes of the K/V of the tokens held. */
  heldKvBytes(): number {
    return peerKvBytes(this.#shape, this.kv, this.tokens);
  }

  /** Bytes llama.cpp allocated for the whole context's K/V (it allocates every cell up front). */
  allocatedKvBytes(): number {
    return peerKvBytes(this.#shape, this.kv, this.contextSize);
  }

  ratio(): number {
    return peerKvRatio(this.#shape, this.kv);
  }

  /**
   * Starts over with `tokens` and returns the log-probabilities of the next token after each position
   * p in [from, tokens.length): entry i predicts tokens[from + i + 1] (the last predicts what follows).
   * node-llama-cpp hands out probabilities (a softmax of llama.cpp's float logits), so these are the
   * logits up to a constant per position, which KL, perplexity and argmax do not see; a probability
   * below float32's smallest (about 1e-45, a logit gap over 103) reads as that smallest.
   */
  async logProbs(tokens: readonly number[], from: number): Promise<Float32Array[]> {
    this.#checkTokens(tokens);
    if (!Number.isSafeInteger(from) || from < 0 || from >= tokens.length) throw new NexusQuantError("INVALID_ARGUMENT", `Expected from in [0, ${tokens.length}) but received ${from}`, { arg: "from" });
    await this.#sequence.clearHistory();
    const input = tokens.map((t, p) => (p >= from ? ([t, { generateNext: { probabilities: true } }] as const) : t));
    const out = await this.#sequence.controlledEvaluate(input as never);
    const result: Float32Array[] = [];
    for (let p = from; p < tokens.length; p++) {
      const probabilities = out[p]?.next.probabilities;
      if (probabilities === undefined) throw new NexusQuantError("MODEL_OUTPUT", `llama.cpp returned no probabilities at position ${p}`);
      result.push(this.#toLogProbs(probabilities));
    }
    return result;
  }

  /**
   * Starts over with `prompt` and decodes greedily (argmax of the distribution, first id on ties, as
   * our sampler does) until `maxNewTokens` or a token of `eos`.
   */
  async greedy(prompt: readonly number[], maxNewTokens: number, eos: readonly number[] = []): Promise<number[]> {
    this.#checkTokens(prompt);
    await this.#sequence.clearHistory();
    const generated: number[] = [];
    let input: readonly number[] = prompt;
    while (generated.length < maxNewTokens) {
      const items = input.map((t, i) => (i === input.length - 1 ? ([t, { generateNext: { probabilities: true } }] as const) : t));
      const out = await this.#sequence.controlledEvaluate(items as never);
      const probabilities = out.at(-1)?.next.probabilities;
      if (probabilities === undefined) throw new NexusQuantError("MODEL_OUTPUT", "llama.cpp returned no probabilities for the next token");
      const token = argmax(this.#toLogProbs(probabilities));
      generated.push(token);
      if (eos.includes(token)) break;
      if (generated.length < maxNewTokens) this.#checkTokens([token], this.tokens);
      input = [token];
    }
    return generated;
  }

  /**
   * Appends `tokens` to the conversation (after clearing it with `restart`) and returns the
   * log-probabilities of the token after the last one: the step loop of the quality harness's
   * llama.cpp path (bench/quality/peer-path.ts).
   */
  async append(tokens: readonly number[], restart = false): Promise<Float32Array> {
    if (restart) await this.#sequence.clearHistory();
    this.#checkTokens(tokens, this.tokens);
    const items = tokens.map((t, i) => (i === tokens.length - 1 ? ([t, { generateNext: { probabilities: true } }] as const) : t));
    const probabilities = (await this.#sequence.controlledEvaluate(items as never)).at(-1)?.next.probabilities;
    if (probabilities === undefined) throw new NexusQuantError("MODEL_OUTPUT", "llama.cpp returned no probabilities for the next token");
    return this.#toLogProbs(probabilities);
  }

  /**
   * Appends `tokens` to the conversation and returns the next token llama.cpp's own greedy sampler
   * picks: the decode loop a node-llama-cpp user runs (no probabilities copied out), for timings.
   */
  async next(tokens: readonly number[]): Promise<number> {
    this.#checkTokens(tokens, this.tokens);
    const items = tokens.map((t, i) => (i === tokens.length - 1 ? ([t, { generateNext: { token: true } }] as const) : t));
    const token = (await this.#sequence.controlledEvaluate(items as never)).at(-1)?.next.token;
    if (token === undefined || token === null) throw new NexusQuantError("MODEL_OUTPUT", "llama.cpp sampled no next token");
    return token;
  }

  async dispose(): Promise<void> {
    await this.#context.dispose();
  }

  /** Non-empty token ids of the vocabulary that fit in the context after the `held` tokens already there. */
  #checkTokens(tokens: readonly number[], held = 0): void {
    if (tokens.length === 0) throw new NexusQuantError("INVALID_ARGUMENT", "Expected at least one token but received none", { arg: "tokens" });
    if (held + tokens.length > this.contextSize) throw new NexusQuantError("INVALID_ARGUMENT", `Expected at most ${this.contextSize - held} more tokens (context size ${this.contextSize}, ${held} held) but received ${tokens.length}`, { arg: "tokens" });
    const bad = tokens.find((t) => !Number.isSafeInteger(t) || t < 0 || t >= this.#vocab);
    if (bad !== undefined) throw new NexusQuantError("INVALID_ARGUMENT", `Expected token ids in [0, ${this.#vocab}) but received ${bad}`, { arg: "tokens" });
  }

  #toLogProbs(probabilities: ReadonlyMap<number, number>): Float32Array {
    const out = new Float32Array(this.#vocab).fill(FLOOR);
    for (const [token, p] of probabilities) out[token] = p > 0 ? Math.log(p) : FLOOR;
    return out;
  }
}

/** log of float32's smallest positive value: where a probability that underflowed is put. */
const FLOOR = Math.log(1.401298464324817e-45);
