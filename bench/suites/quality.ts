import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { invalidArgument } from "../../src/errors.js";
import { SCORERS, getPreset, type ScorerName } from "../../src/format/index.js";
import { RANDOM_MODEL_DEFAULTS, TRAINED_DEFAULTS, runQualityBench, type QualityReport, type QualitySettings } from "../quality/harness.js";
import { resolveQualityModel } from "../quality/model.js";
import { TABLE_HEADERS, cells, qualityMarkdown, qualityPlotSpec } from "../quality/report.js";
import { RETRIEVAL_MODES, type RetrievalMode } from "../quality/retrieval.js";
import { PEER_KV_COMPARED, parseQuantOnly } from "../quality/variants.js";
import { parseScalarName } from "../quality/scalar-baselines.js";
import { parseContext, parseFlags, parsePositiveInt } from "../../src/cli/args.js";
import { renderSvg } from "../../src/cli/plot.js";
import { progressBar } from "../../src/cli/progress.js";
import { renderTable, toJson } from "../../src/cli/table.js";
import type { CliCommand } from "../../src/cli/types.js";

const USAGE = `nexusquant bench quality [--model DIR] [--out DIR] [--json] [sizes…]
  Perplexity and retrieval of every cache variant against the FP16 cache of the same model, with the
  measured compression ratio of each, on the native path (the model's attention reads the compressed
  cache, as withNexusQuant(await loadModel(dir)) runs it): presets, quantization-only K2V2/K3V2/K3V3/
  K4V4, the eviction scorers at one preset's ratio, an eviction sweep; and comparison rows on the
  ORT-session wrapper's path: presets as that wrapper runs them, scalar baselines at equal bits (KIVI,
  Hadamard-rotated, TurboQuant-style). Retrieval in three modes: the question in a later turn (the
  headline), in the same prompt, and two facts asked in two later turns. Each row's prefill cost is
  its prefill tokens/s against FP16's. Writes quality.json, quality.md and quality.svg to --out.
  The model: --model DIR (config.json + model.safetensors [+ tokenizer.json]); default
  models/sotu-llama when present, else a built random-weight model (labelled; its numbers only
  check the harness). See docs/quality.md.

  --model DIR           model directory
  --out DIR             where the three files go (default bench/results)
  --prefixes a,b        perplexity prefix lengths (trained default 512,1k,1536; random model 256,1k)
  --score N             tokens scored after each prefix (256; random model 128)
  --texts N             held-out speeches for perplexity (2)
  --contexts a,b        retrieval context lengths (1k,2k; random model 512,1k)
  --depths a,b          needle depths in [0, 1] (0.1,…,0.9; random model 0.1,0.5,0.9)
  --samples N           retrieval samples per context × depth cell (2; random model 1)
  --seed N              retrieval sample seed (2024, the training report's)
  --presets a,b         presets to measure (default every preset)
  --quant-only a,b      quantization-only variants, K<bits>V<bits> or "none" (K2V2,K3V2,K3V3,K4V4)
  --scalar a,b          scalar baselines KIVI-<b>[/g<n>], Had-<b>, Turbo-<b>, or "none"
                        (trained default KIVI-2,KIVI-4,Had-2,Had-4,Turbo-2,Turbo-3; random model none)
  --sweep a,b           eviction fractions swept at --sweep-preset's bits and scorer, or "none"
                        (trained default 0,0.2,0.35,0.5,0.6,0.7,0.8; random model none)
  --sweep-preset P      (balanced)
  --scorers a,b         scorers to compare, or "none" (keynorm,key-key,observed,random,reconstruct)
  --scorer-preset P     preset whose ratio the scorers are compared at (balanced)
  --ort-presets a,b     presets also run through the ORT-session wrapper, or "none" (trained default
                        balanced; random model none)
  --modes a,b           retrieval modes: later-turn, same-prompt, two-facts (all)
  --peers a,b           llama.cpp KV cache types through node-llama-cpp on the checkpoint converted to
                        GGUF, or "none" (trained default q8_0,q4_0,q8_0/q4_0 with f16 as their
                        reference; random model none; left out, with a note, where it cannot load)
  --calibrated a,b      preset or K<b>V<b> rows also run with the calibrated transform profile
                        (docs/transform.md), named "<row> (calibrated)"; PRESET@K<b>V<b> runs a
                        preset at other bits (1 bit allowed: profile only); default none
  --profile PATH        that profile (default: the checkpoint's DIR/nexusquant-profile.bin)
  --compress-every N    decode tokens between compressions (64, as withNexusQuant)
  --skip-perplexity     retrieval only
  --skip-retrieval      perplexity only
  --json                print the report as JSON
`;

