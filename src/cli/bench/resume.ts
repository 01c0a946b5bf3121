/**
 * `nexusquant bench resume`: conversations that move. N worker processes share one Redis; every
 * conversation's turn runs on another worker than its previous turn (it fetches the state, restores
 * it, generates, saves it back), and every token is compared with one process running each
 * conversation straight through. Reports, per context and preset: state bytes against the FP16 K/V
 * they stand for, the wire format's overhead on the cache's own bytes, save/put/get/restore times,
 * the time to first token of a resumed turn against re-prefilling the history, and Redis's memory.
 */
import { fork, type ChildProcess } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { cpus, loadavg, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NexusQuantError } from "../../errors.js";
import { withNexusQuant } from "../../integrations/index.js";
import { Mulberry32 } from "../../shared/prng.js";
import { RedisStateStore } from "../../store/index.js";
import { startLocalRedis, type LocalRedis } from "../../store/local-redis.js";
import { parseContext, parseFlags, parseOutputPath, parsePositiveInt } from "../args.js";
import { toJson } from "../table.js";
import type { CliCommand, CliIo } from "../types.js";
import { BENCH_READ_GRACE_MS, loadResumeModel } from "./resume-model.js";
import type { ReprefillJob, TurnJob, TurnResult, WorkerInit, WorkerMessage } from "./resume-worker.js";

const USAGE = `nexusquant bench resume [--workers 4] [--conversations 4] [--turns 4] [--contexts 4k,16k]
                       [--presets quant,balanced,max] [--model sotu|built|DIR] [--turn-tokens 32]
                       [--new-tokens 16] [--chunk 256] [--compress-every 64] [--redis URL] [--quick]
                       [--out PREFIX] [--json]
  Worker processes (--workers) share one Redis (--redis URL, default a redis-server this command
  starts on a free loopback port). Each conversation starts with --contexts tokens, then takes
  --turn-tokens more per turn; every turn generates --new-tokens (greedy) and runs on the next
  worker: fetch the state, restoreState, generate, saveState, store it. One process runs every
  conversation straight through; the tokens must be identical.
  Model: sotu (default: models/sotu-llama, trained with 2,048 positions; RoPE is computed from the
  position ids, so longer contexts run, past what it was trained on), built (random weights), or a
  checkpoint directory. Prompts are seeded pseudo-random token ids.
  --quick: 2 workers, 2 conversations, 3 turns, context 512, presets balanced.
  --out PREFIX writes PREFIX.json and PREFIX.md. Progress goes to stderr.
`;

export interface ResumeRow {
  context: number;
  preset: string;
  conversations: number;
  turns: number;
  /** Turns that ran on another worker than the conversation's previous turn. */
  hops: number;
  identicalTurns: number;
  totalTurns: number;
  /** At the last turn, mean over conversations. */
  stateBytes: number;
  cacheBytes: number;
  fp16KvBytes: number;
  /** fp16KvBytes / stateBytes. */
  stateVsFp16: number;
  /** (stateBytes - cacheBytes) / cacheBytes. */
  wireOverhead: number;
  /** Medians over the resumed turns, in ms. */
  saveMs: number;
  putMs: number;
  getMs: number;
  restoreMs: number;
  /** Fetch + restore + the turn's own first token. */
  resumedFirstTokenMs: number;
  /** A fresh conversation reading the whole history of conversation 0's last turn, until its first token. */
  reprefillFirstTokenMs: number;
  reprefillTokens: number;
  firstTokenSpeedup: number;
  /** Redis INFO used_memory with every conversation's last state stored (replaced ones gone), minus before. */
  redisMemoryBytes: number;
  /** The same for used_memory_dataset (used_memory less Redis's own overhead: connection buffers, key tables). */
  redisDatasetBytes: number;
  /** The bytes of those states. */
  redisStateBytes: number;
}

