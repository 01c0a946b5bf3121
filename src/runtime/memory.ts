import { invalidArgument } from "../errors.js";
import type { NativeMemorySnapshot } from "./binding.js";
import { native } from "./native.js";

export type MemoryCategory = "codes" | "scales" | "positions" | "residual" | "headers" | "scores" | "scratch" | "tensor" | "transform";

export interface MemorySpaceStats {
  /** Live bytes by category, exactly as requested from the accounting allocator. */
  byCategory: Record<MemoryCategory, number>;
  totalBytes: number;
  peakBytes: number;
  allocations: number;
}

export interface MemoryStats {
  host: MemorySpaceStats;
  device: MemorySpaceStats;
}

function toSpace(s: NativeMemorySnapshot): MemorySpaceStats {
  return { ...s, byCategory: s.byCategory as Record<MemoryCategory, number> };
}

/** Live bytes held by nexusquant's accounting allocator, host and device, by category. */
export function memoryStats(): MemoryStats {
  const s = native().memoryStats();
  return { host: toSpace(s.host), device: toSpace(s.device) };
}

export interface MemoryMeasurement<T> {
  result: T;
  /** Allocator bytes (host + device) before and after `fn`, and the difference. */
  before: number;
  after: number;
  delta: number;
  host: { before: number; after: number; delta: number };
  device: { before: number; after: number; delta: number };
  /** Delta by category (host + device). */
  byCategory: Record<MemoryCategory, number>;
  /** cudaMemGetInfo used-bytes delta on device 0, when a CUDA device is present. */
  cudaMemGetInfo?: { usedBefore: number; usedAfter: number; delta: number };
  /** Process RSS delta: informational only, since the JS heap and the C allocator make it noisy. */
  rssDelta: number;
}

function cudaUsed(): number | undefined {
  const n = native();
  if (!n.backendInfo().cuda.available) return undefined;
  const m = n.deviceMemoryInfo(0);
  return m.totalBytes - m.freeBytes;
}

/** Runs `fn` and reports what it left allocated (not what it freed again before returning). */
export async function measureMemory<T>(fn: () => T | Promise<T>): Promise<MemoryMeasurement<T>> {
  const before = memoryStats();
  const rssBefore = process.memoryUsage().rss;
  const cudaBefore = cudaUsed();
  const result = await fn();
  const cudaAfter = cudaUsed();
  const after = memoryStats();
  const rssAfter = process.memoryUsage().rss;
  const byCategory = {} as Record<MemoryCategory, number>;
  for (const key of Object.keys(after.host.byCategory) as MemoryCategory[]) {
    byCategory[key] = after.host.byCategory[key] + after.device.byCategory[key] - before.host.byCategory[key] - before.device.byCategory[key];
  }
  const total = (s: MemoryStats) => s.host.totalBytes + s.device.totalBytes;
  const measurement: MemoryMeasurement<T> = {
    result,
    before: total(before),
    after: total(after),
    delta: total(after) - total(before),
    host: { before: before.host.totalBytes, after: after.host.totalBytes, delta: after.host.totalBytes - before.host.totalBytes },
    device: { before: before.device.totalBytes, after: after.device.totalBytes, delta: after.device.totalBytes - before.device.totalBytes },
    byCategory,
    rssDelta: rssAfter - rssBefore,
  };
  if (cudaBefore !== undefined && cudaAfter !== undefined) {
    measurement.cudaMemGetInfo = { usedBefore: cudaBefore, usedAfter: cudaAfter, delta: cudaAfter - cudaBefore };
  }
  return measurement;
}

/**
 * Caps the host bytes nexusquant's allocator may hold in this process (every cache and quantized
 * tensor together); an allocation that would pass it fails with OUT_OF_MEMORY naming the bytes
 * needed. `null` (or 0) removes the cap. Independent of this, allocations are refused when the system
 * (MemAvailable, or the container's cgroup memory.max) cannot hold them.
 */
export function setHostMemoryLimit(bytes: number | null): void {
  const value = bytes ?? 0;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) throw invalidArgument("bytes", "an integer >= 0, or null", bytes);
  native().setHostMemoryLimit(value);
}

/** The process-wide cap set by setHostMemoryLimit(), or null when there is none. */
export function hostMemoryLimit(): number | null {
  const v = native().hostMemoryLimit();
  return v === 0 ? null : v;
}
