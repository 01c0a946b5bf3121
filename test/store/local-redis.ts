/**
 * The tests' own redis-server (src/store/local-redis.ts), started once per test file on a free
 * loopback port and stopped after it. Where it cannot start, the suites that need it skip and say why;
 * under NEXUSQUANT_REQUIRE_REDIS=1 (CI, which installs redis-server) they fail instead.
 */
import { afterAll } from "vitest";
import { startLocalRedis, type LocalRedis } from "../../src/store/local-redis.js";

export async function testRedis(): Promise<{ server?: LocalRedis; skipReason?: string }> {
  try {
    const server = await startLocalRedis();
    afterAll(() => server.stop());
    return { server };
  } catch (e) {
    if (process.env.NEXUSQUANT_REQUIRE_REDIS === "1") throw e;
    const reason = `no redis-server: ${(e as Error).message}`;
    console.warn(`[skipped] ${reason}`);
    return { skipReason: reason };
  }
}
