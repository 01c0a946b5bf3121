import { writeFile } from "node:fs/promises";
import { loadConfig } from "../model-arg.js";
import { NexusQuantError, invalidArgument } from "../../errors.js";
import {
  NUMBER_FORMATS,

  getArchitecture,
  getGpu,
  isNumberFormat,
  kvBytesPerToken,
  kvCacheBytes,
  planCapacity,
  presetCacheLayout,
  resolveNumberFormat,
  type Architecture,
  type CapacityOptions,
  type CapacityPlan,
  type Gpu,
  type NumberFormat,
} from "../../estimator/index.js";
import { PRESETS, getPreset, isPresetName } from "../../format/index.js";
import { parseContext, parseFlags, parseNonNegativeNumber, parseParameterCount, parsePositiveInt } from "../args.js";
import { memoryPlotSpec, renderSvg, type MemoryPoint } from "../plot.js";
import { formatBytesPerToken, formatContext, formatGb, formatGib, formatInt, formatRatio, renderTable, toJson } from "../table.js";
import type { CliCommand, CliIo } from "../types.js";
import { describeAttention } from "./models.js";

const USAGE = `Usage: nexusquant estimate (--model ID | --config PATH) [options]

KV-cache memory of a model at a context length, compressed by a preset, and what fits on a GPU.

Model (one of):
  --model ID               a built-in architecture (\`nexusquant models\` lists them)
  --config PATH            a Hugging Face config.json
  --params N               parameter count for --config models (8b, 70b, 124m); sizes the weights

Options:
  --context N              tokens per session; an integer, or with k (x1024) or m (x1024^2):
                           32k = 32,768, 128k = 131,072, 1m = 1,048,576 (default: the model's max)
  --precision P            KV-cache number format: ${NUMBER_FORMATS.join(", ")} (default fp16)
  --preset NAME            compare with a compression preset (\`nexusquant presets\`)
  --gpu ID                 plan capacity on a GPU (\`nexusquant gpus\`), e.g. h100
  --memory-gb X            ... or on a GPU with X decimal GB of memory
  --tp N                   tensor parallelism: GPUs that split the model (default 1)
  --batch N                concurrent sessions of --context tokens (default 1)
  --weights-precision P    weights number format (default bf16)
  --overhead-gb X          memory per GPU taken by other things, decimal GB (default 0)
  --plot FILE.svg          write memory against context for --precision and every preset
                           (with the GPU's memory as a line when --gpu is given)
  --json                   print JSON: model, context, precision, kvBytesPerToken, kvCacheBytes;
                           with --preset: preset, compressedBytes, ratio; with --gpu: gpu, fits,
                           maxSessions, maxContext (null means unbounded)
  --help                   this text

Units: bytes are exact; GB = 1e9 bytes, GiB = 2^30 bytes. Preset bytes/token are asymptotic
(long-context); cache bytes at --context are exact, from the compressed layout.

Example:
  nexusquant estimate --model llama-3.1-70b --context 128k --gpu h100 --tp 2 --preset balanced
`;

const FLAGS = {
  model: { type: "string" },
  config: { type: "string" },
  params: { type: "string" },
  context: { type: "string" },
  precision: { type: "string" },
  preset: { type: "string" },
  gpu: { type: "string" },
  "memory-gb": { type: "string" },
  tp: { type: "string" },
  batch: { type: "string" },
  "weights-precision": { type: "string" },
  "overhead-gb": { type: "string" },
  plot: { type: "string" },
  json: { type: "boolean" },
} as const;

interface EstimateRequest {
  arch: Architecture;
  context: number;
  precision: NumberFormat;
  preset?: string;
  gpu?: Gpu;
  memoryGb?: number;
  tensorParallel: number;
  batch: number;
  weightsPrecision: NumberFormat;
  overheadGb: number;
  plot?: string;
  json: boolean;
}

