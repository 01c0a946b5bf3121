import { describe, expect, it } from "vitest";
import { NexusQuantError } from "../../src/errors.js";
import { CompressedKVCache, syntheticKV } from "../../src/runtime/index.js";
import { seededRandom } from "../../src/shared/prng.js";

// The CRC catches random corruption; these buffers carry a VALID checksum over mutated content, so
// every field check in kv_cache_io.cc is exercised. Each must load or fail with a typed error —
// never crash the process (vitest's fork would die) or hand back a cache that crashes when used.
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

describe("deserialize with a valid checksum over mutated content", () => {
  it("loads or throws a typed error for 400 mutations, and loaded caches stay usable", () => {
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
    const rand = seededRandom(1234);
    let loaded = 0, rejected = 0;
    for (let i = 0; i < 400; i++) {
      const buf = good.slice();
      const edits = 1 + Math.floor(rand() * 3);
      for (let e = 0; e < edits; e++) {
        // Mostly the header and store counters, sometimes anywhere.
        const at = rand() < 0.7 ? Math.floor(rand() * 120) : Math.floor(rand() * (buf.length - 4));
        buf[at] = rand() < 0.5 ? Math.floor(rand() * 256) : buf[at]! ^ (1 << Math.floor(rand() * 8));
      }
      let cache: CompressedKVCache | undefined;
      try {
        cache = CompressedKVCache.deserialize(withValidCrc(buf));
      } catch (e) {
        expect(e).toBeInstanceOf(NexusQuantError);
        expect(["CORRUPT_DATA", "OUT_OF_MEMORY", "INVALID_ARGUMENT"]).toContain((e as NexusQuantError).code);
        rejected++;
        continue;
      }
      loaded++;
      try {
        for (let l = 0; l < cache.layers; l++) {
          cache.materialize(l);
          cache.attention(l, new Float32Array(cache.queryHeads * cache.headDim).fill(0.1));
        }
      } catch (e) {
        expect(e).toBeInstanceOf(NexusQuantError);
      } finally {
        cache.dispose();
      }
    }
    expect(loaded + rejected).toBe(400);
    expect(rejected).toBeGreaterThan(0);
  }, 120_000);
});
