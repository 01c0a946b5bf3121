/**
 * Retrieval through a compressed cache: a pass key or secret word stated once at a given depth of a
 * long held-out passage, asked for at the end (bench/data/passkey.ts, the samples the training report
 * uses). The passage is prefilled and compressed first; the question is then fed one token at a
 * time through the variant's cache and the answer is decoded greedily from it. That is the case
 * eviction endangers: the fact must survive compression to be found. (Prefilling the question with
 * the passage would let the uncompressed prompt pass choose the first answer token.)
 */
import { invalidArgument } from "../../src/errors.js";
import { argmax } from "../../src/integrations/sampling.js";
import { isCorrectCompletion, makeRetrievalSuite, type RetrievalKind, type RetrievalSample } from "../data/index.js";
import type { QualityEngine } from "./engine.js";
import type { QualityTokenizer } from "./tokenizer.js";
import { documentIds } from "./tokenizer.js";
import { BASELINE, type Variant } from "./variants.js";

export interface RetrievalOptions {
  seed: number;
  contexts: readonly number[];
  depths: readonly number[];
  samplesPerCell: number;
  kinds?: readonly RetrievalKind[];
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
  answers: Record<string, RetrievalAnswer>;
}

export interface RetrievalRow {
  variant: string;
  samples: number;
  recall: number;
  exactRecall: number;
  /** Fraction of samples whose completion is identical to the FP16 baseline's. */
  sameAsFp16: number;
  /** Recall minus the baseline's recall. */
  recallDelta: number;
  /** Mean measured ratio at the end of the answer. */
  ratio: number;
  byContext: Record<string, number>;
}

export interface RetrievalResult {
  contexts: number[];
  depths: number[];
  samplesPerCell: number;
  samples: RetrievalSampleResult[];
  rows: RetrievalRow[];
}

/** Length of the common prefix of two id lists. */
function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

export async function measureRetrieval(engine: QualityEngine, tokenizer: QualityTokenizer, filler: readonly string[], variants: readonly Variant[], options: RetrievalOptions): Promise<RetrievalResult> {
  const maxPositions = engine.config.maxPositionEmbeddings;
  for (const c of options.contexts) {
    if (!Number.isSafeInteger(c) || c < 64 || c > maxPositions) throw invalidArgument("contexts", `integers in [64, ${maxPositions}] (the model's context)`, c);
  }
  // Sized with the model's own tokenizer, no document-start token: bench/model/train.py does the same,
  // so with the training report's seed and cells these are its samples exactly.
  const samples = makeRetrievalSuite({
    seed: options.seed,
    filler,
    contexts: options.contexts,
    depths: options.depths,
    samplesPerCell: options.samplesPerCell,
    ...(options.kinds !== undefined ? { kinds: options.kinds } : {}),
    countTokens: (text) => tokenizer.encode(text).length,
  });
  const measured = variants.filter((v) => v.sameAs === null);
  const total = samples.length * measured.length;
  let done = 0;
  const results: RetrievalSampleResult[] = [];
  for (let s = 0; s < samples.length; s++) {
    const sample = samples[s]!;
    const context = options.contexts[Math.floor(s / (options.depths.length * options.samplesPerCell))]!;
    const ids = documentIds(tokenizer, sample.prompt);
    const passage = sample.prompt.slice(0, sample.prompt.lastIndexOf("\n\n"));
    // Split where the passage's own tokens stop matching the prompt's, so the model sees exactly the
    // prompt's tokenization (a merge across the boundary stays on the question side).
    const split = Math.min(commonPrefix(ids, documentIds(tokenizer, passage)), ids.length - 1);
    const beforeNeedle = commonPrefix(ids, documentIds(tokenizer, sample.prompt.slice(0, sample.needleOffset)));
    const bos = tokenizer.bosId === null ? 0 : 1;
    const answerIds = tokenizer.encode(sample.answer);
    const prefill = await engine.prefill(ids.slice(0, split));
    const answers: Record<string, RetrievalAnswer> = {};
    for (const v of measured) {
      answers[v.name] = await answer(engine, prefill, ids.slice(split), answerIds, sample, tokenizer, { preset: v.preset, spec: v.spec, compressEvery: options.compressEvery, ...(options.cacheSeed !== undefined ? { seed: options.cacheSeed } : {}) });
      options.onProgress?.(++done, total);
    }
    for (const v of variants) if (v.sameAs !== null) answers[v.name] = answers[v.sameAs]!;
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
    });
  }
  return { contexts: [...options.contexts], depths: [...options.depths], samplesPerCell: options.samplesPerCell, samples: results, rows: summarize(results, variants) };
}

async function answer(
  engine: QualityEngine,
  prefill: Awaited<ReturnType<QualityEngine["prefill"]>>,
  question: number[],
  answerIds: number[],
  sample: RetrievalSample,
  tokenizer: QualityTokenizer,
  setup: Parameters<QualityEngine["startRun"]>[1],
): Promise<RetrievalAnswer> {
  const run = await engine.startRun(prefill, setup);
  try {
    let logits = prefill.lastLogits;
    for (const token of question) logits = await run.step(token);
    // One token past the answer, so isCorrectCompletion can see whether the word ends there.
    const generated: number[] = [];
    for (let k = 0; k <= answerIds.length; k++) {
      generated.push(argmax(logits));
      if (k < answerIds.length) logits = await run.step(generated[k]!);
    }
    const completion = tokenizer.decode(generated);
    return {
      completion,
      correct: isCorrectCompletion(sample, completion),
      exactTokens: answerIds.every((id, i) => generated[i] === id),
      ratio: run.stats().ratio,
    };
  } finally {
    run.dispose();
  }
}

function summarize(results: readonly RetrievalSampleResult[], variants: readonly Variant[]): RetrievalRow[] {
  const rate = (xs: boolean[]) => (xs.length === 0 ? 0 : xs.filter(Boolean).length / xs.length);
  const baseRecall = rate(results.map((r) => r.answers[BASELINE]?.correct ?? false));
  return variants.map((v) => {
    const answers = results.map((r) => r.answers[v.name]!);
    const byContext: Record<string, number> = {};
    for (const c of [...new Set(results.map((r) => r.context))]) byContext[c] = rate(results.filter((r) => r.context === c).map((r) => r.answers[v.name]!.correct));
    const recall = rate(answers.map((a) => a.correct));
    return {
      variant: v.name,
      samples: answers.length,
      recall,
      exactRecall: rate(answers.map((a) => a.exactTokens)),
      sameAsFp16: rate(results.map((r) => r.answers[v.name]!.completion === r.answers[BASELINE]?.completion)),
      recallDelta: recall - baseRecall,
      ratio: answers.reduce((sum, a) => sum + a.ratio, 0) / Math.max(1, answers.length),
      byContext,
    };
  });
}
