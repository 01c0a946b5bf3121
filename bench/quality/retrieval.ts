/**
 * Retrieval through a compressed cache: a pass key or secret word stated once at a given depth of a
 * long held-out passage, asked for (bench/data/passkey.ts, the samples the training report uses), in
 * three modes, each on every variant's own conversation:
 *
 * - "later-turn" (the headline, what eviction endangers): the passage is prefilled and compressed
 *   first; the question comes as a later turn (fed as one chunk, as `generate(question, { continue:
 *   true })` feeds it, then compressed as a prompt chunk is); the answer is decoded greedily;
 * - "same-prompt": passage and question in one prompt (prefilled in chunks and compressed with it), the
 *   answer decoded from the prompt's last logits;
 * - "two-facts": a passage holding a pass key and a secret word; two later turns ask one each on the
 *   same conversation (the second turn starts with the first answer's last token, as `continue` does).
 *
 * A compressed variant never sees an uncompressed prefill: on the native path each variant prefills
 * itself in chunks (compressing as it goes); the ORT path's rows start from one shared FP16 prefill.
 */
import { invalidArgument } from "../../src/errors.js";
import { argmax } from "../../src/integrations/sampling.js";
import { deriveSeed, isCorrectCompletion, makeRetrievalSuite, makeTwoFactSample, type RetrievalKind, type RetrievalSample } from "../data/index.js";
import type { CacheSetup, KvRun, PathName, QualityPath, Started } from "./path.js";
import type { QualityTokenizer } from "./tokenizer.js";
import { documentIds } from "./tokenizer.js";
import { BASELINE, type Variant } from "./variants.js";

export type RetrievalMode = "later-turn" | "same-prompt" | "two-facts";
export const RETRIEVAL_MODES: readonly RetrievalMode[] = ["later-turn", "same-prompt", "two-facts"];

/** One path for every variant, or one per path name (variants say which). */
export type QualityPaths = QualityPath | Partial<Record<PathName, QualityPath>>;

export function pathFor(paths: QualityPaths, v: Pick<Variant, "path" | "name">): QualityPath {
  if ("start" in paths) return paths as QualityPath;
  const p = (paths as Partial<Record<PathName, QualityPath>>)[v.path];
  if (p === undefined) throw invalidArgument(`paths.${v.path}`, `a QualityPath for variant ${v.name}`, undefined);
  return p;
}

