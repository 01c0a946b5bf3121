import { editDistance } from "../validate.js";

/** Levenshtein distance (defined in src/validate.ts, with the other "did you mean" helpers). */
export { editDistance };

/**
 * The known ids closest to `query`: smallest edit distance first; ids that contain the query (or are
 * contained in it) count as close, since users often type a prefix such as "llama-70b" or "h100".
 */
export function closestIds(query: string, ids: readonly string[], limit = 3): string[] {
  const q = query.toLowerCase();
  const scored = ids.map((id) => {
    const lower = id.toLowerCase();
    const contains = lower.includes(q) || q.includes(lower);
    return { id, score: contains ? Math.min(1, editDistance(q, lower)) : editDistance(q, lower) };
  });
  scored.sort((x, y) => x.score - y.score || x.id.localeCompare(y.id));
  return scored.slice(0, limit).map((s) => s.id);
}
