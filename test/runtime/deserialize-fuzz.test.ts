import { describe, expect, it } from "vitest";
import { NexusQuantError } from "../../src/errors.js";
import { CompressedKVCache, syntheticKV } from "../../src/runtime/index.js";
import { seededRandom } from "../../src/shared/prng.js";
import { TIME_SCALE } from "../helpers.js";

// The CRC catches random corruption; these buffers carry a VALID checksum over mutated content, so
// every field check in kv_cache_io.cc is exercised. Each must load or fail with CORRUPT_DATA within
// milliseconds (every count is checked against the bytes present before anything is allocated) —
// never crash the process or hand back a cache that crashes or throws untyped errors when used.
//
// CI runs a short seeded fuzz. A long run is opt-in, bounded by count and time:
//   NEXUSQUANT_FUZZ_COUNT=20000 NEXUSQUANT_FUZZ_SECONDS=600 NEXUSQUANT_FUZZ_SEED=7 npm run fuzz:deserialize
const FUZZ_COUNT = Number(process.env.NEXUSQUANT_FUZZ_COUNT ?? 150);
const FUZZ_SECONDS = Number(process.env.NEXUSQUANT_FUZZ_SECONDS ?? 20);
const FUZZ_SEED = Number(process.env.NEXUSQUANT_FUZZ_SEED ?? 1234);

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function withValidCrc(buf: Uint8Array): Uint8Array {
  const out = buf.slice();
  new DataView(out.buffer).setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
  return out;
}

/** A small evicting cache with compressed pages, a residual window and an appended tail. */
function sample(): Uint8Array {
  const c = new CompressedKVCache({ layers: 2, kvHeads: 2, queryHeads: 2, headDim: 16, preset: "balanced", spec: { pageTokens: 8, residualWindow: 8, recentWindow: 4, sinkTokens: 1 } });
  for (let l = 0; l < 2; l++) {
    const kv = syntheticKV({ kvHeads: 2, headDim: 16, tokens: 40, seed: l });
    c.append(l, kv.keys, kv.values);
  }
  c.compressSync();
  const one = syntheticKV({ kvHeads: 2, headDim: 16, tokens: 3, startPosition: 40, seed: 9 });
  c.append(0, one.keys, one.values);
  const good = c.serialize();
  c.dispose();
  return good;
}

/** A never-compressed cache: every token sits in the FP16 residual, which starts at byte 109. */
function residualOnly(): Uint8Array {
  const c = new CompressedKVCache({ layers: 1, kvHeads: 1, headDim: 8, preset: "quant" });
  const kv = syntheticKV({ kvHeads: 1, headDim: 8, tokens: 4, seed: 3 });
  c.append(0, kv.keys, kv.values);
  const good = c.serialize();
  c.dispose();
  return good;
}

function loadOrCode(buf: Uint8Array): { cache?: CompressedKVCache; code?: string; ms: number } {
  const t0 = performance.now();
  try {
    const cache = CompressedKVCache.deserialize(buf);
    return { cache, ms: performance.now() - t0 };
  } catch (e) {
    expect(e).toBeInstanceOf(NexusQuantError);
    return { code: (e as NexusQuantError).code, ms: performance.now() - t0 };
  }
}

/** A loaded cache must work end to end, and its own serialize() output must load again. */
function exercise(cache: CompressedKVCache): void {
  try {
    for (let l = 0; l < cache.layers; l++) {
      cache.materialize(l);
      cache.attention(l, new Float32Array(cache.queryHeads * cache.headDim).fill(0.1));
    }
    const kv = syntheticKV({ kvHeads: cache.kvHeads, headDim: cache.headDim, tokens: 1, seed: 5 });
    cache.append(0, kv.keys, kv.values);
    CompressedKVCache.deserialize(cache.serialize()).dispose();
  } catch (e) {
    expect(e).toBeInstanceOf(NexusQuantError);
    expect((e as NexusQuantError).code).not.toBe("NATIVE_ERROR");
  } finally {
    cache.dispose();
  }
}

