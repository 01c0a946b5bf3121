import { describe, expect, it } from "vitest";
import { getPreset } from "../../src/format/index.js";
import { resolveOptions } from "../../src/integrations/options.js";
import { expectCode } from "../helpers.js";

describe("withNexusQuant options are strict", () => {
  it("valid options resolve", () => {
    const r = resolveOptions({ preset: "max", compressEvery: 32, spec: { residualWindow: 64 }, scorer: "keynorm", seed: 7, denseMirror: true });
    expect(r).toMatchObject({ preset: "max", compressEvery: 32, spec: { residualWindow: 64, scorer: "keynorm" }, seed: 7, denseMirror: true });
  });

  it("a misspelt option or spec key fails with the closest name", () => {
    expectCode(() => resolveOptions({ prest: "max" } as never), "INVALID_ARGUMENT", /Unknown option options\.prest; did you mean preset\?/);
    expectCode(() => resolveOptions({ compresEvery: 8 } as never), "INVALID_ARGUMENT", /did you mean compressEvery\?/);
    expectCode(() => resolveOptions({ spec: { evictFracton: 0.5 } } as never), "INVALID_ARGUMENT", /Unknown option spec\.evictFracton; did you mean evictFraction\?/);
  });

  it("out-of-range values fail when wrapping, not at the first step", () => {
    expectCode(() => resolveOptions({ spec: { pageTokens: 2 ** 32 } }), "INVALID_ARGUMENT", /spec\.pageTokens/);
    expectCode(() => resolveOptions({ compressEvery: 0 }), "INVALID_ARGUMENT", /options\.compressEvery/);
    expectCode(() => resolveOptions({ seed: -1 }), "INVALID_ARGUMENT", /options\.seed/);
    expectCode(() => resolveOptions({ denseMirror: "yes" as never }), "INVALID_ARGUMENT", /options\.denseMirror/);
    expectCode(() => resolveOptions({ backend: "gpu" as never }), "INVALID_ARGUMENT", /options\.backend/);
    expectCode(() => resolveOptions({ preset: "nope" }), "UNKNOWN_PRESET");
  });
});

describe("withNexusQuant options: preset names", () => {
  it('are case-insensitive, "none" included', () => {
    for (const name of ["none", "None", "NONE"]) {
      const r = resolveOptions({ preset: name });
      expect(r.spec).toBeNull();
      expect(r.preset).toBe("none");
    }
    expect(resolveOptions({ preset: "Balanced" }).spec).toBe(getPreset("balanced").spec);
  });

  it('an unknown one is UNKNOWN_PRESET, and the list names "none"', () => {
    expectCode(() => resolveOptions({ preset: "tiny" }), "UNKNOWN_PRESET", /balanced.*none/);
  });
});
