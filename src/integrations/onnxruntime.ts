/**
 * Which onnxruntime-node the native path and the ORT-session wrapper use: one per process. Two copies
 * of different versions cannot both load (their libonnxruntime.so.1 share a soname: the second fails
 * with ERR_DLOPEN_FAILED "version `VERS_1.30.0' not found"), and `npm install nexusquant
 * @huggingface/transformers onnxruntime-node` gives exactly that: the app's latest onnxruntime-node
 * at the top and the version @huggingface/transformers pins nested under it.
 *
 * The rule: `options.ort` if given; else the copy already loaded in this process; else, when the
 * app's copy and @huggingface/transformers' differ, transformers' (the runtime its models load, so a
 * mixed app works whichever it imports first); else the app's. A clash is reported up front: a
 * warning naming both versions and the fix when nothing is loaded yet (importing the app's own copy
 * later in the process will fail), an error naming them when ours cannot load. transformers.js models
 * themselves never need it: their wrapper uses the model's tensors.
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { NexusQuantError } from "../errors.js";

export interface OnnxRuntimeCopy {
  /** The package directory (…/node_modules/onnxruntime-node). */
  dir: string;
  version: string;
}

export interface OnnxRuntimeCopies {
  /** What `import("onnxruntime-node")` from nexusquant resolves: the app's copy. */
  app?: OnnxRuntimeCopy;
  /** What @huggingface/transformers resolves, with the version of transformers that pins it. */
  transformers?: OnnxRuntimeCopy & { transformersVersion: string };
  /** The copy whose native library this process has loaded, if any. */
  loaded?: OnnxRuntimeCopy;
}

const PACKAGE = "onnxruntime-node";

function readVersion(dir: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version?: string }).version;
  } catch {
    return undefined;
  }
}

/** Node's lookup of a package directory: `from`/node_modules/<name>, then each parent's. */
export function findPackage(name: string, from: string): OnnxRuntimeCopy | undefined {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    const version = existsSync(join(candidate, "package.json")) ? readVersion(candidate) : undefined;
    if (version !== undefined) return { dir: candidate, version };
    if (dirname(dir) === dir) return undefined;
  }
}

/** The onnxruntime-node package whose files this process has mapped (Linux /proc/self/maps). */
export function loadedCopy(maps: string | undefined): OnnxRuntimeCopy | undefined {
  if (maps === undefined) return undefined;
  const marker = `${sep}node_modules${sep}${PACKAGE}${sep}`;
  for (const line of maps.split("\n")) {
    const path = line.slice(line.indexOf("/"));
    const at = path.lastIndexOf(marker);
    if (!line.includes("libonnxruntime") || at < 0) continue;
    const dir = path.slice(0, at + marker.length - 1);
    const version = readVersion(dir);
    if (version !== undefined) return { dir, version };
  }
  return undefined;
}

function readMaps(): string | undefined {
  try {
    return readFileSync("/proc/self/maps", "utf8");
  } catch {
    return undefined;
  }
}

/** Every copy that matters, seen from `from` (nexusquant's own directory by default). */
export function onnxRuntimeCopies(from = dirname(fileURLToPath(import.meta.url)), maps: string | undefined = readMaps()): OnnxRuntimeCopies {
  const copies: OnnxRuntimeCopies = {};
  const app = findPackage(PACKAGE, from);
  if (app) copies.app = app;
  const tjs = findPackage("@huggingface/transformers", from);
  if (tjs) {
    const own = findPackage(PACKAGE, tjs.dir);
    if (own) copies.transformers = { ...own, transformersVersion: tjs.version };
  }
  const loaded = loadedCopy(maps);
  if (loaded) copies.loaded = loaded;
  return copies;
}

/** The fix for two versions in one app: the one transformers pins, installed once. */
function fix(c: NonNullable<OnnxRuntimeCopies["transformers"]>): string {
  return (
    `Install the version @huggingface/transformers ${c.transformersVersion} pins, so that one copy is shared: ` +
    `npm install onnxruntime-node@${c.version} (then \`npm ls onnxruntime-node\` shows one version). ` +
    `Or pass { ort } to withNexusQuant with the module you load yourself.`
  );
}

/** A clash message when the app's copy and transformers' differ in version; undefined when they agree. */
export function clashMessage(copies: OnnxRuntimeCopies): string | undefined {
  const { app, transformers } = copies;
  if (!app || !transformers || app.version === transformers.version) return undefined;
  return (
    `onnxruntime-node ${app.version} (${app.dir}) and ${transformers.version} (${transformers.dir}, pinned by @huggingface/transformers ` +
    `${transformers.transformersVersion}) are both installed. Their native libraries cannot both load in one process ` +
    `(ERR_DLOPEN_FAILED: version \`VERS_…' not found). ${fix(transformers)}`
  );
}

let warned = false;

/**
 * The onnxruntime-node module by the rule above. `copies` is for tests; the default looks at this
 * installation and process.
 */
export async function importOnnxRuntime(copies: OnnxRuntimeCopies = onnxRuntimeCopies()): Promise<unknown> {
  const clash = clashMessage(copies);
  // Already loaded (by transformers.js, or the app): that copy, whatever the app's resolution says.
  // Nothing loaded and two versions: transformers' own, which its models will load anyway.
  const target = copies.loaded ?? (clash !== undefined ? copies.transformers : copies.app);
  if (clash !== undefined && copies.loaded === undefined && !warned) {
    warned = true;
    process.emitWarning(
      `${clash} nexusquant loads transformers' ${copies.transformers!.version} now; importing onnxruntime-node ${copies.app!.version} itself later in this process will fail.`,
      { code: "NEXUSQUANT_ONNXRUNTIME_CLASH" },
    );
  }
  try {
    if (target === undefined) return await import(PACKAGE);
    const entry = createRequire(join(dirname(dirname(target.dir)), "resolver.js")).resolve(PACKAGE);
    return await import(pathToFileURL(entry).href);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    throw new NexusQuantError(
      "BACKEND_UNAVAILABLE",
      clash !== undefined && /ERR_DLOPEN_FAILED|VERS_/.test(`${(e as { code?: string }).code} ${message}`)
        ? `onnxruntime-node could not be loaded: ${clash} (${message})`
        : `onnxruntime-node could not be loaded (${message}). Install it with ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node, or pass { ort } to withNexusQuant.`,
      {
        ...(copies.app ? { appVersion: copies.app.version } : {}),
        ...(copies.transformers ? { transformersVersion: copies.transformers.version } : {}),
      },
    );
  }
}
