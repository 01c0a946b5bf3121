/**
 * The quality report as Markdown (the table meant for the README) and as a Vega-Lite plot of ΔPPL
 * and recall against the measured compression ratio. Both are built only from a QualityReport.
 */
import type { TopLevelSpec } from "vega-lite";
import type { QualityReport, QualityRow } from "./harness.js";

const fixed = (x: number | null, digits: number, suffix = "") => (x === null ? "—" : `${x.toFixed(digits)}${suffix}`);
const percent = (x: number | null) => (x === null ? "—" : `${(100 * x).toFixed(0)}%`);
const signed = (x: number | null, digits: number, suffix = "") => (x === null ? "—" : `${x >= 0 ? "+" : ""}${x.toFixed(digits)}${suffix}`);

function cells(row: QualityRow): string[] {
  return [
    row.sameAs === null ? row.variant : `${row.variant} (= ${row.sameAs})`,
    row.runs,
    fixed(row.ratio, 2, "×"),
    fixed(row.ppl, 3),
    signed(row.deltaPplPercent, 2, "%"),
    fixed(row.klMean, 4),
    percent(row.top1Agreement),
    percent(row.recall),
    row.recallDelta === null ? "—" : `${row.recallDelta >= 0 ? "+" : ""}${(100 * row.recallDelta).toFixed(0)} pt`,
    percent(row.sameAsFp16),
  ];
}

export const TABLE_HEADERS = ["cache", "spec", "ratio", "PPL", "ΔPPL", "KL (nats)", "top-1 = FP16", "recall", "recall vs FP16", "answer = FP16"];

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
  out.push(`Scorers are compared at ${s.scorerPreset}'s eviction fraction (same held count, so the same ratio). ${report.observedScorer}.`, "");
  out.push("## Goals", "");
  out.push(markdownTable(["preset", "goal", "status", "measured"], report.goals.map((g) => [
    g.preset,
    `ΔPPL ≤ ${g.maxDeltaPplPercent}%${g.recallEqualsFp16 ? ", recall = FP16" : ""}`,
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
