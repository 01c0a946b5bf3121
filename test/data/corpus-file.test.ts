import { existsSync, readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { formatCorpus, parseCorpus, readCorpusFile } from "../../bench/data/corpus-file.js";
import { heldOutSpeeches, trainSpeeches, type Speech } from "../../bench/data/sotu.js";
import { hasXz } from "../../bench/data/xz.js";

const dataDir = new URL("../../bench/model/data/", import.meta.url);
const xzAvailable = hasXz();
if (!xzAvailable) console.warn("SKIPPED: the xz binary is missing, so the committed .txt.xz files are not checked");

describe("corpus file format", () => {
  it("round-trips speeches", () => {
    const speeches: Speech[] = [
      { year: 1801, president: "Thomas Jefferson", party: "Democratic-Republican", text: "Fellow citizens. Peace." },
      { year: 1790, president: "George Washington", party: "none", text: "In meeting you again…" },
    ];
    const text = formatCorpus(speeches);
    expect(text.startsWith("# 1790\tGeorge Washington\tnone\nIn meeting you again…\n\n# 1801")).toBe(true);
    expect(parseCorpus(text)).toEqual([speeches[1], speeches[0]]);
  });

  it("refuses texts that would break the record layout and reports corrupt files", () => {
    expect(() => formatCorpus([{ year: 1800, president: "A", party: "none", text: "two\nlines" }])).toThrow(/single line/);
    expect(() => parseCorpus("# 1800\tA\tnone\ntext\n")).toThrow(expect.objectContaining({ code: "CORRUPT_DATA" }));
    expect(() => parseCorpus("1800 A none\ntext\n\n")).toThrow(/malformed/);
  });
});

describe.skipIf(!xzAvailable)("committed xz corpus (bench/model/data)", () => {
  const manifest = JSON.parse(readFileSync(new URL("manifest.json", dataDir), "utf8"));
  for (const [split, expected] of [["train", trainSpeeches()], ["heldout", heldOutSpeeches()]] as const) {
    it(`sotu-${split}.txt.xz decodes to the ${split} split of the package`, () => {
      const path = new URL(`sotu-${split}.txt.xz`, dataDir);
      expect(existsSync(path)).toBe(true);
      const bytes = readFileSync(path);
      expect(createHash("sha256").update(bytes).digest("hex")).toBe(manifest.files[split].sha256Xz);
      const speeches = readCorpusFile(fileURLToPath(path));
      expect(speeches).toEqual(expected);
      expect(speeches.map((s) => s.year)).toEqual(manifest.files[split].years);
    });
  }
});