export interface RetrievalOptions {
  seed: number;
  contexts: readonly number[];
  depths: readonly number[];
  samplesPerCell: number;
  kinds?: readonly RetrievalKind[];
  /** Default every mode. */
  modes?: readonly RetrievalMode[];
  compressEvery: number;
  cacheSeed?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface RetrievalAnswer {
  completion: string;
  /** isCorrectCompletion: the decoded text starts with the value as a whole word. */
  correct: boolean;
  /** The first generated tokens are exactly the answer's tokens (the training report's criterion). */
  exactTokens: boolean;
  ratio: number;
}

export interface RetrievalSampleResult {
  context: number;
  depth: number;
  kind: RetrievalKind;
  value: string;
  /** Tokens fed in total (document-start token + passage + question). */
  promptTokens: number;
  /** What makeRetrievalSample measured with the same tokenizer (without the document-start token). */
  samplePromptTokens: number;
  passageTokens: number;
  questionTokens: number;
  /** Needle offset / passage length in characters (where the generator put it). */
  needleDepth: number;
  /** Tokens before the needle / passage tokens (where the model sees it). */
  needleTokenDepth: number;
  /** Mode "later-turn", per variant. */
  answers: Record<string, RetrievalAnswer>;
  /** Mode "same-prompt", per variant (empty when the mode was not run). */
  samePromptAnswers: Record<string, RetrievalAnswer>;
}

export interface TwoFactSampleResult {
  context: number;
  depths: [number, number];
  values: [string, string];
  passageTokens: number;
  /** Per variant, the answers to the first and the second question. */
  answers: Record<string, [RetrievalAnswer, RetrievalAnswer]>;
}

export interface RetrievalRow {
  variant: string;
  samples: number;
  /** Mode "later-turn" (the headline). */
  recall: number;
  exactRecall: number;
  /** Fraction of samples whose later-turn completion is identical to the FP16 baseline's. */
  sameAsFp16: number;
  /** Recall minus the baseline's recall. */
  recallDelta: number;
  /** Mean measured ratio at the end of the later-turn answer. */
  ratio: number;
  byContext: Record<string, number>;
  /** Recall per needle depth (the generator's depth, "0.1" … "0.9"). */
  byDepth: Record<string, number>;
  /** Mode "same-prompt" recall, null when not run. */
  recallSamePrompt: number | null;
  /** Mode "two-facts": fraction of the questions answered (two per sample), null when not run. */
  recallTwoFacts: number | null;
  /** Prompt tokens per second of this variant's prefills (retrieval prompts; the ORT path's rows share one prefill per prompt). */
  prefillTokensPerSecond: number;
}

export interface RetrievalResult {
  contexts: number[];
  depths: number[];
  samplesPerCell: number;
  modes: RetrievalMode[];
  samples: RetrievalSampleResult[];
  twoFactSamples: TwoFactSampleResult[];
  rows: RetrievalRow[];
}

/** Length of the common prefix of two id lists. */
function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/** Where the passage's own tokens stop matching the prompt's: the question side keeps any merge across the boundary. */
function splitAt(tokenizer: QualityTokenizer, prompt: string, passage: string): { ids: number[]; split: number } {
  const ids = documentIds(tokenizer, prompt);
  return { ids, split: Math.min(commonPrefix(ids, documentIds(tokenizer, passage)), ids.length - 1) };
}

/** Second depth of a two-fact sample: 40 points away from the first, inside [0.1, 0.9]. */
const secondDepth = (d: number) => (d < 0.5 ? d + 0.4 : d - 0.4);

export async function measureRetrieval(paths: QualityPaths, tokenizer: QualityTokenizer, filler: readonly string[], variants: readonly Variant[], options: RetrievalOptions): Promise<RetrievalResult> {
  const modes = [...(options.modes ?? RETRIEVAL_MODES)];
  for (const m of modes) if (!RETRIEVAL_MODES.includes(m)) throw invalidArgument("modes", RETRIEVAL_MODES.join(", "), m);
  const config = pathFor(paths, variants[0] ?? { path: "native", name: BASELINE }).config;
  const maxPositions = config.maxPositionEmbeddings;
  for (const c of options.contexts) {
    if (!Number.isSafeInteger(c) || c < 64 || c > maxPositions) throw invalidArgument("contexts", `integers in [64, ${maxPositions}] (the model's context)`, c);
  }
  const countTokens = (text: string) => tokenizer.encode(text).length;
  // Sized with the model's own tokenizer, no document-start token: bench/model/train.py does the same,
  // so with the training report's seed and cells these are its samples exactly.
  const samples = makeRetrievalSuite({
    seed: options.seed,
    filler,
    contexts: options.contexts,
    depths: options.depths,
    samplesPerCell: options.samplesPerCell,
    ...(options.kinds !== undefined ? { kinds: options.kinds } : {}),
    countTokens,
  });
  const cells = options.depths.length * options.samplesPerCell;
  const twoFacts = !modes.includes("two-facts")
    ? []
    : samples.map((s, i) => ({
        context: options.contexts[Math.floor(i / cells)]!,
        sample: makeTwoFactSample({ seed: deriveSeed(options.seed ^ 0x2f, i), filler, targetTokens: s.targetTokens, depths: [s.depth, secondDepth(s.depth)], countTokens }),
      }));
  const measured = variants.filter((v) => v.sameAs === null);
  const singleModes = modes.filter((m) => m !== "two-facts").length;
  const total = measured.length * (samples.length * singleModes + twoFacts.length);
  let done = 0;
  const tick = () => options.onProgress?.(++done, total);
  const prefill = new Map<string, { tokens: number; seconds: number }>();
  const count = (v: Variant, prompt: readonly number[], started: Started) => {
    const p = prefill.get(v.name) ?? { tokens: 0, seconds: 0 };
    p.tokens += prompt.length;
    p.seconds += started.prefillSeconds;
    prefill.set(v.name, p);
  };
  const setupOf = (v: Variant): CacheSetup => ({
    preset: v.preset,
    spec: v.spec,
    ...(v.scalar !== undefined ? { scalar: v.scalar } : {}),
    ...(v.rereadLayers !== undefined ? { rereadLayers: v.rereadLayers } : {}),
    ...(v.calibrated ? { calibrated: true } : {}),
    compressEvery: options.compressEvery,
    ...(options.cacheSeed !== undefined ? { seed: options.cacheSeed } : {}),
  });

  const results: RetrievalSampleResult[] = [];
  for (let s = 0; s < samples.length; s++) {
    const sample = samples[s]!;
    const context = options.contexts[Math.floor(s / cells)]!;
    const passage = sample.prompt.slice(0, sample.prompt.lastIndexOf("\n\n"));
    const { ids, split } = splitAt(tokenizer, sample.prompt, passage);
    const beforeNeedle = commonPrefix(ids, documentIds(tokenizer, sample.prompt.slice(0, sample.needleOffset)));
    const bos = tokenizer.bosId === null ? 0 : 1;
    const answerIds = tokenizer.encode(sample.answer);
    const answers: Record<string, RetrievalAnswer> = {};
    const samePromptAnswers: Record<string, RetrievalAnswer> = {};
    for (const v of measured) {
      const path = pathFor(paths, v);
      if (modes.includes("later-turn")) {
        const prompt = ids.slice(0, split);
        const started = await path.start(prompt, setupOf(v));
        count(v, prompt, started);
        try {
          const logits = await started.run.feed(ids.slice(split));
          answers[v.name] = (await answer(started.run, logits, answerIds, sample, tokenizer)).answer;
        } finally {
          started.run.dispose();
        }
        tick();
      }
      if (modes.includes("same-prompt")) {
        const started = await path.start(ids, setupOf(v));
        count(v, ids, started);
        try {
          samePromptAnswers[v.name] = (await answer(started.run, started.logits, answerIds, sample, tokenizer)).answer;
        } finally {
          started.run.dispose();
        }
        tick();
      }
    }
    for (const v of variants) {
      if (v.sameAs === null) continue;
      if (answers[v.sameAs] !== undefined) answers[v.name] = answers[v.sameAs]!;
      if (samePromptAnswers[v.sameAs] !== undefined) samePromptAnswers[v.name] = samePromptAnswers[v.sameAs]!;
    }
    results.push({
      context,
      depth: sample.depth,
      kind: sample.kind,
      value: sample.value,
      promptTokens: ids.length,
      samplePromptTokens: sample.promptTokens,
      passageTokens: split - bos,
      questionTokens: ids.length - split,
      needleDepth: sample.needleDepth,
      needleTokenDepth: (beforeNeedle - bos) / (split - bos),
      answers,
      samePromptAnswers,
    });
  }

  const twoFactResults: TwoFactSampleResult[] = [];
  for (const { context, sample } of twoFacts) {
    const [f1, f2] = sample.facts;
    // The first question's tokens as the model sees them after the passage; the second as a new turn.
    const { ids, split } = splitAt(tokenizer, `${sample.passage}\n\n${f1.question}`, sample.passage);
    const q2 = tokenizer.encode(`\n\n${f2.question}`);
    const a1Ids = tokenizer.encode(f1.answer);
    const a2Ids = tokenizer.encode(f2.answer);
    const answers: Record<string, [RetrievalAnswer, RetrievalAnswer]> = {};
    for (const v of measured) {
      const prompt = ids.slice(0, split);
      const started = await pathFor(paths, v).start(prompt, setupOf(v));
      count(v, prompt, started);
      try {
        const first = await answer(started.run, await started.run.feed(ids.slice(split)), a1Ids, f1, tokenizer);
        const second = await answer(started.run, await started.run.feed([first.pending, ...q2]), a2Ids, f2, tokenizer);
        answers[v.name] = [first.answer, second.answer];
      } finally {
        started.run.dispose();
      }
      tick();
    }
    for (const v of variants) if (v.sameAs !== null && answers[v.sameAs] !== undefined) answers[v.name] = answers[v.sameAs]!;
    twoFactResults.push({ context, depths: sample.depths, values: [f1.value, f2.value], passageTokens: split, answers });
  }
  return {
    contexts: [...options.contexts],
    depths: [...options.depths],
    samplesPerCell: options.samplesPerCell,
    modes,
    samples: results,
    twoFactSamples: twoFactResults,
    rows: summarize(results, twoFactResults, variants, modes, prefill),
  };
}

/**
 * Greedy decoding from `logits`: the answer's tokens plus one (so isCorrectCompletion sees whether the
 * word ends there), each fed but the last, which stays pending as generate() leaves it.
 */
async function answer(run: KvRun, logits: Float32Array, answerIds: readonly number[], sample: Pick<RetrievalSample, "value">, tokenizer: QualityTokenizer): Promise<{ answer: RetrievalAnswer; pending: number }> {
  const generated: number[] = [];
  for (let k = 0; k <= answerIds.length; k++) {
    generated.push(argmax(logits));
    if (k < answerIds.length) logits = await run.step(generated[k]!);
  }
  const completion = tokenizer.decode(generated);
  return {
    answer: {
      completion,
      correct: isCorrectCompletion(sample as RetrievalSample, completion),
      exactTokens: answerIds.every((id, i) => generated[i] === id),
      ratio: run.stats().ratio,
    },
    pending: generated[generated.length - 1]!,
  };
}

function summarize(
  results: readonly RetrievalSampleResult[],
  twoFacts: readonly TwoFactSampleResult[],
  variants: readonly Variant[],
  modes: readonly RetrievalMode[],
  prefill: ReadonlyMap<string, { tokens: number; seconds: number }>,
): RetrievalRow[] {
  const rate = (xs: boolean[]) => (xs.length === 0 ? 0 : xs.filter(Boolean).length / xs.length);
  const later = modes.includes("later-turn");
  const baseRecall = rate(results.map((r) => r.answers[BASELINE]?.correct ?? false));
  return variants.map((v) => {
    const answers = later ? results.map((r) => r.answers[v.name]!) : [];
    const byContext: Record<string, number> = {};
    const byDepth: Record<string, number> = {};
    if (later) {
      for (const c of [...new Set(results.map((r) => r.context))]) byContext[c] = rate(results.filter((r) => r.context === c).map((r) => r.answers[v.name]!.correct));
      for (const d of [...new Set(results.map((r) => r.depth))]) byDepth[d] = rate(results.filter((r) => r.depth === d).map((r) => r.answers[v.name]!.correct));
    }
    const recall = rate(answers.map((a) => a.correct));
    const p = prefill.get(v.sameAs ?? v.name);
    return {
      variant: v.name,
      samples: results.length,
      recall,
      exactRecall: rate(answers.map((a) => a.exactTokens)),
      sameAsFp16: rate(later ? results.map((r) => r.answers[v.name]!.completion === r.answers[BASELINE]?.completion) : []),
      recallDelta: recall - baseRecall,
      ratio: answers.reduce((sum, a) => sum + a.ratio, 0) / Math.max(1, answers.length),
      byContext,
      byDepth,
      recallSamePrompt: modes.includes("same-prompt") ? rate(results.map((r) => r.samePromptAnswers[v.name]!.correct)) : null,
      recallTwoFacts: modes.includes("two-facts") ? rate(twoFacts.flatMap((t) => t.answers[v.name]!.map((a) => a.correct))) : null,
      prefillTokensPerSecond: p === undefined || p.seconds === 0 ? 0 : p.tokens / p.seconds,
    };
  });
}
