/**
 * How many bytes this process can still allocate before the kernel (or its container) stops it:
 * the smaller of the host's MemAvailable and the headroom of every memory cgroup above the process.
 * MemAvailable alone ignores container limits: in a 4 GB cgroup a long `verify` was SIGKILLed after
 * 146 s with no output, while MemAvailable still reported the host's free memory.
 *
 * Pure TypeScript over /proc and /sys/fs/cgroup (Linux); elsewhere os.freemem(). `root` lets tests
 * point it at a fake file tree.
 */
import { readFileSync } from "node:fs";
import { freemem } from "node:os";
import { dirname, join, relative } from "node:path";

export interface AvailableMemory {
  /** The tightest bound, in bytes. */
  bytes: number;
  /** Where `bytes` comes from, for messages: "MemAvailable", "cgroup v2 /sys/fs/cgroup/…", "os.freemem()". */
  source: string;
  /** /proc/meminfo MemAvailable, when readable. */
  memAvailable?: number;
  /** The tightest cgroup: its limit, what it holds now (less reclaimable page cache), and where. */
  cgroup?: { version: 1 | 2; path: string; limit: number; usage: number; headroom: number };
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function readNumber(path: string): number | undefined {
  const text = read(path)?.trim();
  if (text === undefined || !/^\d+$/.test(text)) return undefined; // "max" (v2) or missing: no limit here
  return Number(text);
}

/** A key of a "key value" file (memory.stat) or a "Key: value kB" one (meminfo). */
function statField(text: string | undefined, key: string): number | undefined {
  const m = text === undefined ? null : new RegExp(`^${key}:?\\s+(\\d+)`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
}

/** v1 reports "no limit" as a page-rounded 2^63 − 1. */
const V1_UNLIMITED = 2 ** 60;

interface CgroupBound {
  version: 1 | 2;
  path: string;
  limit: number;
  usage: number;
  headroom: number;
}

/**
 * Walks from the process's cgroup directory up to the hierarchy's root, keeping the smallest
 * headroom (limit − usage + inactive page cache, which the kernel reclaims before it kills). A
 * directory missing in a container's view (the host path of its cgroup) is skipped.
 */
function tightestCgroup(root: string, mount: string, cgroupPath: string, version: 1 | 2): CgroupBound | undefined {
  const files = version === 2 ? { limit: "memory.max", usage: "memory.current", inactive: "inactive_file" } : { limit: "memory.limit_in_bytes", usage: "memory.usage_in_bytes", inactive: "total_inactive_file" };
  let best: CgroupBound | undefined;
  let dir = join(root, mount, cgroupPath);
  const top = join(root, mount);
  for (;;) {
    const limit = readNumber(join(dir, files.limit));
    const usage = readNumber(join(dir, files.usage));
    if (limit !== undefined && limit < V1_UNLIMITED && usage !== undefined) {
      const inactive = statField(read(join(dir, "memory.stat")), files.inactive) ?? 0;
      const held = Math.max(0, usage - inactive);
      const headroom = Math.max(0, limit - held);
      if (best === undefined || headroom < best.headroom) best = { version, path: `/${relative(root, dir)}`, limit, usage: held, headroom };
    }
    if (dir === top || dir.length <= top.length) break;
    dir = dirname(dir);
  }
  return best;
}

/** The smaller of MemAvailable and every enclosing cgroup's headroom. */
export function availableMemory(root = "/"): AvailableMemory {
  const meminfo = read(join(root, "proc/meminfo"));
  const kib = statField(meminfo, "MemAvailable");
  const memAvailable = kib === undefined ? undefined : kib * 1024;
  const bounds: CgroupBound[] = [];
  for (const line of (read(join(root, "proc/self/cgroup")) ?? "").split("\n")) {
    const [id, controllers, path] = line.split(":");
    if (path === undefined) continue;
    if (id === "0" && controllers === "") {
      const b = tightestCgroup(root, "sys/fs/cgroup", path, 2);
      if (b) bounds.push(b);
    } else if (controllers!.split(",").includes("memory")) {
      const b = tightestCgroup(root, "sys/fs/cgroup/memory", path, 1);
      if (b) bounds.push(b);
    }
  }
  const cgroup = bounds.sort((a, b) => a.headroom - b.headroom)[0];
  if (memAvailable === undefined && cgroup === undefined) return { bytes: freemem(), source: "os.freemem()" };
  const result: AvailableMemory =
    cgroup !== undefined && (memAvailable === undefined || cgroup.headroom < memAvailable)
      ? { bytes: cgroup.headroom, source: `cgroup v${cgroup.version} ${cgroup.path} (limit ${cgroup.limit} B)` }
      : { bytes: memAvailable!, source: "MemAvailable (/proc/meminfo)" };
  if (memAvailable !== undefined) result.memAvailable = memAvailable;
  if (cgroup !== undefined) result.cgroup = cgroup;
  return result;
}
