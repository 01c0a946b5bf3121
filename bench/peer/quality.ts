/**
 * Lab script: llama.cpp's quantized KV caches next to ours on the same checkpoint and token ids, each
 * system against its own FP16 cache (llama.cpp's f16 context; our native path's "none"), with the
 * quality harness's measurements (bench/quality): teacher-forced KL, ΔPPL and top-1 over held-out
 * speeches, and same-prompt retrieval (a fact stated once in a long passage, asked for at the end).
 *
 *   npx tsx bench/peer/quality.ts [--model DIR] [--prefixes 512,1k,1536] [--score 256] [--texts 2]
 *     [--contexts 1k,2k] [--depths 0.1,...] [--samples 2] [--kv f16,q8_0,q4_0,q8_0/q4_0]
 *     [--ours quant,high,balanced,max|none] [--threads N] [--skip-perplexity] [--skip-retrieval] [--out PREFIX]
 *
 * Same windows and samples as `nexusquant bench quality` (its defaults for a trained model, seed 2024).
 * Our rows run the native path as a user does (withNexusQuant(loadModel(dir)), prefill in chunks of
 * 256, compression every 64 decode tokens), the scored tokens and the question one decode step each.
 * llama.cpp runs a window in one teacher-forced batch: it quantizes every token's K/V as it enters the
 * cache, so later positions see the same cache either way. Ratios: ours measured from the cache's
 * allocator at the end of each window; llama.cpp's from its cache types' block sizes (llama-cpp.ts).
 * Until the harness integrates these rows, this script is where the peer figures come from.
 */
import { writeFile, mkdtemp, rm } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { heldOutSpeeches, isCorrectCompletion, makeRetrievalSuite, RETRIEVAL_DEPTHS, type RetrievalSample } from "../data/index.js";
import { parseContext, parseFlags, parsePositiveInt } from "../../src/cli/args.js";
import { NexusQuantError, invalidArgument } from "../../src/errors.js";
import { klDivergence } from "../../src/integrations/fidelity.js";
import { withNexusQuant } from "../../src/integrations/index.js";
import { argmax } from "../../src/integrations/sampling.js";
import { loadModel, type LlamaModel } from "../../src/model/index.js";
import { negativeLogLikelihood } from "../quality/perplexity.js";
import { TRAINED_DEFAULTS } from "../quality/harness.js";
import { REFERENCE_MODEL_DIR } from "../quality/model.js";
import { documentIds, loadTokenizerJson, type QualityTokenizer } from "../quality/tokenizer.js";
import { convertCheckpoint } from "./gguf-convert.js";
import { GGML_TYPES } from "./ggml-types.js";
import { LlamaCppPeer, PEER_KV_NAMES, PEER_KV_TYPES, isPeerKvName, type PeerKvName, type PeerSession } from "./llama-cpp.js";

/** One cache variant of one system, as the measurements need it. */
export interface QualityRunner {
  system: "llama.cpp" | "nexusquant";
  name: string;
  /** Next-token log-probabilities (or logits) after positions P .. P+S-1 of `ids` (S = ids.length - P - 1 scored tokens), and the ratio at the end. */
  score(ids: readonly number[], P: number): Promise<{ logits: Float32Array[]; ratio: number }>;
  /** `passage` in, then `question`, then `n` greedy tokens; and the ratio at the end. */
  answer(passage: readonly number[], question: readonly number[], n: number): Promise<{ tokens: number[]; ratio: number }>;
  dispose(): Promise<void>;
}

/** A llama.cpp context of one KV type. */
function peerRunner(session: PeerSession): QualityRunner {
  return {
    system: "llama.cpp",
    name: `llama.cpp ${session.kv}`,
    async score(ids, P) {
      return { logits: await session.logProbs(ids.slice(0, -1), P), ratio: session.ratio() };
    },
    async answer(passage, question, n) {
      return { tokens: await session.greedy([...passage, ...question], n), ratio: session.ratio() };
    },
    dispose: () => session.dispose(),
  };
}

