/**
 * The harness's third path: llama.cpp (node-llama-cpp, the peer Node users run today) on the same
 * checkpoint converted to GGUF (bench/peer/gguf-convert.ts), with its own KV cache types. A variant's
 * `preset` names the cache type (f16, q8_0, q4_0, q8_0/q4_0; "none" is f16, this path's own FP16
 * reference). llama.cpp quantizes every token's K/V as it enters the cache and evicts nothing, so a
 * prompt and a later turn see the same cache. Its ratio is the cache types' true bytes (block sizes,
 * bench/peer/llama-cpp.ts) against FP16.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LlamaConfig } from "../../src/model/index.js";
import { convertCheckpoint } from "../peer/gguf-convert.js";
import { LlamaCppPeer, isPeerKvName, llamaCppAvailability, type PeerKvName, type PeerSession } from "../peer/llama-cpp.js";
import type { CacheSetup, KvRun, QualityPath, RunStats, Started } from "./path.js";
import { BASELINE } from "./variants.js";

/** The cache type a variant runs: its preset, "none" being f16. */
export function peerKvOf(setup: Pick<CacheSetup, "preset">): PeerKvName {
  const kv = setup.preset === BASELINE ? "f16" : setup.preset;
  if (!isPeerKvName(kv)) throw new Error(`not a llama.cpp KV cache type: ${setup.preset}`);
  return kv;
}

export class LlamaCppQualityPath implements QualityPath {
  readonly name = "llama.cpp" as const;
  readonly config: LlamaConfig;
  readonly observedNote = "llama.cpp path: no eviction, so no scorer";
  readonly #peer: LlamaCppPeer;
  readonly #dir: string;
  readonly #contextSize: number;
  readonly #sessions = new Map<PeerKvName, PeerSession>();

  private constructor(config: LlamaConfig, peer: LlamaCppPeer, dir: string, contextSize: number) {
    this.config = config;
    this.#peer = peer;
    this.#dir = dir;
    this.#contextSize = contextSize;
  }

  /** Why the path cannot run here (node-llama-cpp missing or its binary not loading), or null. */
  static async unavailable(): Promise<string | null> {
    const a = await llamaCppAvailability();
    return a.available ? null : a.reason;
  }

  /** Converts the checkpoint in `modelDir` to GGUF (a temporary file) and loads it with `threads` threads. */
  static async create(modelDir: string, config: LlamaConfig, options: { threads: number; contextSize: number }): Promise<LlamaCppQualityPath> {
    const dir = await mkdtemp(join(tmpdir(), "nq-peer-"));
    try {
      const path = join(dir, "model.gguf");
      await convertCheckpoint(modelDir, path);
      const peer = await LlamaCppPeer.load(path, { threads: options.threads });
      return new LlamaCppQualityPath(config, peer, dir, options.contextSize);
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  async start(prompt: readonly number[], setup: CacheSetup): Promise<Started> {
    const kv = peerKvOf(setup);
    let session = this.#sessions.get(kv);
    if (session === undefined) {
      session = await this.#peer.open(kv, this.#contextSize);
      this.#sessions.set(kv, session);
    }
    const t0 = performance.now();
    const logits = await session.append(prompt, true);
    return { run: new PeerRun(session), logits, prefillSeconds: (performance.now() - t0) / 1000 };
  }

  async dispose(): Promise<void> {
    for (const s of this.#sessions.values()) await s.dispose();
    this.#sessions.clear();
    await this.#peer.dispose();
    await rm(this.#dir, { recursive: true, force: true });
  }
}

class PeerRun implements KvRun {
  readonly #session: PeerSession;

  constructor(session: PeerSession) {
    this.#session = session;
  }

  step(token: number): Promise<Float32Array> {
    return this.#session.append([token]);
  }

  feed(tokens: readonly number[]): Promise<Float32Array> {
    return this.#session.append(tokens);
  }

  stats(): RunStats {
    const held = this.#session.heldKvBytes();
    const ratio = this.#session.ratio();
    return { backend: "llama.cpp", tokens: this.#session.tokens, heldTokens: this.#session.tokens, baselineBytes: held * ratio, bytes: held, ratio, compressions: 0, observedQueries: false };
  }

  /** The session stays open for the next conversation of its cache type (start() clears it). */
  dispose(): void {}
}
