/**
 * The StateStore contract, run on every store (a directory; Redis on the test's own redis-server):
 * whole values or none, last writer wins whole, TTL, bad input; then each store's own faults (a
 * writer dying half-way, damaged data, Redis unreachable or stalled) with nothing half-written.
 */
import { afterAll, describe, expect, it } from "vitest";
import { mkdtemp, readdir, rm, utimes, writeFile, readFile } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NexusQuantError } from "../../src/errors.js";
import { FileStateStore, RedisStateStore, type RedisClientLike, type StateStore } from "../../src/store/index.js";
import { testRedis } from "./local-redis.js";

const redis = await testRedis();
const redisSkip = redis.skipReason !== undefined;
const redisSuffix = redisSkip ? ` (skipped: ${redis.skipReason})` : "";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "nq-store-"));
  dirs.push(d);
  return d;
}

/** Deterministic bytes, different for each seed. */
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

async function failure(p: Promise<unknown>): Promise<NexusQuantError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof NexusQuantError) return e;
    throw e;
  }
  throw new Error("expected a NexusQuantError");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const stores: { name: string; skip: boolean; make: () => Promise<StateStore> }[] = [
  { name: "FileStateStore", skip: false, make: async () => new FileStateStore({ dir: await tempDir() }) },
  { name: `RedisStateStore${redisSuffix}`, skip: redisSkip, make: async () => new RedisStateStore({ url: redis.server!.url, chunkBytes: 1024, prefix: `t${Math.random()}:` }) },
];

describe.each(stores)("StateStore contract: $name", ({ skip, make }) => {
  it.skipIf(skip)("get of a missing key is undefined; put/get round-trips every size; put replaces; delete removes", async () => {
    const store = await make();
    expect(await store.get("a")).toBeUndefined();
    for (const n of [0, 1, 1023, 1024, 1025, 100_000]) {
      const v = bytes(n, n);
      await store.put("a", v);
      expect(Buffer.from((await store.get("a"))!).equals(Buffer.from(v))).toBe(true);
    }
    await store.put("a", bytes(10, 99));
    expect(Array.from((await store.get("a"))!)).toEqual(Array.from(bytes(10, 99)));
    await store.put("key with spaces / slashes : and ünïcode {braces}", bytes(5, 1));
    expect(Array.from((await store.get("key with spaces / slashes : and ünïcode {braces}"))!)).toEqual(Array.from(bytes(5, 1)));
    expect(await store.delete("a")).toBe(true);
    expect(await store.delete("a")).toBe(false);
    expect(await store.get("a")).toBeUndefined();
    await store.close?.();
  });

  it.skipIf(skip)("a value with a TTL reads as absent once it expires; without one it stays", async () => {
    const store = await make();
    await store.put("short", bytes(3000, 2), { ttlSeconds: 0.3 });
    await store.put("long", bytes(3000, 3));
    expect(await store.get("short")).toBeDefined();
    await sleep(450);
    expect(await store.get("short")).toBeUndefined();
    expect(await store.get("long")).toBeDefined();
    await store.close?.();
  });

  it.skipIf(skip)("bad keys, values and TTLs are INVALID_ARGUMENT", async () => {
    const store = await make();
    for (const key of ["", "a\nb", "x".repeat(1025), 5, undefined]) expect((await failure(store.get(key as never))).code).toBe("INVALID_ARGUMENT");
    expect((await failure(store.put("k", "text" as never))).code).toBe("INVALID_ARGUMENT");
    expect((await failure(store.put("k", new Uint8Array(1), { ttlSeconds: -1 }))).code).toBe("INVALID_ARGUMENT");
    expect((await failure(store.put("k", new Uint8Array(1), { ttlSeconds: Number.NaN }))).code).toBe("INVALID_ARGUMENT");
    expect(await store.get("k")).toBeUndefined();
    await store.close?.();
  });

  it.skipIf(skip)("two writers on one key, with readers between: every read is one writer's value whole; the last to finish wins", async () => {
    const store = await make();
    const A = bytes(60_000, 10);
    const B = bytes(45_000, 11);
    const isA = (v: Uint8Array) => Buffer.from(v).equals(Buffer.from(A));
    const isB = (v: Uint8Array) => Buffer.from(v).equals(Buffer.from(B));
    for (let round = 0; round < 8; round++) {
      const finished: string[] = [];
      const reads: Promise<Uint8Array | undefined>[] = [];
      const writes = [store.put("k", A).then(() => finished.push("A")), store.put("k", B).then(() => finished.push("B"))];
      for (let r = 0; r < 4; r++) reads.push(store.get("k"));
      await Promise.all(writes);
      for (const v of await Promise.all(reads)) if (v !== undefined) expect(isA(v) || isB(v)).toBe(true);
      const final = (await store.get("k"))!;
      expect(isA(final) || isB(final)).toBe(true);
      if (store instanceof RedisStateStore) expect(isA(final) ? "A" : "B").toBe(finished.at(-1)); // commits run in reply order on one connection
    }
    await store.close?.();
  });
});