/** Our native path at one preset ("none" = FP16, no eviction): what withNexusQuant(loadModel(dir)) runs. */
async function nativeRunner(model: LlamaModel, preset: string): Promise<QualityRunner> {
  const lm = await withNexusQuant(model, { preset, ort, eos: [] });
  const decode = async (tokens: readonly number[]) => {
    let last = new Float32Array(0) as Float32Array<ArrayBufferLike>;
    for (const t of tokens) last = (await lm.step([t])).last().slice();
    return last;
  };
  return {
    system: "nexusquant",
    name: `nexusquant ${preset}`,
    async score(ids, P) {
      lm.reset();
      // The prefix's own last logits predict token P, which is not scored (as in the harness).
      await lm.step(ids.slice(0, P));
      const logits: Float32Array[] = [];
      for (let i = P; i < ids.length - 1; i++) logits.push(await decode([ids[i]!]));
      return { logits, ratio: lm.stats().ratio };
    },
    async answer(passage, question, n) {
      lm.reset();
      let last: Float32Array<ArrayBufferLike> = (await lm.step([...passage])).last().slice();
      if (question.length > 0) last = await decode(question);
      const tokens: number[] = [];
      for (let k = 0; k < n; k++) {
        tokens.push(argmax(last));
        if (k + 1 < n) last = await decode([tokens[k]!]);
      }
      return { tokens, ratio: lm.stats().ratio };
    },
    dispose: () => lm[Symbol.asyncDispose](),
  };
}

interface Window {
  title: string;
  ids: number[];
  prefix: number;
}

/** The harness's windows: the first `texts` held-out speeches long enough for the largest prefix + S + 1. */
function perplexityWindows(tokenizer: QualityTokenizer, prefixes: readonly number[], score: number, texts: number): Window[] {
  const needed = Math.max(...prefixes) + score + 1;
  const chosen: { title: string; ids: number[] }[] = [];
  for (const s of heldOutSpeeches()) {
    if (chosen.length === texts) break;
    const ids = documentIds(tokenizer, s.text);
    if (ids.length >= needed) chosen.push({ title: `${s.year} ${s.president}`, ids });
  }
  if (chosen.length < texts) throw new NexusQuantError("INVALID_ARGUMENT", `Only ${chosen.length} held-out speeches have ${needed} tokens; ask for fewer texts or shorter prefixes.`);
  return chosen.flatMap((t) => prefixes.map((P) => ({ title: t.title, ids: t.ids.slice(0, P + score + 1), prefix: P })));
}

export interface PerplexityFigures {
  variant: string;
  system: string;
  reference: string;
  tokens: number;
  deltaPplPercent: number;
  klMean: number;
  top1Agreement: number;
  ratio: number;
}

async function measurePerplexity(reference: QualityRunner, runners: readonly QualityRunner[], windows: readonly Window[], log: (line: string) => void): Promise<PerplexityFigures[]> {
  const base = { nll: 0, n: 0 };
  const acc = new Map(runners.map((r) => [r.name, { nll: 0, kl: 0, agree: 0, n: 0, ratio: 0, windows: 0 }]));
  for (const [w, window] of windows.entries()) {
    const ref = await reference.score(window.ids, window.prefix);
    const targets = window.ids.slice(window.prefix + 1);
    ref.logits.forEach((l, i) => {
      base.nll += negativeLogLikelihood(l, targets[i]!);
      base.n += 1;
    });
    for (const r of runners) {
      const a = acc.get(r.name)!;
      const run = await r.score(window.ids, window.prefix);
      run.logits.forEach((l, i) => {
        a.nll += negativeLogLikelihood(l, targets[i]!);
        a.kl += klDivergence(ref.logits[i]!, l);
        if (argmax(ref.logits[i]!) === argmax(l)) a.agree += 1;
        a.n += 1;
      });
      a.ratio += run.ratio;
      a.windows += 1;
    }
    log(`  ${reference.system} perplexity window ${w + 1}/${windows.length} (${window.title}, prefix ${window.prefix})`);
  }
  const basePpl = Math.exp(base.nll / base.n);
  return runners.map((r) => {
    const a = acc.get(r.name)!;
    return {
      variant: r.name,
      system: r.system,
      reference: reference.name,
      tokens: a.n,
      deltaPplPercent: 100 * (Math.exp(a.nll / a.n) / basePpl - 1),
      klMean: a.kl / a.n,
      top1Agreement: a.agree / a.n,
      ratio: a.ratio / a.windows,
    };
  });
}

