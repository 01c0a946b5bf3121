/**
 * `nexusquant bench resume` on a small size: worker processes, a private redis-server, conversations
 * hopping at every turn, tokens compared with the single-process run. Checks that the benchmark works
 * and its report is complete; its figures are not asserted (a shared 2-core machine).
 */
import { describe, expect, it } from "vitest";
import type { ResumeReport } from "../../src/cli/bench/resume.js";
import { startLocalRedis } from "../../src/store/local-redis.js";
import { cli } from "./helpers.js";

const redisReason = await startLocalRedis().then(
  async (r) => {
    await r.stop();
    return undefined;
  },
  (e: Error) => {
    if (process.env.NEXUSQUANT_REQUIRE_REDIS === "1") throw e;
    return e.message;
  },
);
if (redisReason !== undefined) console.warn(`[skipped] bench resume: ${redisReason}`);

describe(`nexusquant bench resume${redisReason === undefined ? "" : ` (skipped: ${redisReason})`}`, () => {
  it.skipIf(redisReason !== undefined)("2 workers, 2 conversations × 3 turns, two presets: every turn hops and its tokens equal the single-process run", async () => {
    const r = await cli("bench", "resume", "--workers", "2", "--conversations", "2", "--turns", "3", "--contexts", "300", "--presets", "balanced,quant", "--new-tokens", "6", "--turn-tokens", "9", "--chunk", "64", "--compress-every", "16", "--json");
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as ResumeReport;
    expect(report.rows.map((x) => x.preset)).toEqual(["balanced", "quant"]);
    for (const row of report.rows) {
      expect(row).toMatchObject({ context: 300, identicalTurns: 6, totalTurns: 6, hops: 4 });
      expect(row.stateBytes).toBeGreaterThan(row.cacheBytes);
      expect(row.fp16KvBytes).toBeGreaterThan(row.stateBytes);
      expect(row.reprefillTokens).toBe(300 + 6 + 9 + 6 + 9);
      for (const k of ["saveMs", "putMs", "getMs", "restoreMs", "resumedFirstTokenMs", "reprefillFirstTokenMs", "redisMemoryBytes"] as const) expect(row[k]).toBeGreaterThan(0);
    }
    expect(report.targets[0]).toContain("12/12 turns with tokens identical");
    expect(report.targets.join("\n")).toContain("NOT measured");
  }, 240_000);

  it("--turns 1 is a usage error", async () => {
    const r = await cli("bench", "resume", "--turns", "1");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--turns");
  });
});
