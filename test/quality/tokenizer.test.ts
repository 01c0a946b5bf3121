/**
 * The trained model's tokenizer path, on a hand-built byte-level BPE tokenizer.json in the format the
 * `tokenizers` package writes (<|endoftext|> = id 0, one token per byte, two merges), and the UTF-8
 * fallback for directories without one.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTinyLlama, writeModelDir } from "../../src/model/index.js";
import { RANDOM_MODEL_DEFAULTS, byteTokenizer, documentIds, loadTokenizerJson, qualityModelFromDir, runQualityBench } from "../../bench/quality/index.js";
import { heldOutCorpus } from "./fixtures.js";

/** GPT-2's byte → printable character table, which ByteLevel pre-tokenizers use. */
function bytesToUnicode(): string[] {
  const printable = [...range(33, 126), ...range(161, 172), ...range(174, 255)];
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + extra++);
  return table;
}
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nq-tokenizer-"));
  const chars = bytesToUnicode();
  const vocab: Record<string, number> = { "<|endoftext|>": 0 };
  chars.forEach((c, b) => (vocab[c] = b + 1));
  const space = chars[32]!;
  vocab[`${space}t`] = 257;
  vocab[`${space}th`] = 258;
  const tokenizer = {
    version: "1.0",
    added_tokens: [{ id: 0, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [`${space} t`, `${space}t h`] },
  };
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("tokenizer.json", () => {
  it("encodes with the merges, starts documents with <|endoftext|> = 0 and decodes back", async () => {
    const tok = (await loadTokenizerJson(dir))!;
    expect(tok.kind).toBe("tokenizer.json");
    expect(tok.bosId).toBe(0);
    const ids = tok.encode("in the end");
    // "in" "Ġth" "e" "Ġ" "e" "n" "d": the " th" merge applies; no special token is added by encode.
    expect(ids).toEqual([106, 111, 258, 102, 33, 102, 111, 101]);
    expect(tok.decode(ids)).toBe("in the end");
    expect(documentIds(tok, "in the end")).toEqual([0, ...ids]);
  });

  it("a directory without tokenizer.json gives undefined; the byte fallback needs vocab >= 256", async () => {
    expect(await loadTokenizerJson(tmpdir() + "/does-not-exist-nq")).toBeUndefined();
    const bytes = byteTokenizer(256);
    expect(bytes.encode("é")).toEqual([0xc3, 0xa9]);
    expect(bytes.decode([0xc3, 0xa9])).toBe("é");
    expect(documentIds(bytes, "ab")).toEqual([97, 98]);
    expect(() => byteTokenizer(100)).toThrow(/vocab_size >= 256/);
  });
});

describe("--model DIR with tokenizer.json", () => {
  it("runs the harness with the model's tokenizer and the document-start token in front of every prompt", async () => {
    await writeModelDir(dir, createTinyLlama({ seed: 5, layers: 1, hidden: 64, heads: 2, kvHeads: 1, headDim: 64, intermediate: 128, vocab: 259, tie: false }));
    const model = await qualityModelFromDir(dir);
    expect(model.trained).toBe(true);
    expect(model.tokenizer.kind).toBe("tokenizer.json");
    const report = await runQualityBench(model, {
      corpus: heldOutCorpus(2),
      settings: { ...RANDOM_MODEL_DEFAULTS, prefixes: [160], scoreTokens: 4, texts: 1, contexts: [400], depths: [0.5], samplesPerCell: 1, presets: ["quant"], quantOnly: [], scorers: [] },
    });
    expect(report.notes.join(" ")).not.toMatch(/random weights/);
    const sample = report.retrieval!.samples[0]!;
    expect(sample.promptTokens).toBe(sample.samplePromptTokens + 1);
    expect(sample.passageTokens + sample.questionTokens + 1).toBe(sample.promptTokens);
    expect(report.rows.map((r) => r.variant)).toEqual(["none", "quant"]);
    expect(report.rows[1]!.ratio).toBeGreaterThan(1);
  });
});
