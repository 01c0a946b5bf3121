// CUDA vs the CPU oracle, case by case (test/ops/parity-cases.mjs holds the cases as data; the GPU
// machine runs the same cases through bench/gpu/parity.mjs without vitest). Without a usable GPU the
// suite is skipped and one test states why.
import { describe, expect, it } from "vitest";
import { cpuAttention, cpuDecode, cpuEncode, cpuScore, cpuSelect } from "../ops/cpu.js";
import { cudaAttention, cudaDecode, cudaDenseAttention, cudaEncode, cudaScore, cudaSelect, cudaUnavailableReason } from "../ops/cuda.js";
import { parityCases, runCase, type ParityApi } from "../ops/parity-cases.mjs";
import { NexusQuantError } from "../../src/errors.js";
import { CompressedKVCache } from "../../src/runtime/cache.js";
import { dequantizeSync, quantizeSync } from "../../src/runtime/codec.js";
import { floatsToHalfBits, halfBitsToFloats } from "../../src/runtime/half.js";
import { transformProfileFor, transformTablesFor, transformTestKV } from "../ops/transform-fixture.js";

function unavailable(): string | undefined {
  try {
    return cudaUnavailableReason();
  } catch (err) {
    return `the addon did not load: ${(err as Error).message}`;
  }
}
const reason = unavailable();

const api: ParityApi = {
  quantizeSync,
  dequantizeSync,
  floatsToHalfBits,
  halfBitsToFloats,
  CompressedKVCache,
  cudaEncode,
  cudaDecode,
  cudaAttention,
  cudaDenseAttention,
  cudaScore,
  cudaSelect,
  cpuEncode,
  cpuDecode,
  cpuAttention,
  cpuScore,
  cpuSelect,
  transformProfileFor,
  transformTablesFor,
  transformTestKV,
};

describe("CUDA backend availability", () => {
  it.runIf(reason !== undefined)(`GPU parity suite skipped: ${reason ?? ""}`, () => {
    expect(reason).toBeTruthy();
  });

  it.runIf(reason !== undefined)("cuda* functions refuse with BACKEND_UNAVAILABLE and the reason", () => {
    const err = (() => {
      try {
        cudaEncode(new Float32Array(128), { headDim: 128, bits: 2 });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(NexusQuantError);
    expect((err as NexusQuantError).code).toBe("BACKEND_UNAVAILABLE");
  });

  it("invalid arguments fail before touching the GPU", () => {
    expect(() => cudaEncode(new Float32Array(100), { headDim: 64, bits: 2 })).toThrow(/multiple of headDim/);
    expect(() => cudaEncode(new Float32Array(64), { headDim: 60, bits: 2 })).toThrow(/multiple of 8/);
    expect(() => cudaEncode(new Float32Array(64), { headDim: 64, bits: 5 as 2 })).toThrow(/2, 3 or 4/);
    expect(() =>
      cudaAttention({ kvHeads: 2, queryHeads: 3, headDim: 64, keyBits: 2, valueBits: 2, sequences: [] }),
    ).toThrow(/multiple of kvHeads/);
    expect(() =>
      cudaAttention({
        kvHeads: 1, queryHeads: 1, headDim: 64, keyBits: 2, valueBits: 2,
        sequences: [{ compressed: 2, keyCodes: new Uint8Array(3), queries: new Float32Array(64), queryPositions: Int32Array.of(1) }],
      }),
    ).toThrow(/keyCodes/);
    expect(() => cudaSelect({ kvHeads: 1, tokens: 4, target: 5, sinkTokens: 0, recentWindow: 0, scores: new Float32Array(4), positions: new Int32Array(4) })).toThrow(
      /target/,
    );
  });
});

describe.skipIf(reason !== undefined)("CUDA parity with the CPU oracle", () => {
  for (const c of parityCases()) {
    it(c.name, () => {
      const r = runCase(api, c);
      expect(r.ok, `${r.detail} (bound ${r.bound})`).toBe(true);
    });
  }
});