async function parseRequest(args: string[]): Promise<EstimateRequest> {
  const { values: v } = parseFlags(args, FLAGS);
  if ((v.model === undefined) === (v.config === undefined)) {
    throw new NexusQuantError("INVALID_ARGUMENT", "Give exactly one of --model ID or --config PATH", { arg: "--model" });
  }
  const parameters = v.params === undefined ? undefined : parseParameterCount("--params", v.params);
  let arch = v.model !== undefined ? getArchitecture(v.model) : await loadConfig(v.config!, parameters);
  if (parameters !== undefined && arch.parameters !== parameters) arch = { ...arch, parameters };

  let context: number;
  if (v.context !== undefined) context = parseContext("--context", v.context);
  else if (arch.maxContext !== undefined) context = arch.maxContext;
  else throw invalidArgument("--context", "a context length (the config declares no max_position_embeddings)", undefined);

  if (v.precision !== undefined && !isNumberFormat(v.precision)) {
    if (isPresetName(v.precision)) throw invalidArgument("--precision", `a number format (${NUMBER_FORMATS.join(", ")}); use --preset ${v.precision} for compression`, v.precision);
    throw invalidArgument("--precision", `one of ${NUMBER_FORMATS.join(", ")}`, v.precision);
  }
  if (v.gpu !== undefined && v["memory-gb"] !== undefined) {
    throw new NexusQuantError("INVALID_ARGUMENT", "Give either --gpu or --memory-gb, not both", { arg: "--memory-gb" });
  }
  const req: EstimateRequest = {
    arch,
    context,
    precision: (v.precision as NumberFormat | undefined) ?? "fp16",
    tensorParallel: v.tp === undefined ? 1 : parsePositiveInt("--tp", v.tp),
    batch: v.batch === undefined ? 1 : parsePositiveInt("--batch", v.batch),
    weightsPrecision: resolveNumberFormat(v["weights-precision"] ?? "bf16", "--weights-precision"),
    overheadGb: v["overhead-gb"] === undefined ? 0 : parseNonNegativeNumber("--overhead-gb", v["overhead-gb"]),
    json: v.json === true,
  };
  if (v.preset !== undefined) req.preset = getPreset(v.preset).name;
  if (v.gpu !== undefined) req.gpu = getGpu(v.gpu);
  if (v["memory-gb"] !== undefined) {
    req.memoryGb = parseNonNegativeNumber("--memory-gb", v["memory-gb"]);
    if (req.memoryGb === 0) throw invalidArgument("--memory-gb", "a number > 0", v["memory-gb"]);
  }
  if (v.plot !== undefined) {
    if (!/\.svg$/i.test(v.plot)) throw invalidArgument("--plot", "a file name ending in .svg", v.plot);
    req.plot = v.plot;
  }
  if (req.arch.mla && req.preset) {
    throw invalidArgument("--preset", `no preset for ${arch.id}: its MLA cache holds one latent vector per token, which the compressed format does not describe`, req.preset);
  }
  if ((req.gpu || req.memoryGb !== undefined) && req.arch.parameters === undefined) {
    throw invalidArgument("--params", "the parameter count (e.g. --params 8b) to size the weights of a --config model", undefined);
  }
  return req;
}

function capacity(req: EstimateRequest, cachePrecision: string): CapacityPlan | undefined {
  if (!req.gpu && req.memoryGb === undefined) return undefined;
  const options: CapacityOptions = {
    arch: req.arch,
    context: req.context,
    precision: cachePrecision,
    weightsPrecision: req.weightsPrecision,
    overheadGb: req.overheadGb,
    batch: req.batch,
    tensorParallel: req.tensorParallel,
  };
  if (req.gpu) options.gpu = req.gpu;
  else options.memoryGb = req.memoryGb!;
  return planCapacity(options);
}

