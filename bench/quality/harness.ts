/**
 * `nexusquant bench quality`: perplexity and retrieval of every cache variant against the FP16
 * cache of the same model, with the measured compression ratio of each, and the goals of issue 8
 * checked against what was measured. One run of the model per prompt; everything else is the cache.
 */
import { heldOutSpeeches, RETRIEVAL_DEPTHS, type RetrievalKind } from "../data/index.js";
import { invalidArgument } from "../../src/errors.js";
import { specRatio, type ScorerName } from "../../src/format/index.js";
import { scalarBitsPerElement } from "./scalar-baselines.js";
import { DEFAULT_COMPRESS_EVERY } from "../../src/integrations/index.js";
import { backendInfo } from "../../src/runtime/index.js";
import { QualityEngine } from "./engine.js";
import { RANDOM_WEIGHTS_NOTE, type QualityModel } from "./model.js";
import { measurePerplexity, type PerplexityResult } from "./perplexity.js";
import { measureRetrieval, type RetrievalResult } from "./retrieval.js";
import { describeSpec, EVICTION_SWEEP, planVariants, SCALAR_BASELINE_NAMES, type Variant } from "./variants.js";

export interface QualitySettings {
  prefixes: number[];
  scoreTokens: number;
  texts: number;
  contexts: number[];
  depths: number[];
  samplesPerCell: number;
  kinds?: RetrievalKind[];
  /** Seed of the retrieval samples (2024 = the training report's). */
  seed: number;
  compressEvery: number;
  presets?: string[];
  quantOnly?: string[];
  scorers?: ScorerName[];
  scorerPreset: string;
  /** Scalar baselines (variants.ts SCALAR_BASELINE_NAMES' form); default none. */
  scalar?: string[];
  /** Eviction fractions swept at `sweepPreset`'s bits and scorer; default none. */
  sweep?: number[];
  sweepPreset?: string;
  perplexity: boolean;
  retrieval: boolean;
}

/**
 * Sizes for the trained reference model (models/sotu-llama: 4 layers, hidden 256, trained to 2K
 * tokens): prefixes 512/1K/1.5K with 256 tokens scored, retrieval at 1K and 2K, every variant group
 * including the scalar baselines and the eviction sweep (see docs/quality.md for the run time).
 */
export const TRAINED_DEFAULTS: QualitySettings = {
  prefixes: [512, 1024, 1536],
  scoreTokens: 256,
  texts: 2,
  contexts: [1024, 2048],
  depths: [...RETRIEVAL_DEPTHS],
  samplesPerCell: 2,
  seed: 2024,
  compressEvery: DEFAULT_COMPRESS_EVERY,
  scorerPreset: "balanced",
  scalar: [...SCALAR_BASELINE_NAMES],
  sweep: [...EVICTION_SWEEP],
  sweepPreset: "balanced",
  perplexity: true,
  retrieval: true,
};

/**
 * Smaller sizes for the built random-weight model, so the whole run takes about a minute on 2 cores.
 * Prefixes still exceed the presets' sink + recent window (68 tokens), so eviction happens.
 */
export const RANDOM_MODEL_DEFAULTS: QualitySettings = {
  ...TRAINED_DEFAULTS,
  scalar: [],
  sweep: [],
  prefixes: [256, 1024],
  scoreTokens: 128,
  texts: 2,
  contexts: [512, 1024],
  depths: [0.1, 0.5, 0.9],
  samplesPerCell: 1,
};

export interface Goal {
  preset: string;
  maxDeltaPplPercent: number;
  /** Recall must equal the FP16 cache's. */
  recallEqualsFp16: boolean;
}

export const GOALS: readonly Goal[] = [
  { preset: "quant", maxDeltaPplPercent: 0.5, recallEqualsFp16: true },
  { preset: "high", maxDeltaPplPercent: 1, recallEqualsFp16: false },
  { preset: "balanced", maxDeltaPplPercent: 2, recallEqualsFp16: false },
  { preset: "max", maxDeltaPplPercent: 4, recallEqualsFp16: false },
];

export interface GoalResult extends Goal {
  status: "met" | "missed" | "not measured";
  detail: string;
}

/** One line per variant: what the table and the plot show. */
export interface QualityRow {
  variant: string;
  group: Variant["group"];
  runs: string;
  sameAs: string | null;
  /** Measured ratio (perplexity runs when measured, else retrieval runs). */
  ratio: number | null;
  /**
   * The ratio at long context, where fixed costs vanish: the layout code's asymptotic figure for the
   * lattice cache (specRatio, this model's head_dim and KV heads), 16 / bits per element for a scalar
   * baseline. It compares the formats at equal footing; `ratio` is what this run's caches really held.
   */
  ratioLongContext: number;
  deltaPplPercent: number | null;
  ppl: number | null;
  klMean: number | null;
  top1Agreement: number | null;
  recall: number | null;
  recallDelta: number | null;
  sameAsFp16: number | null;
  recallByContext: Record<string, number> | null;
  recallByDepth: Record<string, number> | null;
}

