import { describe, expect, it } from "vitest";
import { resolveOptions } from "../../src/integrations/options.js";
import { expectCode } from "../helpers.js";

describe("withNexusQuant options: preset names", () => {
  it('are case-insensitive, "none" included', () => {
    for (const name of ["none", "None", "NONE"]) {
      const r = resolveOptions({ preset: name });
      expect(r.passThrough).toBe(true);
      expect(r.preset).toBe("none");
    }
    expect(resolveOptions({ preset: "Balanced" }).passThrough).toBe(false);
  });

  it('an unknown one is UNKNOWN_PRESET, and the list names "none"', () => {
    expectCode(() => resolveOptions({ preset: "tiny" }), "UNKNOWN_PRESET", /balanced.*none/);
  });
});