export interface ResumeReport {
  date: string;
  command: string;
  machine: { cpu: string; cores: number; memoryBytes: number; loadAverageStart: number[]; loadAverageEnd: number[]; node: string };
  model: string;
  workers: number;
  newTokens: number;
  turnTokens: number;
  chunk: number;
  compressEvery: number;
  redis: string;
  rows: ResumeRow[];
  targets: string[];
}

interface Settings {
  workers: number;
  conversations: number;
  turns: number;
  contexts: number[];
  presets: string[];
  model: string;
  turnTokens: number;
  newTokens: number;
  chunk: number;
  compressEvery: number;
  redisUrl: string | undefined;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function tokens(count: number, seed: number, vocab: number): number[] {
  const rng = new Mulberry32(seed >>> 0);
  return Array.from({ length: count }, () => rng.nextInt(vocab));
}

/** A worker process and its queue of answers. */
class Worker {
  readonly #child: ChildProcess;
  readonly #waiting = new Map<number, { resolve: (r: TurnResult) => void; reject: (e: Error) => void }>();
  #ready: Promise<void>;
  #stderr = "";

  constructor(readonly index: number) {
    const here = fileURLToPath(import.meta.url);
    const fromSources = here.endsWith(".ts");
    // From the TypeScript sources (tsx, vitest) the worker runs under tsx too.
    const script = join(dirname(here), fromSources ? "resume-worker.ts" : "resume-worker.js");
    this.#child = fork(script, [], { execArgv: fromSources ? ["--import", "tsx"] : [], env: { ...process.env, NEXUSQUANT_WORKER: String(index) }, stdio: ["ignore", "ignore", "pipe", "ipc"] });
    this.#child.stderr!.on("data", (d: Buffer) => (this.#stderr = (this.#stderr + d.toString()).slice(-2000)));
    let ready!: () => void;
    let failed!: (e: Error) => void;
    this.#ready = new Promise((res, rej) => ((ready = res), (failed = rej)));
    this.#child.on("message", (m: WorkerMessage) => {
      if (m.type === "ready") return ready();
      const waiter = this.#waiting.get(m.id);
      this.#waiting.delete(m.id);
      if (m.type === "error") waiter?.reject(new NexusQuantError("NATIVE_ERROR", `bench resume worker ${index}: ${m.message}`, { code: m.code }));
      else waiter?.resolve(m);
    });
    this.#child.on("exit", (code) => {
      const e = new NexusQuantError("NATIVE_ERROR", `bench resume worker ${index} exited with ${code}: ${this.#stderr.trim().split("\n").slice(-3).join(" | ")}`);
      failed(e);
      for (const w of this.#waiting.values()) w.reject(e);
      this.#waiting.clear();
    });
  }

  init(init: WorkerInit): Promise<void> {
    this.#child.send(init);
    return this.#ready;
  }

  run(job: TurnJob | ReprefillJob): Promise<TurnResult> {
    return new Promise((resolve, reject) => {
      this.#waiting.set(job.id, { resolve, reject });
      this.#child.send(job);
    });
  }

  stop(): void {
    if (this.#child.connected) this.#child.send({ type: "exit" });
    setTimeout(() => this.#child.kill(), 10_000).unref();
  }
}

async function runResume(s: Settings, args: string[], io: CliIo): Promise<ResumeReport> {
  const loadStart = loadavg();
  const { model, label } = await loadResumeModel(s.model);
  const vocab = model.config.vocabSize;
  const { default: ort } = (await import("onnxruntime-node")) as { default: unknown };
  let local: LocalRedis | undefined;
  const redisUrl = s.redisUrl ?? (local = await startLocalRedis()).url;
  const prefix = `nexusquant-bench-resume:${process.pid}:`;
  const store = new RedisStateStore({ url: redisUrl, prefix, timeoutMs: 30_000 });
  const workers = Array.from({ length: s.workers }, (_, i) => new Worker(i));
  const rows: ResumeRow[] = [];
  let jobId = 0;
  try {
    io.stderr(`bench resume: starting ${s.workers} workers (model ${label}), Redis ${redisUrl}\n`);
    await Promise.all(workers.map((w) => w.init({ type: "init", model: s.model, redisUrl, prefix, presets: s.presets, prefillChunk: s.chunk, compressEvery: s.compressEvery })));
    for (const context of s.contexts) {
      for (const preset of s.presets) {
        const prompts = Array.from({ length: s.conversations }, (_, k) => Array.from({ length: s.turns }, (_, t) => tokens(t === 0 ? context : s.turnTokens, 1 + k * 1000 + t, vocab)));
        // The single-process run: each conversation straight through on one handle.
        io.stderr(`bench resume: ${context} tokens, ${preset}: single-process run\n`);
        const reference = await withNexusQuant(model, { ort, preset, prefillChunk: s.chunk, compressEvery: s.compressEvery });
        const expected: number[][][] = [];
        for (const turns of prompts) {
          const out: number[][] = [];
          for (const [t, ids] of turns.entries()) out.push((await reference.generate(ids, { maxNewTokens: s.newTokens, continue: t > 0 })).tokens[0]!);
          expected.push(out);
        }
        await reference[Symbol.asyncDispose]();

        io.stderr(`bench resume: ${context} tokens, ${preset}: ${s.conversations} conversations hopping between ${s.workers} workers\n`);
        const memoryBefore = await store.info("memory");
        const results: TurnResult[][] = prompts.map(() => []);
        for (let t = 0; t < s.turns; t++) {
          await Promise.all(
            prompts.map(async (turns, k) => {
              const worker = workers[(k + t) % s.workers]!;
              results[k]![t] = await worker.run({ type: "turn", id: jobId++, preset, key: `${context}:${preset}:${k}`, first: t === 0, ids: turns[t]!, maxNewTokens: s.newTokens });
            }),
          );
        }
        // The replaced states' chunks go after the read grace: then Redis holds one state per conversation.
        await new Promise((r) => setTimeout(r, 2 * BENCH_READ_GRACE_MS));
        const memoryAfter = await store.info("memory");
        // Re-prefill: conversation 0's whole history up to its last turn's prompt, read by a fresh conversation.
        const history = prompts[0]!.flatMap((ids, t) => (t + 1 < s.turns ? [...ids, ...expected[0]![t]!] : ids));
        const reprefill = await workers[0]!.run({ type: "reprefill", id: jobId++, preset, ids: history });
        for (let k = 0; k < s.conversations; k++) await store.delete(`${context}:${preset}:${k}`);

        const resumed = results.flatMap((r) => r.slice(1));
        const last = results.map((r) => r[s.turns - 1]!);
        let identical = 0;
        let hops = 0;
        results.forEach((r, k) =>
          r.forEach((x, t) => {
            if (x.tokens.length === expected[k]![t]!.length && x.tokens.every((v, i) => v === expected[k]![t]![i])) identical++;
            if (t > 0 && x.worker !== r[t - 1]!.worker) hops++;
          }),
        );
        const mean = (f: (x: TurnResult) => number) => last.reduce((a, x) => a + f(x), 0) / last.length;
        const stateBytes = mean((x) => x.stateBytes);
        const cacheBytes = mean((x) => x.cacheBytes);
        const fp16KvBytes = mean((x) => x.fp16KvBytes);
        const resumedFirstTokenMs = median(resumed.map((x) => x.getMs + x.restoreMs + x.firstTokenMs));
        rows.push({
          context,
          preset,
          conversations: s.conversations,
          turns: s.turns,
          hops,
          identicalTurns: identical,
          totalTurns: s.conversations * s.turns,
          stateBytes,
          cacheBytes,
          fp16KvBytes,
          stateVsFp16: fp16KvBytes / stateBytes,
          wireOverhead: (stateBytes - cacheBytes) / cacheBytes,
          saveMs: median(resumed.map((x) => x.saveMs)),
          putMs: median(resumed.map((x) => x.putMs)),
          getMs: median(resumed.map((x) => x.getMs)),
          restoreMs: median(resumed.map((x) => x.restoreMs)),
          resumedFirstTokenMs,
          reprefillFirstTokenMs: reprefill.firstTokenMs,
          reprefillTokens: history.length,
          firstTokenSpeedup: reprefill.firstTokenMs / resumedFirstTokenMs,
          redisMemoryBytes: Number(memoryAfter.used_memory) - Number(memoryBefore.used_memory),
          redisDatasetBytes: Number(memoryAfter.used_memory_dataset) - Number(memoryBefore.used_memory_dataset),
          redisStateBytes: last.reduce((a, x) => a + x.stateBytes, 0),
        });
      }
    }
  } finally {
    for (const w of workers) w.stop();
    await store.close();
    await local?.stop();
  }
  const m = cpus()[0];
  return {
    date: new Date().toISOString(),
    command: `nexusquant bench resume ${args.join(" ")}`.trim(),
    machine: { cpu: m?.model ?? "unknown", cores: cpus().length, memoryBytes: totalmem(), loadAverageStart: loadStart, loadAverageEnd: loadavg(), node: process.version },
    model: label,
    workers: s.workers,
    newTokens: s.newTokens,
    turnTokens: s.turnTokens,
    chunk: s.chunk,
    compressEvery: s.compressEvery,
    redis: s.redisUrl === undefined ? "a private redis-server on a loopback port" : s.redisUrl,
    rows,
    targets: resumeTargets(rows, s.contexts),
  };
}

export function resumeTargets(rows: ResumeRow[], contexts: number[]): string[] {
  const lines: string[] = [];
  const identical = rows.reduce((a, r) => a + r.identicalTurns, 0);
  const total = rows.reduce((a, r) => a + r.totalTurns, 0);
  lines.push(`hopping conversations: ${identical}/${total} turns with tokens identical to the single-process run; target 100%: ${identical === total ? "MET" : "MISSED"}`);
  for (const r of rows.filter((r) => r.context >= 16384)) {
    lines.push(`resumed turn at ${r.context} tokens, ${r.preset}: first token ${r.firstTokenSpeedup.toFixed(1)}x sooner than re-prefilling; target >= 50x: ${r.firstTokenSpeedup >= 50 ? "MET" : "MISSED"}`);
  }
  if (!contexts.some((c) => c >= 16384)) lines.push("16K-token contexts were not run: the 50x time-to-first-token target is NOT measured.");
  for (const r of rows.filter((r) => r.preset === "balanced")) {
    lines.push(`balanced state at ${r.context} tokens: ${r.stateVsFp16.toFixed(2)}x smaller than its FP16 K/V; target >= 15x: ${r.stateVsFp16 >= 15 ? "MET" : "MISSED"}`);
  }
  const worst = Math.max(...rows.map((r) => r.wireOverhead));
  lines.push(`wire format overhead on the cache's own bytes: at most ${(100 * worst).toFixed(3)}%; target <= 1%: ${worst <= 0.01 ? "MET" : "MISSED"}`);
  return lines;
}

const kb = (b: number) => (b / 1024).toFixed(1);

export function resumeMarkdown(r: ResumeReport): string {
  const head = ["context", "preset", "identical turns", "hops", "state KiB", "cache KiB", "FP16 K/V KiB", "FP16/state", "wire overhead", "save ms", "put ms", "get ms", "restore ms", "resumed TTFT ms", "re-prefill TTFT ms (tokens)", "speedup", "Redis used_memory / dataset KiB (states KiB)"];
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  const m = r.machine;
  return [
    `# bench resume (${r.date})`,
    "",
    `Command: \`${r.command}\``,
    `Machine: ${m.cpu}, ${m.cores} cores, ${(m.memoryBytes / 2 ** 30).toFixed(0)} GiB, Node ${m.node}; load average ${m.loadAverageStart.map((x) => x.toFixed(1)).join("/")} at start, ${m.loadAverageEnd.map((x) => x.toFixed(1)).join("/")} at end.`,
    `Model: ${r.model}. ${r.workers} workers, Redis: ${r.redis}. Each turn: ${r.turnTokens} new prompt tokens, ${r.newTokens} generated (greedy); prefill chunk ${r.chunk}, compress every ${r.compressEvery}.`,
    "",
    line(head),
    line(head.map((_, i) => (i < 2 ? "---" : "---:"))),
    ...r.rows.map((x) =>
      line([
        String(x.context),
        x.preset,
        `${x.identicalTurns}/${x.totalTurns}`,
        String(x.hops),
        kb(x.stateBytes),
        kb(x.cacheBytes),
        kb(x.fp16KvBytes),
        `${x.stateVsFp16.toFixed(2)}x`,
        `${(100 * x.wireOverhead).toFixed(3)}%`,
        x.saveMs.toFixed(1),
        x.putMs.toFixed(1),
        x.getMs.toFixed(1),
        x.restoreMs.toFixed(1),
        x.resumedFirstTokenMs.toFixed(1),
        `${x.reprefillFirstTokenMs.toFixed(0)} (${x.reprefillTokens})`,
        `${x.firstTokenSpeedup.toFixed(1)}x`,
        `${kb(x.redisMemoryBytes)} / ${kb(x.redisDatasetBytes)} (${kb(x.redisStateBytes)})`,
      ]),
    ),
    "",
    "Targets:",
    ...r.targets.map((t) => `- ${t}`),
    "",
  ].join("\n");
}

export const resumeSuite: CliCommand = {
  name: "resume",
  summary: "conversations hopping between worker processes through Redis: state size, save/resume time, time to first token vs re-prefill",
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values } = parseFlags(args, {
      workers: { type: "string" },
      conversations: { type: "string" },
      turns: { type: "string" },
      contexts: { type: "string" },
      presets: { type: "string" },
      model: { type: "string" },
      "turn-tokens": { type: "string" },
      "new-tokens": { type: "string" },
      chunk: { type: "string" },
      "compress-every": { type: "string" },
      redis: { type: "string" },
      quick: { type: "boolean" },
      out: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean" },
    });
    if (values.help) {
      io.stdout(USAGE);
      return 0;
    }
    const quick = values.quick === true;
    const int = (flag: string, v: string | undefined, d: number) => (v === undefined ? d : parsePositiveInt(flag, v));
    const settings: Settings = {
      workers: int("--workers", values.workers, quick ? 2 : 4),
      conversations: int("--conversations", values.conversations, quick ? 2 : 4),
      turns: int("--turns", values.turns, quick ? 3 : 4),
      contexts: (values.contexts ?? (quick ? "512" : "4k,16k")).split(",").map((c) => parseContext("--contexts", c)),
      presets: (values.presets ?? (quick ? "balanced" : "quant,balanced,max")).split(","),
      model: values.model ?? "sotu",
      turnTokens: int("--turn-tokens", values["turn-tokens"], 32),
      newTokens: int("--new-tokens", values["new-tokens"], 16),
      chunk: int("--chunk", values.chunk, 256),
      compressEvery: int("--compress-every", values["compress-every"], 64),
      redisUrl: values.redis,
    };
    if (settings.turns < 2) throw new NexusQuantError("INVALID_ARGUMENT", "Expected at least 2 for --turns (a conversation must resume at least once) but received 1", { arg: "--turns" });
    const out = values.out === undefined ? undefined : parseOutputPath("--out", values.out);
    const report = await runResume(settings, args, io);
    if (out !== undefined) {
      await writeFile(`${out}.json`, toJson(report));
      await writeFile(`${out}.md`, resumeMarkdown(report));
    }
    io.stdout(values.json ? toJson(report) : resumeMarkdown(report));
    return report.rows.every((r) => r.identicalTurns === r.totalTurns) ? 0 : 1;
  },
};
