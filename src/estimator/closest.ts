/** Levenshtein distance, for "did you mean" lists on unknown ids. */
export function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

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
