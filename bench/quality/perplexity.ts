/**
 * Perplexity through a compressed cache. For each held-out text and prefix length P: prefill tokens
 * [0, P) once, then per variant compress the prompt's cache and feed tokens P .. P+S-1 one decode
 * step at a time (teacher forcing); the logits of each step score the next token, so all S scored
 * tokens (P+1 .. P+S) are predicted through the variant's cache and none by the prefill alone.
 * ΔPPL% compares the pooled perplexity with the FP16 baseline on exactly the same tokens; KL and
 * top-1 agreement against the baseline's logits at the same positions come with it.
 */
import { invalidArgument, NexusQuantError } from "../../src/errors.js";
import type { QualityPath } from "./path.js";
import { klDivergence } from "../../src/integrations/fidelity.js";
import { argmax } from "../../src/integrations/sampling.js";
import type { PathName } from "./path.js";
import { pathFor, type QualityPaths } from "./retrieval.js";
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
  prefillTokens: number;
  prefillSeconds: number;
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
  /** Prompt tokens per second of this variant's prefills (the ORT path's rows share one prefill per prompt). */
  prefillTokensPerSecond: number;
}

export interface PerplexityResult {
  texts: { title: string; tokens: number }[];
  prefixes: number[];
  scoreTokens: number;
  rows: PerplexityRow[];
}

/** The uncompressed run of a path that every variant on it (its "none" row included) is compared with. */
const referenceName = (path: PathName) => `fp16-reference:${path}`;

const emptyAcc = (): PerplexityAccumulator => ({ nll: 0, tokens: 0, kl: 0, agree: 0, baselineBytes: 0, bytes: 0, promptBaselineBytes: 0, promptBytes: 0, heldTokens: 0, windows: 0, prefillTokens: 0, prefillSeconds: 0 });

/** −log softmax(logits)[target] in float64. */
export function negativeLogLikelihood(logits: ArrayLike<number>, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return max + Math.log(sum) - logits[target]!;
}

export async function measurePerplexity(paths: QualityPaths, tokenizer: QualityTokenizer, corpus: readonly PerplexityText[], variants: readonly Variant[], options: PerplexityOptions): Promise<PerplexityResult> {
  const { prefixes, scoreTokens: S } = options;
  if (prefixes.length === 0) throw invalidArgument("prefixes", "at least one prefix length", prefixes);
  for (const p of prefixes) if (!Number.isSafeInteger(p) || p < 1) throw invalidArgument("prefixes", "positive integers", p);
  if (!Number.isSafeInteger(S) || S < 1) throw invalidArgument("scoreTokens", "a positive integer", S);
  const needed = Math.max(...prefixes) + S + 1;
  const maxPositions = pathFor(paths, variants[0] ?? { path: "native", name: BASELINE }).config.maxPositionEmbeddings;
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
  // full top-1 agreement there show that the loop itself is deterministic and adds nothing. Each path
  // has its own reference: a variant is compared with the FP16 run of the path it runs on.
  const measured = variants.filter((v) => v.sameAs === null);
  const single = "start" in paths;
  const pathOf = (v: Variant): PathName => (single ? "native" : v.path);
  const usedPaths = [...new Set(measured.map(pathOf))];
  const accs = new Map<string, Map<number, PerplexityAccumulator>>();
  for (const v of [...usedPaths.map(referenceName), ...measured.map((m) => m.name)]) accs.set(v, new Map(prefixes.map((p) => [p, emptyAcc()])));
  const total = texts.length * prefixes.length * (measured.length + usedPaths.length);
  let done = 0;

  for (const text of texts) {
    for (const P of prefixes) {
      const prompt = text.ids.slice(0, P);
      // Each path's baseline first: its logits are what every variant on that path is compared with.
      const baseLogits = new Map<PathName, Float32Array[]>();
      for (const path of usedPaths) {
        const logits: Float32Array[] = [];
        baseLogits.set(path, logits);
        await score(referenceName(path), pathFor(paths, { path, name: referenceName(path) }), { preset: BASELINE }, (l) => logits.push(l));
      }
      for (const v of measured) {
        let i = 0;
        const base = baseLogits.get(pathOf(v))!;
        await score(v.name, pathFor(paths, v), { preset: v.preset, spec: v.spec, ...(v.scalar !== undefined ? { scalar: v.scalar } : {}), ...(v.rereadLayers !== undefined ? { rereadLayers: v.rereadLayers } : {}), ...(v.calibrated ? { calibrated: true } : {}) }, (logits, acc) => {
          acc.kl += klDivergence(base[i]!, logits);
          if (argmax(base[i]!) === argmax(logits)) acc.agree += 1;
          i += 1;
        });
      }

      async function score(name: string, path: QualityPath, setup: { preset: string; spec?: Variant["spec"]; scalar?: Variant["scalar"]; rereadLayers?: Variant["rereadLayers"]; calibrated?: boolean }, compare: (logits: Float32Array, acc: PerplexityAccumulator) => void) {
        const acc = accs.get(name)!.get(P)!;
        const started = await path.start(prompt, { ...setup, compressEvery: options.compressEvery, ...(options.seed !== undefined ? { seed: options.seed } : {}) });
        const run = started.run;
        acc.prefillTokens += prompt.length;
        acc.prefillSeconds += started.prefillSeconds;
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
  for (const v of variants) {
    const source = accs.get(v.sameAs ?? v.name)!;
    const base = accs.get(referenceName(pathOf(v)))!;
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
        prefillTokensPerSecond: acc.prefillSeconds === 0 ? 0 : acc.prefillTokens / acc.prefillSeconds,
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
