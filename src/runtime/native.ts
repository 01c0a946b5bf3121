import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NexusQuantError, type NexusQuantErrorCode } from "../errors.js";
import type { BindingModule } from "./binding.js";
// Plain JS shared with the install script (native/build.mjs); the package ships native/.
import { prebuiltAddonPath } from "../../native/addon-path.mjs";

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * Where the addon may be, in order: an explicit override, then a local build (cmake-js output: from
 * source, possibly with CUDA), then the CPU-only prebuilt for exactly this platform and architecture.
 */
function candidates(): string[] {
  const list: string[] = [];
  if (process.env.NEXUSQUANT_ADDON) list.push(process.env.NEXUSQUANT_ADDON);
  list.push(join(packageRoot, "build", "Release", "nexusquant.node"));
  list.push(join(packageRoot, "build", "Debug", "nexusquant.node"));
  list.push(prebuiltAddonPath(packageRoot));
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
      `  - linux-x64 installs use the prebuilt CPU addon: reinstall the package if ${prebuiltAddonPath(packageRoot)} is missing\n` +
      "  - build it: `npm rebuild nexusquant`, or `npm run build:native` in a clone (needs cmake and a C++17 compiler; CUDA is optional)\n" +
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
  "BUSY",
  "CORRUPT_DATA",
  "PROFILE_MISMATCH",
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
