// Where a prebuilt addon lives in the package: one CPU-only binary per platform and architecture,
// built against N-API 8 (loads on every Node >= 20). Shared by native/build.mjs (install: skip the
// build when it loads), native/prebuild.mjs (pack: write it) and src/runtime/native.ts (the loader).
import { join } from "node:path";

export const PREBUILT_PLATFORMS = ["linux-x64"];

export function prebuiltAddonPath(root, platform = process.platform, arch = process.arch) {
  return join(root, "prebuilds", `${platform}-${arch}`, "nexusquant.node");
}
