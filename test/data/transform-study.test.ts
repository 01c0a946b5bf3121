import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// The transform study (bench/transform, issue 26) is lab Python over the real codec. Its machinery is
// checked here: the allocation DP against brute force, orthonormal bases, the equal-distortion
// interpolation, and the padding that forces the codec's scale (bench/transform/selftest.py --codec,
// which runs the built addon through codec-bridge.ts). The study itself needs torch and an hour.
const dir = fileURLToPath(new URL("../../bench/transform/", import.meta.url));
const numpy = spawnSync("python3", ["-c", "import numpy"]).status === 0;
if (!numpy) console.warn("SKIPPED: python3 with numpy is missing, so bench/transform is not checked");

describe.skipIf(!numpy)("bench/transform", () => {
  it("compiles", () => {
    const check = "import sys\nfor f in sys.argv[1:]: compile(open(f).read(), f, 'exec')";
    const r = spawnSync("python3", ["-c", check, "study.py", "collect.py", "report.py", "selftest.py"], { cwd: dir, encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("passes its self-test, the real codec included", () => {
    const r = spawnSync("python3", ["selftest.py", "--codec"], { cwd: dir, encoding: "utf8", env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" } });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("selftest ok (with the codec)\n");
  });
});