describe("FileStateStore faults", () => {
  it("a writer that died half-way leaves a temporary file that is never read, and prune() removes it once stale", async () => {
    const dir = await tempDir();
    const store = new FileStateStore({ dir });
    await store.put("doc", bytes(5000, 1));
    const [file] = await readdir(dir);
    const temp = join(dir, `${file}.4242.deadbeef.tmp`);
    await writeFile(temp, (await readFile(join(dir, file!))).subarray(0, 100)); // what a crash leaves
    expect(Array.from((await store.get("doc"))!)).toEqual(Array.from(bytes(5000, 1)));
    expect(await store.prune()).toBe(0); // fresh temporary files may belong to a live writer
    const old = new Date(Date.now() - 2 * 3600 * 1000);
    await utimes(temp, old, old);
    await store.put("gone", bytes(10, 2), { ttlSeconds: 0.05 });
    await sleep(100);
    expect(await store.prune()).toBe(2);
    expect((await readdir(dir)).length).toBe(1);
  });

  it("a damaged file is CORRUPT_DATA naming it; a directory it cannot write is STORE_UNAVAILABLE and the old value stays", async () => {
    const dir = await tempDir();
    const store = new FileStateStore({ dir });
    await store.put("doc", bytes(5000, 1));
    const [file] = await readdir(dir);
    const damaged = await readFile(join(dir, file!));
    damaged[2000] ^= 1;
    await writeFile(join(dir, file!), damaged);
    const e = await failure(store.get("doc"));
    expect(e.code).toBe("CORRUPT_DATA");
    expect(e.message).toContain(file!);
    const blocked = new FileStateStore({ dir: join(dir, file!, "sub") }); // a file where a directory should be
    const w = await failure(blocked.put("x", bytes(10, 1)));
    expect(w.code).toBe("STORE_UNAVAILABLE");
    expect(w.message).toContain("Nothing was half-written");
  });
});

/** A plain node-redis client for the test's own checks (an error listener, so a closed server is not an uncaught error). */
async function rawClient(): Promise<RedisClientLike & { destroy(): void }> {
  const { createClient } = await import("redis");
  const raw = createClient({ url: redis.server!.url });
  raw.on("error", () => undefined);
  await raw.connect();
  return raw as never;
}

