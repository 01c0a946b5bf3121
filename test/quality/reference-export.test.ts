/**
 * The Python side of the reference model's export (bench/model/bpe.py, safetensors_io.py) against the
 * TypeScript side that reads it: a tokenizer trained in Python must encode exactly as transformers.js
 * does and decode back to the text; safetensors written by hand in Python must decode here to the same
 * values, and ours must decode there. Then, when models/sotu-llama is committed, its tokenizer and
 * weights load and agree with its config.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeSafetensors, encodeSafetensors, f16ArrayToF32, f32ArrayToF16, llamaWeightShapes, loadModelDir, toFloat32 } from "../../src/model/index.js";
import { heldOutSpeeches } from "../../bench/data/index.js";
import { documentIds, loadTokenizerJson } from "../../bench/quality/index.js";

const modelDir = fileURLToPath(new URL("../../bench/model/", import.meta.url));
const referenceDir = fileURLToPath(new URL("../../models/sotu-llama/", import.meta.url));
const python = spawnSync("python3", ["-c", "import numpy"]).status === 0;
if (!python) console.warn("SKIPPED: python3 with numpy is missing, so the Python export is not checked against Node");

function py(...args: string[]): string {
  const r = spawnSync("python3", ["interop.py", ...args], { cwd: modelDir, encoding: "utf8", env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" } });
  if (r.status !== 0) throw new Error(`interop.py ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nq-export-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!python)("Python export vs Node", () => {
  it("a BPE tokenizer trained by bpe.py encodes identically in transformers.js and round-trips", async () => {
    py("tokenizer", dir);
    const expected = JSON.parse(await readFile(join(dir, "encoded.json"), "utf8")) as { vocab_size: number; samples: { text: string; ids: number[]; decoded: string }[] };
    const tok = (await loadTokenizerJson(dir))!;
    expect(tok.kind).toBe("tokenizer.json");
    expect(tok.bosId).toBe(0);
    expect(expected.vocab_size).toBeGreaterThan(500); // merges were learned, not just the byte alphabet
    for (const s of expected.samples) {
      const ids = tok.encode(s.text);
      expect(ids).toEqual(s.ids);
      expect(s.decoded).toBe(s.text);
      expect(tok.decode(ids)).toBe(s.text);
      expect(ids.length).toBeLessThan(new TextEncoder().encode(s.text).length); // merges applied
    }
  }, 30_000);

  it("safetensors written by hand in Python decode in Node to the same values", async () => {
    const path = join(dir, "py.safetensors");
    py("write-safetensors", path);
    const { tensors, metadata } = decodeSafetensors(new Uint8Array(await readFile(path)));
    expect(metadata).toEqual({ format: "pt" });
    expect([...tensors.keys()].sort()).toEqual(["model.embed_tokens.weight", "model.norm.weight", "scale"]);
    const norm = tensors.get("model.norm.weight")!;
    expect(norm.dtype).toBe("F16");
    expect([...toFloat32(norm)]).toEqual([1, -2.5, 0.333251953125, 65504]);
    const embed = tensors.get("model.embed_tokens.weight")!;
    expect(embed.shape).toEqual([3, 4]);
    expect([...toFloat32(embed)]).toEqual(Array.from({ length: 12 }, (_, i) => i / 8 - 0.5));
    expect([...toFloat32(tensors.get("scale")!)]).toEqual([1.5, -0.25]);
  });

  it("safetensors written in Node decode in Python to the same values", async () => {
    const path = join(dir, "node.safetensors");
    const values = Float32Array.from([0.5, -1, 3.25, 1024, -0.0009765625, 7]);
    const tensors = new Map([
      ["a", { dtype: "F16" as const, shape: [2, 3], data: f32ArrayToF16(values) }],
      ["b", { dtype: "F32" as const, shape: [1], data: Float32Array.from([Math.PI]) }],
    ]);
    await writeFile(path, encodeSafetensors(tensors, { by: "node" }));
    const read = JSON.parse(py("read-safetensors", path)) as { metadata: Record<string, string>; tensors: Record<string, { dtype: string; shape: number[]; values: number[] }> };
    expect(read.metadata).toEqual({ by: "node" });
    expect(read.tensors.a).toEqual({ dtype: "float16", shape: [2, 3], values: [...f16ArrayToF32(f32ArrayToF16(values))] });
    expect(read.tensors.b!.values[0]).toBe(Math.fround(Math.PI));
  });
});

describe.skipIf(!existsSync(join(referenceDir, "tokenizer.json")))("models/sotu-llama", () => {
  it("loads: every weight the config implies, fp16, tied embeddings; the tokenizer round-trips held-out text", async () => {
    const model = await loadModelDir(referenceDir);
    const shapes = llamaWeightShapes(model.config);
    for (const [name, shape] of shapes) {
      const t = model.weights.get(name);
      expect(t, name).toBeDefined();
      expect(t!.shape, name).toEqual(shape);
      expect(t!.dtype, name).toBe("F16");
    }
    const tok = (await loadTokenizerJson(referenceDir))!;
    expect(tok.bosId).toBe(0);
    const text = heldOutSpeeches()[0]!.text.slice(0, 5000);
    const ids = documentIds(tok, text);
    expect(ids[0]).toBe(0);
    expect(Math.max(...ids)).toBeLessThan(model.config.vocabSize);
    expect(tok.decode(ids)).toBe(text);
  }, 30_000);
});
