import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { NexusQuantError, invalidArgument } from "../../errors.js";
import { calibrateModel, DEFAULT_CALIBRATION_TOKENS } from "../../integrations/calibrate.js";
import { loadModel } from "../../model/model-dir.js";
import { loadTokenizer } from "../../model/tokenizer.js";
import { TRANSFORM_BUDGETS, type TransformBudget } from "../../transform/codec-distortion.js";
import { PROFILE_FILE_NAME, writeProfile } from "../../transform/profile-file.js";
import type { TransformProfile } from "../../transform/profile.js";
import { parseContext, parseFlags, parsePositiveInt } from "../args.js";
import { progressBar } from "../progress.js";
import { renderTable, toJson } from "../table.js";
import type { CliCommand } from "../types.js";

const USAGE = `Usage: nexusquant calibrate DIR (--text FILE | --random N) [options]

Fits the transform profile of the checkpoint in DIR (docs/transform.md): reads tokens through the
model with FP16 K/V, then per layer, KV head and K|V a basis (PCA with an 8-point Hadamard inside
each band of 8 coefficients), band scales and a bit allocation over {0, 1, 2, 3, 4} bits per element
for each budget (2, 3, 4 bits). Writes DIR/${PROFILE_FILE_NAME}; withNexusQuant(await loadModel(DIR))
then codes with it (options.profile: "auto", the default). A tensor where the fitted code is not
predicted at least 0.25 dB better than the flat Hadamard code keeps the flat code (the guard).

What to read (one of them):
  --text FILE    text like the prompts the model will serve, through DIR's tokenizer.json (a few
                 thousand tokens or more; at least 2 × head_dim)
  --random N     N uniformly random token ids (e.g. ${DEFAULT_CALIBRATION_TOKENS}) when no text is at hand. Measured
                 worse: on the reference model a profile fitted on text cut K2V2's KL by 51%, one
                 fitted on random tokens by 16% (bench/results/transform-quality.md)

Options:
  --seed N       seed of the random ids and the in-band sign flips (default 26)
  --out PATH     where to write the profile (default DIR/${PROFILE_FILE_NAME})
  --json         print the result as JSON
  --help         this text

Progress goes to stderr. Time: one prefill of the tokens, then ~d³ work per tensor (seconds for
head_dim 64-128 models of a few layers; minutes for 32 layers × 8 KV heads at head_dim 128).
`;

export interface CalibrateResult {
  path: string;
  model: TransformProfile["model"];
  calibration: TransformProfile["calibration"];
  seconds: number;
  /**
   * Per budget: tensors that use the fitted code, of all; the mean predicted NMSE of keys and values
   * with the code in use and with the flat code (null at 1 bit: there is no flat 1-bit code).
   */
  budgets: { bits: TransformBudget; calibrated: number; tensors: number; keys: PredictedNmse; values: PredictedNmse }[];
}

export interface PredictedNmse {
  used: number;
  flat: number | null;
}

function summarize(profile: TransformProfile): CalibrateResult["budgets"] {
  return TRANSFORM_BUDGETS.map((bits) => {
    const mean = (kv: number): PredictedNmse => {
      const own = profile.heads.filter((_, i) => i % 2 === kv);
      const avg = (f: (h: (typeof own)[number]) => number) => own.reduce((a, h) => a + f(h), 0) / own.length;
      const p = (h: (typeof own)[number]) => h.predictedNmse[bits];
      return { used: avg((h) => (h.calibrated[bits] ? p(h).calibrated : p(h).flat)), flat: bits === 1 ? null : avg((h) => p(h).flat) };
    };
    return { bits, calibrated: profile.heads.filter((h) => h.calibrated[bits]).length, tensors: profile.heads.length, keys: mean(0), values: mean(1) };
  });
}

