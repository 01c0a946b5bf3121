import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// train.py runs only on the GPU machine (it needs torch); here we check that it and its helpers
// compile and that their torch-free parts work (bench/model/selftest.py).
const dir = fileURLToPath(new URL("../../bench/model/", import.meta.url));
const python = spawnSync("python3", ["--version"]).status === 0;
if (!python) console.warn("SKIPPED: python3 is missing, so bench/model/train.py is not checked");

describe.skipIf(!python)("bench/model/train.py", () => {
  it("compiles", () => {
    // compile() rather than py_compile, which would leave __pycache__ behind.
    const check = "import sys\nfor f in sys.argv[1:]: compile(open(f).read(), f, 'exec')";
    const r = spawnSync("python3", ["-c", check, "train.py", "passkey.py", "corpus.py", "selftest.py", "bpe.py", "safetensors_io.py", "interop.py", "copy_diag.py", "retrieval_diag.py"], { cwd: dir, encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("passes its torch-free self-test (model size, retrieval rows, report)", () => {
    const r = spawnSync("python3", ["selftest.py"], { cwd: dir, encoding: "utf8", env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" } });
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/^selftest ok: 23,077,376 parameters/);
  });
});
