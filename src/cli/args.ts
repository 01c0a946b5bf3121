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
 * INVALID_ARGUMENT so that runCli reports them as usage errors (exit 2).
 */
export function parseFlags<O extends Options>(args: string[], options: O, allowPositionals = false): ParsedFlags<O> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals }) as unknown as ParsedFlags<O>;
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
