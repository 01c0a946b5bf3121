#!/usr/bin/env bash
# Packaging check: what a user gets from `npm install nexusquant`. Packs the repository (prepack puts
# the prebuilt CPU addon in), installs the tarball into an empty project with production dependencies
# only (offline, from the npm cache; onnxruntime-node linked in as the optional peer the demo runs on),
# and runs the CLI and an import of every export path there, asserting real output. Prints the
# tarball and installed sizes. Exit 0 when every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ONNXRUNTIME_NODE_INSTALL=skip

check() { echo "pack-check: $*"; }
die() { echo "pack-check FAILED: $*" >&2; exit 1; }

# Lifecycle output (prepack builds the addon, prepare compiles TypeScript) goes to the log; npm pack
# prints the tarball's name last.
npm pack --pack-destination "$work" > "$work/pack.log" 2>&1 || { tail -30 "$work/pack.log" >&2; die "npm pack failed"; }
tarball=$(tail -1 "$work/pack.log")
[ -f "$work/$tarball" ] || { tail -30 "$work/pack.log" >&2; die "npm pack wrote no tarball"; }
size=$(stat -c %s "$work/$tarball")
tar -tvzf "$work/$tarball" > "$work/contents.txt"
entries=$(wc -l < "$work/contents.txt")
unpacked=$(awk '{ s += $3 } END { print s }' "$work/contents.txt")
for f in dist/index.js dist/cli/main.js prebuilds/linux-x64/nexusquant.node native/build.mjs native/addon-path.mjs CMakeLists.txt; do
  grep -q " package/$f\$" "$work/contents.txt" || die "$f is missing from the tarball"
done
! grep -qE " package/(bench|test|src|build)/" "$work/contents.txt" || die "lab, source or build files in the tarball: $(grep -E " package/(bench|test|src|build)/" "$work/contents.txt" | head -3)"
# The one model shipped: the trained reference model the demo runs (its weights, config and tokenizer).
for f in config.json model.safetensors tokenizer.json nexusquant-profile.bin; do
  grep -q " package/models/sotu-llama/$f\$" "$work/contents.txt" || die "models/sotu-llama/$f is missing from the tarball"
done
! grep -E " package/models/" "$work/contents.txt" | grep -vqE " package/models/sotu-llama/(config.json|model.safetensors|tokenizer.json|tokenizer_config.json|training-report.md|nexusquant-profile.bin)$" || die "unexpected files under models/ in the tarball"
grep -E " package/dist/cli/main.js$" "$work/contents.txt" | grep -q "^-rwx" || die "dist/cli/main.js is not executable in the tarball"
check "tarball $tarball: $((size / 1024)) KiB packed, $((unpacked / 1024)) KiB unpacked, $entries files"

mkdir "$work/app"
cd "$work/app"
# Production dependencies only, offline: `npm ci` of the repository cached their tarballs but not the
# package metadata an install by range needs (`npm install --offline <tarball>` stops at ENOTCACHED).
# So the app gets a lock (.ci/app-lock.mjs) pinning the tarball's dependency tree as the repository's
# package-lock.json resolved it, with tarball URLs and integrity: `npm ci --offline` needs only those.
node "$repo/.ci/app-lock.mjs" "$repo" "$tarball" "$(npm config get registry)" > "$work/lock.log" 2>&1 || { cat "$work/lock.log" >&2; die "could not write the app's lock from package-lock.json"; }
npm ci --offline --omit=dev --no-audit --no-fund > "$work/install.log" 2>&1 || {
  tail -30 "$work/install.log" >&2
  die "offline install of the tarball failed (production dependencies; ENOTCACHED: run npm ci in the repository first, it fills the npm cache)"
}
# The demo runs on the optional peer onnxruntime-node (~100 MB): the lock installs it with the other
# optional peers the repository's lock holds (@huggingface/transformers); else linked from the repository.
[ -e node_modules/onnxruntime-node ] || ln -s "$repo/node_modules/onnxruntime-node" node_modules/onnxruntime-node
[ ! -e node_modules/nexusquant/build ] || die "the install built the addon instead of using the prebuilt"
check "installed offline from the npm cache: $(cat "$work/lock.log")"
check "installed: nexusquant $(du -sk node_modules/nexusquant | cut -f1) KiB, with its production dependencies $(du -sk node_modules | cut -f1) KiB (onnxruntime-node, linked, not counted)"

