import { NexusQuantError, invalidArgument } from "../errors.js";
import { PRESET_NAMES, getPreset, isPresetName, type Preset } from "../format/index.js";

/** Plain number formats of cache or weight elements. */
export type NumberFormat = "fp32" | "fp16" | "bf16" | "fp8" | "int8" | "int4";

export const NUMBER_FORMAT_BITS: Readonly<Record<NumberFormat, number>> = Object.freeze({
  fp32: 32,
  fp16: 16,
  bf16: 16,
  fp8: 8,
  int8: 8,
  int4: 4,
});

export const NUMBER_FORMATS = Object.keys(NUMBER_FORMAT_BITS) as NumberFormat[];

/** A number format, or a compression preset name (`balanced`, `L`, ...) whose sizes come from src/format. */
export type Precision = NumberFormat | (string & {});

export type ResolvedPrecision =
  | { kind: "format"; name: NumberFormat; bits: number }
  | { kind: "preset"; name: string; preset: Preset };

export function isNumberFormat(p: unknown): p is NumberFormat {
  return typeof p === "string" && p in NUMBER_FORMAT_BITS;
}

export function resolvePrecision(precision: Precision, arg = "precision"): ResolvedPrecision {
  if (isNumberFormat(precision)) return { kind: "format", name: precision, bits: NUMBER_FORMAT_BITS[precision] };
  if (typeof precision === "string" && isPresetName(precision)) {
    const preset = getPreset(precision);
    return { kind: "preset", name: preset.name, preset };
  }
  throw invalidArgument(arg, `one of ${NUMBER_FORMATS.join(", ")} or a preset (${PRESET_NAMES.join(", ")})`, precision);
}

/** Weights are stored in plain number formats only: presets compress the KV cache, not weights. */
export function resolveNumberFormat(precision: unknown, arg: string): NumberFormat {
  if (isNumberFormat(precision)) return precision;
  if (typeof precision === "string" && isPresetName(precision)) {
    throw new NexusQuantError("INVALID_ARGUMENT", `Expected a number format (${NUMBER_FORMATS.join(", ")}) for ${arg} but received the KV-cache preset ${JSON.stringify(precision)}: presets do not apply to weights`, { arg });
  }
  throw invalidArgument(arg, `one of ${NUMBER_FORMATS.join(", ")}`, precision);
}
