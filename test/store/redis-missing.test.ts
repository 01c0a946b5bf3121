/**
 * The Redis client is an optional peer: without the `redis` package, the store module still loads,
 * and only a RedisStateStore that connects fails, with an error naming the package to install.
 * (.ci/pack-check.sh checks the same on a production install, where `redis` is really absent.)
 */
import { expect, it, vi } from "vitest";

vi.mock("redis", () => {
  throw new Error("Cannot find package 'redis' (simulated)");
});

it("without the redis package: BACKEND_UNAVAILABLE naming it, at the first command", async () => {
  const { FileStateStore, RedisStateStore } = await import("../../src/store/index.js");
  expect(typeof FileStateStore).toBe("function");
  const store = new RedisStateStore({ url: "redis://127.0.0.1:9", timeoutMs: 1000 });
  await expect(store.get("k")).rejects.toMatchObject({ code: "BACKEND_UNAVAILABLE", message: expect.stringContaining("npm install redis") });
});
