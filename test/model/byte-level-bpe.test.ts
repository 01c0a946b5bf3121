import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { PreTrainedTokenizer } from "@huggingface/transformers";
import { readCorpusFile } from "../../bench/data/corpus-file.js";
import { byteLevelBpe } from "../../src/model/byte-level-bpe.js";
import { loadTokenizer } from "../../src/model/tokenizer.js";

// Our dependency-free byte-level BPE must tokenize exactly as transformers.js does (the reference
// the quality harness and the training script agree with), on real text and on awkward strings.
const modelDir = fileURLToPath(new URL("../../models/sotu-llama/", import.meta.url));
const json = JSON.parse(readFileSync(`${modelDir}tokenizer.json`, "utf8"));
const config = JSON.parse(readFileSync(`${modelDir}tokenizer_config.json`, "utf8"));

describe("byte-level BPE (src/model/byte-level-bpe.ts)", () => {
  const ours = byteLevelBpe(json)!;
  const theirs = new PreTrainedTokenizer(json, config);

  it("reads the reference model's tokenizer", () => {
    expect(ours).toBeDefined();
    expect(ours.vocabSize).toBe(theirs.get_vocab().size);
    expect(ours.tokenId("<|endoftext|>")).toBe(0);
  });

  it("encodes and decodes held-out speeches exactly as transformers.js", () => {
    const speeches = readCorpusFile(fileURLToPath(new URL("../../bench/model/data/sotu-heldout.txt.xz", import.meta.url)));
    for (const s of speeches.slice(0, 3)) {
      const text = s.text.slice(0, 20_000);
      const ids = ours.encode(text);
      expect(ids).toEqual(theirs.encode(text, { add_special_tokens: false }));
      expect(ours.decode(ids)).toBe(theirs.decode(ids, { skip_special_tokens: true }));
      expect(ours.decode(ids)).toBe(text);
    }
  });

  it("handles unicode, digits, whitespace runs, contractions and the special token like transformers.js", () => {
    for (const text of ["naïve café — 東京 🚀 ", "The pass key is 48213.\n\n\tWhat's it? I'll  say   it", "a<|endoftext|>b", "  ", "1,234,567.89"]) {
      const ids = ours.encode(text);
      expect(ids).toEqual(theirs.encode(text, { add_special_tokens: false }));
      expect(ours.decode(ids)).toBe(theirs.decode(ids, { skip_special_tokens: true }));
    }
  });

  it("declines tokenizers it does not implement, so loadTokenizer falls back to transformers.js", () => {
    expect(byteLevelBpe({ ...json, normalizer: { type: "NFC" } })).toBeUndefined();
    expect(byteLevelBpe({ ...json, model: { ...json.model, type: "Unigram" } })).toBeUndefined();
    expect(byteLevelBpe({ ...json, pre_tokenizer: { type: "Metaspace" } })).toBeUndefined();
    expect(byteLevelBpe({ ...json, model: { ...json.model, byte_fallback: true } })).toBeUndefined();
  });

  it("a vocabulary missing a byte gives CONFIG_ERROR naming the piece, not a crash", () => {
    const vocab = { ...json.model.vocab };
    delete vocab["Q"];
    const broken = byteLevelBpe({ ...json, model: { ...json.model, vocab, merges: [] } })!;
    expect(() => broken.encode("Q")).toThrow(expect.objectContaining({ code: "CONFIG_ERROR", message: expect.stringContaining('"Q"') }));
  });

  it("is what loadTokenizer uses for the reference model (no transformers.js needed)", async () => {
    const t = (await loadTokenizer(modelDir))!;
    expect(t.description).toContain("byte-level BPE");
    expect(t.bosId).toBe(0);
    expect(t.encode("Fellow citizens")).toEqual(ours.encode("Fellow citizens"));
  });
});
