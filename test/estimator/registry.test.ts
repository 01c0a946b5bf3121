import { describe, expect, it } from "vitest";
import { ARCHITECTURES, ARCHITECTURE_IDS, GPUS, closestIds, editDistance, getArchitecture, getGpu } from "../../src/estimator/index.js";
import { thrown } from "./helpers.js";

const REQUIRED_MODELS = [
  "llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "mistral-7b",
  "mixtral-8x7b", "mixtral-8x22b", "qwen2.5-7b", "qwen2.5-72b", "qwen3-8b", "gemma-2-9b", "gemma-2-27b",
  "phi-3-mini", "tinyllama-1.1b", "gpt2", "deepseek-v3",
];
const REQUIRED_GPUS = ["rtx-3090", "rtx-4090", "a10g", "l4", "l40s", "a100-40gb", "a100-80gb", "h100-80gb", "h200-141gb", "b200"];

describe("ARCHITECTURES", () => {
  it("has every required model, with lowercase ids, a source and a parameter count", () => {
    for (const id of REQUIRED_MODELS) expect(ARCHITECTURE_IDS).toContain(id);
    for (const [id, a] of Object.entries(ARCHITECTURES)) {
      expect(id).toBe(id.toLowerCase());
      expect(a.id).toBe(id);
      expect(a.source).toMatch(/^[\w.-]+\/[\w.-]+ config\.json/);
      expect(a.parameters).toBeGreaterThan(0);
      expect(Object.isFrozen(a)).toBe(true);
    }
  });

  it("getArchitecture is case-insensitive; unknown ids list the closest", () => {
    expect(getArchitecture("Llama-3.1-70B").id).toBe("llama-3.1-70b");
    const e = thrown(() => getArchitecture("llama-3.1-7b"));
    expect(e.code).toBe("UNKNOWN_MODEL");
    expect(e.details?.closest).toContain("llama-3.1-70b");
    expect(e.message).toMatch(/Closest ids: .*llama-3.1-70b/);
  });
});

describe("GPUS", () => {
  it("has every required GPU with memory in decimal GB, bandwidth and a source", () => {
    for (const id of REQUIRED_GPUS) expect(Object.keys(GPUS)).toContain(id);
    for (const g of Object.values(GPUS)) {
      expect(g.memoryBytes).toBe(g.memoryGb * 1e9);
      expect(g.bandwidthGbPerSecond).toBeGreaterThan(0);
      expect(g.source.length).toBeGreaterThan(5);
    }
  });

  it("aliases and closest ids", () => {
    expect(getGpu("H100").id).toBe("h100-80gb");
    expect(getGpu("h200").id).toBe("h200-141gb");
    const e = thrown(() => getGpu("h10"));
    expect(e.code).toBe("UNKNOWN_GPU");
    expect(e.details?.closest).toContain("h100");
  });
});

describe("closestIds", () => {
  it("edit distance", () => {
    expect(editDistance("kitten", "sitting")).toBe(3);
    expect(editDistance("", "abc")).toBe(3);
    expect(editDistance("same", "same")).toBe(0);
  });
  it("orders by distance and prefers containment", () => {
    expect(closestIds("mistral", ARCHITECTURE_IDS, 1)).toEqual(["mistral-7b"]);
    expect(closestIds("gema-2-9b", ARCHITECTURE_IDS, 1)).toEqual(["gemma-2-9b"]);
  });
});
