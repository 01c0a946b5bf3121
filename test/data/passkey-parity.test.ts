import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { makeRetrievalSample, makeRetrievalSuite, type RetrievalKind } from "../../bench/data/passkey.js";
import { Mulberry32, deriveSeed } from "../../src/shared/prng.js";
import { heldOutSpeeches } from "../../bench/data/sotu.js";

// train.py makes its passkey rows and report with bench/model/passkey.py; it must produce exactly
// what bench/data/passkey.ts produces, or the harness and the training report measure different tasks.
const script = fileURLToPath(new URL("../../bench/model/passkey.py", import.meta.url));
const python = spawnSync("python3", ["--version"]).status === 0;
if (!python) console.warn("SKIPPED: python3 is missing, so passkey.py is not compared with passkey.ts");

describe.skipIf(!python)("passkey.py is a bit-exact port of passkey.ts", () => {
  const filler = heldOutSpeeches().slice(0, 6).map((s) => s.text);
  const specs: { seed: number; targetTokens: number; depth: number; kind: RetrievalKind }[] = [];
  for (let i = 0; i < 12; i++) {
    specs.push({ seed: deriveSeed(99, i), targetTokens: [200, 1000, 4080][i % 3], depth: [0, 0.1, 0.35, 0.5, 0.9, 1][i % 6], kind: i % 2 ? "fact" : "passkey" });
  }
  const suite = { seed: 11, samplesPerCell: 2, contexts: [1024, 2048], depths: [0.1, 0.5, 0.9] };
  const run = spawnSync("python3", [script], {
    input: JSON.stringify({ prngSeed: 12345, filler, samples: specs, suite }),
    encoding: "utf8",
    maxBuffer: 1 << 28,
  });

  it("runs", () => {
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
  });

  const out = run.status === 0 ? JSON.parse(run.stdout) : { uint32: [], derived: [], samples: [], suite: [] };

  it("same PRNG stream and derived seeds", () => {
    const rng = new Mulberry32(12345);
    expect(out.uint32).toEqual(Array.from({ length: 8 }, () => rng.nextUint32()));
    expect(out.derived).toEqual(Array.from({ length: 8 }, (_, i) => deriveSeed(12345, i)));
  });

  it("same samples", () => {
    expect(out.samples.length).toBe(specs.length);
    specs.forEach((spec, i) => expect(out.samples[i]).toEqual(makeRetrievalSample({ ...spec, filler })));
  });

  it("same harness suite", () => {
    expect(out.suite).toEqual(makeRetrievalSuite({ ...suite, filler }));
  });
});
