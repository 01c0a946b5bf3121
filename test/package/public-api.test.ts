import { describe, expect, it } from "vitest";
import * as root from "../../src/index.js";

// The root export is DESIGN.md's public contract and README.md's API section, name by name: a new
// root export is a deliberate change to all three. Internals live in subpaths or stay private.
const ROOT_VALUES = [
  "ARCHITECTURES",
  "CompressedKVCache",
  "GPUS",
  "NexusQuantError",
  "PRESETS",
  "architectureFromHfConfig",
  "backendInfo",
  "compressedLayout",
  "dequantize",
  "kvBytesPerToken",
  "kvCacheForContext",
  "maxContextForMemory",
  "measureMemory",
  "planCapacity",
  "quantize",
  "verifyCompression",
  "weightMemory",
  "withNexusQuant",
];

describe("public API", () => {
  it("the root exports exactly the contract", () => {
    expect(Object.keys(root).sort()).toEqual([...ROOT_VALUES].sort());
  });

  it("CompressedKVCache supports `await using` and `using`", () => {
    expect(typeof root.CompressedKVCache.prototype[Symbol.asyncDispose]).toBe("function");
    expect(typeof root.CompressedKVCache.prototype[Symbol.dispose]).toBe("function");
  });
});
