#!/usr/bin/env bash
# Compiles what bench/gpu's scripts import into .gpu/js (bench/gpu/tsconfig.json): the GPU machine
# runs plain node, without tsx. native/addon-path.mjs (plain JS the runtime imports) is copied beside.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
rm -rf .gpu/js
npx tsc -p bench/gpu/tsconfig.json
mkdir -p .gpu/js/native
cp native/addon-path.mjs .gpu/js/native/
echo "bench/gpu: compiled into .gpu/js"
