#!/usr/bin/env node
// `npm pack` / `npm publish` (prepack): puts a CPU-only addon for this platform into
// prebuilds/<platform>-<arch>/ so that users install without a compiler. Only linux-x64 is prebuilt;
// elsewhere (and for CUDA) the install script builds from source. When build/Release already holds a
// CPU-only addon (the usual CI and dev case), it is rebuilt incrementally and copied; a CUDA build
// there is left alone and a CPU-only one is built in build/prebuild instead.
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

/** Whether the addon at `path` loads and was compiled without CUDA (asked in a child: no addon in this process). */
function isCpuOnly(path) {
  const r = spawnSync(process.execPath, ["-e", `process.stdout.write(String(require(${JSON.stringify(path)}).backendInfo().cuda.compiled))`], { encoding: "utf8" });
  return r.status === 0 && r.stdout === "false";
}

const local = join(root, "build", "Release", "nexusquant.node");
const outDir = existsSync(local) && isCpuOnly(local) ? join(root, "build") : join(root, "build", "prebuild");
const env = { ...process.env, NEXUSQUANT_CUDA: "OFF", NEXUSQUANT_BUILD_DIR: outDir };
const r = spawnSync(process.execPath, [join(root, "native", "build.mjs"), "--force"], { stdio: "inherit", cwd: root, env });
if (r.status !== 0) process.exit(r.status ?? 1);

const built = join(outDir, "Release", "nexusquant.node");
if (!isCpuOnly(built)) {
  console.error(`nexusquant prebuild: ${built} does not load as a CPU-only addon`);
  process.exit(1);
}
const dest = prebuiltAddonPath(root);
mkdirSync(dirname(dest), { recursive: true });
copyFileSync(built, dest);
console.log(`nexusquant prebuild: ${dest} (${(statSync(dest).size / 1024).toFixed(0)} KiB, CPU only, N-API 8)`);
