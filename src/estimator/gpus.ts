import { NexusQuantError } from "../errors.js";
import { closestIds } from "./closest.js";
import { BYTES_PER_GB } from "./units.js";

export interface Gpu {
  id: string;
  name: string;
  /** Other ids that select this GPU (`h100` → the SXM 80 GB part). */
  aliases: readonly string[];
  /**
   * Memory as the vendor states it, in decimal GB (1e9 bytes). The usable amount differs a little
   * (ECC, driver reserve), which is what `overheadGb` is for.
   */
  memoryGb: number;
  memoryBytes: number;
  memoryType: string;
  /** Peak memory bandwidth as the vendor states it, in GB/s (1e9 bytes per second). */
  bandwidthGbPerSecond: number;
  source: string;
}

function gpu(g: Omit<Gpu, "memoryBytes">): Gpu {
  return Object.freeze({ ...g, memoryBytes: g.memoryGb * BYTES_PER_GB });
}

export const GPUS: Readonly<Record<string, Gpu>> = Object.freeze(
  Object.fromEntries(
    [
      gpu({ id: "rtx-3090", name: "NVIDIA GeForce RTX 3090", aliases: ["3090"], memoryGb: 24, memoryType: "GDDR6X", bandwidthGbPerSecond: 936, source: "nvidia.com GeForce RTX 3090 specifications" }),
      gpu({ id: "rtx-4090", name: "NVIDIA GeForce RTX 4090", aliases: ["4090"], memoryGb: 24, memoryType: "GDDR6X", bandwidthGbPerSecond: 1008, source: "nvidia.com GeForce RTX 4090 specifications" }),
      gpu({ id: "a10g", name: "NVIDIA A10G", aliases: [], memoryGb: 24, memoryType: "GDDR6", bandwidthGbPerSecond: 600, source: "AWS EC2 G5 instance documentation" }),
      gpu({ id: "l4", name: "NVIDIA L4", aliases: [], memoryGb: 24, memoryType: "GDDR6", bandwidthGbPerSecond: 300, source: "NVIDIA L4 datasheet" }),
      gpu({ id: "l40s", name: "NVIDIA L40S", aliases: [], memoryGb: 48, memoryType: "GDDR6 ECC", bandwidthGbPerSecond: 864, source: "NVIDIA L40S datasheet" }),
      gpu({ id: "a100-40gb", name: "NVIDIA A100 40GB SXM", aliases: ["a100-40"], memoryGb: 40, memoryType: "HBM2", bandwidthGbPerSecond: 1555, source: "NVIDIA A100 datasheet" }),
      gpu({ id: "a100-80gb", name: "NVIDIA A100 80GB SXM", aliases: ["a100", "a100-80"], memoryGb: 80, memoryType: "HBM2e", bandwidthGbPerSecond: 2039, source: "NVIDIA A100 datasheet" }),
      gpu({ id: "h100-80gb", name: "NVIDIA H100 SXM 80GB", aliases: ["h100", "h100-sxm"], memoryGb: 80, memoryType: "HBM3", bandwidthGbPerSecond: 3350, source: "NVIDIA H100 datasheet (SXM)" }),
      gpu({ id: "h200-141gb", name: "NVIDIA H200 SXM 141GB", aliases: ["h200"], memoryGb: 141, memoryType: "HBM3e", bandwidthGbPerSecond: 4800, source: "NVIDIA H200 datasheet (SXM)" }),
      gpu({ id: "b200", name: "NVIDIA B200", aliases: ["b200-180gb"], memoryGb: 180, memoryType: "HBM3e", bandwidthGbPerSecond: 8000, source: "NVIDIA DGX B200 datasheet (1,440 GB and 64 TB/s over 8 GPUs)" }),
    ].map((g) => [g.id, g]),
  ),
);

export const GPU_IDS: readonly string[] = Object.keys(GPUS);

/** A GPU by id or alias (case-insensitive); UNKNOWN_GPU lists the closest ids. */
export function getGpu(id: string): Gpu {
  const q = typeof id === "string" ? id.toLowerCase() : "";
  const found = GPUS[q] ?? Object.values(GPUS).find((g) => g.aliases.includes(q));
  if (found) return found;
  const names = [...GPU_IDS, ...Object.values(GPUS).flatMap((g) => g.aliases)];
  const closest = closestIds(String(id), names);
  throw new NexusQuantError(
    "UNKNOWN_GPU",
    `Unknown GPU ${JSON.stringify(id)}. Closest ids: ${closest.join(", ")}. Run \`nexusquant gpus\` for the full list, or pass a memory size.`,
    { id, closest },
  );
}