npx --no-install nexusquant estimate --model llama-3.1-8b --context 128k --preset balanced --json > estimate.json || die "nexusquant estimate"
node -e '
  const r = JSON.parse(require("fs").readFileSync("estimate.json", "utf8"));
  // llama-3.1-8b: 32 layers x 8 KV heads x 128 dims x 2 (K,V) x 2 bytes = 131,072 bytes per token.
  if (r.kvBytesPerToken !== 131072 || r.kvCacheBytes !== 131072 * 131072) throw new Error("wrong FP16 figures: " + JSON.stringify(r).slice(0, 300));
  if (r.preset !== "balanced" || !(r.compressedBytes > 0 && r.compressedBytes < r.kvCacheBytes / 10)) throw new Error("no balanced compression: " + JSON.stringify(r).slice(0, 300));
' || die "estimate output"
check "estimate --json ok"

npx --no-install nexusquant demo --context 256 --max-new-tokens 4 --json > demo.json || die "nexusquant demo"
node -e '
  const r = JSON.parse(require("fs").readFileSync("demo.json", "utf8"));
  if (!(r.compressedKvBytes > 0 && r.baselineKvBytes > r.compressedKvBytes && r.ratio > 1)) throw new Error("demo: no measured compression: " + JSON.stringify(r).slice(0, 300));
  if (r.newTokens !== 4) throw new Error("demo: expected 4 new tokens, got " + r.newTokens);
  // The installed package runs its trained reference model: real text in, real text out.
  if (r.weights !== "checkpoint" || !r.model.includes("sotu-llama") || !(r.text && r.text.compressed.length > 0)) throw new Error("demo: not the trained reference model with text: " + JSON.stringify(r).slice(0, 300));
  // ...coded with the transform profile shipped beside it, whose tables it counts.
  if (!(r.transformBytes > 0 && r.transformBytes < r.compressedKvBytes)) throw new Error("demo: the shipped transform profile was not used: " + JSON.stringify(r).slice(0, 300));' || die "demo output"
check "demo --json ok (trained reference model, text out)"

for suite in quality codec; do
  set +e
  npx --no-install nexusquant bench "$suite" > lab.out 2> lab.err
  lab=$?
  set -e
  [ "$lab" -eq 1 ] && grep -q "clone the repository" lab.err || die "bench $suite outside the repository: expected exit 1 and a LAB_ONLY message, got $lab: $(cat lab.err)"
done
check "bench quality and bench codec outside the repository: exit 1, LAB_ONLY"
# The lab's native functions (bench/native, NEXUSQUANT_LAB=ON) never reach the prebuilt users load.
node -e 'const m = require(process.argv[1]); const lab = ["codecBenchmark", "cudaBench"].filter((k) => k in m); if (lab.length) throw new Error("lab functions in the prebuilt: " + lab)' \
  "$PWD/node_modules/nexusquant/prebuilds/linux-x64/nexusquant.node" || die "the prebuilt addon holds lab code"
check "the prebuilt addon has no lab functions"

