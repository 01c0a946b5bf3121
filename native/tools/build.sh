#!/bin/sh
# Builds the standalone codec driver with plain g++ (not part of the addon build).
# Usage: native/tools/build.sh && native/tools/build/codec_check [check|nmse|tune|speed|golden|all]
set -e
here=$(cd "$(dirname "$0")" && pwd)
cpu="$here/../cpu"
mkdir -p "$here/build"
${CXX:-g++} -O3 -std=c++17 -pthread -march=x86-64-v2 -Wall -Wextra ${NQ_CXXFLAGS:-} \
  "$here/codec_check.cc" "$cpu/codec.cc" "$cpu/hadamard.cc" "$cpu/baselines.cc" \
  -o "$here/build/codec_check"
echo "built $here/build/codec_check"