export const estimateCommand: CliCommand = {
  name: "estimate",
  summary: "KV-cache and weight memory, compression and GPU capacity for a model",
  usage: USAGE,
  async run(args, io) {
    const req = await parseRequest(args);
    const { arch, context, batch } = req;
    const perSession = kvCacheBytes(arch, context, req.precision);
    const result: Record<string, unknown> = {
      model: arch.id,
      modelName: arch.name,
      source: arch.source,
      context,
      batch,
      precision: req.precision,
      kvBytesPerToken: kvBytesPerToken(arch, req.precision),
      kvCacheBytesPerSession: perSession,
      kvCacheBytes: batch * perSession,
    };
    if (arch.notes.length) result.notes = arch.notes;
    if (arch.warnings?.length) {
      result.warnings = arch.warnings;
      for (const w of arch.warnings) io.stderr(`nexusquant estimate: warning: ${w}\n`);
    }
    const layout = req.preset ? presetCacheLayout(arch, context, req.preset) : undefined;
    if (layout) {
      result.preset = layout.preset;
      result.compressedBytesPerTokenAsymptotic = kvBytesPerToken(arch, layout.preset);
      result.compressedBytesPerSession = layout.bytes.total;
      result.compressedBytes = batch * layout.bytes.total;
      result.compressedComponents = layout.bytes;
      result.ratio = layout.ratio;
      result.ratioVsPrecision = perSession / layout.bytes.total;
    }
    const basePlan = capacity(req, req.precision);
    const presetPlan = layout ? capacity(req, layout.preset) : undefined;
    const mainPlan = presetPlan ?? basePlan;
    if (mainPlan) {
      result.gpu = req.gpu?.id ?? `${req.memoryGb} GB`;
      result.tensorParallel = req.tensorParallel;
      result.weightsPrecision = req.weightsPrecision;
      result.fits = mainPlan.fits;
      result.maxSessions = mainPlan.maxSessions;
      result.maxContext = mainPlan.maxContext;
      result.capacity = mainPlan;
      if (presetPlan && basePlan) result.baselineCapacity = basePlan;
    }
    if (req.plot) {
      await writeFile(req.plot, await renderSvg(memoryPlotSpec(plotData(req, basePlan))));
      result.plot = req.plot;
    }
    if (req.json) io.stdout(toJson(result));
    else printTable(io, req, layout, basePlan, presetPlan);
    return 0;
  },
};

