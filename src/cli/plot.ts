// Types only: vega and vega-lite load in renderSvg, so commands start fast unless they plot.
import type { TopLevelSpec } from "vega-lite";

export interface MemoryPoint {
  context: number;
  /** Memory in decimal GB. */
  gb: number;
  series: string;
}

export interface MemoryPlot {
  title: string;
  yTitle: string;
  points: MemoryPoint[];
  /** Series in legend order. */
  series: string[];
  /** A horizontal line (the GPU's memory), in decimal GB. */
  limit?: { gb: number; label: string };
}

/** A quantity against context, one line per series. */
export interface ContextPlot {
  title: string;
  yTitle: string;
  /** Legend title. */
  seriesTitle: string;
  points: { context: number; value: number; series: string }[];
  /** Series in legend order. */
  series: string[];
  /** A horizontal line at this value, labelled. */
  limit?: { value: number; label: string };
}

/** Memory against context as a Vega-Lite spec: log-2 context axis, log memory axis (presets span 30x). */
export function memoryPlotSpec(plot: MemoryPlot): TopLevelSpec {
  return contextPlotSpec({
    title: plot.title,
    yTitle: plot.yTitle,
    seriesTitle: "cache",
    points: plot.points.map((p) => ({ context: p.context, value: p.gb, series: p.series })),
    series: plot.series,
    ...(plot.limit ? { limit: { value: plot.limit.gb, label: plot.limit.label } } : {}),
  });
}

/** A quantity against context as a Vega-Lite spec: log-2 context axis, log y axis. */
export function contextPlotSpec(plot: ContextPlot): TopLevelSpec {
  const lines = {
    data: { values: plot.points },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "context", type: "quantitative", title: "context (tokens)", scale: { type: "log", base: 2 }, axis: {
          // Token counts in the k = 1024 units that --context uses.
          values: [...new Set(plot.points.map((p) => p.context))].filter((c) => Number.isInteger(Math.log2(c))),
          labelExpr: "datum.value >= 1048576 ? datum.value / 1048576 + 'm' : datum.value >= 1024 ? datum.value / 1024 + 'k' : datum.value",
        } },
      y: { field: "value", type: "quantitative", title: plot.yTitle, scale: { type: "log" } },
      color: { field: "series", type: "nominal", title: plot.seriesTitle, sort: plot.series },
    },
  };
  const layers: unknown[] = [lines];
  if (plot.limit) {
    const limit = [{ value: plot.limit.value, label: plot.limit.label }];
    layers.push(
      { data: { values: limit }, mark: { type: "rule", color: "black", strokeDash: [6, 4] }, encoding: { y: { field: "value", type: "quantitative" } } },
      {
        data: { values: limit },
        mark: { type: "text", align: "left", dx: 4, dy: -6, color: "black" },
        encoding: { y: { field: "value", type: "quantitative" }, x: { value: 0 }, text: { field: "label" } },
      },
    );
  }
  return { $schema: "https://vega.github.io/schema/vega-lite/v6.json", title: plot.title, width: 640, height: 400, layer: layers } as TopLevelSpec;
}

/** Renders through Vega's headless view (no canvas needed for SVG). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const [vega, { compile }] = await Promise.all([import("vega"), import("vega-lite")]);
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