cat > imports.mjs <<'JS'
import assert from "node:assert/strict";
const root = await import("nexusquant");
assert.equal(root.kvBytesPerToken(root.ARCHITECTURES["llama-3.1-8b"]), 131072);
assert.ok(root.compressedLayout({ layers: 1, kvHeads: 8, headDim: 128, tokens: 4096 }, root.PRESETS.balanced.spec).ratio > 1);
const q = await root.quantize(new Float32Array(128 * 4).map((_, i) => Math.sin(i)), { headDim: 128, bits: 2 });
assert.equal(q.codes.length, 4 * 32);
assert.equal(root.backendInfo().cpu.threads > 0, true);
const estimator = await import("nexusquant/estimator");
assert.equal(typeof estimator.planCapacity, "function");
const format = await import("nexusquant/format");
assert.ok(format.PRESET_NAMES.includes("balanced"));
const runtime = await import("nexusquant/runtime");
assert.equal(runtime.halfBitsToFloats(runtime.floatsToHalfBits(new Float32Array([1.5])))[0], 1.5);
const integrations = await import("nexusquant/integrations");
assert.equal(typeof integrations.withNexusQuant, "function");
const model = await import("nexusquant/model");
assert.ok(model.buildLlamaOnnx(model.createTinyLlama({ seed: 1 })).length > 1000);
const store = await import("nexusquant/store");
const files = new store.FileStateStore({ dir: "states" });
await files.put("k", new Uint8Array([1, 2, 3]));
assert.deepEqual([...(await files.get("k"))], [1, 2, 3]);
// The Redis client is an optional peer, absent here: a clear error naming the package, only when used.
await assert.rejects(new store.RedisStateStore({ url: "redis://127.0.0.1:9" }).get("k"), (e) => e.code === "BACKEND_UNAVAILABLE" && e.message.includes("npm install redis"));
const pkg = await import("nexusquant/package.json", { with: { type: "json" } });
assert.equal(pkg.default.name, "nexusquant");
console.log("imports ok: " + Object.keys(root).length + " root exports");
JS
node imports.mjs || die "imports of the export paths"
check "every export path imports and works"

# The install a user makes for transformers.js beside the native path, in a second app: `npm install
# nexusquant @huggingface/transformers onnxruntime-node`, offline from the lock (so at the repository
# lock's versions; the clash of a newer onnxruntime-node with transformers' pinned one is tested on
# its real layout in test/integrations/onnxruntime.test.ts). One onnxruntime-node in the tree, and the
# native path runs in the same process as transformers.js whichever is imported first.
mkdir "$work/mixed-app"
cd "$work/mixed-app"
node "$repo/.ci/app-lock.mjs" "$repo" "$tarball" "$(npm config get registry)" "@huggingface/transformers,onnxruntime-node" > "$work/mixed-lock.log" 2>&1 || { cat "$work/mixed-lock.log" >&2; die "could not write the mixed app's lock"; }
npm ci --offline --omit=dev --no-audit --no-fund > "$work/mixed-install.log" 2>&1 || { tail -30 "$work/mixed-install.log" >&2; die "offline install of nexusquant + @huggingface/transformers + onnxruntime-node failed"; }
[ -d node_modules/@huggingface/transformers ] && [ -d node_modules/onnxruntime-node ] || die "the mixed app lacks transformers or onnxruntime-node"
versions=$(npm ls onnxruntime-node --all --parseable --long 2>/dev/null | grep -o 'onnxruntime-node@[0-9][^:]*' | sort -u)
[ "$(echo "$versions" | wc -l)" -eq 1 ] || die "more than one onnxruntime-node in the app: $versions"
cat > mixed.mjs <<'JS'
import assert from "node:assert/strict";
const order = process.argv[2];
process.on("warning", (w) => { if (w.code === "NEXUSQUANT_ONNXRUNTIME_CLASH") { console.error(w.message); process.exit(3); } });
if (order === "transformers-first") await import("@huggingface/transformers");
const { withNexusQuant } = await import("nexusquant/integrations");
const { loadModel } = await import("nexusquant/model");
const model = await loadModel(new URL("./node_modules/nexusquant/models/sotu-llama", import.meta.url).pathname);
const r = await withNexusQuant(model, { preset: "balanced" }, async (lm) => {
  const out = await lm.generate([1, 2, 3, 4, 5], { maxNewTokens: 4 });
  // The shipped transform profile next to the model is found and used (docs/transform.md).
  assert.equal(lm.cache.options.transform, "calibrated");
  return out;
});
assert.equal(r.tokens[0].length, 4);
if (order !== "transformers-first") await import("@huggingface/transformers");
console.log(order + " ok");
JS
node mixed.mjs transformers-first > /dev/null || die "the native path after importing @huggingface/transformers"
node mixed.mjs native-first > /dev/null || die "@huggingface/transformers after the native path"
check "with @huggingface/transformers: $versions only, native path and transformers.js in one process (both orders)"
echo "pack-check: all passed"