export interface RetrievalFigures {
  variant: string;
  samples: number;
  recall: number;
  exactRecall: number;
  sameAsReference: number;
  ratio: number;
}

interface PreparedSample {
  sample: RetrievalSample;
  passage: number[];
  question: number[];
  answerIds: number[];
}

function prepareRetrieval(tokenizer: QualityTokenizer, contexts: readonly number[], depths: readonly number[], samplesPerCell: number): PreparedSample[] {
  const samples = makeRetrievalSuite({
    seed: TRAINED_DEFAULTS.seed,
    filler: heldOutSpeeches().map((s) => s.text),
    contexts,
    depths,
    samplesPerCell,
    countTokens: (text) => tokenizer.encode(text).length,
  });
  const commonPrefix = (a: readonly number[], b: readonly number[]) => {
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    return i;
  };
  return samples.map((sample) => {
    const ids = documentIds(tokenizer, sample.prompt);
    // As the harness splits: where the passage's own tokens stop matching the prompt's.
    const split = Math.min(commonPrefix(ids, documentIds(tokenizer, sample.prompt.slice(0, sample.prompt.lastIndexOf("\n\n")))), ids.length - 1);
    return { sample, passage: ids.slice(0, split), question: ids.slice(split), answerIds: tokenizer.encode(sample.answer) };
  });
}

async function measureRetrieval(runners: readonly QualityRunner[], reference: string, samples: readonly PreparedSample[], tokenizer: QualityTokenizer, log: (line: string) => void): Promise<RetrievalFigures[]> {
  const completions = new Map<string, string[]>(runners.map((r) => [r.name, []]));
  const acc = new Map(runners.map((r) => [r.name, { correct: 0, exact: 0, ratio: 0 }]));
  for (const [s, p] of samples.entries()) {
    for (const r of runners) {
      // One token past the answer, so isCorrectCompletion sees whether the word ends there.
      const { tokens, ratio } = await r.answer(p.passage, p.question, p.answerIds.length + 1);
      const completion = tokenizer.decode(tokens);
      completions.get(r.name)!.push(completion);
      const a = acc.get(r.name)!;
      if (isCorrectCompletion(p.sample, completion)) a.correct += 1;
      if (p.answerIds.every((id, i) => tokens[i] === id)) a.exact += 1;
      a.ratio += ratio;
    }
    log(`  retrieval sample ${s + 1}/${samples.length}`);
  }
  const ref = completions.get(reference);
  return runners.map((r) => {
    const a = acc.get(r.name)!;
    const mine = completions.get(r.name)!;
    return {
      variant: r.name,
      samples: samples.length,
      recall: a.correct / samples.length,
      exactRecall: a.exact / samples.length,
      sameAsReference: ref === undefined ? NaN : mine.filter((c, i) => c === ref[i]).length / samples.length,
      ratio: a.ratio / samples.length,
    };
  });
}

const list = (text: string) => text.split(",").map((s) => s.trim()).filter(Boolean);
const pct = (x: number) => `${(100 * x).toFixed(0)}%`;

function bitsPerElement(kv: PeerKvName): number {
  const bits = (t: keyof typeof GGML_TYPES) => (8 * GGML_TYPES[t].blockBytes) / GGML_TYPES[t].blockValues;
  return (bits(PEER_KV_TYPES[kv].key) + bits(PEER_KV_TYPES[kv].value)) / 2;
}

