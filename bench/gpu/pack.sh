#!/usr/bin/env bash
# Prepares what bench/gpu/run.sh needs on the GPU machine (run on the dev machine):
# .gpu/js (bench/gpu/tsconfig.json: the runtime, test/ops' op wrappers and the lab binding compiled),
# build/Release/nexusquant.node (CUDA + lab build, sm_80 + sm_90), .gpu/node.xz.
# Then carry: build/Release/nexusquant.node, .gpu, node_modules/node-addon-api,
# node_modules/node-api-headers (the last two only matter if the addon must be rebuilt there).
set -euo pipefail
root="$(git rev-parse --show-toplevel)"
cd "$root"
bash bench/gpu/build-js.sh
NEXUSQUANT_CUDA=ON NEXUSQUANT_LAB=ON node native/build.mjs --force
node -e "const m=require('./build/Release/nexusquant.node'); if(!m.backendInfo().cuda.compiled || !m.cudaBench) { console.error('addon built without CUDA or without the lab'); process.exit(1) }"
bash ../shared/gpu/pack-node.sh 2>/dev/null || bash /work/shared/gpu/pack-node.sh
du -sh build/Release/nexusquant.node .gpu node_modules/node-addon-api node_modules/node-api-headers
echo 'carry: ["build/Release/nexusquant.node", ".gpu", "node_modules/node-addon-api", "node_modules/node-api-headers"]'
echo 'run:   bash bench/gpu/run.sh'
