import { NexusQuantError, invalidArgument } from "../errors.js";
import type { Architecture } from "./architecture.js";
import { getArchitecture } from "./architectures.js";
import { getGpu, type Gpu } from "./gpus.js";
import { kvCacheBytes, maxTokensWithin, weightMemory } from "./kv.js";
import { resolveNumberFormat, resolvePrecision, type NumberFormat, type Precision } from "./precision.js";
import { BYTES_PER_GB } from "./units.js";

export interface CapacityOptions {
  arch: Architecture | string;
  /** A GPU (or its id); memory per GPU is its stated memory. Give this or memoryGb. */
  gpu?: Gpu | string;
  /** Memory per GPU in decimal GB (1e9 bytes), when no gpu is given. */
  memoryGb?: number;
  /** Tokens per session. */
  context: number;
  /** KV-cache precision: a number format or a preset name. Default fp16. */
  precision?: Precision;
  /** A compression preset for the KV cache; same as precision: preset, and exclusive with it. */
  preset?: string;
  /** Precision of the weights (default bf16). */
  weightsPrecision?: NumberFormat;
  /** Memory per GPU held by other things (CUDA context, activations), decimal GB. Default 0. */
  overheadGb?: number;
  /** Concurrent sessions to fit (each of `context` tokens). Default 1. */
  batch?: number;
  /** GPUs that split the model (tensor parallelism). Default 1. */
  tensorParallel?: number;
}

/** All byte figures are exact integers and, unless named otherwise, per GPU. */
export interface CapacityPlan {
  arch: string;
  gpu?: string;
  precision: string;
  weightsPrecision: NumberFormat;
  context: number;
  batch: number;
  tensorParallel: number;
  memoryBytesPerGpu: number;
  weightBytesPerGpu: number;
  overheadBytesPerGpu: number;
  /** Memory left for the KV cache: memory − weights − overhead (negative when the weights do not fit). */
  freeBytesPerGpu: number;
  /** KV heads each GPU holds (heads are split across GPUs, and replicated when there are more GPUs than heads). */
  kvHeadsPerGpu: number;
  /** One session's cache on one GPU. */
  kvBytesPerSessionPerGpu: number;
  /** One session's cache over all GPUs (replicated heads counted once per GPU that holds them). */
  kvBytesPerSession: number;
  /** Whether `batch` sessions of `context` tokens fit. */
  fits: boolean;
  /** Sessions of `context` tokens that fit. */
  maxSessions: number;
  /** Longest context for which `batch` sessions fit (Infinity when every layer slides; 0 when none fit). */
  maxContext: number;
  /** The context the model's config declares, for comparison with maxContext. */
  modelMaxContext?: number;
}

function positiveInt(arg: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) throw invalidArgument(arg, "a positive integer", v);
  return v;
}
function nonNegativeGb(arg: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw invalidArgument(arg, "a non-negative number of GB", v);
  return Math.floor(v * BYTES_PER_GB);
}

/**
 * How many sessions of a given context fit on a GPU (or several under tensor parallelism), and the
 * longest context that fits. Everything is compared in integer bytes per GPU: dividing decimal-GB
 * free memory by a GiB-valued session size is the classic error this avoids.
 */
export function planCapacity(options: CapacityOptions): CapacityPlan {
  if (options === null || typeof options !== "object") throw invalidArgument("options", "a CapacityOptions object", options);
  const arch = typeof options.arch === "string" ? getArchitecture(options.arch) : options.arch;
  if (arch === null || typeof arch !== "object") throw invalidArgument("options.arch", "an Architecture or a model id", options.arch);
  const gpu = typeof options.gpu === "string" ? getGpu(options.gpu) : options.gpu;
  if (gpu !== undefined && options.memoryGb !== undefined) {
    throw new NexusQuantError("INVALID_ARGUMENT", "Give either options.gpu or options.memoryGb, not both", { arg: "options.memoryGb" });
  }
  let memoryBytesPerGpu: number;
  if (gpu) memoryBytesPerGpu = gpu.memoryBytes;
  else if (options.memoryGb !== undefined) memoryBytesPerGpu = nonNegativeGb("options.memoryGb", options.memoryGb);
  else throw invalidArgument("options.gpu", "a GPU id or object (or options.memoryGb)", undefined);

  if (options.preset !== undefined && options.precision !== undefined && options.precision !== options.preset) {
    throw new NexusQuantError("INVALID_ARGUMENT", `Give either options.precision or options.preset, not both (received ${JSON.stringify(options.precision)} and ${JSON.stringify(options.preset)})`, { arg: "options.preset" });
  }
  const precision = resolvePrecision(options.preset ?? options.precision ?? "fp16", options.preset !== undefined ? "options.preset" : "options.precision");
  const weightsPrecision = resolveNumberFormat(options.weightsPrecision ?? "bf16", "options.weightsPrecision");
  const context = typeof options.context === "number" && Number.isSafeInteger(options.context) && options.context >= 0
    ? options.context
    : (() => { throw invalidArgument("options.context", "an integer >= 0 (tokens per session)", options.context); })();
  const batch = positiveInt("options.batch", options.batch ?? 1);
  const tp = positiveInt("options.tensorParallel", options.tensorParallel ?? 1);
  const overheadBytesPerGpu = nonNegativeGb("options.overheadGb", options.overheadGb ?? 0);

  // Weights split evenly; embeddings and norms do not shard perfectly, so this is a lower bound.
  const weightBytesPerGpu = Math.ceil(weightMemory(arch, weightsPrecision).bytes / tp);
  const freeBytesPerGpu = memoryBytesPerGpu - weightBytesPerGpu - overheadBytesPerGpu;
  // vLLM-style sharding: each GPU holds ceil(kvHeads / tp) heads; an MLA latent is whole on every GPU.
  const kvHeadsPerGpu = arch.mla ? arch.kvHeads : Math.ceil(arch.kvHeads / tp);
  const perGpu = (tokens: number) => kvCacheBytes(arch, tokens, precision.name, { kvHeads: kvHeadsPerGpu });
  const kvBytesPerSessionPerGpu = perGpu(context);
  const kvBytesPerSession = kvBytesPerSessionPerGpu * tp;

  const free = Math.max(0, freeBytesPerGpu);
  const maxSessions = kvBytesPerSessionPerGpu === 0 ? Number.POSITIVE_INFINITY : Math.floor(free / kvBytesPerSessionPerGpu);
  const allSliding = arch.slidingWindow && arch.slidingWindow.layers === arch.layers ? arch.slidingWindow.window : undefined;
  const maxContext = freeBytesPerGpu < 0 ? 0 : Math.max(0, maxTokensWithin(free, (t) => batch * perGpu(t), allSliding));

  const plan: CapacityPlan = {
    arch: arch.id,
    precision: precision.name,
    weightsPrecision,
    context,
    batch,
    tensorParallel: tp,
    memoryBytesPerGpu,
    weightBytesPerGpu,
    overheadBytesPerGpu,
    freeBytesPerGpu,
    kvHeadsPerGpu,
    kvBytesPerSessionPerGpu,
    kvBytesPerSession,
    fits: freeBytesPerGpu >= 0 && batch * kvBytesPerSessionPerGpu <= freeBytesPerGpu,
    maxSessions,
    maxContext,
  };
  if (gpu) plan.gpu = gpu.id;
  if (arch.maxContext !== undefined) plan.modelMaxContext = arch.maxContext;
  return plan;
}
