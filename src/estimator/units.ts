/**
 * Units used across the estimator. Bytes are exact integers; `gb` is 1e9 bytes (what vendors print on
 * GPUs and what most articles mean), `gib` is 2^30 bytes (what allocators and `nvidia-smi` count).
 * Every figure we return carries all three so a caller never has to guess which one it holds.
 */
export const BYTES_PER_GB = 1e9;
export const BYTES_PER_GIB = 2 ** 30;

export interface ByteAmount {
  bytes: number;
  gb: number;
  gib: number;
}

export function byteAmount(bytes: number): ByteAmount {
  return { bytes, gb: bytes / BYTES_PER_GB, gib: bytes / BYTES_PER_GIB };
}

/** An amount of memory given in an explicit unit. */
export type MemoryAmount = { bytes: number } | { gb: number } | { gib: number };

/** Exact bytes of a memory amount; GB/GiB inputs are rounded down to whole bytes. */
export function memoryAmountBytes(amount: MemoryAmount): number {
  if ("bytes" in amount) return amount.bytes;
  if ("gb" in amount) return Math.floor(amount.gb * BYTES_PER_GB);
  return Math.floor(amount.gib * BYTES_PER_GIB);
}
