/**
 * Which onnxruntime-node the native path and the ORT wrapper load, and the version clash with
 * @huggingface/transformers' own copy: `npm install nexusquant @huggingface/transformers
 * onnxruntime-node` put onnxruntime-node 1.31.1 at the top and transformers' pinned 1.30.0 under it
 * (measured 2026-12-07 in a scratch app), and loading both failed with ERR_DLOPEN_FAILED
 * "version `VERS_1.30.0' not found". The trees below are that layout, and the deduped one that works.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clashMessage, findPackage, importOnnxRuntime, loadedCopy, onnxRuntimeCopies } from "../../src/integrations/onnxruntime.js";

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "nq-ort-copies-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A package directory with package.json and an index.js of `body`. */
async function pkg(dir: string, name: string, version: string, body = "module.exports = { Tensor: class Tensor {}, marker: __dirname };"): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "package.json"), JSON.stringify({ name, version, main: "index.js" }));
  await writeFile(join(dir, "index.js"), body);
}

/** The layout of `npm install nexusquant @huggingface/transformers onnxruntime-node` (2026-12). */
async function clashingApp(name: string, ortBody?: string): Promise<{ app: string; from: string }> {
  const app = join(root, name);
  await pkg(join(app, "node_modules", "onnxruntime-node"), "onnxruntime-node", "1.31.1", ortBody);
  await pkg(join(app, "node_modules", "@huggingface", "transformers"), "@huggingface/transformers", "4.3.2");
  await pkg(join(app, "node_modules", "@huggingface", "transformers", "node_modules", "onnxruntime-node"), "onnxruntime-node", "1.30.0");
  const from = join(app, "node_modules", "nexusquant", "dist", "integrations");
  await mkdir(from, { recursive: true });
  return { app, from };
}

const mapsLine = (dir: string) => `7f00-7f10 r-xp 00000000 fd:00 123   ${dir}/bin/napi-v6/linux/x64/libonnxruntime.so.1\n`;

describe("onnxruntime-node copies", () => {
  it("finds the app's copy, transformers' pinned one, and the one this process has loaded", async () => {
    const { app, from } = await clashingApp("clash");
    const nested = join(app, "node_modules", "@huggingface", "transformers", "node_modules", "onnxruntime-node");
    const copies = onnxRuntimeCopies(from, "00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/node\n" + mapsLine(nested));
    expect(copies).toEqual({
      app: { dir: join(app, "node_modules", "onnxruntime-node"), version: "1.31.1" },
      transformers: { dir: nested, version: "1.30.0", transformersVersion: "4.3.2" },
      loaded: { dir: nested, version: "1.30.0" },
    });
    const message = clashMessage(copies)!;
    expect(message).toContain("onnxruntime-node 1.31.1");
    expect(message).toContain("1.30.0");
    expect(message).toContain("pinned by @huggingface/transformers 4.3.2");
    expect(message).toContain("npm install onnxruntime-node@1.30.0");
  });

  it("a deduped install (one version) is no clash; nothing installed is none either", async () => {
    const app = join(root, "deduped");
    await pkg(join(app, "node_modules", "onnxruntime-node"), "onnxruntime-node", "1.30.0");
    await pkg(join(app, "node_modules", "@huggingface", "transformers"), "@huggingface/transformers", "4.3.2");
    const copies = onnxRuntimeCopies(join(app, "src"), undefined);
    expect(copies.transformers).toEqual({ dir: join(app, "node_modules", "onnxruntime-node"), version: "1.30.0", transformersVersion: "4.3.2" });
    expect(clashMessage(copies)).toBeUndefined();
    expect(findPackage("onnxruntime-node", join(root, "nowhere"))).toBeUndefined();
    expect(loadedCopy("00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/node\n")).toBeUndefined();
  });

  it("this repository's own install is deduped, and the copy tests load is the one found", async () => {
    await import("onnxruntime-node");
    const copies = onnxRuntimeCopies();
    expect(copies.app?.version).toBeDefined();
    expect(clashMessage(copies)).toBeUndefined();
    expect(copies.loaded?.version).toBe(copies.app?.version);
  });
});

describe("importOnnxRuntime", () => {
  it("uses the copy already loaded (the model's own runtime), not the app's newer one", async () => {
    const { app, from } = await clashingApp("use-loaded");
    const nested = join(app, "node_modules", "@huggingface", "transformers", "node_modules", "onnxruntime-node");
    const m = (await importOnnxRuntime(onnxRuntimeCopies(from, mapsLine(nested)))) as { marker?: string; default?: { marker: string } };
    expect(m.marker ?? m.default?.marker).toBe(nested);
  });

  it("nothing loaded yet: loads transformers' copy (what its models load) and warns up front that the app's will not load later", async () => {
    const { app, from } = await clashingApp("warn");
    const warnings: Error[] = [];
    const listen = (w: Error) => warnings.push(w);
    process.on("warning", listen);
    try {
      const m = (await importOnnxRuntime(onnxRuntimeCopies(from, ""))) as { marker?: string; default?: { marker: string } };
      expect(m.marker ?? m.default?.marker).toBe(join(app, "node_modules", "@huggingface", "transformers", "node_modules", "onnxruntime-node"));
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off("warning", listen);
    }
    expect(warnings.map((w) => (w as Error & { code?: string }).code)).toContain("NEXUSQUANT_ONNXRUNTIME_CLASH");
    expect(warnings.find((w) => (w as Error & { code?: string }).code === "NEXUSQUANT_ONNXRUNTIME_CLASH")!.message).toContain("npm install onnxruntime-node@1.30.0");
  });

  it("when the load fails with the clash's dlopen error: BACKEND_UNAVAILABLE naming both versions and the fix", async () => {
    // The app's 1.31.1 is loaded (the app imported it) yet fails to load again: what a third copy would see.
    const failing =
      "const e = new Error(\"/x/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1: version `VERS_1.30.0' not found\"); e.code = 'ERR_DLOPEN_FAILED'; throw e;";
    const { app, from } = await clashingApp("dlopen", failing);
    const error = await importOnnxRuntime(onnxRuntimeCopies(from, mapsLine(join(app, "node_modules", "onnxruntime-node")))).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "BACKEND_UNAVAILABLE", details: { appVersion: "1.31.1", transformersVersion: "1.30.0" } });
    expect((error as Error).message).toMatch(/onnxruntime-node 1\.31\.1 .* and 1\.30\.0 .*npm install onnxruntime-node@1\.30\.0/s);
    expect((error as Error).message).toContain("VERS_1.30.0");
  });

  it("not installed at all: BACKEND_UNAVAILABLE saying how to install it", async () => {
    const dir = join(root, "empty", "src");
    await mkdir(dir, { recursive: true });
    const missing = join(root, "empty", "node_modules", "onnxruntime-node");
    const error = await importOnnxRuntime({ app: { dir: missing, version: "1.30.0" } }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "BACKEND_UNAVAILABLE" });
    expect((error as Error).message).toContain("ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node");
  });
});
