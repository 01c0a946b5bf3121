/**
 * The lab's native functions (bench/native/lab_binding.cc), in an addon built with NEXUSQUANT_LAB=ON
 * from a clone: `NEXUSQUANT_LAB=ON npm run build:native` (bench/gpu/pack.sh and run.sh build it so).
 * The product's BindingModule (src/runtime/binding.ts) does not declare them; labBinding() checks that
 * the loaded addon has them and says how to build one that does.
 */
import { NexusQuantError } from "../../src/errors.js";
import type { BindingModule } from "../../src/runtime/binding.js";
import { callNative, native } from "../../src/runtime/native.js";

export type CodecBenchQuantizer = "e8" | "uniform" | "lloyd-max";

export interface LabBinding {
  /** E8 or a scalar baseline (bench/native/baselines.h) over all CPU threads: the reconstruction and the encode/decode times. */
  codecBenchmark(
    quantizer: CodecBenchQuantizer,
    data: Float32Array,
    headDim: number,
    bits: number,
    rotate: boolean,
    seed: number,
  ): { reconstruction: Float32Array; encodeSeconds: number; decodeSeconds: number };
  /** CUDA builds only: kernel timings (bench/native/cuda_bench.cu); options per kind in bench/gpu/driver.mjs. */
  cudaBench?(kind: CudaBenchKind, options: Record<string, number | boolean>): { ms: number[]; bytesRead: number; bytesWritten: number };
}

/** The loaded addon's lab functions; LAB_ONLY when it was built without them. */
export function labBinding(): LabBinding {
  const b = native() as BindingModule & Partial<LabBinding>;
  if (typeof b.codecBenchmark !== "function") {
    throw new NexusQuantError(
      "LAB_ONLY",
      "the loaded addon was built without the lab's native code (bench/native): rebuild it from a clone with `NEXUSQUANT_LAB=ON npm run build:native`",
    );
  }
  return b as LabBinding;
}

export type CudaBenchKind = "copy" | "encode" | "decode" | "attention";
export interface CudaBenchResult {
  ms: number[];
  medianMs: number;
  bytesRead: number;
  bytesWritten: number;
  /** (bytesRead + bytesWritten) / median time, in GB/s (1e9 bytes). */
  gbPerSecond: number;
}

/** Kernel timings (CUDA events per repetition, rotating input buffers); options per kind in bench/gpu/driver.mjs. */
export function cudaBench(kind: CudaBenchKind, options: Record<string, number | boolean>): CudaBenchResult {
  const run = labBinding().cudaBench;
  if (!run) throw new NexusQuantError("BACKEND_UNAVAILABLE", "this lab addon was built without CUDA: cudaBench needs NEXUSQUANT_CUDA=ON as well");
  const r = callNative(() => run(kind, options));
  const sorted = [...r.ms].sort((a, b) => a - b);
  const medianMs = sorted.length === 0 ? NaN : sorted[Math.floor(sorted.length / 2)]!;
  return { ...r, medianMs, gbPerSecond: (r.bytesRead + r.bytesWritten) / (medianMs * 1e6) };
}
