#!/usr/bin/env bash
# The one command for the GPU machine (H100/H200, CUDA 13, no Node, no network): make node and the
# addon usable, run the CUDA parity suite, the memory verification, the kernel and attention
# benchmarks and PyTorch SDPA, and write JSON + Markdown into $OUT (default bench/results/gpu-<date>).
#
#   bash bench/gpu/run.sh            # everything (~5 min on an H100)
#   bash bench/gpu/run.sh --quick    # smaller sweeps (~1 min)
#   SANITIZE=1 bash bench/gpu/run.sh # also run a parity subset under compute-sanitizer memcheck
#
# Prepare on the development machine first: `bash bench/gpu/pack.sh` (compiles .gpu/js, builds the addon,
# writes .gpu/node.xz) and carry what it lists.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
quick=""
[[ "${1:-}" == "--quick" ]] && quick="--quick"
out="${OUT:-$repo/bench/results/gpu-$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
log() { echo "== $*" | tee -a "$out/run.log"; }

# 1. node: the machine has none; unpack the carried binary.
if ! command -v node >/dev/null 2>&1; then
  [[ -f .gpu/node.xz ]] || { echo "no node and no .gpu/node.xz: run bench/gpu/pack.sh on the dev machine and carry .gpu" >&2; exit 2; }
  mkdir -p /tmp/nq-node
  python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('.gpu/node.xz'), open('/tmp/nq-node/node','wb'))" && chmod +x /tmp/nq-node/node
  export PATH=/tmp/nq-node:$PATH
fi
log "node $(node -v)"
[[ -f .gpu/js/test/ops/cuda.js ]] || { echo ".gpu/js is missing: run bench/gpu/pack.sh (or bench/gpu/build-js.sh) and carry .gpu" >&2; exit 2; }

# 2. the addon: the carried build if it loads, sees the GPU and has the lab's kernel timings
# (NEXUSQUANT_LAB=ON), else build here with cmake + nvcc.
addon_ok() { node -e "const m=require(process.argv[1]); const c=m.backendInfo().cuda; if(!c.available){console.error(c.reason); process.exit(1)} if(!m.cudaBench){console.error('no lab (cudaBench): not built with NEXUSQUANT_LAB=ON'); process.exit(1)}" "$1" 2>>"$out/run.log"; }
addon="$repo/build/Release/nexusquant.node"
if [[ -f "$addon" ]] && addon_ok "$addon"; then
  log "using the carried addon"
else
  log "carried addon unusable here; building with cmake (needs node_modules/node-addon-api and node_modules/node-api-headers carried)"
  inc="$repo/node_modules/node-api-headers/include;$repo/node_modules/node-addon-api"
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  cmake -S . -B build-gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DNEXUSQUANT_CUDA=ON -DNEXUSQUANT_LAB=ON -DNEXUSQUANT_CUDA_ARCHITECTURES=90-real "-DCMAKE_JS_INC=$inc" >>"$out/run.log" 2>&1 &&
    cmake --build build-gpu -j 16 >>"$out/run.log" 2>&1 || { echo "addon build failed, see $out/run.log" >&2; tail -30 "$out/run.log"; exit 3; }
  addon="$(find build-gpu -name nexusquant.node | head -1)"
  addon_ok "$addon" || { echo "the freshly built addon does not see a GPU" >&2; exit 3; }
fi
export NEXUSQUANT_ADDON="$addon"

# 3. environment record
node -e "
const m=require(process.env.NEXUSQUANT_ADDON); const c=m.backendInfo().cuda;
const sh=(x)=>{try{return require('child_process').execSync(x,{encoding:'utf8'}).trim()}catch{return ''}};
require('fs').writeFileSync(process.argv[1], JSON.stringify({gpu:c.devices[0]?.name, computeCapability:c.devices[0]?.computeCapability,
  driver: sh('nvidia-smi --query-gpu=driver_version --format=csv,noheader'), cudaRuntime:c.runtimeVersion, cudaDriver:c.driverVersion,
  date:new Date().toISOString(), command:'bash bench/gpu/run.sh $quick', git: sh('git rev-parse --short HEAD')}, null, 2))" "$out/env.json"
nvidia-smi >>"$out/run.log" 2>&1 || true

status=0
log "parity"
node bench/gpu/parity.mjs --out "$out" 2>&1 | tee -a "$out/run.log" | tail -15; [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
if [[ "${SANITIZE:-0}" == "1" ]] && command -v compute-sanitizer >/dev/null; then
  log "compute-sanitizer memcheck on a parity subset"
  compute-sanitizer --tool memcheck --error-exitcode 9 node bench/gpu/parity.mjs --out "$out/sanitize" --filter "d=96" >>"$out/sanitize.log" 2>&1 || { status=1; log "sanitizer reported errors (see sanitize.log)"; }
  tail -5 "$out/sanitize.log"
fi
log "memory verification + kernel and attention benchmarks"
node bench/gpu/driver.mjs --out "$out" $quick 2>&1 | tee -a "$out/run.log" | tail -60; [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
log "PyTorch SDPA"
python3 bench/gpu/sdpa.py --out "$out" $quick >>"$out/run.log" 2>&1 || { status=1; log "sdpa.py failed (see run.log)"; }
node bench/gpu/report.mjs "$out" >/dev/null
log "results in $out (status $status)"
tail -40 "$out/results.md"
exit $status
