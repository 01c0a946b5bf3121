// The variant plan's calibrated rows (bench quality --calibrated): names, specs and what they share.
import { describe, expect, it } from "vitest";
import { planVariants } from "../../bench/quality/variants.js";
import { getPreset } from "../../src/format/index.js";
import { NexusQuantError } from "../../src/errors.js";

describe("calibrated rows", () => {
  it("a preset, a K<b>V<b> (1 bit allowed) and PRESET@K<b>V<b> run with the profile, after the rows they repeat", () => {
    const v = planVariants({ presets: ["balanced"], quantOnly: ["K2V2"], scorers: [], calibrated: ["balanced", "K2V1", "balanced@K3V1"] });
    const byName = new Map(v.map((x) => [x.name, x]));
    expect(byName.get("balanced (calibrated)")).toMatchObject({ calibrated: true, preset: "balanced", sameAs: null, resolved: getPreset("balanced").spec });
    expect(byName.get("K2V1 (calibrated)")?.resolved).toMatchObject({ keyBits: 2, valueBits: 1, evictFraction: 0 });
    expect(byName.get("balanced@K3V1 (calibrated)")?.resolved).toMatchObject({ keyBits: 3, valueBits: 1, evictFraction: getPreset("balanced").spec.evictFraction });
    // Not shared with the flat rows of the same spec: another code.
    expect(byName.get("balanced")?.calibrated).toBeUndefined();
    expect(v.findIndex((x) => x.name === "K2V1 (calibrated)")).toBeGreaterThan(v.findIndex((x) => x.name === "K2V2"));
  });

  it("1 bit only where a profile codes it", () => {
    expect(() => planVariants({ quantOnly: ["K2V1"] })).toThrow(NexusQuantError);
    expect(() => planVariants({ calibrated: ["balanced@K5V1"] })).toThrow(NexusQuantError);
  });
});
