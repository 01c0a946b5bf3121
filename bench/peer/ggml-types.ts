/**
 * The few ggml tensor types the peer lab uses, with their numeric ids (the `ggml_type` enum that GGUF
 * tensor infos store) and their block layout. One definition: the GGUF writer takes the ids from here
 * and the KV byte counts of llama.cpp's cache types (kvBytes) take the block sizes from here.
 *
 * Block sizes are ggml's packed block structs (ggml/src/ggml-common.h, each with a static_assert on its
 * size): `block_q8_0` = one FP16 scale + 32 int8 values = 34 bytes per 32 values; `block_q4_0` = one
 * FP16 scale + 32 4-bit values in 16 bytes = 18 bytes per 32 values. F16 and F32 are 1-value "blocks".
 * llama.cpp sizes a cache row with ggml_row_size(type, n) = n / blockValues * blockBytes.
 */
import { invalidArgument } from "../../src/errors.js";

export interface GgmlType {
  name: GgmlTypeName;
  /** ggml_type enum value, as stored in a GGUF tensor info. */
  id: number;
  /** Values per block. */
  blockValues: number;
  /** Bytes per block. */
  blockBytes: number;
}

export type GgmlTypeName = "F32" | "F16" | "Q4_0" | "Q8_0";

export const GGML_TYPES: Readonly<Record<GgmlTypeName, GgmlType>> = {
  F32: { name: "F32", id: 0, blockValues: 1, blockBytes: 4 },
  F16: { name: "F16", id: 1, blockValues: 1, blockBytes: 2 },
  Q4_0: { name: "Q4_0", id: 2, blockValues: 32, blockBytes: 18 },
  Q8_0: { name: "Q8_0", id: 8, blockValues: 32, blockBytes: 34 },
};

/** Bytes of a row of `values` elements (ggml_row_size): whole blocks only, as ggml requires. */
export function ggmlRowBytes(type: GgmlTypeName, values: number): number {
  const t = GGML_TYPES[type];
  if (!Number.isSafeInteger(values) || values < 0 || values % t.blockValues !== 0) {
    throw invalidArgument("values", `a multiple of ${t.name}'s block of ${t.blockValues} values`, values);
  }
  return (values / t.blockValues) * t.blockBytes;
}
