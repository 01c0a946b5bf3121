#!/bin/sh
# Builds the standalone codec driver with plain g++ (lab only, not part of the addon build): the
# product's codec sources (native/cpu) and the lab's scalar baselines.
# Usage: bench/native/build.sh && bench/native/build/codec_check [check|nmse|tune|speed|golden|all]
set -e
here=$(cd "$(dirname "$0")" && pwd)
root="$here/../.."
cpu="$root/native/cpu"
mkdir -p "$here/build"
${CXX:-g++} -O3 -std=c++17 -pthread -march=x86-64-v2 -Wall -Wextra ${NQ_CXXFLAGS:-} -I"$root/native" -I"$root/kernels" \
  "$here/codec_check.cc" "$cpu/codec.cc" "$cpu/hadamard.cc" "$here/baselines.cc" \
  -o "$here/build/codec_check"
echo "built $here/build/codec_check"
