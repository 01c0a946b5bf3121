#!/usr/bin/env bash
# Prepares what bench/gpu/run.sh needs on the GPU machine (run on the dev machine):
# dist/ (compiled TS), build/Release/nexusquant.node (CUDA build, sm_80 + sm_90), .gpu/node.xz.
# Then carry: dist, build/Release/nexusquant.node, .gpu, node_modules/node-addon-api,
# node_modules/node-api-headers (the last two only matter if the addon must be rebuilt there).
set -euo pipefail
root="$(git rev-parse --show-toplevel)"
cd "$root"
npx tsc -p tsconfig.build.json
NEXUSQUANT_CUDA=ON node native/build.mjs --force
node -e "const c=require('./build/Release/nexusquant.node').backendInfo().cuda; if(!c.compiled) { console.error('addon built without CUDA'); process.exit(1) }"
bash ../shared/gpu/pack-node.sh 2>/dev/null || bash /work/shared/gpu/pack-node.sh
du -sh dist build/Release/nexusquant.node .gpu node_modules/node-addon-api node_modules/node-api-headers
echo 'carry: ["dist", "build/Release/nexusquant.node", ".gpu", "node_modules/node-addon-api", "node_modules/node-api-headers"]'
echo 'run:   bash bench/gpu/run.sh'
