/**
 * The quality report as Markdown (the table meant for the README) and as a Vega-Lite plot of ΔPPL
 * and recall against the measured compression ratio. Both are built only from a QualityReport.
 */
import type { TopLevelSpec } from "vega-lite";
import type { QualityReport, QualityRow } from "./harness.js";

const fixed = (x: number | null, digits: number, suffix = "") => (x === null ? "—" : `${x.toFixed(digits)}${suffix}`);
const percent = (x: number | null) => (x === null ? "—" : `${(100 * x).toFixed(0)}%`);
const signed = (x: number | null, digits: number, suffix = "") => (x === null ? "—" : `${x >= 0 ? "+" : ""}${x.toFixed(digits)}${suffix}`);

/** One table row's cells, in TABLE_HEADERS order (the CLI prints the same cells). */
export function cells(row: QualityRow): string[] {
  return [
    row.sameAs === null ? row.variant : `${row.variant} (= ${row.sameAs})`,
    row.runs,
    fixed(row.ratio, 2, "×"),
    fixed(row.ratioLongContext, 2, "×"),
    signed(row.deltaPplPercent, 2, "%"),
    fixed(row.klMean, 4),
    percent(row.top1Agreement),
    percent(row.recall),
    percent(row.recallSamePrompt),
    percent(row.recallTwoFacts),
    percent(row.sameAsFp16),
    fixed(row.prefillCost, 2, "×"),
  ];
}

export const TABLE_HEADERS = [
  "cache",
  "spec",
  "ratio",
  "long-context ratio",
  "ΔPPL",
  "KL (nats)",
  "top-1 = FP16",
  "recall, later turn",
  "recall, same prompt",
  "recall, two facts",
  "answer = FP16",
  "prefill cost",
];

function markdownTable(headers: string[], rows: string[][]): string {
  const line = (c: string[]) => `| ${c.join(" | ")} |`;
  return [line(headers), line(headers.map(() => "---")), ...rows.map(line)].join("\n") + "\n";
}

