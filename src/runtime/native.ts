import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NexusQuantError, type NexusQuantErrorCode } from "../errors.js";

/** @internal Shape of a memory snapshot from the addon. */
export interface NativeMemorySnapshot {
  byCategory: Record<string, number>;
  totalBytes: number;
  peakBytes: number;
  allocations: number;
}

/**
 * @internal The native module's surface, declared by hand so that every call site is typed. Grown
 * by each binding file in native/binding/.
 */
export interface BindingModule {
  backendInfo(): {
    cuda: {
      compiled: boolean;
      available: boolean;
      reason?: string;
      runtimeVersion?: number;
      driverVersion?: number;
      devices: { name: string; totalMemoryBytes: number; computeCapability: string }[];
    };
    cpu: { threads: number; isa: "scalar" | "avx2" | "avx512"; isasSupported: ("scalar" | "avx2" | "avx512")[]; isaNote?: string };
  };
  /** Dense causal attention with the same kernels and ISA as attention on codes (benchmark baselines). */
  denseAttention(keys: Float32Array | Uint16Array, values: Float32Array | Uint16Array, kvHeads: number, n: number, d: number, q: Float32Array, qHeads: number, nq: number, scale: number): Float32Array;
  deviceMemoryInfo(device?: number): { freeBytes: number; totalBytes: number };
  memoryStats(): { host: NativeMemorySnapshot; device: NativeMemorySnapshot };
  resetPeakMemory(): void;
  hostAvailableBytes(): number;
  nativeLayout(
    spec: object,
    kvHeads: number,
    headDim: number,
    tokens: number,
  ): { keptTokens: number; pages: number; pageBytes: number; pageEnd: number; residualBytes: number; quantizedTensorBytesKey: number };
  [name: string]: unknown;
}

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Where the addon may be, in order: an explicit override, then the cmake-js build output. */
function candidates(): string[] {
  const list: string[] = [];
  if (process.env.NEXUSQUANT_ADDON) list.push(process.env.NEXUSQUANT_ADDON);
  list.push(join(packageRoot, "build", "Release", "nexusquant.node"));
  list.push(join(packageRoot, "build", "Debug", "nexusquant.node"));
  return list;
}

let cached: BindingModule | undefined;

/** @internal Loads the addon once; throws NATIVE_UNAVAILABLE listing every place tried and how to fix it. */
export function native(): BindingModule {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const failures: string[] = [];
  for (const path of candidates()) {
    if (!existsSync(path)) {
      failures.push(`${path}: not found`);
      continue;
    }
    try {
      cached = require(path) as BindingModule;
      return cached;
    } catch (err) {
      failures.push(`${path}: ${(err as Error).message}`);
    }
  }
  throw new NexusQuantError(
    "NATIVE_UNAVAILABLE",
    "The nexusquant native addon could not be loaded.\n" +
      failures.map((f) => `  - ${f}`).join("\n") +
      "\nPossible fixes:\n" +
      "  - build it: `npm run build:native` (needs cmake and a C++17 compiler; CUDA is optional)\n" +
      "  - build without CUDA if the CUDA build fails: `NEXUSQUANT_CUDA=OFF npm run build:native`\n" +
      "  - point NEXUSQUANT_ADDON at a prebuilt nexusquant.node",
    { tried: failures },
  );
}

const KNOWN_CODES = new Set<NexusQuantErrorCode>([
  "INVALID_ARGUMENT",
  "INVALID_DATA",
  "UNSUPPORTED",
  "BACKEND_UNAVAILABLE",
  "OUT_OF_MEMORY",
  "DISPOSED",
  "CORRUPT_DATA",
  "NATIVE_ERROR",
]);

/** @internal Rethrows an addon error as a NexusQuantError with the same code (NATIVE_ERROR otherwise). */
export function toNexusQuantError(err: unknown): unknown {
  if (err instanceof NexusQuantError) return err;
  if (err instanceof Error) {
    const code = (err as Error & { code?: string }).code as NexusQuantErrorCode | undefined;
    const details = (err as Error & { details?: Record<string, unknown> }).details;
    const converted = new NexusQuantError(code && KNOWN_CODES.has(code) ? code : "NATIVE_ERROR", err.message, details);
    return converted;
  }
  return err;
}

/** @internal Runs a native call, converting its errors. */
export function callNative<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw toNexusQuantError(err);
  }
}

/** @internal Awaits a native promise, converting its errors. */
export async function awaitNative<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (err) {
    throw toNexusQuantError(err);
  }
}
