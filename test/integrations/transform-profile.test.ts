/**
 * Transform profiles end to end (docs/transform.md): calibrateModel on a loaded checkpoint, the
 * profile picked up next to the checkpoint ("auto"), refused for another model, shared between
 * caches, carried by saved states, and the `nexusquant calibrate` command.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { calibrateModel, withNexusQuant } from "../../src/integrations/index.js";
import { createTinyLlama, loadModel, writeModelDir, type LlamaModel } from "../../src/model/index.js";
import { CompressedKVCache, memoryStats } from "../../src/runtime/index.js";
import { PROFILE_FILE_NAME, readProfile, writeProfile } from "../../src/transform/index.js";
import { transformTableBytes } from "../../src/format/index.js";
import { runCli } from "../../src/cli/run.js";
import { rejectionOf } from "../helpers.js";
import { ort, promptTokens, tinySession } from "./helpers.js";

const tiny = (seed: number): LlamaModel => createTinyLlama({ seed, layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, intermediate: 128, vocab: 256 });
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function modelDir(seed: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "nq-profile-"));
  dirs.push(dir);
  await writeModelDir(dir, tiny(seed));
  return dir;
}

describe("transform profiles on a loaded checkpoint", () => {
  it("calibrateModel fits every tensor and is deterministic for a seed", async () => {
    const model = await loadModel(await modelDir(3));
    const a = await calibrateModel(model, { tokens: 256, seed: 5, ort });
    const b = await calibrateModel(model, { tokens: 256, seed: 5, ort });
    expect(a.heads).toHaveLength(2 * 2 * 2);
    expect(a.model).toMatchObject({ layers: 2, kvHeads: 2, headDim: 32 });
    expect(a.model.fingerprint).toMatch(/^sha256:/);
    expect(a.heads.map((h) => [...h.matrix])).toEqual(b.heads.map((h) => [...h.matrix]));
    const err = await rejectionOf(calibrateModel(model, { tokens: 32, ort }));
    expect(err.code).toBe("INVALID_ARGUMENT");
    expect(err.message).toMatch(/at least 64 tokens/);
    expect((await rejectionOf(calibrateModel({} as never, { ort }))).message).toMatch(/a loaded checkpoint/);
    const missing = await rejectionOf(readProfile(join(tmpdir(), "nq-no-such-profile.bin")));
    expect([missing.code, missing.message]).toEqual(["INVALID_ARGUMENT", expect.stringMatching(/nexusquant calibrate DIR/)]);
  });

  it('"auto" codes with the profile next to the checkpoint; false and another model\'s profile do not', async () => {
    const dir = await modelDir(4);
    const model = await loadModel(dir);
    const ids = promptTokens(300, 256);
    const plain = await withNexusQuant(model, { preset: "high", ort });
    await plain.generate([ids], { maxNewTokens: 2 });
    expect(plain.cache!.options.transform).toBe("hadamard");
    plain.dispose();

    await writeProfile(join(dir, PROFILE_FILE_NAME), await calibrateModel(model, { tokens: 512, ort }));
    const auto = await withNexusQuant(model, { preset: "high", ort });
    const result = await auto.generate([ids], { maxNewTokens: 2 });
    expect(auto.cache!.options.transform).toBe("calibrated");
    expect(auto.cache!.stats().bytes.transform).toBe(transformTableBytes(2, 2, 32));
    // The state records which tables coded it: a fresh handle with the checkpoint's profile resumes
    // with the same codes and tokens; one without it is refused.
    const state = await auto.saveState();
    const next = await auto.generate([[5, 6, 7]], { maxNewTokens: 3, continue: true });
    const refused = await rejectionOf(withNexusQuant(model, { ort, state, profile: false }));
    expect(refused.code).toBe("PROFILE_MISMATCH");
    const resumed = await withNexusQuant(model, { ort, state });
    expect(resumed.cache!.options.transform).toBe("calibrated");
    expect((await resumed.generate([[5, 6, 7]], { maxNewTokens: 3, continue: true })).tokens).toEqual(next.tokens);
    expect(result.tokens[0]).toHaveLength(2);
    auto.dispose();
    resumed.dispose();

    const off = await withNexusQuant(model, { preset: "high", ort, profile: false });
    await off.generate([ids], { maxNewTokens: 1 });
    expect(off.cache!.options.transform).toBe("hadamard");
    off.dispose();

    // A profile of another checkpoint in the folder: refused when the handle is made.
    const other = await calibrateModel(await loadModel(await modelDir(5)), { tokens: 256, ort });
    await writeProfile(join(dir, PROFILE_FILE_NAME), other);
    const err = await rejectionOf(withNexusQuant(model, { preset: "high", ort }));
    expect(err.code).toBe("PROFILE_MISMATCH");
    expect(err.message).toMatch(/fingerprint.*nexusquant calibrate/s);
  });

  it("an onnxruntime session codes with a profile given as an object, and its saved state resumes only with it", async () => {
    const m = tiny(8);
    const profile = await calibrateModel(m, { tokens: 256, ort });
    const session = await tinySession(m);
    const ids = promptTokens(200, 256);
    const lm = await withNexusQuant(session, { preset: "high", ort, profile });
    await lm.generate([ids], { maxNewTokens: 2 });
    expect(lm.cache!.options.transform).toBe("calibrated");
    const state = await lm.saveState();
    const next = await lm.generate([[9, 8, 7]], { maxNewTokens: 3, continue: true });
    lm.dispose();
    expect((await rejectionOf(withNexusQuant(session, { ort, state }))).code).toBe("PROFILE_MISMATCH");
    const again = await withNexusQuant(session, { ort, state, profile });
    expect((await again.generate([[9, 8, 7]], { maxNewTokens: 3, continue: true })).tokens).toEqual(next.tokens);
    again.dispose();
    // "auto" finds nothing next to a session: it codes without a profile.
    const plain = await withNexusQuant(session, { preset: "high", ort });
    await plain.generate([ids], { maxNewTokens: 1 });
    expect(plain.cache!.options.transform).toBe("hadamard");
    plain.dispose();
  });

  it("caches made with one profile share its tables: the allocator holds them once", async () => {
    const model = await loadModel(await modelDir(6));
    const profile = await calibrateModel(model, { tokens: 256, ort });
    const before = memoryStats().host.byCategory.transform;
    const shape = { layers: 2, kvHeads: 2, headDim: 32, preset: "high", profile } as const;
    const caches = [new CompressedKVCache(shape), new CompressedKVCache(shape), new CompressedKVCache(shape)];
    const held = memoryStats().host.byCategory.transform - before;
    for (const c of caches) expect(c.stats().bytes.transform).toBe(transformTableBytes(2, 2, 32));
    caches.forEach((c) => c.dispose());
    // Built once for (profile, 2-bit keys, 2-bit values), in this synchronous stretch (no finalizer
    // of an earlier test's tables runs inside it).
    expect(held).toBe(transformTableBytes(2, 2, 32));
  });

  it("`nexusquant calibrate DIR --json` writes the profile and reports it", async () => {
    const dir = await modelDir(7);
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(["calibrate", dir, "--random", "256", "--json"], { stdout: (t) => out.push(t), stderr: (t) => err.push(t) });
    expect(code).toBe(0);
    const result = JSON.parse(out.join(""));
    expect(result.path).toBe(join(dir, PROFILE_FILE_NAME));
    expect(result.budgets.map((b: { bits: number }) => b.bits)).toEqual([1, 2, 3, 4]);
    expect(err.join("")).toMatch(/calibrate: reading tokens/);
    const profile = await readProfile(result.path);
    expect(profile.calibration.source).toMatch(/256 random tokens/);
    // Usage errors: no directory; neither or both of --text and --random.
    const quiet = { stdout: () => {}, stderr: () => {} };
    expect(await runCli(["calibrate"], quiet)).toBe(2);
    const said: string[] = [];
    expect(await runCli(["calibrate", dir], { stdout: () => {}, stderr: (t) => said.push(t) })).toBe(2);
    expect(said.join("")).toMatch(/--text FILE .* or --random N/);
    expect(await runCli(["calibrate", dir, "--random", "256", "--text", "x.txt"], quiet)).toBe(2);
  });
});