async function main(): Promise<void> {
  const { values } = parseFlags(process.argv.slice(2), {
    model: { type: "string" },
    prefixes: { type: "string" },
    score: { type: "string" },
    texts: { type: "string" },
    contexts: { type: "string" },
    depths: { type: "string" },
    samples: { type: "string" },
    kv: { type: "string" },
    ours: { type: "string" },
    threads: { type: "string" },
    out: { type: "string" },
    "skip-perplexity": { type: "boolean" },
    "skip-retrieval": { type: "boolean" },
  });
  const dir = values.model ?? REFERENCE_MODEL_DIR;
  const prefixes = values.prefixes === undefined ? TRAINED_DEFAULTS.prefixes : list(values.prefixes).map((p) => parseContext("--prefixes", p));
  const score = values.score === undefined ? TRAINED_DEFAULTS.scoreTokens : parsePositiveInt("--score", values.score);
  const texts = values.texts === undefined ? TRAINED_DEFAULTS.texts : parsePositiveInt("--texts", values.texts);
  const contexts = values.contexts === undefined ? TRAINED_DEFAULTS.contexts : list(values.contexts).map((c) => parseContext("--contexts", c));
  const depths = values.depths === undefined ? [...RETRIEVAL_DEPTHS] : list(values.depths).map(Number);
  const samplesPerCell = values.samples === undefined ? TRAINED_DEFAULTS.samplesPerCell : parsePositiveInt("--samples", values.samples);
  const kvs = values.kv === undefined ? PEER_KV_NAMES : list(values.kv);
  for (const kv of kvs) if (!isPeerKvName(kv)) throw invalidArgument("--kv", `names among ${PEER_KV_NAMES.join(", ")}`, kv);
  const ours = values.ours === undefined ? ["quant", "high", "balanced", "max"] : values.ours === "none" ? [] : list(values.ours);
  const threads = values.threads === undefined ? cpus().length : parsePositiveInt("--threads", values.threads);
  const log = (line: string) => process.stderr.write(line + "\n");

  const started = performance.now();
  const load = loadavg();
  const model = await loadModel(dir);
  const tokenizer = await loadTokenizerJson(dir);
  if (tokenizer === undefined) throw new NexusQuantError("CONFIG_ERROR", `${dir} has no tokenizer.json: this script measures a trained checkpoint on text.`);
  const work = await mkdtemp(join(tmpdir(), "nq-peer-quality-"));
  try {
    const gguf = join(work, "model.gguf");
    await convertCheckpoint(dir, gguf);
    const peer = await LlamaCppPeer.load(gguf, { threads });
    const windows = values["skip-perplexity"] ? [] : perplexityWindows(tokenizer, prefixes, score, texts);
    const samples = values["skip-retrieval"] ? [] : prepareRetrieval(tokenizer, contexts, depths, samplesPerCell);
    const longest = Math.max(0, ...windows.map((w) => w.ids.length), ...samples.map((s) => s.passage.length + s.question.length + s.answerIds.length + 1));
    const peerRunners: QualityRunner[] = [];
    for (const kv of ["f16", ...kvs.filter((k) => k !== "f16")] as PeerKvName[]) peerRunners.push(peerRunner(await peer.open(kv, longest)));
    const ourRunners: QualityRunner[] = [];
    for (const preset of ["none", ...ours.filter((p) => p !== "none")]) ourRunners.push(await nativeRunner(model, preset));
    const [peerRef, ...peerVariants] = peerRunners;
    const [ourRef, ...ourVariants] = ourRunners;
    // Each system's reference runs twice: its "f16"/"none" row is a second, independent run (ΔPPL 0, KL 0 show a deterministic loop).
    const peerRows = windows.length === 0 ? [] : await measurePerplexity(peerRef!, [peerRef!, ...peerVariants], windows, log);
    const ourRows = windows.length === 0 ? [] : await measurePerplexity(ourRef!, [ourRef!, ...ourVariants], windows, log);
    // The conversion check: our "none" against llama.cpp's f16, same windows.
    const cross = windows.length === 0 ? [] : await measurePerplexity(peerRef!, [ourRef!], windows, log);
    const retrieval = samples.length === 0 ? [] : [...(await measureRetrieval(peerRunners, peerRef!.name, samples, tokenizer, log)), ...(await measureRetrieval(ourRunners, ourRef!.name, samples, tokenizer, log))];
    for (const r of [...peerRunners, ...ourRunners]) await r.dispose();
    await peer.dispose();

    const c = model.config;
    const header = [
      `# llama.cpp (node-llama-cpp 3.21.1) KV cache types vs nexusquant presets (${new Date().toISOString()})`,
      "",
      `Command: \`npx tsx bench/peer/quality.ts ${process.argv.slice(2).join(" ")}\``.replace(/ `$/, "`"),
      `Model: ${dir} (${c.numLayers} layers, ${c.numKvHeads} KV heads × head_dim ${c.headDim}, vocab ${c.vocabSize}), converted to GGUF F16 (bench/peer/gguf-convert.ts). ` +
        `Threads ${threads}; machine ${cpus()[0]?.model ?? "unknown"}, ${cpus().length} cores, load average ${load.map((x) => x.toFixed(1)).join("/")} at start. ${((performance.now() - started) / 1000).toFixed(0)} s.`,
      `Perplexity: ${windows.length} windows (${texts} held-out speeches × prefixes ${prefixes.join("/")}, ${score} tokens scored each). Retrieval: ${samples.length} samples (contexts ${contexts.join("/")}, seed ${TRAINED_DEFAULTS.seed}).`,
      "Each system against its own FP16 cache: llama.cpp's rows against its f16 context, ours against the native path's `none`.",
      ...(cross[0] === undefined ? [] : [`Conversion check: our \`none\` vs llama.cpp f16 on the same windows: KL ${cross[0].klMean.toExponential(2)} nats, top-1 ${pct(cross[0].top1Agreement)}, ΔPPL ${cross[0].deltaPplPercent.toFixed(3)}%.`]),
      "",
      "| cache | bits/element | ratio | ΔPPL | KL (nats) | top-1 = own FP16 | recall (exact) | answer = own FP16 |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ];
    const lines = [...peerRunners, ...ourRunners].map((r) => {
      const p = [...peerRows, ...ourRows].find((x) => x.variant === r.name);
      const q = retrieval.find((x) => x.variant === r.name);
      const kv = r.name.replace("llama.cpp ", "");
      const bits = r.system === "llama.cpp" && isPeerKvName(kv) ? bitsPerElement(kv).toFixed(2) : "—";
      const ratio = p?.ratio ?? q?.ratio;
      return `| ${r.name} | ${bits} | ${ratio === undefined ? "—" : `${ratio.toFixed(2)}×`} | ${p ? `${p.deltaPplPercent >= 0 ? "+" : ""}${p.deltaPplPercent.toFixed(2)}%` : "—"} | ${p ? p.klMean.toFixed(5) : "—"} | ${p ? pct(p.top1Agreement) : "—"} | ${q ? `${pct(q.recall)} (${pct(q.exactRecall)})` : "—"} | ${q ? pct(q.sameAsReference) : "—"} |`;
    });
    const markdown = [...header, ...lines, ""].join("\n");
    process.stdout.write(markdown);
    if (values.out !== undefined) {
      await writeFile(`${values.out}.md`, markdown);
      await writeFile(`${values.out}.json`, JSON.stringify({ date: new Date().toISOString(), argv: process.argv.slice(2), model: dir, threads, loadAverageStart: load, perplexity: [...peerRows, ...ourRows], conversionCheck: cross[0] ?? null, retrieval }, null, 2) + "\n");
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  });
}
