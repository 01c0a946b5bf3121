import { readFileSync } from "node:fs";
import { NexusQuantError, invalidArgument } from "../../src/errors.js";
import { compareSpeeches, type Speech } from "./sotu.js";
import { xzDecompress } from "./xz.js";

/**
 * The plain-text corpus file that travels to the GPU machine (xz-compressed) and that
 * bench/model/corpus.py reads. One record per speech, in speech order:
 *
 *     # <year>\t<president>\t<party>\n
 *     <text on one line>\n
 *     \n
 *
 * Speech texts in the package contain no newline, which is what makes a record exactly three lines;
 * formatCorpus refuses any text (or name) that would break that.
 */
export function formatCorpus(speeches: readonly Speech[]): string {
  const sorted = [...speeches].sort(compareSpeeches);
  let out = "";
  for (const s of sorted) {
    if (!Number.isInteger(s.year)) throw invalidArgument("speech.year", "an integer", s.year);
    for (const [field, value] of [["president", s.president], ["party", s.party]] as const) {
      if (/[\t\n\r]/.test(value)) throw invalidArgument(`speech.${field}`, "a value without tabs or newlines", value);
    }
    if (s.text.length === 0 || /[\n\r]/.test(s.text)) {
      throw invalidArgument(`text of the ${s.year} speech`, "a non-empty single line", s.text);
    }
    out += `# ${s.year}\t${s.president}\t${s.party}\n${s.text}\n\n`;
  }
  return out;
}

export function parseCorpus(content: string): Speech[] {
  const lines = content.split("\n");
  // A well-formed file ends with "\n\n", so split leaves one trailing empty string.
  if (lines.length % 3 !== 1 || lines[lines.length - 1] !== "") {
    throw new NexusQuantError("CORRUPT_DATA", `A corpus file must be 3-line records ending in a blank line; got ${lines.length} lines.`);
  }
  const speeches: Speech[] = [];
  for (let i = 0; i + 2 < lines.length; i += 3) {
    const header = /^# (\d+)\t([^\t]+)\t([^\t]+)$/.exec(lines[i]);
    if (header === null || lines[i + 1].length === 0 || lines[i + 2] !== "") {
      throw new NexusQuantError("CORRUPT_DATA", `Corpus record at line ${i + 1} is malformed: ${JSON.stringify(lines[i].slice(0, 80))}`);
    }
    speeches.push({ year: Number(header[1]), president: header[2], party: header[3], text: lines[i + 1] });
  }
  return speeches;
}

/** Reads a corpus file written by bench/model/prepare-corpus.ts (`.xz` is decompressed with xz). */
export function readCorpusFile(path: string): Speech[] {
  const raw = readFileSync(path);
  return parseCorpus((path.endsWith(".xz") ? xzDecompress(raw) : raw).toString("utf8"));
}
