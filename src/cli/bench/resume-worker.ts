/**
 * One worker of `nexusquant bench resume` (a child process): loads the model once, keeps one handle
 * per preset, and serves turns of any conversation: fetch its state from Redis, restore it, generate,
 * save it back. The coordinator (resume.ts) talks to it over the IPC channel.
 */
import { withNexusQuant, type NativeModelSession } from "../../integrations/index.js";
import { decodeConversationState } from "../../integrations/conversation-state.js";
import { RedisStateStore } from "../../store/index.js";
import { BENCH_READ_GRACE_MS, loadResumeModel, type ResumeModelChoice } from "./resume-model.js";

export interface WorkerInit {
  type: "init";
  model: ResumeModelChoice;
  redisUrl: string;
  prefix: string;
  presets: string[];
  prefillChunk: number;
  compressEvery: number;
}

export interface TurnJob {
  type: "turn";
  id: number;
  preset: string;
  /** Store key of the conversation. */
  key: string;
  /** The first turn starts the conversation (no state to fetch). */
  first: boolean;
  ids: number[];
  maxNewTokens: number;
}

/** A fresh conversation over the whole history, to time its first token (the re-prefill baseline). */
export interface ReprefillJob {
  type: "reprefill";
  id: number;
  preset: string;
  ids: number[];
}

export interface TurnResult {
  type: "done";
  id: number;
  worker: number;
  tokens: number[];
  /** Milliseconds: Redis GET, restoreState, generate until its first token, the whole generate, saveState, Redis PUT. */
  getMs: number;
  restoreMs: number;
  firstTokenMs: number;
  generateMs: number;
  saveMs: number;
  putMs: number;
  stateBytes: number;
  cacheBytes: number;
  fp16KvBytes: number;
  heldKvBytes: number;
  position: number;
}

export type WorkerMessage = { type: "ready"; worker: number } | TurnResult | { type: "error"; id: number; message: string; code?: string };

async function main(): Promise<void> {
  const worker = Number(process.env.NEXUSQUANT_WORKER ?? 0);
  let handles: Map<string, NativeModelSession> | undefined;
  let store: RedisStateStore | undefined;
  const send = (m: WorkerMessage) => process.send!(m);

  // One job at a time: a handle holds one conversation, so jobs queue in arrival order.
  let queue: Promise<void> = Promise.resolve();
  process.on("message", (raw: WorkerInit | TurnJob | ReprefillJob | { type: "exit" }) => {
    queue = queue.then(async () => {
      if (raw.type === "exit") {
        for (const h of handles?.values() ?? []) await h[Symbol.asyncDispose]();
        await store?.close();
        process.exit(0);
      }
      if (raw.type === "init") {
        const { model } = await loadResumeModel(raw.model);
        const { default: ort } = (await import("onnxruntime-node")) as { default: unknown };
        handles = new Map();
        for (const preset of raw.presets) handles.set(preset, await withNexusQuant(model, { ort, preset, prefillChunk: raw.prefillChunk, compressEvery: raw.compressEvery }));
        store = new RedisStateStore({ url: raw.redisUrl, prefix: raw.prefix, timeoutMs: 30_000, readGraceMs: BENCH_READ_GRACE_MS });
        // Connect now (loading the client and the connection are one-time costs, not a turn's).
        await store.get("warm-up");
        send({ type: "ready", worker });
        return;
      }
      const id = raw.id;
      try {
        const lm = handles!.get(raw.preset)!;
        if (raw.type === "reprefill") {
          lm.reset();
          const t0 = performance.now();
          let first = 0;
          await lm.generate(raw.ids, { maxNewTokens: 1, onToken: () => (first = performance.now() - t0) });
          send({ type: "done", id, worker, tokens: [], getMs: 0, restoreMs: 0, firstTokenMs: first, generateMs: first, saveMs: 0, putMs: 0, stateBytes: 0, cacheBytes: 0, fp16KvBytes: 0, heldKvBytes: 0, position: lm.position() });
          return;
        }
        let getMs = 0;
        let restoreMs = 0;
        if (!raw.first) {
          const t0 = performance.now();
          const state = await store!.get(raw.key);
          getMs = performance.now() - t0;
          if (state === undefined) throw new Error(`no state under ${raw.key}`);
          const t1 = performance.now();
          await lm.restoreState(state);
          restoreMs = performance.now() - t1;
        }
        const t2 = performance.now();
        let firstTokenMs = 0;
        const out = await lm.generate(raw.ids, {
          maxNewTokens: raw.maxNewTokens,
          continue: !raw.first,
          onToken: (_t, { index }) => {
            if (index === 0) firstTokenMs = performance.now() - t2;
          },
        });
        const generateMs = performance.now() - t2;
        const t3 = performance.now();
        const state = await lm.saveState();
        const saveMs = performance.now() - t3;
        const t4 = performance.now();
        await store!.put(raw.key, state, { ttlSeconds: 3600 });
        const putMs = performance.now() - t4;
        const stats = lm.stats();
        send({
          type: "done",
          id,
          worker,
          tokens: out.tokens[0]!,
          getMs,
          restoreMs,
          firstTokenMs,
          generateMs,
          saveMs,
          putMs,
          stateBytes: state.byteLength,
          cacheBytes: decodeConversationState(state).cache.byteLength,
          fp16KvBytes: stats.baselineKvBytes,
          heldKvBytes: stats.compressedKvBytes,
          position: lm.position(),
        });
      } catch (e) {
        send({ type: "error", id, message: e instanceof Error ? e.message : String(e), ...(typeof (e as { code?: unknown }).code === "string" ? { code: (e as { code: string }).code } : {}) });
      }
    });
  });
}

void main();