/** "0.0412 (flat 0.0899, +3.4 dB)" or, at 1 bit, "0.1234 (no flat code)". */
function describeNmse(p: PredictedNmse): string {
  if (p.flat === null) return `${p.used.toFixed(4)} (no flat code)`;
  return `${p.used.toFixed(4)} (flat ${p.flat.toFixed(4)}, ${(10 * Math.log10(p.flat / p.used)).toFixed(1)} dB)`;
}

export const calibrateCommand: CliCommand = {
  name: "calibrate",
  summary: "fit a model's transform profile (a basis and bit allocation per head) next to its checkpoint",
  usage: USAGE,
  async run(args, io) {
    const { values: v, positionals } = parseFlags(args, { random: { type: "string" }, text: { type: "string" }, seed: { type: "string" }, out: { type: "string" }, json: { type: "boolean" } }, true);
    if (positionals.length !== 1) throw invalidArgument("DIR", "one checkpoint directory (config.json + safetensors weights)", positionals.join(" ") || undefined);
    const dir = positionals[0]!;
    const seed = v.seed === undefined ? undefined : parsePositiveInt("--seed", v.seed);
    if ((v.text === undefined) === (v.random === undefined)) {
      throw invalidArgument("--text / --random", "exactly one: --text FILE (text like your prompts; better) or --random N (random token ids)", v.text ?? v.random);
    }
    const tokens = v.random === undefined ? undefined : parseContext("--random", v.random);
    const started = performance.now();
    const model = await loadModel(dir);
    let tokenIds: number[] | undefined;
    let source: string | undefined;
    if (v.text !== undefined) {
      const tokenizer = await loadTokenizer(dir);
      if (tokenizer === undefined) throw new NexusQuantError("INVALID_ARGUMENT", `--text needs ${join(dir, "tokenizer.json")}, which is missing; leave --text out to read random tokens.`, { arg: "--text" });
      let text: string;
      try {
        text = await readFile(v.text, "utf8");
      } catch (e) {
        throw new NexusQuantError("INVALID_ARGUMENT", `Cannot read --text ${v.text}: ${(e as Error).message}`, { arg: "--text" });
      }
      tokenIds = tokenizer.encode(text);
      source = `${tokenIds.length} tokens of ${basename(v.text)}`;
    }
    const read = progressBar(io, "calibrate: reading tokens");
    const fit = progressBar(io, "calibrate: fitting tensors");
    const profile = await calibrateModel(model, {
      ...(tokenIds !== undefined ? { tokenIds, source: source! } : {}),
      ...(tokens !== undefined ? { tokens } : {}),
      ...(seed !== undefined ? { seed } : {}),
      onProgress: (phase, done, total) => (phase === "read" ? read : fit)(done, total),
    });
    const path = v.out ?? join(dir, PROFILE_FILE_NAME);
    await writeProfile(path, profile);
    const result: CalibrateResult = { path, model: profile.model, calibration: profile.calibration, seconds: (performance.now() - started) / 1000, budgets: summarize(profile) };
    if (v.json) {
      io.stdout(toJson(result));
      return 0;
    }
    const m = profile.model;
    io.stdout(`${dir}: ${m.layers} layers x ${m.kvHeads} KV heads x head_dim ${m.headDim}; ${profile.calibration.source}; ${result.seconds.toFixed(1)} s\n`);
    io.stdout(`wrote ${path}\n\n`);
    io.stdout(
      renderTable(
        ["bits/elem", "fitted tensors", "keys: predicted NMSE", "values: predicted NMSE"],
        result.budgets.map((b) => [String(b.bits), `${b.calibrated}/${b.tensors}`, describeNmse(b.keys), describeNmse(b.values)]),
        ["right", "right", "right", "right"],
      ),
    );
    io.stdout(
      "\nPredicted on the calibration data (the codec's NMSE per group on Gaussian data), mean over tensors, with the code each tensor uses;\n" +
        "the guard keeps the flat code where the fitted one is not predicted 0.25 dB better. 1 bit per element exists only calibrated.\n",
    );
    return 0;
  },
};
