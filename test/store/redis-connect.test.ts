/**
 * node-redis retries a refused connection on a timer for as long as the client lives. A store whose
 * connection does not come up within timeoutMs must end that client (else the retries go on, and
 * keep the process alive), and the next command must try a fresh one. A fake `redis` module counts.
 */
import { expect, it, vi } from "vitest";

const made: { destroyed: boolean; connects: number }[] = [];
vi.mock("redis", () => ({
  createClient: () => {
    const record = { destroyed: false, connects: 0 };
    made.push(record);
    return {
      on: () => undefined,
      connect: () => {
        record.connects += 1;
        return new Promise(() => undefined); // never up: what a refused, retried connection looks like
      },
      destroy: () => void (record.destroyed = true),
      sendCommand: () => Promise.reject(new Error("not connected")),
    };
  },
}));

it("a connection that does not come up within timeoutMs is ended, and the next command makes a new one", async () => {
  const { RedisStateStore } = await import("../../src/store/index.js");
  const store = new RedisStateStore({ url: "redis://127.0.0.1:9", timeoutMs: 200 });
  const t0 = performance.now();
  await expect(store.get("k")).rejects.toMatchObject({ code: "STORE_UNAVAILABLE" });
  expect(performance.now() - t0).toBeLessThan(1000);
  expect(made).toEqual([{ destroyed: true, connects: 1 }]);
  await expect(store.put("k", new Uint8Array(1))).rejects.toMatchObject({ code: "STORE_UNAVAILABLE" });
  expect(made.map((m) => m.destroyed)).toEqual([true, true]);
  await store.close();
});
