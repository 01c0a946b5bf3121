import { existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";

/** What parseFlags returns: flag values by name (strings or booleans), and positionals. */
export interface ParsedFlags<O extends Options> {
  values: { [K in keyof O]?: O[K] extends { type: "boolean" } ? boolean : string };
  positionals: string[];
}
import { NexusQuantError, invalidArgument } from "../errors.js";

type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * util.parseArgs in strict mode, with its errors (unknown flag, missing value) turned into
 * INVALID_ARGUMENT so that runCli reports them as usage errors (exit 2). A value that starts with a
 * dash and a digit (`--context -5`) is taken as the flag's value, so that its own check says what is
 * wrong with it, instead of parseArgs's "argument is ambiguous".
 */
export function parseFlags<O extends Options>(args: string[], options: O, allowPositionals = false): ParsedFlags<O> {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    const name = arg.startsWith("--") ? arg.slice(2) : undefined;
    if (name !== undefined && options[name]?.type === "string" && next !== undefined && /^-\.?\d/.test(next)) {
      joined.push(`${arg}=${next}`);
      i++;
    } else {
      joined.push(arg);
    }
  }
  try {
    return parseArgs({ args: joined, options, strict: true, allowPositionals }) as unknown as ParsedFlags<O>;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    throw new NexusQuantError("INVALID_ARGUMENT", message, { arg: "argv" });
  }
}

const CONTEXT_SUFFIX: Record<string, number> = { "": 1, k: 1024, m: 1024 * 1024 };

/** Token counts: integers, or with a k (×1024) or m (×1024²) suffix: 32k = 32,768, 1m = 1,048,576. */
export function parseContext(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)([km]?)$/i.exec(text.trim());
  const value = m ? Number(m[1]) * CONTEXT_SUFFIX[m[2]!.toLowerCase()]! : Number.NaN;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw invalidArgument(flag, "a positive whole number of tokens (e.g. 4096, 32k = 32,768, 1m = 1,048,576)", text);
  }
  return value;
}

export function parsePositiveInt(flag: string, text: string): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < 1) throw invalidArgument(flag, "a positive integer", text);
  return value;
}

export function parseNonNegativeNumber(flag: string, text: string): number {
  const value = text.trim() === "" ? Number.NaN : Number(text);
  if (!Number.isFinite(value) || value < 0) throw invalidArgument(flag, "a number >= 0", text);
  return value;
}

/** Parameter counts: 70b, 8.03b, 124m, or a plain integer. */
export function parseParameterCount(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmbt]?)$/i.exec(text.trim());
  const scale: Record<string, number> = { "": 1, k: 1e3, m: 1e6, b: 1e9, t: 1e12 };
  const value = m ? Math.round(Number(m[1]) * scale[m[2]!.toLowerCase()]!) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < 1) throw invalidArgument(flag, "a parameter count such as 8b, 70b or 124m", text);
  return value;
}

const BYTE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

/**
 * A byte count: an integer, or with a unit, decimal (KB MB GB TB, powers of 1000) or binary (KiB MiB
 * GiB TiB, powers of 1024). A bare "g" or "m" is refused: which one it means is exactly the
 * ambiguity the units avoid.
 */
export function parseBytes(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = m ? BYTE_UNITS[m[2]!.toLowerCase()] : undefined;
  const value = m && unit !== undefined ? Math.floor(Number(m[1]) * unit) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw invalidArgument(flag, "a byte count such as 4GiB, 512MiB, 8GB or 1000000 (GB = 10^9, GiB = 2^30)", text);
  }
  return value;
}

/**
 * An output path whose folder must already exist: checked before long work starts, so that a typo
 * does not cost a whole benchmark run and then fail on the write.
 */
export function parseOutputPath(flag: string, path: string): string {
  const dir = dirname(resolve(path));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw invalidArgument(flag, "a path in an existing folder", path);
  return path;
}
