/**
 * Finds the lab bench suites (bench/suites/, TypeScript run through tsx) when the CLI runs from a
 * clone of the repository. The published package has neither bench/ nor tsx.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { LazyCommand } from "../types.js";

/** bench/suites/index.ts of the checkout this module lives in (src/cli/bench or dist/cli/bench). */
const LAB_INDEX = fileURLToPath(new URL("../../../bench/suites/index.ts", import.meta.url));

/**
 * Cases a lab adds to `nexusquant bench memory` (llama.cpp through node-llama-cpp): their names, and
 * the TypeScript script that runs one in a child process (same spec and result as memory-case.ts).
 */
export interface LabMemoryCases {
  cases: readonly string[];
  script: string;
}

export type LabSuites = { available: true; suites: readonly LazyCommand[]; memoryCases: LabMemoryCases | undefined } | { available: false; reason: string };

let cached: Promise<LabSuites> | undefined;

export function loadLabSuites(): Promise<LabSuites> {
  cached ??= load();
  return cached;
}

async function load(): Promise<LabSuites> {
  if (!existsSync(LAB_INDEX)) return { available: false, reason: "this installation has no bench/ folder (the published package leaves the lab out)" };
  try {
    const mod = (await importTypeScript(pathToFileURL(LAB_INDEX).href)) as { LAB_SUITES: readonly LazyCommand[]; LAB_MEMORY_CASES?: LabMemoryCases };
    return { available: true, suites: mod.LAB_SUITES, memoryCases: mod.LAB_MEMORY_CASES };
  } catch (e) {
    return { available: false, reason: `bench/suites could not be loaded (${e instanceof Error ? e.message : String(e)})` };
  }
}

/**
 * `node` arguments that run a TypeScript lab script in a child process: tsx's loader, resolved from
 * this checkout's dependencies (a clone has it as a devDependency).
 */
export function typeScriptChildArgs(script: string): string[] {
  const loader = createRequire(import.meta.url).resolve("tsx");
  return ["--import", pathToFileURL(loader).href, script];
}

/** Under vitest or tsx this module is TypeScript itself and import() handles .ts; from dist, tsx does. */
async function importTypeScript(url: string): Promise<unknown> {
  if (import.meta.url.endsWith(".ts")) return import(url);
  const specifier = "tsx/esm/api";
  const tsx = (await import(specifier)) as { tsImport(url: string, parent: string): Promise<unknown> };
  return tsx.tsImport(url, import.meta.url);
}
