// Types of parity-cases.mjs for test/cuda/parity.test.ts and test/native/cpu-ops.test.ts.
export interface ParityCase {
  kind: string;
  name: string;
  bound: number;
  [key: string]: unknown;
}
export interface ParityResult {
  name: string;
  kind: string;
  bound: number;
  ok: boolean;
  metric: number;
  detail: string;
  ms: number;
}
/** The functions a case needs: TypeScript modules (vitest) or their compiled copies in .gpu/js (bench/gpu/parity.mjs). */
export interface ParityApi {
  quantizeSync: unknown;
  dequantizeSync: unknown;
  floatsToHalfBits: unknown;
  halfBitsToFloats: unknown;
  CompressedKVCache: unknown;
  cudaEncode: unknown;
  cudaDecode: unknown;
  cudaAttention: unknown;
  cudaDenseAttention: unknown;
  cudaScore: unknown;
  cudaSelect: unknown;
  cpuEncode: unknown;
  cpuDecode: unknown;
  cpuAttention: unknown;
  cpuScore: unknown;
  cpuSelect: unknown;
  /** test/ops/transform-fixture.ts: the calibrated transform cases' profile, tables and data. */
  transformProfileFor: unknown;
  transformTablesFor: unknown;
  transformTestKV: unknown;
}
export function parityCases(): ParityCase[];
export function runCase(api: ParityApi, c: ParityCase): ParityResult;
/** The CPU ops against the references of parity-cases.mjs: no GPU needed. */
export function cpuCases(): ParityCase[];
export function runCpuCase(api: Omit<ParityApi, "cudaEncode" | "cudaDecode" | "cudaAttention" | "cudaDenseAttention" | "cudaScore" | "cudaSelect">, c: ParityCase): ParityResult;
export function rng(seed: number): { next(): number; gauss(): number };