const list = (text: string) => text.split(",").map((s) => s.trim()).filter(Boolean);

function parseDepths(text: string, flag = "--depths"): number[] {
  return list(text).map((d) => {
    const value = Number(d);
    if (!(value >= 0 && value <= 1) || (flag === "--sweep" && value === 1)) throw invalidArgument(flag, flag === "--sweep" ? "numbers in [0, 1)" : "numbers in [0, 1]", d);
    return value;
  });
}

function parseScorers(text: string): ScorerName[] {
  if (text === "none") return [];
  return list(text).map((s) => {
    if (!SCORERS.includes(s as ScorerName)) throw invalidArgument("--scorers", `names from ${SCORERS.join(", ")}`, s);
    return s as ScorerName;
  });
}

export async function writeQualityResults(report: QualityReport, dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files = [join(dir, "quality.json"), join(dir, "quality.md"), join(dir, "quality.svg")];
  await writeFile(files[0]!, toJson(report));
  await writeFile(files[1]!, qualityMarkdown(report));
  await writeFile(files[2]!, await renderSvg(qualityPlotSpec(report)));
  return files;
}

export const qualitySuite: CliCommand = {
  name: "quality",
  summary: "perplexity and retrieval of every preset vs the FP16 cache, with measured ratios",
  usage: USAGE,
  async run(args, io) {
    const { values } = parseFlags(args, {
      model: { type: "string" },
      out: { type: "string" },
      prefixes: { type: "string" },
      score: { type: "string" },
      texts: { type: "string" },
      contexts: { type: "string" },
      depths: { type: "string" },
      samples: { type: "string" },
      seed: { type: "string" },
      presets: { type: "string" },
      "quant-only": { type: "string" },
      scorers: { type: "string" },
      "scorer-preset": { type: "string" },
      scalar: { type: "string" },
      sweep: { type: "string" },
      "sweep-preset": { type: "string" },
      "ort-presets": { type: "string" },
      modes: { type: "string" },
      peers: { type: "string" },
      calibrated: { type: "string" },
      profile: { type: "string" },
      "compress-every": { type: "string" },
      "skip-perplexity": { type: "boolean" },
      "skip-retrieval": { type: "boolean" },
      json: { type: "boolean" },
    });
    // Validate every flag before loading the model or running minutes of work.
    const presets = values.presets === undefined ? undefined : list(values.presets).map((p) => getPreset(p).name);
    const quantOnly = values["quant-only"] === undefined ? undefined : values["quant-only"] === "none" ? [] : list(values["quant-only"]);
    quantOnly?.forEach((n) => parseQuantOnly(n));
    const scorerPreset = values["scorer-preset"] === undefined ? undefined : getPreset(values["scorer-preset"]).name;
    const scalar = values.scalar === undefined ? undefined : values.scalar === "none" ? [] : list(values.scalar);
    scalar?.forEach(parseScalarName);
    const sweep = values.sweep === undefined ? undefined : values.sweep === "none" ? [] : parseDepths(values.sweep, "--sweep");
    const sweepPreset = values["sweep-preset"] === undefined ? undefined : getPreset(values["sweep-preset"]).name;
    const ortPresets = values["ort-presets"] === undefined ? undefined : values["ort-presets"] === "none" ? [] : list(values["ort-presets"]).map((p) => getPreset(p).name);
    const peers = values.peers === undefined ? undefined : values.peers === "none" ? [] : list(values.peers).map((kv) => {
      if (!PEER_KV_COMPARED.includes(kv)) throw invalidArgument("--peers", PEER_KV_COMPARED.join(", "), kv);
      return kv;
    });
    const modes = values.modes === undefined ? undefined : list(values.modes).map((m) => {
      if (!RETRIEVAL_MODES.includes(m as RetrievalMode)) throw invalidArgument("--modes", RETRIEVAL_MODES.join(", "), m);
      return m as RetrievalMode;
    });
    const calibrated = values.calibrated === undefined || values.calibrated === "none" ? undefined : list(values.calibrated).map((n) => {
      const [base, bits] = n.split("@") as [string, string | undefined];
      if (bits !== undefined) parseQuantOnly(bits, true);
      if (/^K[1234]V[1234]$/.test(base)) return parseQuantOnly(base, true) && n;
      return bits === undefined ? getPreset(base).name : `${getPreset(base).name}@${bits}`;
    });
    const model = await resolveQualityModel(values.model);
    const defaults = model.trained ? TRAINED_DEFAULTS : RANDOM_MODEL_DEFAULTS;
    const settings: QualitySettings = {
      ...defaults,
      ...(values.prefixes !== undefined ? { prefixes: list(values.prefixes).map((p) => parseContext("--prefixes", p)) } : {}),
      ...(values.score !== undefined ? { scoreTokens: parsePositiveInt("--score", values.score) } : {}),
      ...(values.texts !== undefined ? { texts: parsePositiveInt("--texts", values.texts) } : {}),
      ...(values.contexts !== undefined ? { contexts: list(values.contexts).map((c) => parseContext("--contexts", c)) } : {}),
      ...(values.depths !== undefined ? { depths: parseDepths(values.depths) } : {}),
      ...(values.samples !== undefined ? { samplesPerCell: parsePositiveInt("--samples", values.samples) } : {}),
      ...(values.seed !== undefined ? { seed: parsePositiveInt("--seed", values.seed) } : {}),
      ...(values["compress-every"] !== undefined ? { compressEvery: parsePositiveInt("--compress-every", values["compress-every"]) } : {}),
      ...(presets !== undefined ? { presets } : {}),
      ...(quantOnly !== undefined ? { quantOnly } : {}),
      ...(values.scorers !== undefined ? { scorers: parseScorers(values.scorers) } : {}),
      ...(scorerPreset !== undefined ? { scorerPreset } : {}),
      ...(scalar !== undefined ? { scalar } : {}),
      ...(sweep !== undefined ? { sweep } : {}),
      ...(sweepPreset !== undefined ? { sweepPreset } : {}),
      ...(ortPresets !== undefined ? { ortPresets } : {}),
      ...(modes !== undefined ? { modes } : {}),
      ...(peers !== undefined ? { peers } : {}),
      ...(calibrated !== undefined ? { calibrated } : {}),
      ...(values.profile !== undefined ? { profile: values.profile } : {}),
      perplexity: values["skip-perplexity"] !== true,
      retrieval: values["skip-retrieval"] !== true,
    };
    const bars = { perplexity: progressBar(io, "perplexity"), retrieval: progressBar(io, "retrieval ") };
    const report = await runQualityBench(model, { settings, onProgress: (phase, done, total) => bars[phase](done, total) });
    const files = await writeQualityResults(report, values.out ?? join("bench", "results"));
    if (values.json) {
      io.stdout(toJson(report));
      return 0;
    }
    const cell = (x: number | null, f: (x: number) => string) => (x === null ? "-" : f(x));
    io.stdout(
      [
        `model: ${report.model.label}`,
        ...(report.model.trained ? [] : [`WARNING: ${report.notes[0]}`]),
        `tokenizer: ${report.model.tokenizer}`,
        `${report.observedScorer}`,
        "",
        renderTable(
          TABLE_HEADERS,
          report.rows.map(cells),
          TABLE_HEADERS.map((_, i) => (i < 2 ? "left" : "right")),
        ),
        "goals:",
        ...report.goals.map((g) => `  ${g.preset.padEnd(9)} ${g.status.toUpperCase().padEnd(12)} ${g.detail}`),
        "",
        `wrote ${files.join(", ")} in ${report.seconds.total.toFixed(1)} s`,
        "",
      ].join("\n"),
    );
    return 0;
  },
};
