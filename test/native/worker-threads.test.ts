import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { native } from "../../src/runtime/native.js";
import { TIME_SCALE } from "../helpers.js";


// The addon inside worker_threads: each environment loads it separately, so what it keeps per
// environment must be instance data (Env::SetInstanceData), never a static JS reference; and async
// work must survive buffers transferred between threads (test/native/fixtures/*.cjs).
const here = dirname(fileURLToPath(import.meta.url));
const addonPath = process.env.NEXUSQUANT_ADDON ?? join(here, "..", "..", "build", "Release", "nexusquant.node");

function runWorker(seed: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const w = new Worker(join(here, "fixtures", "worker-cache.cjs"), { workerData: { addon: addonPath, seed } });
    w.once("message", (m) => {
      void w.terminate();
      resolve(m as Record<string, unknown>);
    });
    w.once("error", reject);
  });
}

describe("the addon in worker_threads", () => {
  it("a cache and the codec work inside a worker, also after the main thread loaded the addon", async () => {
    native();  // the main environment loads it first: its class reference must not leak into the worker
    const r = await runWorker(1);
    expect(r).toMatchObject({ ok: true, sameAttention: true });
    expect(r.tensorBytes).toBeGreaterThan(0);
  }, 30_000 * TIME_SCALE);

  it("two workers at once, each with its own caches (and deserialize in each)", async () => {
    const rs = await Promise.all([runWorker(2), runWorker(3)]);
    for (const r of rs) expect(r).toMatchObject({ ok: true, sameAttention: true });
  }, 30_000 * TIME_SCALE);

  it("a worker terminated while it holds caches does not take the process down", async () => {
    const w = new Worker(join(here, "fixtures", "worker-cache.cjs"), { workerData: { addon: addonPath, seed: 4, hang: true } });
    const first = await new Promise<Record<string, unknown>>((resolve, reject) => {
      w.once("message", resolve);
      w.once("error", reject);
    });
    expect(first.ok).toBe(true);
    expect(await w.terminate()).toBe(1);
  }, 30_000 * TIME_SCALE);
});

describe("async codec work never reads or writes memory the caller can free", () => {
  it("inputs transferred or detached mid-flight (structuredClone, worker postMessage) + GC: no crash, right results, typed error for a lost output", () => {
    // A child process: a use-after-free would kill it (SIGSEGV) rather than this test runner.
    const out = execFileSync(process.execPath, ["--expose-gc", join(here, "fixtures", "async-transfer.cjs")], {
      env: { ...process.env, NEXUSQUANT_ADDON: addonPath },
      encoding: "utf8",
      timeout: 50_000 * TIME_SCALE,
    });
    const r = JSON.parse(out.trim().split("\n").pop()!) as Record<string, Record<string, unknown>>;
    expect(r.quantizeStructuredClone).toEqual({ ok: true, detached: true, sameAsSync: true });
    expect(r.quantizeWorkerTransfer).toEqual({ ok: true, detached: true, sameAsSync: true });
    expect(r.dequantizeInputsTransferred).toEqual({ ok: true, sameAsSync: true });
    expect(r.dequantizeOutputTransferred).toEqual({ ok: false, code: "INVALID_ARGUMENT" });
    expect(r.manyInFlight).toEqual({ ok: true, sameAsSync: true });
  }, 60_000 * TIME_SCALE);
});