function printTable(
  io: CliIo,
  req: EstimateRequest,
  layout: ReturnType<typeof presetCacheLayout> | undefined,
  basePlan: CapacityPlan | undefined,
  presetPlan: CapacityPlan | undefined,
): void {
  const { arch, context, batch } = req;
  const heads = arch.mla ? `${arch.attentionHeads} heads` : `${arch.attentionHeads} query heads, ${arch.kvHeads} KV heads`;
  const out: string[] = [
    `Model    ${arch.id} (${arch.name}): ${arch.layers} layers, ${heads}, head_dim ${arch.headDim}, ${describeAttention(arch)}`,
    `Source   ${arch.source}`,
    ...arch.notes.map((n) => `Note     ${n}`),
    `Context  ${formatContext(context)} tokens${batch > 1 ? ` x ${batch} sessions` : ""}${arch.maxContext !== undefined && context > arch.maxContext ? ` (beyond the model's ${formatInt(arch.maxContext)})` : ""}`,
    "",
  ];
  const totalBase = batch * kvCacheBytes(arch, context, req.precision);
  const rows: string[][] = [
    [req.precision, formatBytesPerToken(kvBytesPerToken(arch, req.precision)), formatInt(totalBase), formatGb(totalBase), formatGib(totalBase),
      totalBase === 0 ? "" : formatRatio((batch * kvCacheBytes(arch, context, "fp16")) / totalBase)],
  ];
  if (layout) {
    const total = batch * layout.bytes.total;
    rows.push([layout.preset, `${formatBytesPerToken(kvBytesPerToken(arch, layout.preset))} *`, formatInt(total), formatGb(total), formatGib(total), formatRatio(layout.ratio)]);
  }
  out.push(renderTable(["KV cache", "bytes/token", "bytes", "GB", "GiB", "ratio vs fp16"], rows, ["left", "right", "right", "right", "right", "right"]).trimEnd());
  if (layout) {
    out.push(`* ${layout.preset} (${getPreset(layout.preset).description}): asymptotic bytes/token; the cache bytes at this context are exact (compressed layout, incl. FP16 residual window and page headers).`);
  }
  const plan = presetPlan ?? basePlan;
  if (plan) {
    const where = req.gpu ? `${req.gpu.id} (${req.gpu.name}, ${req.gpu.memoryGb} GB)` : `${req.memoryGb} GB GPU`;
    out.push(
      "",
      `GPU      ${where}${req.tensorParallel > 1 ? ` x ${req.tensorParallel} (tensor parallel)` : ""}`,
      `Weights  ${req.weightsPrecision}: ${formatGb(plan.weightBytesPerGpu)} GB per GPU; overhead ${formatGb(plan.overheadBytesPerGpu)} GB per GPU; free for KV ${formatGb(plan.freeBytesPerGpu)} GB per GPU`,
      "",
    );
    const capRows = [basePlan, presetPlan].filter((p): p is CapacityPlan => p !== undefined).map((p) => [
      p.precision,
      formatGb(p.kvBytesPerSessionPerGpu),
      p.fits ? "yes" : "no",
      formatInt(p.maxSessions),
      formatContext(p.maxContext),
    ]);
    out.push(renderTable(["KV cache", "GB/session/GPU", `fits (batch ${batch})`, `sessions of ${formatInt(context)}`, `max context (batch ${batch})`], capRows, ["left", "right", "left", "right", "right"]).trimEnd());
    if (plan.freeBytesPerGpu < 0) out.push(weightsHint(req, plan));
  }
  io.stdout(out.join("\n") + "\n");
}

/** When the weights alone overflow the GPU, say what would make them fit, with computed numbers. */
function weightsHint(req: EstimateRequest, plan: CapacityPlan): string {
  const tries: string[] = [];
  const cache = req.preset ?? req.precision;
  for (const tp of [2, 4, 8].filter((t) => t > req.tensorParallel)) {
    const p = capacity({ ...req, tensorParallel: tp }, cache)!;
    if (p.freeBytesPerGpu > 0) {
      tries.push(`--tp ${tp} (${formatInt(p.maxSessions)} ${cache} sessions)`);
      break;
    }
  }
  for (const w of ["fp8", "int4"] as const) {
    if (w === req.weightsPrecision) continue;
    const p = capacity({ ...req, weightsPrecision: w }, cache)!;
    if (p.freeBytesPerGpu > 0) {
      tries.push(`--weights-precision ${w} (${formatInt(p.maxSessions)} ${cache} sessions)`);
      break;
    }
  }
  const need = `Weights need ${formatGb(plan.weightBytesPerGpu + plan.overheadBytesPerGpu)} GB per GPU, more than its ${formatGb(plan.memoryBytesPerGpu)} GB`;
  return `${need}${tries.length ? `: try ${tries.join(" or ")}` : ""}.`;
}

function contextGrid(req: EstimateRequest): number[] {
  const top = Math.min(2 ** 24, Math.max(16_384, 2 * req.context, req.arch.maxContext ?? 0));
  const grid: number[] = [];
  for (let t = 1024; t <= top; t *= 2) grid.push(t);
  if (!grid.includes(req.context) && req.context <= top) grid.push(req.context);
  return grid.sort((a, b) => a - b);
}

function plotData(req: EstimateRequest, plan: CapacityPlan | undefined) {
  const caches = [req.precision, ...(req.arch.mla ? [] : Object.keys(PRESETS))];
  const points: MemoryPoint[] = [];
  for (const cache of caches) {
    for (const t of contextGrid(req)) {
      // With a GPU: everything one GPU holds (weights, overhead, its share of the batch's cache);
      // the crossing with the memory line is the longest context that fits.
      const bytes = plan
        ? plan.weightBytesPerGpu + plan.overheadBytesPerGpu + req.batch * kvCacheBytes(req.arch, t, cache, { kvHeads: plan.kvHeadsPerGpu })
        : req.batch * kvCacheBytes(req.arch, t, cache);
      points.push({ context: t, gb: bytes / 1e9, series: cache });
    }
  }
  const what = req.batch > 1 ? `${req.batch} sessions` : "one session";
  return {
    title: `${req.arch.name}: ${plan ? "memory per GPU" : "KV cache"} against context (${what})`,
    yTitle: plan ? `memory per GPU, GB (weights ${req.weightsPrecision} + KV cache)` : "KV cache, GB",
    points,
    series: caches,
    ...(plan ? { limit: { gb: plan.memoryBytesPerGpu / 1e9, label: `${req.gpu?.name ?? "GPU"}: ${formatGb(plan.memoryBytesPerGpu)} GB` } } : {}),
  };
}
