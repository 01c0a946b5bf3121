import { NexusQuantError, invalidArgument } from "../errors.js";
import { native } from "./native.js";

export type BackendName = "cpu" | "cuda";
/** SIMD levels of the CPU attention kernels: "scalar" is the portable build (x86-64-v2 on x86). */
export type CpuIsa = "scalar" | "avx2" | "avx512";
export type BackendRequest = BackendName | "auto";

export interface CudaDevice {
  name: string;
  totalMemoryBytes: number;
  computeCapability: string;
}

export interface BackendInfo {
  cuda: {
    compiled: boolean;
    available: boolean;
    /** Why CUDA cannot be used, when it cannot. */
    reason?: string;
    runtimeVersion?: number;
    driverVersion?: number;
    devices: CudaDevice[];
  };
  cpu: {
    /** Threads CPU work runs on (NEXUSQUANT_THREADS, clamped to the hardware). */
    threads: number;
    /** SIMD level of the attention kernels, chosen by cpuid at load (override: NEXUSQUANT_ISA). */
    isa: CpuIsa;
    /** Levels this build can run on this CPU, portable first. */
    isasSupported: CpuIsa[];
    /** Why NEXUSQUANT_ISA was not honoured, when it was not. */
    isaNote?: string;
  };
  /** What `backend: "auto"` resolves to on this machine, and why. */
  auto: { backend: BackendName; reason: string };
}

/** What this build of the addon can do on this machine. Probes CUDA once per process. */
export function backendInfo(): BackendInfo {
  const raw = native().backendInfo();
  return { ...raw, auto: autoBackend(raw.cuda) };
}

/**
 * What `backend: "auto"` means, decided here for every caller (CompressedKVCache, withNexusQuant,
 * verifyCompression): the CPU, with the reason. The CUDA cache is compiled but has never run on a
 * GPU (docs/cuda.md), so it is used only when asked for by name ("cuda"), even where a GPU is
 * available. When it has passed its GPU tests, this is the one line that changes.
 */
function autoBackend(cuda: BackendInfo["cuda"]): BackendInfo["auto"] {
  if (!cuda.available) return { backend: "cpu", reason: `CUDA unavailable: ${cuda.reason ?? "unknown reason"}; using the CPU backend` };
  return {
    backend: "cpu",
    reason: `CUDA device ${cuda.devices[0]?.name ?? "0"} is available, but the CUDA cache has not been verified on a GPU yet; "auto" uses the CPU backend (ask for backend "cuda" by name)`,
  };
}

/**
 * Resolves a backend request. "auto" never fails: it is `backendInfo().auto.backend`. "cuda" on a
 * machine without a usable GPU is a BACKEND_UNAVAILABLE error with the reason; `supportsCuda: false`
 * (an operation without a CUDA implementation) makes "cuda" an UNSUPPORTED error.
 */
export function resolveBackend(request: BackendRequest = "auto", supportsCuda = true): BackendName {
  if (request !== "auto" && request !== "cpu" && request !== "cuda") {
    throw invalidArgument("backend", '"auto", "cpu" or "cuda"', request);
  }
  if (request === "cpu") return "cpu";
  const info = backendInfo();
  if (request === "auto") return info.auto.backend;
  if (!info.cuda.available) {
    throw new NexusQuantError("BACKEND_UNAVAILABLE", `backend "cuda" was requested but ${info.cuda.reason}. Use backend "auto" or "cpu".`, {
      reason: info.cuda.reason,
    });
  }
  if (!supportsCuda) {
    throw new NexusQuantError("UNSUPPORTED", 'This operation has no CUDA implementation yet; use backend "cpu" or "auto".');
  }
  return "cuda";
}
