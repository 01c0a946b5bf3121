/**
 * The memory check before verifyCompression (issue 17, item 1): the planned native peak must cover
 * what the accounting allocator really reaches, without being so loose that it refuses runs that
 * fit; and the available-memory reading must honour a cgroup limit below MemAvailable.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { verifyCompression } from "../../src/verify.js";
import { availableMemory } from "../../src/runtime/available-memory.js";
import { native } from "../../src/runtime/native.js";

describe("verifyCompression's planned peak", () => {
  it("covers the allocator's measured peak, within 2x, for several presets and contexts", async () => {
    const n = native() as unknown as { resetPeakMemory(): void; memoryStats(): { host: { totalBytes: number; peakBytes: number } } };
    const arch = { id: "t", name: "t", source: "test", layers: 2, attentionHeads: 8, kvHeads: 4, headDim: 128, hiddenSize: 1024, attention: "gqa" as const, notes: [] };
    for (const preset of ["quant", "balanced"]) {
      for (const context of [100, 1000]) {
        n.resetPeakMemory();
        const before = n.memoryStats().host.totalBytes;
        const r = await verifyCompression({ model: arch, context, preset, backend: "cpu" });
        const peak = n.memoryStats().host.peakBytes - before;
        expect(peak, `${preset} ${context}`).toBeGreaterThan(r.measuredBytes);
        expect(r.plannedNativePeakBytes, `${preset} ${context}`).toBeGreaterThanOrEqual(peak);
        expect(r.plannedNativePeakBytes, `${preset} ${context}`).toBeLessThanOrEqual(2 * peak);
      }
    }
  });
});

function fakeRoot(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "nexusquant-mem-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}
const GiB = 2 ** 30;

describe("availableMemory", () => {
  it("reads MemAvailable when no cgroup limits", () => {
    const root = fakeRoot({ "proc/meminfo": "MemTotal: 32000000 kB\nMemAvailable: 20000000 kB\n", "proc/self/cgroup": "0::/user.slice\n", "sys/fs/cgroup/user.slice/memory.max": "max\n" });
    expect(availableMemory(root)).toMatchObject({ bytes: 20000000 * 1024, source: expect.stringMatching(/MemAvailable/) });
  });

  it("cgroup v2: memory.max − (memory.current − inactive_file), the tightest ancestor wins", () => {
    const root = fakeRoot({
      "proc/meminfo": "MemAvailable: 20000000 kB\n",
      "proc/self/cgroup": "0::/box/job\n",
      "sys/fs/cgroup/box/memory.max": `${4 * GiB}\n`,
      "sys/fs/cgroup/box/memory.current": `${3 * GiB}\n`,
      "sys/fs/cgroup/box/memory.stat": `anon 1\ninactive_file ${GiB}\n`,
      "sys/fs/cgroup/box/job/memory.max": "max\n",
      "sys/fs/cgroup/box/job/memory.current": `${GiB}\n`,
    });
    const m = availableMemory(root);
    expect(m.bytes).toBe(2 * GiB);
    expect(m.source).toMatch(/cgroup v2 \/sys\/fs\/cgroup\/box/);
    expect(m.cgroup).toMatchObject({ version: 2, limit: 4 * GiB, usage: 2 * GiB, headroom: 2 * GiB });
    expect(m.memAvailable).toBe(20000000 * 1024);
  });

  it("cgroup v1: memory.limit_in_bytes, with 'unlimited' ignored", () => {
    const limited = fakeRoot({
      "proc/meminfo": "MemAvailable: 20000000 kB\n",
      "proc/self/cgroup": "4:memory:/docker/abc\n0::/\n",
      "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": `${GiB}\n`,
      "sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes": `${GiB / 4}\n`,
      "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
      "sys/fs/cgroup/memory/memory.usage_in_bytes": "1000\n",
    });
    expect(availableMemory(limited)).toMatchObject({ bytes: GiB - GiB / 4, cgroup: { version: 1 } });
    const unlimited = fakeRoot({ "proc/meminfo": "MemAvailable: 1000 kB\n", "proc/self/cgroup": "4:memory:/\n", "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n", "sys/fs/cgroup/memory/memory.usage_in_bytes": "5\n" });
    expect(availableMemory(unlimited)).toMatchObject({ bytes: 1024000, source: expect.stringMatching(/MemAvailable/) });
  });

  it("this machine: a positive byte count", () => {
    expect(availableMemory().bytes).toBeGreaterThan(0);
  });
});