describe("deserialize: each field is bounded before use (reproducers)", () => {
  const good = sample();
  const set = (buf: Uint8Array, at: number, bytes: number, value: number | bigint) => {
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    if (bytes === 4) v.setUint32(at, Number(value), true);
    else v.setBigUint64(at, BigInt(value), true);
  };
  // Header offsets written by native/cpu/kv_cache_io.cc; the first store's counters start at 84.
  const cases: [string, (b: Uint8Array) => void][] = [
    ["2^24 stores from one layer count", (b) => set(b, 12, 4, 1 << 24)],
    ["4096 x 4096 stores", (b) => (set(b, 8, 4, 4096), set(b, 12, 4, 4096))],
    ["appended count 2^40", (b) => set(b, 84, 8, 2n ** 40n)],
    ["appended count past int32 positions", (b) => set(b, 84, 8, 2n ** 31n)],
    ["queryHeads 4294967288", (b) => set(b, 64, 4, 4294967288)],
    ["sinkTokens + recentWindow overflowing int", (b) => (set(b, 36, 4, 0x7fffffff), set(b, 40, 4, 0x7fffffff))],
    ["residualWindow 2^31 - 1", (b) => set(b, 44, 4, 0x7fffffff)],
    ["pageTokens 2^26", (b) => set(b, 48, 4, 1 << 26)],
    ["budget below sinkTokens + recentWindow", (b) => set(b, 68, 8, 2n)],
    ["headDim 16384", (b) => set(b, 20, 4, 16384)],
  ];
  for (const [name, mutate] of cases) {
    it(`${name}: CORRUPT_DATA in milliseconds`, () => {
      const buf = good.slice();
      mutate(buf);
      const r = loadOrCode(withValidCrc(buf));
      r.cache?.dispose();
      expect(r.code).toBe("CORRUPT_DATA");
      expect(r.ms).toBeLessThan(500 * TIME_SCALE);  // measured: well under 5 ms when the machine is idle
    });
  }

  it("a non-finite FP16 value in the residual window is refused at load, not in a later compress()", () => {
    const buf = residualOnly();
    expect(loadOrCode(buf).code).toBeUndefined();  // the unmodified buffer loads
    const bad = buf.slice();
    bad[109] = 0x00;
    bad[110] = 0x7c;  // +Inf
    const r = loadOrCode(withValidCrc(bad));
    expect(r.code).toBe("CORRUPT_DATA");
  });
});

describe("deserialize with a valid checksum over mutated content (seeded fuzz)", () => {
  it(`loads or throws CORRUPT_DATA for ${FUZZ_COUNT} mutations (seed ${FUZZ_SEED}), and loaded caches stay usable`, () => {
    const good = sample();
    const rand = seededRandom(FUZZ_SEED);
    const deadline = performance.now() + FUZZ_SECONDS * 1000;
    let loaded = 0, rejected = 0, slowest = 0;
    const codes = new Set<string>();
    for (let i = 0; i < FUZZ_COUNT && performance.now() < deadline; i++) {
      const buf = good.slice();
      const edits = 1 + Math.floor(rand() * 3);
      for (let e = 0; e < edits; e++) {
        // Mostly the header and store counters, sometimes anywhere.
        const at = rand() < 0.7 ? Math.floor(rand() * 120) : Math.floor(rand() * (buf.length - 4));
        buf[at] = rand() < 0.5 ? Math.floor(rand() * 256) : buf[at]! ^ (1 << Math.floor(rand() * 8));
      }
      const r = loadOrCode(withValidCrc(buf));
      slowest = Math.max(slowest, r.ms);
      if (r.cache) {
        loaded++;
        exercise(r.cache);
      } else {
        rejected++;
        codes.add(r.code!);
      }
    }
    expect(loaded + rejected).toBeGreaterThan(0);
    expect(rejected).toBeGreaterThan(0);
    // CORRUPT_DATA for anything inconsistent. OUT_OF_MEMORY stays possible for a consistent header
    // whose residual windows (allocated at their full size, as the live cache held them) do not fit.
    for (const code of codes) expect(["CORRUPT_DATA", "OUT_OF_MEMORY"]).toContain(code);
    expect(codes.has("CORRUPT_DATA")).toBe(true);
    expect(slowest).toBeLessThan(500 * TIME_SCALE);
    if (process.env.NEXUSQUANT_FUZZ_COUNT) console.log(JSON.stringify({ seed: FUZZ_SEED, cases: loaded + rejected, loaded, rejected, slowestMs: slowest }));
  });
});