describe(`RedisStateStore faults${redisSuffix}`, () => {
  const url = () => redis.server!.url;

  /** A client that passes commands to a real one and fails from the `failAt`-th on (a writer dying). */
  async function dyingClient(failAt: number, cleanupAllowed: boolean): Promise<{ client: RedisClientLike; raw: RedisClientLike & { destroy(): void } }> {
    const raw = await rawClient();
    let n = 0;
    const client: RedisClientLike = {
      sendCommand: (args, options) => {
        n += 1;
        if (n >= failAt && !(cleanupAllowed && args[0] === "DEL")) return Promise.reject(new Error("connection lost (simulated)"));
        return raw.sendCommand(args, options);
      },
    };
    return { client, raw };
  }

  async function keysLike(raw: RedisClientLike, pattern: string): Promise<string[]> {
    return (await raw.sendCommand(["KEYS", pattern])) as string[];
  }

  it.skipIf(redisSkip)("a writer that fails half-way: the old value stays readable, its chunks are deleted (or expire when Redis is gone too)", async () => {
    const prefix = `dying${Math.random()}:`;
    const good = new RedisStateStore({ url: url(), prefix, chunkBytes: 1024 });
    await good.put("doc", bytes(5000, 1));
    for (const cleanupAllowed of [true, false]) {
      const { client, raw } = await dyingClient(4, cleanupAllowed);
      const dying = new RedisStateStore({ client, prefix, chunkBytes: 1024, pendingTtlMs: 60_000 });
      const e = await failure(dying.put("doc", bytes(20_000, 2)));
      expect(e.code).toBe("STORE_UNAVAILABLE");
      expect(Array.from((await good.get("doc"))!)).toEqual(Array.from(bytes(5000, 1)));
      const chunks = await keysLike(raw, `${prefix}*#*`);
      if (cleanupAllowed) {
        expect(chunks.length).toBe(5); // only the old value's 5 chunks
      } else {
        expect(chunks.length).toBe(5 + 3); // the dead writer's 3 chunks, without a manifest, expiring
        const pttl = await Promise.all(chunks.map((k) => raw.sendCommand(["PTTL", k]) as Promise<number>));
        expect(pttl.filter((t) => t > 0 && t <= 60_000).length).toBe(3);
        expect(pttl.filter((t) => t === -1).length).toBe(5);
      }
      raw.destroy();
    }
    await good.close();
  });

  it.skipIf(redisSkip)("chunks evicted under the value read as absent (and the dangling manifest goes); damaged chunks or a foreign value are CORRUPT_DATA", async () => {
    const prefix = `evict${Math.random()}:`;
    const store = new RedisStateStore({ url: url(), prefix, chunkBytes: 1024 });
    const raw = await rawClient();
    await store.put("a", bytes(4000, 1));
    const chunks = (await raw.sendCommand(["KEYS", `${prefix}{a}#*`])) as string[];
    await raw.sendCommand(["DEL", chunks[1]!]);
    expect(await store.get("a")).toBeUndefined();
    expect(await raw.sendCommand(["EXISTS", `${prefix}{a}`])).toBe(0);

    await store.put("b", bytes(4000, 2));
    const [chunk] = (await raw.sendCommand(["KEYS", `${prefix}{b}#*`])) as string[];
    await raw.sendCommand(["SETRANGE", chunk!, "10", "zz"]);
    const e = await failure(store.get("b"));
    expect(e.code).toBe("CORRUPT_DATA");
    expect(e.message).toContain("checksum mismatch");

    await raw.sendCommand(["SET", `${prefix}{c}`, "something else"]);
    const f = await failure(store.get("c"));
    expect(f.code).toBe("CORRUPT_DATA");
    expect(f.message).toContain("not one this store writes");
    raw.destroy();
    await store.close();
  });

  it.skipIf(redisSkip)("Redis paused for writes: put fails with STORE_UNAVAILABLE within the timeout, another worker still reads the old value whole", async () => {
    const prefix = `pause${Math.random()}:`;
    const store = new RedisStateStore({ url: url(), prefix, chunkBytes: 1024, timeoutMs: 400 });
    const reader = new RedisStateStore({ url: url(), prefix, timeoutMs: 400 });
    await store.put("doc", bytes(3000, 1));
    expect(await reader.get("doc")).toBeDefined(); // connected before the pause
    const admin = await rawClient();
    await admin.sendCommand(["CLIENT", "PAUSE", "1500", "WRITE"]);
    const t0 = performance.now();
    const e = await failure(store.put("doc", bytes(9000, 2)));
    expect(e.code).toBe("STORE_UNAVAILABLE");
    expect(performance.now() - t0).toBeLessThan(1200);
    expect(Array.from((await reader.get("doc"))!)).toEqual(Array.from(bytes(3000, 1)));
    await sleep(1600); // unpaused: the write that was cut off never commits a part of itself
    await reader.close();
    const after = (await store.get("doc"))!;
    expect([Buffer.from(bytes(3000, 1)), Buffer.from(bytes(9000, 2))].some((v) => v.equals(Buffer.from(after)))).toBe(true);
    admin.destroy();
    await store.close();
  });
});

describe("RedisStateStore: unreachable or stalled Redis", () => {
  it("nothing listening: get/put/delete fail with STORE_UNAVAILABLE within the timeout, every time", async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer();
      s.listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const store = new RedisStateStore({ url: `redis://127.0.0.1:${port}`, timeoutMs: 300 });
    for (const op of [() => store.get("k"), () => store.put("k", bytes(10, 1)), () => store.delete("k")]) {
      const t0 = performance.now();
      const e = await failure(op());
      expect(e.code).toBe("STORE_UNAVAILABLE");
      expect(performance.now() - t0).toBeLessThan(1500);
    }
    await store.close();
  });

  it("a server that accepts and never answers: STORE_UNAVAILABLE within the timeout", async () => {
    const sockets: Socket[] = [];
    const server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as { port: number }).port;
    const store = new RedisStateStore({ url: `redis://127.0.0.1:${port}`, timeoutMs: 300 });
    const t0 = performance.now();
    const e = await failure(store.get("k"));
    expect(e.code).toBe("STORE_UNAVAILABLE");
    expect(e.message).toContain("300 ms");
    expect(performance.now() - t0).toBeLessThan(1500);
    await store.close();
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });

  it("bad options are INVALID_ARGUMENT", () => {
    expect(() => new RedisStateStore({} as never)).toThrow(/exactly one of url/);
    expect(() => new RedisStateStore({ url: "http://x" })).toThrow(/redis:\/\//);
    expect(() => new RedisStateStore({ url: "redis://x", chunkBytes: 10 })).toThrow(/chunkBytes/);
    expect(() => new RedisStateStore({ client: {} as never })).toThrow(/sendCommand/);
  });
});