export interface QualityReport {
  suite: "quality";
  model: { label: string; dir: string | null; trained: boolean; tokenizer: string; layers: number; kvHeads: number; queryHeads: number; headDim: number; vocab: number };
  /** Where the compressed caches lived. */
  backend: string;
  /** Whether the observed scorer got the model's queries. */
  observedScorer: string;
  settings: QualitySettings;
  rows: QualityRow[];
  perplexity: PerplexityResult | null;
  retrieval: RetrievalResult | null;
  goals: GoalResult[];
  notes: string[];
  seconds: { perplexity: number; retrieval: number; total: number };
}

export interface RunQualityOptions {
  settings: QualitySettings;
  /** Held-out texts to use; default heldOutSpeeches(). */
  corpus?: { title: string; text: string }[];
  onProgress?: (phase: "perplexity" | "retrieval", done: number, total: number) => void;
}

export async function runQualityBench(model: QualityModel, options: RunQualityOptions): Promise<QualityReport> {
  const { settings } = options;
  if (!settings.perplexity && !settings.retrieval) throw invalidArgument("settings", "perplexity, retrieval or both", settings);
  const started = performance.now();
  const variants = planVariants({
    ...(settings.presets !== undefined ? { presets: settings.presets } : {}),
    ...(settings.quantOnly !== undefined ? { quantOnly: settings.quantOnly } : {}),
    ...(settings.scorers !== undefined ? { scorers: settings.scorers } : {}),
    scorerPreset: settings.scorerPreset,
    ...(settings.scalar !== undefined ? { scalar: settings.scalar } : {}),
    ...(settings.sweep !== undefined ? { sweep: settings.sweep } : {}),
    ...(settings.sweepPreset !== undefined ? { sweepPreset: settings.sweepPreset } : {}),
  });
  const corpus = options.corpus ?? heldOutSpeeches().map((s) => ({ title: `${s.year} ${s.president}`, text: s.text }));
  const engine = await QualityEngine.create(model.model);
  let perplexity: PerplexityResult | null = null;
  let retrieval: RetrievalResult | null = null;
  const seconds = { perplexity: 0, retrieval: 0, total: 0 };
  try {
    if (settings.perplexity) {
      const t = performance.now();
      perplexity = await measurePerplexity(engine, model.tokenizer, corpus, variants, {
        prefixes: settings.prefixes,
        scoreTokens: settings.scoreTokens,
        texts: settings.texts,
        compressEvery: settings.compressEvery,
        onProgress: (d, n) => options.onProgress?.("perplexity", d, n),
      });
      seconds.perplexity = (performance.now() - t) / 1000;
    }
    if (settings.retrieval) {
      const t = performance.now();
      retrieval = await measureRetrieval(engine, model.tokenizer, corpus.map((c) => c.text), variants, {
        seed: settings.seed,
        contexts: settings.contexts,
        depths: settings.depths,
        samplesPerCell: settings.samplesPerCell,
        ...(settings.kinds !== undefined ? { kinds: settings.kinds } : {}),
        compressEvery: settings.compressEvery,
        onProgress: (d, n) => options.onProgress?.("retrieval", d, n),
      });
      seconds.retrieval = (performance.now() - t) / 1000;
    }
  } finally {
    await engine.dispose();
  }
  seconds.total = (performance.now() - started) / 1000;

  const rows = variants.map((v) => combineRow(v, perplexity, retrieval, model.model.config.headDim, model.model.config.numKvHeads));
  const c = model.model.config;
  const observedScorer =
    engine.queryOutputs !== null
      ? "observed scorer fed with the model's own queries (extra graph outputs), the last 32 positions at every compression"
      : `observed scorer falls back to key-key: ${engine.queryNote}`;
  const notes: string[] = [];
  if (!model.trained) notes.push(RANDOM_WEIGHTS_NOTE);
  if (model.tokenizer.kind === "utf8-bytes") notes.push(`Tokens are UTF-8 bytes: ${model.tokenizer.description}.`);
  const fp16Recall = retrieval?.rows.find((r) => r.variant === "none")?.recall;
  if (fp16Recall !== undefined && fp16Recall < MIN_USEFUL_FP16_RECALL) {
    notes.push(
      `The FP16 cache recalls only ${(100 * fp16Recall).toFixed(0)}% of the retrieval samples (below ${100 * MIN_USEFUL_FP16_RECALL}%): this model cannot retrieve, ` +
        "so the recall columns say nothing about compression, and the goal \"recall = FP16\" is not judged. `answer = FP16` still shows whether a cache changes the completion.",
    );
  }
  notes.push(
    "Ratios are measured from the cache's allocator bytes when the last token was scored; they include the FP16 residual window of " +
      "up to 128 recent tokens and the headers, so short contexts show lower ratios than the long-context figures of `nexusquant presets`.",
  );
  return {
    suite: "quality",
    model: { label: model.label, dir: model.dir, trained: model.trained, tokenizer: model.tokenizer.description, layers: c.numLayers, kvHeads: c.numKvHeads, queryHeads: c.numHeads, headDim: c.headDim, vocab: c.vocabSize },
    backend: backendInfo().auto.backend,
    observedScorer,
    settings,
    rows,
    perplexity,
    retrieval,
    goals: checkGoals(rows, model.trained, fp16Recall),
    notes,
    seconds,
  };
}

