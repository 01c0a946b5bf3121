/** Plain-text tables and number formatting for the CLI's human-readable output. */
export type Align = "left" | "right";

export function renderTable(headers: string[], rows: string[][], align: Align[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => ((align[i] ?? "left") === "right" ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n") + "\n";
}

export function formatInt(n: number): string {
  if (n === Number.POSITIVE_INFINITY) return "unbounded";
  return Math.round(n).toLocaleString("en-US");
}

export function formatBytesPerToken(n: number): string {
  return Number.isInteger(n) ? formatInt(n) : n.toLocaleString("en-US", { maximumFractionDigits: 1 });
}

export function formatGb(bytes: number): string {
  return (bytes / 1e9).toFixed(2);
}

export function formatGib(bytes: number): string {
  return (bytes / 2 ** 30).toFixed(2);
}

export function formatRatio(r: number): string {
  return `${r.toFixed(2)}x`;
}

/** Context lengths as users type them: 131072 → "131,072 (128k)". */
export function formatContext(tokens: number): string {
  if (tokens === Number.POSITIVE_INFINITY) return "unbounded (every layer slides)";
  const short = tokens >= 1024 * 1024 && tokens % (1024 * 1024) === 0 ? `${tokens / (1024 * 1024)}m` : tokens >= 1024 && tokens % 1024 === 0 ? `${tokens / 1024}k` : "";
  return short ? `${formatInt(tokens)} (${short})` : formatInt(tokens);
}

/** JSON.stringify writes Infinity as null; say so where it can happen and keep numbers otherwise. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (v === Number.POSITIVE_INFINITY ? null : v), 2) + "\n";
}
