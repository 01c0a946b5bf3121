/**
 * Perplexity through a compressed cache. For each held-out text and prefix length P: prefill tokens
 * [0, P) once, then per variant compress the prompt's cache and feed tokens P .. P+S-1 one decode
 * step at a time (teacher forcing); the logits of each step score the next token, so all S scored
 * tokens (P+1 .. P+S) are predicted through the variant's cache and none by the prefill alone.
 * ΔPPL% compares the pooled perplexity with the FP16 baseline on exactly the same tokens; KL and
 * top-1 agreement against the baseline's logits at the same positions come with it.
 */
import { invalidArgument, NexusQuantError } from "../../src/errors.js";
import { klDivergence } from "../../src/integrations/fidelity.js";
import { argmax } from "../../src/integrations/sampling.js";
import type { QualityEngine } from "./engine.js";
import type { QualityTokenizer } from "./tokenizer.js";
import { documentIds } from "./tokenizer.js";
import { BASELINE, type Variant } from "./variants.js";

export interface PerplexityText {
  title: string;
  text: string;
}

export interface PerplexityOptions {
  /** Prefix lengths P in tokens (document-start token included). */
  prefixes: readonly number[];
  /** Tokens scored after each prefix (S). */
  scoreTokens: number;
  /** How many texts to use (the first ones long enough for the largest P + S + 1). */
  texts: number;
  compressEvery: number;
  seed?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Sums for one variant over some (text, prefix) windows. */
export interface PerplexityAccumulator {
  nll: number;
  tokens: number;
  kl: number;
  agree: number;
  baselineBytes: number;
  bytes: number;
  promptBaselineBytes: number;
  promptBytes: number;
  heldTokens: number;
  windows: number;
}

export interface PerplexityRow {
  variant: string;
  /** Prefix length, or "all" pooled over every prefix. */
  prefix: number | "all";
  tokens: number;
  /** exp(mean negative log-likelihood), nats. */
  ppl: number;
  /** 100 × (ppl / baseline ppl − 1) on the same tokens. */
  deltaPplPercent: number;
  /** Mean KL(baseline ‖ variant) of the next-token distributions, nats. */
  klMean: number;
  /** Fraction of scored positions where the variant's argmax equals the baseline's. */
  top1Agreement: number;
  /** Measured ratio when the last token was scored (allocator bytes; FP16 residual window included). */
  ratio: number;
  /** Measured ratio right after the prompt was compressed. */
  ratioAfterPrompt: number;
  /** Mean tokens held per layer at the end, as a fraction of the tokens seen. */
  heldFraction: number;
}

export interface PerplexityResult {
  texts: { title: string; tokens: number }[];
  prefixes: number[];
  scoreTokens: number;
  rows: PerplexityRow[];
}

/** The uncompressed run every variant (the "none" row included) is compared with. */
const REFERENCE = "fp16-reference";

const emptyAcc = (): PerplexityAccumulator => ({ nll: 0, tokens: 0, kl: 0, agree: 0, baselineBytes: 0, bytes: 0, promptBaselineBytes: 0, promptBytes: 0, heldTokens: 0, windows: 0 });

/** −log softmax(logits)[target] in float64. */
export function negativeLogLikelihood(logits: ArrayLike<number>, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return max + Math.log(sum) - logits[target]!;
}

export async function measurePerplexity(engine: QualityEngine, tokenizer: QualityTokenizer, corpus: readonly PerplexityText[], variants: readonly Variant[], options: PerplexityOptions): Promise<PerplexityResult> {
  const { prefixes, scoreTokens: S } = options;
  if (prefixes.length === 0) throw invalidArgument("prefixes", "at least one prefix length", prefixes);
  for (const p of prefixes) if (!Number.isSafeInteger(p) || p < 1) throw invalidArgument("prefixes", "positive integers", p);
  if (!Number.isSafeInteger(S) || S < 1) throw invalidArgument("scoreTokens", "a positive integer", S);
  const needed = Math.max(...prefixes) + S + 1;
  const maxPositions = engine.config.maxPositionEmbeddings;
  if (needed - 1 > maxPositions) {
    throw invalidArgument("prefixes + scoreTokens", `at most the model's context (${maxPositions} positions)`, needed - 1);
  }
  const texts: { title: string; ids: number[] }[] = [];
  for (const t of corpus) {
    if (texts.length === options.texts) break;
    const ids = documentIds(tokenizer, t.text);
    if (ids.length >= needed) texts.push({ title: t.title, ids });
  }
  if (texts.length < options.texts) {
    throw new NexusQuantError("INVALID_ARGUMENT", `Only ${texts.length} of the ${corpus.length} texts have ${needed} tokens (largest prefix + score tokens + 1); ask for fewer texts or shorter prefixes.`, { arg: "texts" });
  }

  // The "none" row is a second, independent baseline run compared with the reference run: ΔPPL 0 and
  // full top-1 agreement there show that the loop itself is deterministic and adds nothing.
  const measured = variants.filter((v) => v.sameAs === null);
  const accs = new Map<string, Map<number, PerplexityAccumulator>>();
  for (const v of [REFERENCE, ...measured.map((m) => m.name)]) accs.set(v, new Map(prefixes.map((p) => [p, emptyAcc()])));
  const total = texts.length * prefixes.length * (measured.length + 1);
  let done = 0;

  for (const text of texts) {
    for (const P of prefixes) {
      const prefill = await engine.prefill(text.ids.slice(0, P));
      // The baseline first: its logits are what every variant is compared with.
      const baseLogits: Float32Array[] = [];
      await score(REFERENCE, { preset: BASELINE }, (logits) => baseLogits.push(logits));
      for (const v of measured) {
        let i = 0;
        await score(v.name, { preset: v.preset, spec: v.spec }, (logits, acc) => {
          acc.kl += klDivergence(baseLogits[i]!, logits);
          if (argmax(baseLogits[i]!) === argmax(logits)) acc.agree += 1;
          i += 1;
        });
      }

      async function score(name: string, setup: { preset: string; spec?: Variant["spec"] }, compare: (logits: Float32Array, acc: PerplexityAccumulator) => void) {
        const acc = accs.get(name)!.get(P)!;
        const run = await engine.startRun(prefill, { ...setup, compressEvery: options.compressEvery, ...(options.seed !== undefined ? { seed: options.seed } : {}) });
        try {
          const afterPrompt = run.stats();
          acc.promptBaselineBytes += afterPrompt.baselineBytes;
          acc.promptBytes += afterPrompt.bytes;
          for (let i = 0; i < S; i++) {
            const logits = await run.step(text.ids[P + i]!);
            acc.nll += negativeLogLikelihood(logits, text.ids[P + i + 1]!);
            acc.tokens += 1;
            compare(logits, acc);
          }
          const end = run.stats();
          acc.baselineBytes += end.baselineBytes;
          acc.bytes += end.bytes;
          acc.heldTokens += end.heldTokens / end.tokens;
          acc.windows += 1;
        } finally {
          run.dispose();
        }
        options.onProgress?.(++done, total);
      }
    }
  }

  const rows: PerplexityRow[] = [];
  const base = accs.get(REFERENCE)!;
  for (const v of variants) {
    const source = accs.get(v.sameAs ?? v.name)!;
    const summarize = (prefix: number | "all", acc: PerplexityAccumulator, baseAcc: PerplexityAccumulator): PerplexityRow => {
      const ppl = Math.exp(acc.nll / acc.tokens);
      const basePpl = Math.exp(baseAcc.nll / baseAcc.tokens);
      return {
        variant: v.name,
        prefix,
        tokens: acc.tokens,
        ppl,
        deltaPplPercent: 100 * (ppl / basePpl - 1),
        klMean: acc.kl / acc.tokens,
        top1Agreement: acc.agree / acc.tokens,
        ratio: acc.baselineBytes / acc.bytes,
        ratioAfterPrompt: acc.promptBaselineBytes / acc.promptBytes,
        heldFraction: acc.heldTokens / acc.windows,
      };
    };
    rows.push(summarize("all", pool([...source.values()]), pool([...base.values()])));
    for (const p of prefixes) rows.push(summarize(p, source.get(p)!, base.get(p)!));
  }
  return { texts: texts.map((t) => ({ title: t.title, tokens: t.ids.length })), prefixes: [...prefixes], scoreTokens: S, rows };
}

function pool(accs: PerplexityAccumulator[]): PerplexityAccumulator {
  const out = emptyAcc();
  for (const a of accs) for (const k of Object.keys(out) as (keyof PerplexityAccumulator)[]) out[k] += a[k];
  return out;
}