function combineRow(v: Variant, perplexity: PerplexityResult | null, retrieval: RetrievalResult | null, headDim: number, kvHeads: number): QualityRow {
  const p = perplexity?.rows.find((r) => r.variant === v.name && r.prefix === "all");
  const r = retrieval?.rows.find((x) => x.variant === v.name);
  return {
    variant: v.name,
    group: v.group,
    runs: describeSpec(v.resolved, v.scalar, headDim),
    sameAs: v.sameAs,
    ratio: p?.ratio ?? r?.ratio ?? null,
    ratioLongContext: v.scalar !== undefined ? 16 / scalarBitsPerElement(v.scalar, headDim) : v.resolved === null ? 1 : specRatio(v.resolved, headDim, kvHeads),
    deltaPplPercent: p?.deltaPplPercent ?? null,
    ppl: p?.ppl ?? null,
    klMean: p?.klMean ?? null,
    top1Agreement: p?.top1Agreement ?? null,
    recall: r?.recall ?? null,
    recallDelta: r?.recallDelta ?? null,
    sameAsFp16: r?.sameAsFp16 ?? null,
    recallByContext: r?.byContext ?? null,
    recallByDepth: r?.byDepth ?? null,
  };
}

/** Below this FP16 recall a model cannot retrieve, and recall comparisons are not judged. */
export const MIN_USEFUL_FP16_RECALL = 0.5;

export function checkGoals(rows: readonly QualityRow[], trained: boolean, fp16Recall?: number): GoalResult[] {
  const caveat = trained ? "" : " (random weights: meaningless until the trained model exists)";
  return GOALS.map((goal) => {
    const row = rows.find((r) => r.variant === goal.preset);
    if (row === undefined || (row.deltaPplPercent === null && row.recall === null)) {
      return { ...goal, status: "not measured", detail: `${goal.preset} was not in this run` };
    }
    const misses: string[] = [];
    if (row.deltaPplPercent === null) misses.push("ΔPPL not measured");
    else if (row.deltaPplPercent > goal.maxDeltaPplPercent) misses.push(`ΔPPL ${row.deltaPplPercent.toFixed(2)}% > ${goal.maxDeltaPplPercent}%`);
    if (goal.recallEqualsFp16) {
      if (row.recallDelta === null) misses.push("recall not measured");
      else if (fp16Recall !== undefined && fp16Recall < MIN_USEFUL_FP16_RECALL) misses.push(`recall not measured (the FP16 cache recalls ${pct(fp16Recall)}: the model cannot retrieve)`);
      // "Equal to FP16" means nothing lost: a cache that happens to answer one more sample is not a miss.
      else if (row.recallDelta < 0) misses.push(`recall ${pct(row.recall!)} vs FP16 ${pct(row.recall! - row.recallDelta)}`);
    }
    const measuredPpl = row.deltaPplPercent === null ? "" : `ΔPPL ${row.deltaPplPercent.toFixed(2)}% ≤ ${goal.maxDeltaPplPercent}%`;
    const measuredRecall = !goal.recallEqualsFp16 || row.recallDelta === null || row.recallDelta < 0 ? ""
      : row.recallDelta === 0 ? ", recall equal to FP16" : `, recall ${pct(row.recall!)} ≥ FP16 ${pct(row.recall! - row.recallDelta)}`;
    const onlyUnmeasured = misses.every((m) => m.includes("not measured"));
    const status = misses.length === 0 ? "met" : onlyUnmeasured ? "not measured" : "missed";
    const detail = misses.length === 0 ? `${measuredPpl}${measuredRecall}` : onlyUnmeasured && measuredPpl !== "" ? `${measuredPpl}; ${misses.join("; ")}` : misses.join("; ");
    return { ...goal, status, detail: detail + caveat };
  });
}

const pct = (x: number) => `${(100 * x).toFixed(0)}%`;