export function qualityMarkdown(report: QualityReport): string {
  const s = report.settings;
  const out: string[] = [];
  out.push("# Quality: what compression costs in perplexity and recall", "");
  if (!report.model.trained) out.push(`> **${report.notes[0]}**`, "");
  out.push(`Model: ${report.model.label}. Tokenizer: ${report.model.tokenizer}. Cache backend: ${report.backend}.`, "");
  if (report.perplexity !== null) {
    const p = report.perplexity;
    out.push(
      `Perplexity: ${p.texts.length} held-out speeches (${p.texts.map((t) => t.title).join("; ")}), prefixes ${p.prefixes.join(" / ")} tokens ` +
        `prefilled then compressed, the next ${p.scoreTokens} tokens scored one decode step at a time through the cache (compression every ${s.compressEvery} tokens).`,
    );
  }
  if (report.retrieval !== null) {
    const r = report.retrieval;
    out.push(
      `Retrieval: ${r.samples.length} samples (contexts ${r.contexts.join(" / ")}, depths ${r.depths.map((d) => `${Math.round(d * 100)}%`).join(", ")}, ` +
        `${r.samplesPerCell} per cell, seed ${s.seed}); the passage is prefilled and compressed, the question fed through the cache, the answer decoded greedily.`,
    );
  }
  out.push("", markdownTable(TABLE_HEADERS, report.rows.map(cells)));
  out.push(
    `Rows run on the native path (the model's attention reads the compressed cache: \`withNexusQuant(await loadModel(dir))\`) unless named "(ORT wrapper)" ` +
      "or scalar: those run the whole-model ONNX graph through the ORT-session wrapper, whose dense past per step cannot give the scorers the model's queries. " +
      "**Prefill cost** is the FP16 baseline's prefill tokens/s on the same path divided by the row's (1.00× = nothing extra; reconstruct re-reads each chunk).",
    "",
  );
  out.push(`Scorers are compared at ${s.scorerPreset}'s eviction fraction (same held count, so the same ratio). ${report.observedScorer}.`, "");
  const scalarRows = report.rows.filter((r) => r.group === "scalar");
  if (scalarRows.length > 0) {
    out.push(
      "Scalar baselines (rows KIVI-*, Had-*, Turbo-*) run in the harness: quantized then dequantized at the same moments the cache compresses, " +
        "their ratio computed from their true storage (codes + FP16 scales/zero points/norms + FP16 tokens not yet quantized), without page or header overhead.",
      "",
    );
  }
  if (report.retrieval !== null) {
    const depths = report.retrieval.depths.map(String);
    const contexts = report.retrieval.contexts.map(String);
    const measured = report.rows.filter((r) => r.recallByDepth !== null && r.sameAs === null);
    out.push("## Recall by needle depth and context", "");
    out.push(
      markdownTable(
        ["cache", "ratio", ...depths.map((d) => `${Math.round(Number(d) * 100)}%`), ...contexts.map((c) => `${c} tok`)],
        measured.map((r) => [r.variant, fixed(r.ratio, 2, "×"), ...depths.map((d) => percent(r.recallByDepth![d] ?? null)), ...contexts.map((c) => percent(r.recallByContext![c] ?? null))]),
      ),
    );
  }
  out.push("## Goals", "");
  out.push(markdownTable(["preset", "goal", "status", "measured"], report.goals.map((g) => [
    g.preset,
    `≥ ${g.minRatio}×, ΔPPL ≤ ${g.maxDeltaPplPercent}%, later-turn recall ${g.minRecallOfFp16 === 1 ? "≥ FP16's" : `≥ ${Math.round(100 * g.minRecallOfFp16)}% of FP16's`}, same prompt ≥ later turn`,
    g.status === "met" ? "met" : g.status === "missed" ? "**missed**" : g.status,
    g.detail,
  ])));
  if (report.perplexity !== null && report.perplexity.prefixes.length > 1) {
    out.push("## ΔPPL by prefix length", "");
    const prefixes = report.perplexity.prefixes;
    const rows = report.rows.map((row) => [
      row.variant,
      ...prefixes.map((p) => {
        const r = report.perplexity!.rows.find((x) => x.variant === row.variant && x.prefix === p);
        return r === undefined ? "—" : `${signed(r.deltaPplPercent, 2, "%")} @ ${r.ratio.toFixed(2)}×`;
      }),
    ]);
    out.push(markdownTable(["cache", ...prefixes.map((p) => `P = ${p}`)], rows));
  }
  out.push("## Notes", "", ...report.notes.map((n) => `- ${n}`), "");
  out.push(`Run time: ${report.seconds.total.toFixed(1)} s (perplexity ${report.seconds.perplexity.toFixed(1)} s, retrieval ${report.seconds.retrieval.toFixed(1)} s).`, "");
  return out.join("\n");
}

/** Two panels sharing a log ratio axis: ΔPPL% and recall, one labelled point per measured variant. */
export function qualityPlotSpec(report: QualityReport): TopLevelSpec {
  const points = report.rows
    .filter((r) => r.sameAs === null && r.ratio !== null)
    .map((r) => ({ variant: r.variant, group: r.group, ratio: r.ratio, deltaPpl: r.deltaPplPercent, recall: r.recall }));
  const panel = (field: "deltaPpl" | "recall", title: string) => ({
    width: 560,
    height: 260,
    data: { values: points.filter((p) => p[field] !== null) },
    encoding: {
      x: { field: "ratio", type: "quantitative", title: "measured compression ratio (×, log)", scale: { type: "log" } },
      y: { field, type: "quantitative", title, ...(field === "recall" ? { scale: { domain: [0, 1] }, axis: { format: "%" } } : {}) },
    },
    layer: [
      { mark: { type: "point", filled: true, size: 70 }, encoding: { color: { field: "group", type: "nominal", title: "variant" }, shape: { field: "group", type: "nominal" } } },
      { mark: { type: "text", align: "left", dx: 6, dy: -6, fontSize: 10 }, encoding: { text: { field: "variant" } } },
    ],
  });
  const title = report.model.trained ? `Quality against compression: ${report.model.label}` : "Quality against compression (RANDOM WEIGHTS: checks the harness, not the compression)";
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title,
    vconcat: [panel("deltaPpl", "ΔPPL vs FP16 cache (%)"), panel("recall", "retrieval recall")],
  } as TopLevelSpec;
}
