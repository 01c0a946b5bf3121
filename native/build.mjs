#!/usr/bin/env node
// Builds the native addon with cmake-js. Runs on `npm install`/`npm ci` and `npm run build:native`.
// Checks the build tools first so that a missing one gives one clear message instead of a CMake trace.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { prebuiltAddonPath } from "./addon-path.mjs";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const force = process.argv.includes("--force");
// NEXUSQUANT_BUILD_DIR: used by native/prebuild.mjs to build a CPU-only addon beside a CUDA one.
const buildDir = process.env.NEXUSQUANT_BUILD_DIR || join(root, "build");
const addon = join(buildDir, "Release", "nexusquant.node");
const require = createRequire(import.meta.url);

if (!force && existsSync(addon) && process.env.NEXUSQUANT_REBUILD !== "1") {
  console.log(`nexusquant: native addon already built at ${addon} (npm run build:native rebuilds it)`);
  process.exit(0);
}

// An installed package ships a CPU-only prebuilt for linux-x64: use it unless a build is asked for
// (CUDA, or NEXUSQUANT_REBUILD=1), after checking that it loads here (glibc, architecture).
const prebuilt = prebuiltAddonPath(root);
const cudaWanted = (process.env.NEXUSQUANT_CUDA ?? "").toUpperCase() === "ON";
if (!force && !cudaWanted && process.env.NEXUSQUANT_REBUILD !== "1" && existsSync(prebuilt)) {
  try {
    require(prebuilt).backendInfo();
    console.log(`nexusquant: using the prebuilt CPU addon ${prebuilt} (NEXUSQUANT_CUDA=ON npm rebuild nexusquant builds from source, with CUDA)`);
    process.exit(0);
  } catch (e) {
    console.log(`nexusquant: the prebuilt addon does not load here (${e instanceof Error ? e.message : String(e)}); building from source`);
  }
}

function has(cmd, args = ["--version"]) {
  const r = spawnSync(cmd, args, { stdio: "ignore" });
  return r.status === 0;
}

const missing = [];
if (!has("cmake")) missing.push("cmake (>= 3.18)");
const cxx = process.env.CXX || "c++";
if (!has(cxx) && !has("g++") && !has("clang++")) missing.push("a C++17 compiler (g++ >= 9 or clang++ >= 10)");
if (missing.length > 0) {
  console.error(
    `\nnexusquant: cannot build the native addon: missing ${missing.join(" and ")}.\n` +
      `  Debian/Ubuntu: sudo apt-get install cmake g++\n` +
      `  Fedora/RHEL:   sudo dnf install cmake gcc-c++\n` +
      `  macOS:         xcode-select --install && brew install cmake\n` +
      `Then run \`npm run build:native\`.\n`,
  );
  process.exit(1);
}

const cuda = (process.env.NEXUSQUANT_CUDA ?? "AUTO").toUpperCase();
if (!["AUTO", "ON", "OFF"].includes(cuda)) {
  console.error(`nexusquant: NEXUSQUANT_CUDA must be AUTO, ON or OFF (got ${JSON.stringify(process.env.NEXUSQUANT_CUDA)})`);
  process.exit(1);
}
// NEXUSQUANT_LAB=ON (a clone only): the lab's native code of bench/native built into the addon.
const lab = (process.env.NEXUSQUANT_LAB ?? "OFF").toUpperCase();
if (!["ON", "OFF"].includes(lab)) {
  console.error(`nexusquant: NEXUSQUANT_LAB must be ON or OFF (got ${JSON.stringify(process.env.NEXUSQUANT_LAB)})`);
  process.exit(1);
}
const cmakeJs = join(dirname(require.resolve("cmake-js/package.json")), "bin", "cmake-js");
// Configure every time (so a changed NEXUSQUANT_CUDA or NEXUSQUANT_LAB takes effect), then build incrementally.
const defines = [`--CDNEXUSQUANT_CUDA=${cuda}`, `--CDNEXUSQUANT_LAB=${lab}`, "--out", buildDir];
if (process.env.CUDAARCHS) defines.push(`--CDCMAKE_CUDA_ARCHITECTURES=${process.env.CUDAARCHS}`);
const parallel = process.env.NEXUSQUANT_BUILD_JOBS ? ["--parallel", process.env.NEXUSQUANT_BUILD_JOBS] : [];
console.log(`nexusquant: building native addon (NEXUSQUANT_CUDA=${cuda}${lab === "ON" ? ", NEXUSQUANT_LAB=ON" : ""})`);
let r = spawnSync(process.execPath, [cmakeJs, "configure", "--directory", root, ...defines], { stdio: "inherit", cwd: root });
if (r.status === 0) r = spawnSync(process.execPath, [cmakeJs, "build", "--directory", root, ...defines, ...parallel], { stdio: "inherit", cwd: root });
if (r.status !== 0) {
  console.error(
    "\nnexusquant: the native addon build failed (see the compiler output above).\n" +
      "  To build without CUDA: NEXUSQUANT_CUDA=OFF npm run build:native\n",
  );
  process.exit(r.status ?? 1);
}
