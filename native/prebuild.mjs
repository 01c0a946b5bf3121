#!/usr/bin/env node
// `npm pack` / `npm publish` (prepack): puts a CPU-only addon for this platform into
// prebuilds/<platform>-<arch>/ so that users install without a compiler. Only linux-x64 is prebuilt;
// elsewhere (and for CUDA) the install script builds from source. When build/Release already holds a
// CPU-only product addon (the usual CI and dev case), it is rebuilt incrementally and copied; a CUDA
// or lab build there (NEXUSQUANT_LAB=ON) is left alone and a CPU-only product one is built in
// build/prebuild instead. The prebuilt never holds the lab's native code.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { PREBUILT_PLATFORMS, prebuiltAddonPath } from "./addon-path.mjs";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const target = `${process.platform}-${process.arch}`;
if (!PREBUILT_PLATFORMS.includes(target)) {
  console.log(`nexusquant prebuild: no prebuilt addon for ${target} (only ${PREBUILT_PLATFORMS.join(", ")}); users there build from source`);
  process.exit(0);
}

/**
 * Whether the addon at `path` loads, was compiled without CUDA and without the lab (its codecBenchmark)
 * (asked in a child: no addon in this process).
 */
function isCpuOnlyProduct(path) {
  const probe = `const m = require(${JSON.stringify(path)}); process.stdout.write(String(!m.backendInfo().cuda.compiled && !("codecBenchmark" in m)))`;
  const r = spawnSync(process.execPath, ["-e", probe], { encoding: "utf8" });
  return r.status === 0 && r.stdout === "true";
}

const local = join(root, "build", "Release", "nexusquant.node");
const outDir = existsSync(local) && isCpuOnlyProduct(local) ? join(root, "build") : join(root, "build", "prebuild");
const env = { ...process.env, NEXUSQUANT_CUDA: "OFF", NEXUSQUANT_LAB: "OFF", NEXUSQUANT_BUILD_DIR: outDir };
const r = spawnSync(process.execPath, [join(root, "native", "build.mjs"), "--force"], { stdio: "inherit", cwd: root, env });
if (r.status !== 0) process.exit(r.status ?? 1);

const built = join(outDir, "Release", "nexusquant.node");
if (!isCpuOnlyProduct(built)) {
  console.error(`nexusquant prebuild: ${built} does not load as a CPU-only addon without the lab`);
  process.exit(1);
}
const dest = prebuiltAddonPath(root);
mkdirSync(dirname(dest), { recursive: true });
copyFileSync(built, dest);
console.log(`nexusquant prebuild: ${dest} (${(statSync(dest).size / 1024).toFixed(0)} KiB, CPU only, N-API 8)`);
